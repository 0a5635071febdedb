"""The benchmark's own pieces: every baseline computes the layer it claims to
(against F.conv2d in float64), and the FiT worker reports what it measured."""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import fftconv_ext
from fftconv_ext.bench import fit, impls
from fftconv_ext.bench.long import fft_composition


@pytest.mark.parametrize("name", sorted(impls.FORWARD))
@pytest.mark.parametrize("k,r", [(7, 16), (13, 20), (31, 32)])
def test_every_baseline_computes_the_layer(name, k, r):
    g = torch.Generator().manual_seed(k)
    x = torch.randn(2, 6, r, r, generator=g, dtype=torch.float64)
    w = torch.randn(6, 1, k, k, generator=g, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    ref = F.conv2d(x, w, b, padding=k // 2, groups=6)
    cuda_only = name in ("cupyx fftconvolve", "best torch.fft 2-D")
    if cuda_only:
        if not torch.cuda.is_available():
            pytest.skip(f"{name} is timed on CUDA only: no CUDA GPU on this machine")
        x, w, b = x.cuda(), w.cuda(), b.cuda()
    make = impls.FORWARD[name](x, w, b, k // 2, 6)
    if make is None:  # `make test` installs the packages; CuPy is on the GPU machines
        pytest.skip(f"{name} is not installed (make bench-deps)")
    y = make().cpu()
    assert y.shape == ref.shape
    # Third-party packages may compute internally in single precision.
    tol = 1e-5 if name in ("fft-conv-pytorch", "torch-fftconv", "cupyx fftconvolve") else 1e-9
    assert ((y.double() - ref).norm() / ref.norm()).item() <= tol


@pytest.mark.parametrize("chunk,two_d", [(None, False), (5, False), (1000, False), (None, True), (5, True)])
def test_best_composition_variants(chunk, two_d):
    # the chunked, whole-batch (CUDA default) and 2-D variants of our composition, on the CPU
    from fftconv_ext.bench.baselines import BestFFTComposition
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 4, 19, 22, generator=g, dtype=torch.float64)
    w = torch.randn(4, 1, 9, 9, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    y = BestFFTComposition(chunk=chunk, two_d=two_d)(x, w, b, 4)
    ref = F.conv2d(x, w, b, padding=4, groups=4)
    assert ((y - ref).norm() / ref.norm()).item() <= 1e-12


def test_long_conv_baseline_is_causal_convolution():
    u = torch.randn(2, 3, 50, dtype=torch.float64)
    k = torch.randn(3, 50, dtype=torch.float64)
    D = torch.randn(3, dtype=torch.float64)
    ref = F.conv1d(F.pad(u, (49, 0)), k.flip(-1).unsqueeze(1), groups=3) + D.view(1, 3, 1) * u
    assert torch.allclose(fft_composition(u, k, D), ref, atol=1e-10)


@pytest.mark.subprocess
def test_fit_worker_reports_latency_parameters_and_memory():
    r = subprocess.run([sys.executable, "-m", "fftconv_ext.bench.fit_worker", "--model", "fit_base", "--img", "32",
                        "--patch", "8", "--batch", "2", "--depth", "1", "--repeats", "2"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["status"] == "ok" and out["repeats"] == 2 and out["median_ms"] > 0
    d, mlp = 768, 2048  # parameters of the full 12-block model, not the reduced one timed
    front = 3 * 64 * d + d + d + 17 * d
    assert out["params"] == front + 12 * (2 * d * mlp + mlp + d + 4 * d) + d * d + d + d * 1000 + 1000
    assert 0 <= out["peak_mib"] < 2048


def test_fit_markdown_reports_timeouts_and_ratios():
    mix = [{"shape": [2, 5, 6], "max_rel_err": 1e-7,
            "forward": {"fourier_mix": {"median_ms": 1.0}, "torch.fft.fft2(x).real": {"median_ms": 2.0}},
            "forward_backward": {"fourier_mix": {"median_ms": 2.0}, "torch.fft.fft2(x).real": {"median_ms": 5.0}}}]
    rows = [{"img": 32, "patch": 4, "batch": 1, "tokens": 65,
             "fit_base": {"status": "ok", "median_ms": 10.0, "peak_mib": 5.0, "params": 10},
             "vit_base": {"status": "timeout (> 300 s)"}}]
    md = fit.fit_markdown(mix, rows, 2)
    assert "2.00x" in md and "2.50x" in md and "timeout (> 300 s)" in md and "depth 2 of 12" in md


@pytest.mark.parametrize("xs,ws,pad,groups", [
    ((8, 64, 56, 56), (64, 1, 31, 31), 15, 64),    # the reference layer
    ((2, 384, 64, 64), (384, 1, 31, 31), 15, 384),  # a sweep layer
    ((4, 96, 56, 56), (96, 1, 51, 51), 25, 96),     # SLaK-T stage 1
])
def test_forward_extra_memory_at_most_twice_the_output(xs, ws, pad, groups):
    from fftconv_ext.bench.memory import forward_memory
    m = forward_memory(torch.randn(*xs), torch.randn(*ws), pad, groups)
    assert m["output_bytes"] == xs[0] * ws[0] * xs[2] * xs[3] * 4
    assert 0 < m["cached_extra_over_output"] <= 2.0, m
    assert m["first_call_extra_over_output"] <= 2.0, m
    assert m["cache_off_extra_over_output"] <= 2.0, m


@pytest.mark.parametrize("xs,ws,pad,groups", [
    ((2, 384, 16, 16), (384, 1, 31, 31), 15, 384),  # the smallest sweep output, the largest kernel
    ((2, 384, 14, 14), (384, 1, 47, 47), 23, 384),  # SLaK-T stage 3
    ((2, 1024, 7, 7), (1024, 1, 13, 13), 6, 1024),  # RepLKNet-31B stage 4
])
def test_small_outputs_stay_within_twice_the_output_but_for_the_cache_entry(xs, ws, pad, groups):
    # Where the kernel spectrum alone outweighs the output, a first call that
    # caches it cannot stay within 2x; everything else must: the cached call,
    # the first call's working memory, and every call with the cache off.
    import fftconv_ext
    from fftconv_ext.bench.memory import forward_memory
    m = forward_memory(torch.randn(*xs), torch.randn(*ws), pad, groups)
    assert m["cached_extra_over_output"] <= 2.0, m
    assert m["first_call_transient_over_output"] <= 2.0, m
    assert m["cache_off_extra_over_output"] <= 2.0, m
    # what the first call keeps is exactly the cache entry: the padded
    # spectrum (complex, n_h x (n_w/2+1) per kernel plane) and a copy of the weight
    n_h, n_w = fftconv_ext._C.fft_shape(list(xs), list(ws), [1, 1], [pad] * 4, [1, 1], groups, False)
    spectrum = ws[0] * ws[1] * n_h * (n_w // 2 + 1) * 8
    weight = ws[0] * ws[1] * ws[2] * ws[3] * 4
    assert m["first_call_cache_entry_bytes"] == spectrum + weight
    assert fftconv_ext.cache_info()["limit"] == 32  # restored


def test_peak_allocated_bytes_sees_temporaries():
    from fftconv_ext.bench.memory import peak_allocated_bytes

    def fn():
        tmp = torch.ones(1 << 20)  # 4 MiB temporary, freed before returning
        return (tmp * 2).sum().reshape(1)
    m = peak_allocated_bytes(fn, torch.device("cpu"))
    assert m["peak"] >= 8 * 2**20 and m["out"] == 4 and m["kept"] == 4

    kept = []

    def keeps():
        kept.append(torch.ones(1 << 18))  # 1 MiB that outlives the call
        return torch.zeros(2)
    m = peak_allocated_bytes(keeps, torch.device("cpu"))
    assert m["kept"] == 2**20 + 8


def test_time_shares_attribute_the_fft_layers():
    import fftconv_ext
    from fftconv_ext.bench.models import time_shares
    m = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 15, padding=7, groups=8), torch.nn.Conv2d(8, 16, 1)).eval()
    converted = fftconv_ext.convert(m, algo="fft")
    x = torch.randn(2, 8, 32, 32)
    s = time_shares(lambda: converted(x), torch.device("cpu"))
    assert s["fft"] > 0 and s["other convolutions"] > 0
    assert sum(s.values()) == pytest.approx(1.0)
    assert time_shares(lambda: m(x), torch.device("cpu"))["fft"] == 0


def test_paired_ratio_compares_within_rounds(monkeypatch):
    from fftconv_ext.bench import timing
    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    slow_spell = iter([10.0] * 6 + [1.0] * 100)  # the machine slows everything for a while

    def make(cost):
        def fn():
            clock[0] += cost * next(slow_spell)
        return fn
    r = timing.time_interleaved({"a": make(2e-3), "b": make(1e-3)}, torch.device("cpu"), warmup=0, rounds=20,
                                max_seconds=100, paired=[("a", "b")])
    assert r["a"]["repeats"] == r["b"]["repeats"] == 20
    assert r["a"]["paired_ratio_vs"]["b"] == pytest.approx(2.0, rel=0.01)


def test_lockstep_keeps_every_median_on_the_same_rounds(monkeypatch):
    # "a" (slow) uses its budget in the first rounds, during a slow spell; without
    # lockstep "b" is timed on alone after the spell and its median looks 10x better
    from fftconv_ext.bench import timing
    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])

    def run(lockstep):
        costs = iter([10.0] * 40 + [1.0] * 10000)

        def make(cost):
            def fn():
                clock[0] += cost * next(costs)
            return fn
        return timing.time_interleaved({"a": make(4e-3), "b": make(1e-3)}, torch.device("cpu"), warmup=0,
                                       rounds=500, max_seconds=0.5, paired=[("a", "b")], lockstep=lockstep)
    loose, locked = run(False), run(True)
    assert loose["b"]["repeats"] > loose["a"]["repeats"]
    assert loose["a"]["median_ms"] / loose["b"]["median_ms"] > 10      # the artefact
    assert locked["a"]["repeats"] == locked["b"]["repeats"]
    assert locked["a"]["median_ms"] / locked["b"]["median_ms"] == pytest.approx(4.0)
    assert locked["a"]["paired_ratio_vs"]["b"] == pytest.approx(4.0)


def test_auto_is_timed_again_against_the_faster_path_alone_when_the_other_is_far_slower(monkeypatch):
    # a call right after the slow path pays for it (cold caches): in the lockstep rounds that falls
    # on auto and the FFT path unevenly; timed again without the slow path, auto and the FFT path
    # (the same cost) come out equal, and the slow path keeps its lockstep median
    from fftconv_ext.bench import timing
    clock, last = [0.0], [None]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])

    def make(name, cost):
        def fn():
            clock[0] += cost * (1.5 if last[0] == "direct" else 1.0)
            last[0] = name
        return fn
    fns = {"auto": make("auto", 1e-3), "fft": make("fft", 1e-3), "direct": make("direct", 40e-3)}
    t = timing.time_auto_against_paths(fns, torch.device("cpu"), rounds=200, max_seconds=0.2)
    assert t["faster"] == "fft" and t["median_ms"]["direct"] == pytest.approx(40.0)
    assert t["auto_over_faster"] == pytest.approx(1.0) and t["paired"] == pytest.approx(1.0)
    assert t["rounds"] > 20 and set(t["paired_vs"]) == {"fft", "direct"}
    # paths within the factor: the lockstep rounds are the result
    fns["direct"] = make("direct", 2e-3)
    t = timing.time_auto_against_paths(fns, torch.device("cpu"), rounds=30, max_seconds=10)
    assert t["rounds"] == 30 and t["median_ms"]["direct"] == pytest.approx(2.0, rel=0.3)


def test_summary_takes_auto_ratios_from_the_dedicated_timing():
    from fftconv_ext.bench.report import auto_markdown, summary

    def t(ms, paired=None):
        d = {"median_ms": ms}
        if paired:
            d["paired_ratio_vs"] = paired
        return d
    row = {"suite": "sweep", "name": "sweep R16 k3", "kernel": 3, "input": [2, 384, 16, 16], "backward": {},
           "forward": {"fftconv_ext auto": t(1.3, {"fftconv_ext direct": 1.3}), "fftconv_ext": t(5.0), "fftconv_ext direct": t(1.0)},
           "auto_check": {"fftconv_ext auto": t(1.05, {"fftconv_ext direct": 1.04, "fftconv_ext": 0.2}),
                          "fftconv_ext": t(5.0), "fftconv_ext direct": t(1.0)}}
    s = summary([row])
    assert s["auto: worst time / min(fft, direct)"] == pytest.approx(1.05)
    assert s["auto: worst paired ratio to the faster path"] == pytest.approx(1.04)
    del row["auto_check"]
    s = summary([row])
    assert s["auto: worst time / min(fft, direct)"] == pytest.approx(1.3)
    assert "sweep R16 k3" not in auto_markdown([row])
    # a large-kernel layer: direct (1400 ms) kept its main-round time, auto timed with the FFT path
    big = {"suite": "models", "name": "SLaK-T s1", "kernel": 51, "input": [4, 96, 56, 56], "backward": {},
           "forward": {"fftconv_ext auto": t(10.8), "fftconv_ext": t(9.4), "fftconv_ext direct": t(1400.0)},
           "auto_check": {"fftconv_ext auto": t(9.5, {"fftconv_ext": 1.02}), "fftconv_ext": t(9.3),
                          "fftconv_ext direct": {"median_ms": 1400.0, "from_main_rounds": True}}}
    s = summary([big])
    assert s["auto: worst time / min(fft, direct)"] == pytest.approx(9.5 / 9.3)
    assert s["auto: worst paired ratio to the faster path"] == pytest.approx(1.02)
    assert "| SLaK-T s1 | 9.500 | 9.300 | 1400.000* |" in auto_markdown([big])


def test_summary_holds_us_to_the_fastest_composition_variant():
    from fftconv_ext.bench.report import summary

    def row(k, ours, variants):
        fwd = {"fftconv_ext": {"median_ms": ours}}
        fwd.update({name: {"median_ms": ms} for name, ms in variants.items()})
        return {"suite": "sweep", "name": f"sweep R16 k{k}", "kernel": k, "input": [2, 384, 16, 16],
                "forward": fwd, "backward": {}}
    rows = [row(13, 1.0, {"best torch.fft": 8.0, "best torch.fft whole batch": 2.0}),
            row(31, 1.0, {"best torch.fft": 4.0, "best torch.fft 2-D": 3.0, "best torch.fft whole batch": 9.0})]
    s = summary(rows)
    assert s["sweep k>=13: geomean speedup vs best torch.fft"] == pytest.approx((2.0 * 3.0) ** 0.5)


def test_paired_summary_uses_the_fastest_variants_same_round_ratio():
    from fftconv_ext.bench.report import summary

    def row(k, paired, variants):
        fwd = {"fftconv_ext": {"median_ms": 1.0, "paired_ratio_vs": paired}}
        fwd.update({name: {"median_ms": ms} for name, ms in variants.items()})
        return {"suite": "sweep", "name": f"sweep R16 k{k}", "kernel": k, "input": [2, 384, 16, 16],
                "forward": fwd, "backward": {}}
    # the whole-batch variant is the faster one on the first layer, the chunked one on the second:
    # each layer's paired ratio is taken against that variant, not the other
    rows = [row(13, {"best torch.fft": 0.1, "best torch.fft whole batch": 0.5},
                {"best torch.fft": 8.0, "best torch.fft whole batch": 2.0}),
            row(31, {"best torch.fft": 0.25, "best torch.fft whole batch": 0.01},
                {"best torch.fft": 4.0, "best torch.fft whole batch": 9.0})]
    s = summary(rows)
    assert s["sweep k>=13: geomean paired speedup vs best torch.fft"] == pytest.approx((2.0 * 4.0) ** 0.5)
    # a layer without a paired ratio (the variant left the rounds): no paired summary at all
    del rows[1]["forward"]["fftconv_ext"]["paired_ratio_vs"]["best torch.fft"]
    assert "sweep k>=13: geomean paired speedup vs best torch.fft" not in summary(rows)
    # k < 13 layers do not count
    rows[1]["kernel"] = 7
    assert summary(rows)["sweep k>=13: geomean paired speedup vs best torch.fft"] == pytest.approx(2.0)


def test_run_end_to_end_on_a_small_layer(monkeypatch):
    # The whole per-layer loop (checks, main rounds, auto's own timing, backward, memory) on
    # one small layer; direct convolution slowed past the 20 ms line, so that auto's own
    # timing keeps its main-round time (the large-kernel case).
    import time as _time
    import fftconv_ext.bench.__main__ as bench_main
    from fftconv_ext.bench import impls
    from fftconv_ext.bench.report import auto_markdown, summary

    def slow_direct(x, w, b, pad, groups):
        fn = impls._torch_direct(x, w, b, pad, groups)

        def call():
            _time.sleep(0.021)
            return fn()
        return call
    monkeypatch.setitem(impls.FORWARD, "fftconv_ext direct", slow_direct)
    monkeypatch.setattr(bench_main, "layers",
                        lambda suites, full, device: [("sweep", "sweep R8 k13", (1, 8, 8, 8), 13)])
    rows, names = bench_main.run(torch.device("cpu"), ["sweep"], full=False, quick=False, progress=False)
    (row,) = rows
    for impl in ("fftconv_ext", "fftconv_ext auto", "fftconv_ext direct", "F.conv2d", "best torch.fft"):
        assert row["forward"][impl]["median_ms"] > 0 and row["forward"][impl]["rel_err"] < 1e-5
    check = row["auto_check"]
    assert check["fftconv_ext direct"].get("from_main_rounds") and "paired_ratio_vs" in check["fftconv_ext auto"]
    assert "sweep R8 k13" in auto_markdown(rows) and "auto: worst time / min(fft, direct)" in summary(rows)
    assert row["backward"]["fftconv_ext"]["median_ms"] > 0 and row["memory"]


@pytest.mark.subprocess
def test_gpu_profile_script_runs(tmp_path):
    # bench/gpu_profile.py, run by gpu_check.sh on a GPU machine: a dry run on the CPU.
    out = tmp_path / "profile.json"
    script = os.path.join(os.path.dirname(__file__), "..", "bench", "gpu_profile.py")
    subprocess.run([sys.executable, script, "--device", "cpu", "--shape", "1,4,16,16", "--kernel", "7",
                    "--json", str(out)], check=True, capture_output=True, timeout=300)
    data = json.loads(out.read_text())
    assert {"fftconv_ext", "fftconv_ext host checks", "fftconv_ext small-plane", "best torch.fft", "F.conv2d"} <= \
        set(data["wall"])
    for name, w in data["wall"].items():
        assert w["back_to_back_us"] > 0 and w["single_median_us"] > 0 and w["kernels_us"] > 0, name
        assert data["kernels"][name], name


@pytest.mark.subprocess
def test_gpu_small_plane_ab_script_runs(tmp_path):
    # bench/gpu_small_plane_ab.py runs only on a GPU: a dry run on the CPU (where the switch it
    # toggles does nothing) proves the script itself before device time is spent on it.
    out = tmp_path / "ab.json"
    script = os.path.join(os.path.dirname(__file__), "..", "bench", "gpu_small_plane_ab.py")
    subprocess.run([sys.executable, script, "--device", "cpu", "--batch", "1", "--channels", "2",
                    "--layers", "32:31,64:31", "--json", str(out)], check=True, capture_output=True, timeout=300)
    data = json.loads(out.read_text())
    rows = {(r["layer"], r["pass"]): r for r in data["rows"]}
    assert set(rows) == {(layer, kind) for layer in ("1x2x32x32 k31", "1x2x64x64 k31")
                         for kind in ("forward", "fwd+bwd")}
    assert rows["1x2x32x32 k31", "forward"]["lengths"] == [48, 48] and rows["1x2x64x64 k31", "forward"]["lengths"] == []
    assert all(r["rel_err"] < 1e-5 and set(r["speedup_paired"]) == {"cufft", "composition", "cudnn", "host checks"}
               for r in data["rows"])
    assert len(data["shared_sweep_r32_k31"]) == 6


@pytest.mark.subprocess
def test_gpu_pipelines_script_runs(tmp_path):
    # bench/gpu_pipelines.py (every CUDA pipeline forced in turn; gpu_check.sh) as a dry run on
    # the CPU, where the forced pipeline has no effect: the script is proven before a GPU runs it.
    out, md = tmp_path / "pipelines.json", tmp_path / "pipelines.md"
    script = os.path.join(os.path.dirname(__file__), "..", "bench", "gpu_pipelines.py")
    env = dict(os.environ, FFTCONV_CACHE_DIR=str(tmp_path / "cache"))
    subprocess.run([sys.executable, script, "--device", "cpu", "--batch", "1", "--channels", "4", "--layers",
                    "16:13,16:5", "--max-seconds", "0.05", "--json", str(out), "--md", str(md)], check=True,
                   capture_output=True, timeout=300, env=env)
    data = json.loads(out.read_text())
    rows = {(r["layer"], r["pass"]): r for r in data["rows"]}
    assert set(rows) == {(layer, kind) for layer in ("1x4x16x16 k13", "1x4x16x16 k5") for kind in ("forward", "fwd+bwd")}
    for r in data["rows"]:
        assert set(r["rel_err"]) == {"rows", "planes", "small_plane"} and max(r["rel_err"].values()) < 1e-5
        assert {"rows", "planes", "small_plane", "auto", "fft", "auto+unverified", "fft+unverified", "F.conv2d",
                "best torch.fft"} <= set(r["median_ms"])
        assert all(v > 0 for v in r["median_ms"].values()) and r["extra_memory_over_output"]
        assert set(r["choices"]) == {"auto", "fft", "auto+unverified", "fft+unverified"}
        assert r["auto_over_fastest_candidate"] > 0 and r["auto_unverified_over_fastest_candidate"] > 0
    assert "| 1x4x16x16 k13 | forward |" in md.read_text()
    # the check's summary reads what the stages left, also a stage that ran out of time
    (tmp_path / "stages.tsv").write_text("stage\tstatus\tseconds\tlimit\nbuild\t0\t95\t300\n"
                                         "memcheck\t0\t80\t110\ntests:test_cuda\ttimeout\t45\t45\n"
                                         "bench:pipelines\t0\t60\t90\n")
    (tmp_path / "gpu_pipelines.json").write_text(out.read_text())
    (tmp_path / "memcheck.sanitizer.log").write_text("========= ERROR SUMMARY: 0 errors\n")
    (tmp_path / "memcheck.xml").write_text('<testsuites><testsuite tests="7" failures="1" errors="0" skipped="2"/>'
                                           '</testsuites>')
    (tmp_path / "tests-test_cuda.log").write_text(
        "python_tests/test_cuda.py::test_a PASSED [ 10%]\npython_tests/test_cuda.py::test_b FAILED [ 20%]\n"
        "python_tests/test_cuda.py::test_c PASSED [ 30%]\n")
    summary = subprocess.run([sys.executable, os.path.join(os.path.dirname(script), "gpu_summary.py"),
                              str(tmp_path)], check=True, capture_output=True, text=True, timeout=60).stdout
    assert "| memcheck | 0 | 80 | 110 | 0 sanitizer errors; tests 4 passed, 1 failed |" in summary
    assert "| tests:test_cuda | timeout | 45 | 45 | 2 passed, 1 failed, 0 skipped |" in summary
    assert "sweep k>=13 forward: fastest pipeline vs best torch.fft" in summary
    assert "auto (default) / its fastest candidate" in summary and "forward extra memory" in summary


def test_nd_suite_computes_every_transposed_layer(monkeypatch, tmp_path):
    # --nd: every implementation computes the layer it claims (float64 reference), on small copies
    # of the suite's kinds of layer
    from fftconv_ext.bench.nd import run_transposed, transposed_markdown, transposed_summary
    monkeypatch.setattr(fftconv_ext.backends, "cache_dir", str(tmp_path))
    layers = [("depthwise 31x31, stride 1", (1, 4, 16, 16), 1, 31, 1, 15, 0, 4),
              ("dense 4x4, stride 2 (decoder)", (1, 4, 6, 6), 2, 4, 2, 1, 0, 1),
              ("depthwise 7x7, stride 2", (1, 4, 6, 6), 1, 7, 2, 3, 1, 4)]
    rows = run_transposed(torch.device("cpu"), layers, budget=0.02)
    assert [r["layer"] for r in rows] == [name for name, *_ in layers]
    assert "torch.fft composition" in rows[0]["forward"] and "torch.fft composition" not in rows[1]["forward"]
    for r in rows:
        assert {"fftconv_ext", "fftconv_ext auto", "F.conv_transpose2d"} <= set(r["forward"])
        assert all(v["rel_err"] < 1e-5 for v in r["forward"].values()), r["forward"]
        assert all(v["median_ms"] > 0 for v in r["backward"].values())
    summary = transposed_summary(rows)
    assert any(k.startswith("depthwise transposed 31x31") for k in summary)
    assert "| depthwise 7x7, stride 2 |" in transposed_markdown(rows, summary)


def test_nd_suite_computes_every_3d_layer(monkeypatch, tmp_path):
    # --nd's 3-D part: every implementation computes the layer it claims, on small copies
    import importlib.util
    from fftconv_ext.bench.nd import run_3d, summary_3d, transposed_markdown
    monkeypatch.setattr(fftconv_ext.backends, "cache_dir", str(tmp_path))
    layers = [("depthwise 21x21x21 (RepUX-Net)", (1, 2, 12, 12, 12), 21, 10), ("depthwise 3x3x3", (1, 2, 6, 6, 6), 3, 1)]
    transposed = [("3-D dense 2x2x2, stride 2 (decoder)", (1, 4, 4, 4, 4), 2, 2, 2, 0, 0, 1)]
    rows = run_3d(torch.device("cpu"), layers, transposed, budget=0.02)
    assert [r["layer"] for r in rows] == [name for name, *_ in layers + transposed]
    for r in rows[:2]:
        assert {"fftconv_ext", "fftconv_ext auto", "F.conv3d", "torch.fft composition"} <= set(r["forward"])
        if importlib.util.find_spec("fft_conv_pytorch") is not None:
            assert "fft-conv-pytorch" in r["forward"]
    assert {"fftconv_ext", "F.conv_transpose3d"} <= set(rows[2]["forward"])
    for r in rows:
        assert all(v["rel_err"] < 1e-5 for v in r["forward"].values()), r["forward"]
        assert all(v["median_ms"] > 0 for v in r["backward"].values())
    summary = summary_3d(rows)
    assert any(k.startswith("depthwise 21x21x21") for k in summary)
    assert "| depthwise 3x3x3 |" in transposed_markdown(rows, summary)


@pytest.mark.subprocess
def test_gpu_check_script_parses_and_runs_the_sanitizers_first():
    # bench/gpu_check.sh runs only on a GPU machine: here, its syntax and its stage order
    script = os.path.join(os.path.dirname(__file__), "..", "bench", "gpu_check.sh")
    subprocess.run(["bash", "-n", script], check=True, timeout=30)
    text = open(script).read()
    order = [text.index(s) for s in ("step build", "step memcheck", "step racecheck", 'step "tests:', 'step "bench:')]
    assert order == sorted(order)
    assert "PYTORCH_NO_CUDA_MEMORY_CACHING=1" in text and "CUDA_LAUNCH_BLOCKING=1" in text


def test_calibrate_fits_each_kind_and_direction_and_writes_its_tables(tmp_path):
    from fftconv_ext import cost_model
    from fftconv_ext.bench import calibrate
    points = calibrate.measure(quick=True, progress=lambda s: None, passes=1)
    assert {p["direction"] for p in points} == set(cost_model.DIRECTIONS)
    assert all(p["fft_ms"] > 0 and (p["direct_ms"] is None or p["direct_ms"] > 0) for p in points)
    fits = calibrate.fit(points, "cpu")
    for per in fits.values():
        for f in per.values():
            assert f["loss"] >= 1.0 and f["committed_loss"] >= f["loss"] - 1e-12  # the fit is the least loss
    md = calibrate.markdown({"meta": {"machine": "m", "device": "cpu"}, "points": points, "fit": fits})
    assert md.count("\n| depthwise 2-D R") == len(points)


def test_calibrate_kind_times_that_kind_alone_and_names_its_files(tmp_path, monkeypatch):
    from fftconv_ext.bench import calibrate
    from fftconv_ext.bench.__main__ import main
    tiny = [("depthwise 2-D tiny", (1, 4, 8, 8), (4, 1, 3, 3), 4), ("dense 2-D tiny", (1, 4, 8, 8), (4, 4, 5, 5), 1)]
    monkeypatch.setattr(calibrate, "layers", lambda quick=False: tiny)
    monkeypatch.setattr(calibrate, "PASSES", 1)
    main(["--calibrate", "--calibrate-kind", "dense 2-D", "--threads", "1", "--out", str(tmp_path), "--no-progress"])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and all(f.endswith(("-calibrate-dense-2-d.json", "-calibrate-dense-2-d.md")) for f in files)
    out = json.load(open(tmp_path / files[0]))
    assert out["meta"]["kind"] == "dense 2-D" and {p["layer"] for p in out["points"]} == {"dense 2-D tiny"}
    assert set(out["fit"]) == {"dense 2-D"}
    with pytest.raises(SystemExit, match="--calibrate-kind must be one of"):
        main(["--calibrate", "--calibrate-kind", "dense", "--threads", "1", "--out", str(tmp_path), "--no-progress"])


def test_calibrate_from_a_committed_run(tmp_path):
    import json
    import os
    from fftconv_ext.bench.__main__ import main
    src = os.path.join(os.path.dirname(__file__), "..", "bench", "results", "nvidia-h200.json")
    main(["--calibrate", "--calibrate-from", src, "--out", str(tmp_path)])
    out = json.load(open(tmp_path / "nvidia-h200-calibrate-forward.json"))
    assert len(out["points"]) == 7 and set(out["fit"]) == {"depthwise 2-D"}
    assert (tmp_path / "nvidia-h200-calibrate-forward.md").exists()


def test_harness_restarts_itself_with_glibc_thresholds_fixed(monkeypatch):
    import sys
    from fftconv_ext.bench import machine
    calls = []
    monkeypatch.setattr(machine.os, "execve", lambda exe, argv, env: calls.append((exe, argv, env)))
    monkeypatch.setattr(machine.sys, "platform", "linux")
    for k in machine.FIXED_MALLOC:
        monkeypatch.delenv(k, raising=False)
    assert machine.malloc_mode() == "glibc defaults"
    machine.restart_with_fixed_malloc(["--train", "--threads", "2"])
    (exe, argv, env), = calls
    assert exe == sys.executable and argv[1:] == ["-m", "fftconv_ext.bench", "--train", "--threads", "2"]
    assert all(env[k] == v for k, v in machine.FIXED_MALLOC.items())
    for k, v in machine.FIXED_MALLOC.items():
        monkeypatch.setenv(k, v)
    assert machine.malloc_mode() == "fixed"
    machine.restart_with_fixed_malloc(["--train"])  # already fixed: no second restart
    assert len(calls) == 1


def test_auto_benchmark_mode_names_its_files_and_sets_the_flag(monkeypatch):
    import fftconv_ext
    from fftconv_ext.bench import machine
    dev = torch.device("cpu")
    plain = machine.machine_name(dev, 2)
    try:
        machine.set_auto_mode(True)
        assert fftconv_ext.backends.benchmark is True
        assert machine.machine_name(dev, 2) == plain + "-benchmark"
        assert machine.run_meta(dev, 2)["auto"] == "benchmark"
    finally:
        machine.set_auto_mode(False)
    assert fftconv_ext.backends.benchmark is False and machine.machine_name(dev, 2) == plain


def test_train_first_steps_are_timed_in_a_fresh_process():
    from fftconv_ext.bench import train_step
    spec = {"R": 8, "k": 3, "batch": 1}
    t = train_step._first_step(spec, "direct", torch.device("cpu"), 1)
    assert t["first_ms"] > 0 and t["plain_ms"] > 0
    rows = [{"layer": "sweep R8 k3", "input": [1, 384, 8, 8], "median_ms": {"auto": 1.0, "fft": 2.0, "direct": 1.0},
             "auto_over_best": 1.0, "auto_paired_over_best": 1.0, "first_step_over_best": 3.0,
             "first_faster_step_over_best": 2.5, "first_auto_over_first_faster": 1.2}]
    md = train_step.train_markdown(rows, {})
    assert "| 3.00x | 2.50x | 1.20 |" in md and "worst 3.00x" in md


def test_heldout_suite_times_each_layer_both_ways_and_writes_its_table(monkeypatch):
    # --heldout on small copies of its kinds of layer: every path computes the layer (float64
    # F.conv reference), both parts are timed, and the table and summary name each layer
    import torch.nn.functional as F
    from fftconv_ext.bench import heldout
    layers = [("strip", (1, 4, 12, 12), (4, 1, 1, 7), 1, (0, 3), 1, 4),
              ("dilated, strided", (1, 4, 16, 16), (4, 1, 3, 3), 2, 2, 2, 4),
              ("dense 1-D", (1, 3, 40), (5, 3, 9), 1, 4, 1, 1)]
    for name, xs, ws, s, p, d, g in layers:
        x, w = torch.randn(*xs, dtype=torch.float64), torch.randn(*ws, dtype=torch.float64)
        ref = (F.conv2d if len(xs) == 4 else F.conv1d)(x, w, None, s, p, d, g)
        for a in heldout.ALGOS:
            got = heldout._CONV[len(xs)](x, w, None, s, p, d, g, algo=a)
            assert (got - ref).abs().max() < 1e-10, (name, a)
    monkeypatch.setattr(heldout, "LAYERS", layers)
    rows = heldout.run_heldout(torch.device("cpu"), budget=0.01)
    assert [r["layer"] for r in rows] == [name for name, *_ in layers]
    for r in rows:
        for part in ("forward", "training"):
            assert r[part]["faster"] in ("fft", "direct") and r[part]["auto_over_faster"] > 0
            assert all(v > 0 for v in r[part]["median_ms"].values())
    md = heldout.heldout_markdown(rows)
    assert "| strip |" in md and "- forward: worst auto / faster path" in md and "- training:" in md


def test_heldout_layers_are_in_neither_the_calibration_nor_the_other_suites():
    from fftconv_ext.bench import calibrate, heldout
    from fftconv_ext.bench.train_step import sweep_layers

    def same(w, s, p, d):  # a stride-1 'same' layer, as the calibration's are
        pads = p if isinstance(p, tuple) else (p,) * (len(w) - 2)
        return s == 1 and d == 1 and all(q == k // 2 for q, k in zip(pads, w[2:]))
    calibrated = {(tuple(x), tuple(w), g) for _, x, w, g in calibrate.layers()}
    sweep = {((2, 384, r, r), (384, 1, k, k), 384) for r, k in sweep_layers(full=True)}
    for name, x, w, s, p, d, g in heldout.LAYERS:
        if same(w, s, p, d):
            assert (tuple(x), tuple(w), g) not in calibrated | sweep, name
    assert len({name for name, *_ in heldout.LAYERS}) == len(heldout.LAYERS)


def test_heldout_figures_are_medians_over_processes():
    # three processes' rows of one layer: each path's time is the median over them, auto / faster
    # comes from those medians (not the median of the ratios), and the paired ratio is the median
    # of each process's pairing with the faster path of the combined row
    from fftconv_ext.bench import heldout

    def row(auto, fft, direct, paired_fft, paired_direct):
        part = {"median_ms": {"auto": auto, "fft": fft, "direct": direct},
                "faster": "fft" if fft <= direct else "direct", "auto_over_faster": auto / min(fft, direct),
                "paired": paired_fft if fft <= direct else paired_direct,
                "paired_vs": {"fft": paired_fft, "direct": paired_direct}, "rounds": 10}
        return [{"layer": "L", "input": [1], "forward": part, "training": part}]
    runs = [row(1.0, 1.0, 3.0, 1.00, 0.33), row(2.5, 2.0, 12.0, 1.25, 0.21), row(1.1, 1.05, 3.2, 1.05, 0.34)]
    (got,) = heldout.combine_processes(runs)
    t = got["training"]
    assert t["median_ms"] == {"auto": 1.1, "fft": 1.05, "direct": 3.2} and t["faster"] == "fft"
    assert t["auto_over_faster"] == pytest.approx(1.1 / 1.05)
    assert t["paired"] == 1.05 and t["rounds"] == 30
    assert t["per_process"] == pytest.approx([1.0, 1.25, 1.1 / 1.05])
    assert got["layer"] == "L" and got["input"] == [1]
