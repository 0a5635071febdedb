"""algo='direct' / 'fft' / 'auto': same results; auto's default choice is the cost model's
(deterministic, nothing measured or written), backends.benchmark measures near the threshold and
keeps measured choices in memory, and on disk only where backends.cache_dir is set."""
import glob
import json
import multiprocessing
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import fftconv_ext
from fftconv_ext import algo as algo_mod
from fftconv_ext import candidate_timing as timing, choice_cache
from fftconv_ext import cost_model
from fftconv_ext.problem import ConvProblem
from conftest import reference_conv, rel_err

NEAR = (torch.randn(2, 16, 24, 24), torch.randn(16, 1, 9, 9))  # 9x9 depthwise: a ratio near the thresholds
NEAR_KW = dict(padding=4, groups=16)


@pytest.mark.parametrize("algo", ["fft", "direct", "auto"])
@pytest.mark.parametrize("mode", ["zeros", "reflect", "circular"])
def test_every_algo_matches_reference(algo, mode):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 17, 18, generator=g, dtype=torch.float64)
    w = torch.randn(4, 2, 5, 4, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    y = fftconv_ext.conv2d(x, w, b, padding="same", groups=2, padding_mode=mode, algo=algo)
    assert rel_err(y, reference_conv(x, w, b, padding="same", groups=2, padding_mode=mode)) <= 1e-10
    y1 = fftconv_ext.conv1d(x[:, :, 0], w[:, :, 0], b, padding=2, groups=2, padding_mode=mode, algo=algo)
    assert rel_err(y1, reference_conv(x[:, :, 0], w[:, :, 0], b, padding=2, groups=2, padding_mode=mode)) <= 1e-10


def test_bad_algo():
    with pytest.raises(ValueError, match="algo"):
        fftconv_ext.conv2d(torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3), algo="winograd")


@pytest.mark.compile
def test_auto_under_compile_matches_eager():
    x = torch.randn(2, 8, 20, 20)
    w = torch.randn(8, 1, 7, 7)
    f = torch.compile(lambda x, w: fftconv_ext.conv2d(x, w, padding=3, groups=8), fullgraph=True,
                      backend="aot_eager")
    assert torch.allclose(f(x, w), fftconv_ext.conv2d(x, w, padding=3, groups=8, algo="direct"),
                          rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("forced", ["fft", "direct"])
def test_decided_calls_take_the_fast_path_with_the_same_results(forced, monkeypatch):
    # Force the choice so that both plan kinds are exercised.
    monkeypatch.setattr(cost_model, "choice", lambda *a: forced)
    g = torch.Generator().manual_seed(1)
    cases = [  # (x, w, b, kwargs): batched, unbatched, padding modes, conv1d, low precision
        (torch.randn(2, 4, 20, 21, generator=g, dtype=torch.float64), torch.randn(4, 2, 9, 9, generator=g,
         dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64), dict(padding=4, groups=2)),
        (torch.randn(4, 20, 21, generator=g, dtype=torch.float64), torch.randn(4, 1, 9, 9, generator=g,
         dtype=torch.float64), None, dict(padding="same", groups=4)),
        (torch.randn(2, 4, 20, 21, generator=g, dtype=torch.float64), torch.randn(4, 1, 9, 9, generator=g,
         dtype=torch.float64), None, dict(padding=4, groups=4, padding_mode="reflect")),
    ]
    for x, w, b, kw in cases:
        assert rel_err(fftconv_ext.conv2d(x, w, b, **kw), reference_conv(x, w, b, **kw)) <= 1e-10
    assert len(algo_mod.decided_calls) == len(cases)
    monkeypatch.setattr(algo_mod, "choose", lambda *a: pytest.fail("decided calls must not choose again"))
    for x, w, b, kw in cases:
        for _ in range(2):
            assert rel_err(fftconv_ext.conv2d(x, w, b, **kw), reference_conv(x, w, b, **kw)) <= 1e-10
        # new values, same shapes: the plan does not depend on values
        x2, w2 = torch.randn_like(x), torch.randn_like(w)
        assert rel_err(fftconv_ext.conv2d(x2, w2, b, **kw), reference_conv(x2, w2, b, **kw)) <= 1e-10


def test_training_calls_on_the_per_direction_path_are_decided_with_the_same_gradients(monkeypatch):
    # a direct forward with FFT gradients: the per-direction autograd path, decided on the first
    # call; later calls with the same arguments skip the checks and keep its gradients
    from fftconv_ext import functional as fn
    monkeypatch.setattr(cost_model, "choice", lambda ratio, device, direction, kind: "direct" if direction == "forward" else "fft")
    g = torch.Generator().manual_seed(2)
    cases = [(torch.randn(2, 4, 18, 17, generator=g, dtype=torch.float64), torch.randn(4, 1, 7, 7, generator=g, dtype=torch.float64),
              torch.randn(4, generator=g, dtype=torch.float64)),
             (torch.randn(4, 18, 17, generator=g, dtype=torch.float64), torch.randn(4, 1, 7, 7, generator=g, dtype=torch.float64), None)]

    def grads(conv, x, w, b):
        leaves = [t.detach().requires_grad_() for t in (x, w, b) if t is not None]
        y = conv(leaves[0], leaves[1], leaves[2] if b is not None else None, padding=3, groups=4)
        return (y.detach(),) + torch.autograd.grad(y, leaves, torch.ones_like(y) + y.detach())

    for x, w, b in cases:
        ref = grads(F.conv2d, x, w, b)
        before = len(algo_mod.decided_calls)
        for call in range(2):
            for got, want in zip(grads(fftconv_ext.conv2d, x, w, b), ref):
                assert rel_err(got, want) <= 1e-10
            # decided on the call after the first backward, which chose both gradients
            assert len(algo_mod.decided_calls) == before + call
    assert len(algo_mod.decided_calls) == len(cases)
    assert {(d, v) for _, d, v in algo_mod.choices()} == {("forward", "direct"), ("grad_input", "fft"), ("grad_weight", "fft")}
    monkeypatch.setattr(fn, "check_tensors", lambda *a: pytest.fail("a decided call must not check again"))
    for x, w, b in cases:
        x2, w2 = torch.randn_like(x), torch.randn_like(w)   # new values, same shapes
        for got, want in zip(grads(fftconv_ext.conv2d, x2, w2, b), grads(F.conv2d, x2, w2, b)):
            assert rel_err(got, want) <= 1e-10
    with torch.no_grad():   # another grad mode: not that decided call
        with pytest.raises(pytest.fail.Exception, match="must not check"):
            fftconv_ext.conv2d(cases[0][0], cases[0][1], padding=3, groups=4)


def test_training_calls_whose_gradients_agree_with_the_forward_take_one_path_whole(monkeypatch):
    # every direction direct: by default the model's gradient choices are known at the first
    # call, which takes PyTorch's own convolution node; under benchmark the first call takes the
    # per-direction path (its gradients are chosen in its backward), later calls the one node
    monkeypatch.setattr(cost_model, "choice", lambda *a: "direct")
    monkeypatch.setattr(cost_model, "clear_choice", lambda *a: "direct")
    for benchmark, first in ((False, "ConvolutionBackward0"), (True, "_PerDirectionConvBackward")):
        algo_mod.clear_memory()
        with fftconv_ext.backends.flags(benchmark=benchmark):
            x = torch.randn(2, 4, 16, 16, requires_grad=True)
            w = torch.randn(4, 1, 5, 5, requires_grad=True)
            names = []
            for _ in range(3):
                y = fftconv_ext.conv2d(x, w, padding=2, groups=4)
                names.append(type(y.grad_fn).__name__)
                y.sum().backward()
            assert names == [first] + ["ConvolutionBackward0"] * 2, benchmark
            assert sorted(d for _, d, v in algo_mod.choices() if v == "direct") == ["forward", "grad_input", "grad_weight"]


def test_fast_path_never_skips_the_checks():
    x = torch.randn(1, 4, 16, 16)
    w = torch.randn(4, 1, 5, 5)
    fftconv_ext.conv2d(x, w, padding=2, groups=4)
    assert len(algo_mod.decided_calls) == 1
    # each of these differs from the decided call in something the checks look at
    with pytest.raises(ValueError, match="dtype"):
        fftconv_ext.conv2d(x, w.double(), padding=2, groups=4)
    with pytest.raises(ValueError, match="bias"):
        fftconv_ext.conv2d(x, w, torch.randn(3), padding=2, groups=4)
    with pytest.raises(ValueError, match="groups"):
        fftconv_ext.conv2d(x, w, padding=2, groups=3)
    with pytest.raises(ValueError, match="padding_mode"):
        fftconv_ext.conv2d(x, w, padding=2, groups=4, padding_mode="mirror")
    # list arguments are unhashable: the slow path, same result
    ref = fftconv_ext.conv2d(x, w, padding=2, groups=4)
    assert torch.equal(fftconv_ext.conv2d(x, w, padding=[2, 2], groups=4), ref)
    algo_mod.clear_memory()
    assert algo_mod.decided_calls == {}


@pytest.mark.filterwarnings("ignore:.*torch.jit.trace.*:DeprecationWarning")
def test_decided_call_keys_tell_apart_what_the_choice_and_checks_depend_on():
    from fftconv_ext.arguments import decided_call_for
    x, w, b = torch.randn(1, 4, 16, 16), torch.randn(4, 1, 5, 5), torch.randn(4)

    def key(x=x, w=w, b=b, padding=2):
        return decided_call_for({}, x, w, b, 1, padding, 1, 4, "zeros", 2, "auto")[0]
    base = key()
    assert base is not None and key() == base and hash(key()) == hash(base)
    assert key(x=torch.randn(1, 4, 16, 16)) == base  # values never matter
    variants = [key(x=x.double(), w=w.double(), b=b.double()), key(x=torch.randn(1, 4, 16, 17)),
                key(w=torch.randn(4, 1, 5, 3)), key(b=None), key(padding=1),
                key(x=x.clone().requires_grad_()), key(w=torch.nn.Parameter(w)),
                key(b=torch.randn(4, dtype=torch.float64)), key(x=x.to("meta"))]
    with torch.no_grad():
        variants.append(key(w=w.clone().requires_grad_()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        variants.append(key())
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        variants.append(key())
    finally:
        torch.set_num_threads(threads)
    with fftconv_ext.backends.flags(benchmark=not fftconv_ext.backends.benchmark):
        variants.append(key())
    assert all(v is not None for v in variants)
    assert len(set(variants + [base])) == len(variants) + 1
    # no key for non-tensors, unhashable arguments, or while torch.jit traces
    assert key(w=w.numpy()) is None and key(b=[0.0] * 4) is None and key(padding=[2, 2]) is None
    seen = []
    torch.jit.trace(lambda x: seen.append(key(x=x)) or x * 1, (x,), check_trace=False)
    assert seen == [None]


def _no_timing(monkeypatch):
    monkeypatch.setattr(timing, "time_once", lambda fn, dev: pytest.fail("auto timed a call"))


def _problem(x, w, pad, groups):
    k = tuple(w.shape[2:])
    return ConvProblem(len(k), tuple(x.shape), tuple(w.shape), (1,) * len(k), tuple((pad, pad) for _ in k),
                       (1,) * len(k), groups)


def test_default_auto_times_nothing_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(fftconv_ext.backends, "cache_dir", str(tmp_path))
    _no_timing(monkeypatch)
    x, w = NEAR
    for _ in range(40):  # past any call count: never measured, never re-checked
        y = fftconv_ext.conv2d(x, w, **NEAR_KW)
    assert torch.allclose(y, F.conv2d(x, w, **NEAR_KW), atol=1e-4)
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
    fftconv_ext.conv2d(xg, wg, **NEAR_KW).sum().backward()
    assert os.listdir(tmp_path) == []
    assert algo_mod._memory == {}


def test_cache_dir_is_none_by_default_and_home_is_never_used(tmp_path):
    # a fresh process with HOME unset and with HOME="" writes nothing anywhere, measuring or not
    code = ("import torch, fftconv_ext; b = fftconv_ext.backends; assert b.cache_dir is None, b.cache_dir; "
            "x, w = torch.randn(2, 16, 24, 24), torch.randn(16, 1, 9, 9); "
            "fftconv_ext.conv2d(x, w, padding=4, groups=16); b.benchmark = True; "
            "fftconv_ext.conv2d(x, w, padding=4, groups=16); print('ok')")
    for home in (None, ""):
        env = {k: v for k, v in os.environ.items() if not k.startswith("FFTCONV_") and k != "HOME"}
        if home is not None:
            env["HOME"] = home
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
        assert os.listdir(tmp_path) == []


test_cache_dir_is_none_by_default_and_home_is_never_used = pytest.mark.subprocess(
    test_cache_dir_is_none_by_default_and_home_is_never_used)


@pytest.mark.parametrize("direction", cost_model.DIRECTIONS)
def test_default_choice_follows_the_threshold_of_its_direction(monkeypatch, direction):
    # the arithmetic ratio of the 9x9 layer, computed here from its definition
    x, w = NEAR
    n, c, h, wd = x.shape
    fft_shape = fftconv_ext._C.fft_shape(list(x.shape), list(w.shape), [1, 1], [4, 4, 4, 4], [1, 1], 16, False)
    import math
    points = math.prod(fft_shape)
    direct = n * c * 81 * h * wd
    expected = direct / (n * 2 * c * 2.5 * points * math.log2(points) + n * c * points * 2)
    ratio = _problem(x, w, 4, 16).arithmetic_ratio()
    assert ratio == pytest.approx(expected, rel=1e-12)
    _no_timing(monkeypatch)
    for below, want in ((True, "direct"), (False, "fft")):
        table = {d: ratio * 0.5 for d in cost_model.DIRECTIONS}
        table[direction] = ratio * (1.5 if below else 0.5)
        monkeypatch.setitem(cost_model.THRESHOLDS, cost_model.profile("cpu"), {k: table for k in cost_model.KINDS})
        algo_mod.clear_memory()
        got = algo_mod.choose(_problem(x, w, 4, 16), x, direction, None, None)
        assert got == want


def test_per_direction_choices_run_where_the_model_says(monkeypatch):
    # a direct forward with FFT gradients: the gradients come from the FFT ops, and match F's
    _no_timing(monkeypatch)
    ops = _CountingOps()
    monkeypatch.setattr(fftconv_ext.problem, "_ops_ns", ops)
    monkeypatch.setitem(cost_model.THRESHOLDS, cost_model.profile("cpu"), {k: {"forward": 1e9, "grad_input": 0.0, "grad_weight": 0.0}
                                                       for k in cost_model.KINDS})
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 12, 12, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, 1, 5, 5, dtype=torch.float64, generator=g, requires_grad=True)
    y = fftconv_ext.conv2d(x, w, padding=2, groups=4)
    grads = torch.autograd.grad(y.square().sum(), (x, w))
    ref = torch.autograd.grad(F.conv2d(x, w, padding=2, groups=4).square().sum(), (x, w))
    assert all(rel_err(a, b) < 1e-12 for a, b in zip(grads, ref))
    assert ops.calls == {"conv2d_backward": 1}  # no FFT forward; one joint FFT backward


@pytest.mark.parametrize("extra, joined", [(0.1, True), (10.0, False), (None, False)])
def test_a_direct_gradient_rides_along_in_the_joint_pass_where_that_costs_less(monkeypatch, extra, joined):
    # FFT weight gradient, direct input gradient at half its FFT time by the model: taking it
    # along for 0.1 of its FFT time joins the pass; for 10 (or with no measured cost) they run apart
    _no_timing(monkeypatch)
    ops = _CountingOps()
    monkeypatch.setattr(fftconv_ext.problem, "_ops_ns", ops)
    x = torch.randn(2, 4, 12, 12, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    pb = ConvProblem(2, tuple(x.shape), tuple(w.shape), (1, 1), ((2, 2), (2, 2)), (1, 1), 4)
    ratio = pb.model_ratio("cpu", "grad_input")
    profile = cost_model.profile("cpu")
    monkeypatch.setitem(cost_model.THRESHOLDS, profile, {k: {"forward": 1e9, "grad_input": 2 * ratio, "grad_weight": 0.0}
                                                         for k in cost_model.KINDS})
    monkeypatch.setitem(cost_model.JOINT_EXTRA_COST, profile,
                        {} if extra is None else {"depthwise 2-D": {"grad_input": extra}})
    assert pb.direct_cost("cpu", "grad_input") == pytest.approx(0.5)
    assert pb.joins_backward("cpu", "grad_input") == joined
    y = fftconv_ext.conv2d(x, w, padding=2, groups=4)
    grads = torch.autograd.grad(y.square().sum(), (x, w))
    ref = torch.autograd.grad(F.conv2d(x, w, padding=2, groups=4).square().sum(), (x, w))
    assert all(rel_err(a, b) < 1e-12 for a, b in zip(grads, ref))
    assert ops.calls == ({"conv2d_backward": 1} if joined else {"conv2d_grad_weight": 1})


def test_narrow_and_joint_lookups_name_a_bad_direction_or_kind():
    with pytest.raises(ValueError, match="direction"):
        cost_model.direct_speedup("cpu", "sideways", "depthwise 2-D", (3, 1))
    with pytest.raises(ValueError, match="kind"):
        cost_model.joint_extra_cost("cpu", "depthwise", "grad_input")
    with pytest.raises(ValueError, match="direction"):
        cost_model.joint_backward("cpu", "depthwise 2-D", "backward", 1.0)
    assert cost_model.joint_extra_cost("xpu", "depthwise 2-D", "grad_input") is None   # unmeasured device: apart


RESULTS = os.path.join(os.path.dirname(__file__), "..", "bench", "results")


def _calibration_points(name: str) -> list:
    """A committed calibration's points with those of each run of one kind alone
    (<name less .json>-<kind>.json, --calibrate-kind): that kind's constants are fitted to both
    runs' points together."""
    with open(os.path.join(RESULTS, name)) as f:
        points = json.load(f)["points"]
    stem = name[:-len(".json")]
    for other in sorted(os.listdir(RESULTS)):
        if other.startswith(stem + "-") and other.endswith(".json"):
            with open(os.path.join(RESULTS, other)) as f:
                data = json.load(f)
            kind = data["meta"]["kind"]
            assert {cost_model.kind(p["weight"], p["groups"]) for p in data["points"]} == {kind}
            points = points + data["points"]
    return points


def test_calibration_points_of_a_kind_run_alone_join_that_kind():
    points = _calibration_points("amd-epyc-x86_64-avx512-2t-calibrate.json")
    dense = [p for p in points if cost_model.kind(p["weight"], p["groups"]) == "dense 2-D"]
    assert {p["input"][2] for p in dense} >= {12, 16, 20, 24, 32}   # the small maps of the dense-only run
    assert len({p["layer"] for p in dense}) == 20 and len(dense) == 3 * (12 + 20)   # both runs, 3 directions
    grouped = [p for p in points if cost_model.kind(p["weight"], p["groups"]) == "grouped 2-D"]
    assert len(grouped) == 3 * (10 + 16)
    assert any(cost_model.kind(p["weight"], p["groups"]) == "depthwise 2-D" for p in points)


def test_committed_joint_pass_costs_are_what_the_calibration_measured():
    from fftconv_ext.bench.calibrate import joint_costs
    measured = joint_costs(_calibration_points("amd-epyc-x86_64-avx512-2t-calibrate.json"))
    assert set(measured) == set(cost_model.JOINT_EXTRA_COST["cpu-avx512"])
    for kind, per in measured.items():
        for direction in ("grad_input", "grad_weight"):
            assert cost_model.JOINT_EXTRA_COST["cpu-avx512"][kind][direction] == pytest.approx(per[direction], abs=0.01)


@pytest.mark.subprocess
def test_fresh_processes_choose_alike():
    code = ("import json, torch, fftconv_ext; from fftconv_ext import algo\n"
            "for k in (3, 5, 7, 9, 11, 13, 21, 31):\n"
            "    x = torch.randn(2, 32, 32, 32, requires_grad=True)\n"
            "    w = torch.randn(32, 1, k, k, requires_grad=True)\n"
            "    fftconv_ext.conv2d(x, w, padding=k // 2, groups=32).sum().backward()\n"
            "print(json.dumps(sorted(str((p.x_shape, p.w_shape, d, v)) for p, d, v in algo.choices())))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True) for _ in range(5)]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
            outs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()
    assert len(set(outs)) == 1 and len(json.loads(outs[0])) == 24  # five processes, the same 24 choices


def test_benchmark_measures_once_then_remembers(monkeypatch):
    monkeypatch.setattr(fftconv_ext.backends, "benchmark", True)
    monkeypatch.setattr(fftconv_ext.backends, "cache_dir", None)
    x, w = NEAR
    calls = []
    real = timing.time_once
    monkeypatch.setattr(timing, "time_once", lambda fn, dev: calls.append(1) or real(fn, dev))
    for _ in range(40):
        fftconv_ext.conv2d(x, w, **NEAR_KW)
    # one warm-up and ROUNDS timed calls per path, on the first call only
    assert len(calls) == 2 * (1 + timing.ROUNDS)
    assert list(algo_mod._memory.values())[0] in ("fft", "direct")


def test_benchmark_takes_the_faster_path_by_medians(monkeypatch):
    # fft's calls take 1.0 but one of them 50 (a busy moment); direct's take 1.2: the median decides
    fft_times = iter([9.0, 1.0, 50.0, 1.0, 1.0, 1.0])
    direct_times = iter([9.0, 1.2, 1.2, 1.2, 1.2, 1.2])
    monkeypatch.setattr(timing, "time_once", lambda fn, dev: next(fn()))
    assert algo_mod._measure(lambda: fft_times, lambda: direct_times, torch.device("cpu")) == "fft"
    times = {"a": iter([1, 3, 3, 3, 3, 3]), "b": iter([1, 2, 2, 2, 2, 2]), "c": iter([1, 4, 4, 4, 4, 4])}
    assert timing.measure_many({n: (lambda n=n: times[n]) for n in times}, torch.device("cpu")) == "b"


def test_benchmark_leaves_clear_problems_to_the_model(monkeypatch):
    monkeypatch.setattr(fftconv_ext.backends, "benchmark", True)
    _no_timing(monkeypatch)
    fftconv_ext.conv2d(torch.randn(1, 2, 64, 64), torch.randn(2, 1, 1, 1), groups=2)  # one tap
    fftconv_ext.conv2d(torch.randn(2, 64, 28, 28), torch.randn(32, 64, 1, 1))
    fftconv_ext.conv1d(torch.randn(2, 64, 300), torch.randn(32, 64, 1))
    fftconv_ext.conv2d(torch.randn(2, 8, 64, 64), torch.randn(8, 1, 3, 3), padding=1, groups=8)
    fftconv_ext.conv2d(torch.randn(1, 2, 128, 128), torch.randn(2, 1, 127, 127), padding=63, groups=2)
    assert algo_mod._memory == {}


def test_benchmark_keeps_one_file_per_problem_and_reads_it_back(tmp_path, monkeypatch):
    monkeypatch.setattr(fftconv_ext.backends, "benchmark", True)
    monkeypatch.setattr(fftconv_ext.backends, "cache_dir", str(tmp_path))
    x, w = NEAR
    fftconv_ext.conv2d(x, w, **NEAR_KW)
    fftconv_ext.conv2d(x[:1], w, **NEAR_KW)  # another batch: another problem
    files = glob.glob(os.path.join(tmp_path, "auto", "*.json"))
    assert len(files) == 2
    entries = [json.load(open(p)) for p in files]
    assert all(set(e) == {"key", "choice"} and e["choice"] in ("fft", "direct") for e in entries)
    algo_mod.clear_memory()  # a new process, as far as choices go
    _no_timing(monkeypatch)
    fftconv_ext.conv2d(x, w, **NEAR_KW)  # chosen from the file: nothing timed
    assert len(algo_mod._fast) == 1


@pytest.mark.parametrize("content", ["[]", "42", "null", "{", "\u00ff\u00fe", '{"key": "another", "choice": "fft"}',
                                     '{"choice": "winograd"}'])
def test_benchmark_ignores_unreadable_or_foreign_entries(tmp_path, monkeypatch, content):
    monkeypatch.setattr(fftconv_ext.backends, "benchmark", True)
    monkeypatch.setattr(fftconv_ext.backends, "cache_dir", str(tmp_path))
    x, w = NEAR
    fftconv_ext.conv2d(x, w, **NEAR_KW)
    (path,) = glob.glob(os.path.join(tmp_path, "auto", "*.json"))
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)
    algo_mod.clear_memory()
    calls = []
    real = timing.time_once
    monkeypatch.setattr(timing, "time_once", lambda fn, dev: calls.append(1) or real(fn, dev))
    y = fftconv_ext.conv2d(x, w, **NEAR_KW)  # measured again, and the entry rewritten
    assert calls and torch.allclose(y, F.conv2d(x, w, **NEAR_KW), atol=1e-4)
    assert json.load(open(path))["choice"] in ("fft", "direct")


def _measure_in_process(args):
    cache, batch = args
    import fftconv_ext as fx
    fx.backends.benchmark = True
    fx.backends.cache_dir = cache
    torch.set_num_threads(1)
    w = torch.randn(16, 1, 9, 9)
    for b in (batch, 9):  # a problem of its own, then one that every process measures and writes
        fx.conv2d(torch.randn(b, 16, 24, 24), w, padding=4, groups=16)
    return batch


@pytest.mark.subprocess
def test_eight_processes_fill_one_cache_at_once_and_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    for trial in range(2):
        cache = str(tmp_path / f"trial{trial}")
        with ctx.Pool(8) as pool:
            assert sorted(pool.map(_measure_in_process, [(cache, b) for b in range(1, 9)])) == list(range(1, 9))
        entries = glob.glob(os.path.join(cache, "auto", "*.json"))
        assert len(entries) == 9  # eight problems of their own and the shared one, each once
        for path in entries:  # each file whole: a key and a valid choice
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            assert set(data) == {"key", "choice"} and data["choice"].split(":")[0] in ("fft", "direct")
        assert not glob.glob(os.path.join(cache, "auto", "*.tmp"))
        assert os.listdir(cache) == ["auto"]  # nothing written beside the entries


def test_choices_of_another_build_or_setting_are_measured_again(tmp_path, monkeypatch):
    # a rebuilt operator, or another pipeline setting, may be faster: its problems are keyed apart
    monkeypatch.setattr(fftconv_ext.backends, "benchmark", True)
    monkeypatch.setattr(fftconv_ext.backends, "cache_dir", str(tmp_path))
    x, w = NEAR
    fftconv_ext.conv2d(x, w, **NEAR_KW)
    calls = []
    monkeypatch.setattr(timing, "time_once", lambda fn, dev: calls.append(1) or 0.0)
    algo_mod.clear_memory()
    fftconv_ext.conv2d(x, w, **NEAR_KW)
    assert calls == []  # same build and settings: the stored choice
    algo_mod.clear_memory()
    monkeypatch.setattr(choice_cache, "_build", "another-build")
    fftconv_ext.conv2d(x, w, **NEAR_KW)
    assert calls, "a choice stored by another build was reused"
    for switch, value in (("cpu_lanes", False), ("cuda_small_plane", True), ("device_checks", True),
                          ("cpu_chunk_bytes", 1 << 18), ("cuda_small_plane_shared_kb", 96)):
        calls.clear()
        with fftconv_ext.backends.flags(**{switch: value}):
            fftconv_ext.conv2d(x, w, **NEAR_KW)
        assert calls, f"a choice measured under another {switch} was reused"


def test_inference_calls_keep_the_single_choice(monkeypatch):
    monkeypatch.setattr(fftconv_ext.backends, "benchmark", True)
    calls = []
    monkeypatch.setattr(algo_mod, "_measure", lambda f, d, dev: calls.append(1) or "fft")
    monkeypatch.setattr(cost_model, "clear_choice", lambda *a: None)
    x, w = torch.randn(2, 4, 12, 12), torch.randn(4, 1, 5, 5, requires_grad=True)
    with torch.no_grad():
        y = fftconv_ext.conv2d(x, w, padding=2, groups=4)
    assert y.grad_fn is None and calls == [1]


def test_committed_constants_are_a_least_loss_fit_of_the_committed_calibration():
    # per kind and direction, the committed fixed work and threshold lose at most 0.2 % more
    # (geometric mean of chosen / faster path) than the fit: near ties (paths within 1-3 %)
    # move the fitted interval's middle from run to run by far more than they change the loss
    from fftconv_ext.bench.calibrate import fit
    for name, device in (("amd-epyc-x86_64-avx512-2t-calibrate.json", "cpu-avx512"),
                         ("amd-epyc-x86_64-avx2-2t-calibrate.json", "cpu-avx2"),
                         ("nvidia-h200-calibrate-forward.json", "cuda")):
        fits = fit(_calibration_points(name), device)
        assert fits
        for kind, per in fits.items():
            for direction, f in per.items():
                assert f["committed_loss"] <= f["loss"] * 1.002, (name, kind, direction, f)


def test_committed_narrow_kernel_speedups_are_at_most_what_the_calibrations_measured():
    # the direct weight gradient's narrow-kernel rate, measured per multiply-add in each CPU
    # profile's committed calibration; the model never counts more speedup than was measured
    from fftconv_ext.bench.calibrate import narrow_speedups
    root = os.path.join(os.path.dirname(__file__), "..", "bench", "results")
    for name, device in (("amd-epyc-x86_64-avx512-2t-calibrate.json", "cpu-avx512"),
                         ("amd-epyc-x86_64-avx2-2t-calibrate.json", "cpu-avx2")):
        with open(os.path.join(root, name)) as f:
            measured = narrow_speedups(json.load(f)["points"])
        for kind, per in cost_model.NARROW_DIRECT_SPEEDUP[device].items():
            for direction, speedup in per.items():
                assert 1.0 < speedup <= measured[kind][direction]["speedup"], (name, kind, direction)


def test_narrow_kernels_count_their_direct_rate_in_the_weight_gradient_only(monkeypatch):
    profile = cost_model.profile("cpu")
    monkeypatch.setitem(cost_model.NARROW_DIRECT_SPEEDUP, profile, {"depthwise 2-D": {"grad_weight": 4.0}})
    column = ConvProblem(2, (2, 8, 32, 32), (8, 1, 21, 1), (1, 1), ((10, 10), (0, 0)), (1, 1), 8)
    row = ConvProblem(2, (2, 8, 32, 32), (8, 1, 1, 21), (1, 1), ((0, 0), (10, 10)), (1, 1), 8)
    for pb, speedup in ((column, 4.0), (row, 1.0)):
        direct, fft = pb.work()
        assert pb.model_ratio("cpu", "grad_weight") == pytest.approx(direct / fft / speedup)
        assert pb.model_ratio("cpu", "forward") == pytest.approx(direct / fft)
        assert pb.model_ratio("cpu", "grad_input") == pytest.approx(direct / fft)
    assert column.model_ratio("cuda", "grad_weight") == pytest.approx(column.arithmetic_ratio())
    dense = ConvProblem(2, (2, 8, 32, 32), (8, 8, 21, 1), (1, 1), ((10, 10), (0, 0)), (1, 1), 1)
    assert dense.model_ratio("cpu", "grad_weight") == pytest.approx(dense.arithmetic_ratio())


def test_cost_profiles_are_the_device_type_and_on_the_cpu_its_vector_isa():
    isa = torch.backends.cpu.get_cpu_capability()
    assert cost_model.profile("cpu") == ("cpu-avx512" if isa == "AVX512" else "cpu-avx2")
    assert cost_model.profile("cuda") == "cuda" and cost_model.profile("cpu-avx512") == "cpu-avx512"
    for name in ("cpu-avx2", "cpu-avx512"):  # each CPU profile has every fitted kind
        assert set(cost_model.THRESHOLDS[name]) >= {"depthwise 1-D", "depthwise 2-D", "depthwise 3-D", "dense 2-D"}
    assert cost_model.threshold("cpu") == cost_model.threshold(cost_model.profile("cpu"))


def test_kind_is_family_and_rank_and_unfitted_kinds_take_their_family_2d_thresholds(monkeypatch):
    assert cost_model.kind((8, 1, 5)) == "depthwise 1-D"
    assert cost_model.kind((8, 1, 3, 3, 3)) == "depthwise 3-D"
    assert cost_model.kind((8, 4, 3, 3)) == "dense 2-D"
    assert cost_model.kind((8, 4, 3, 3), groups=2) == "grouped 2-D"
    assert cost_model.kind((8, 1, 3, 3), groups=8) == "depthwise 2-D"
    assert set(cost_model.KINDS) == {f"{f} {d}-D" for f in ("depthwise", "grouped", "dense") for d in (1, 2, 3)}
    table = {"depthwise 2-D": {"forward": 2.0}, "depthwise 3-D": {"forward": 7.0}, "dense 2-D": {"forward": 11.0}}
    monkeypatch.setitem(cost_model.THRESHOLDS, cost_model.profile("cpu"), table)
    assert cost_model.threshold("cpu", "forward", "depthwise 3-D") == 7.0   # its own
    assert cost_model.threshold("cpu", "forward", "depthwise 1-D") == 2.0   # the family's 2-D
    assert cost_model.threshold("cpu", "forward", "dense 3-D") == 11.0
    assert cost_model.threshold("cpu", "forward", "grouped 3-D") == 11.0   # grouped: then the dense ones
    assert cost_model.threshold("cpu", "grad_input", "dense 3-D") == cost_model.DEFAULT_THRESHOLD
    assert cost_model.threshold("xpu", "forward", "dense 2-D") == cost_model.DEFAULT_THRESHOLD
    with pytest.raises(ValueError, match="kind"):
        cost_model.threshold("cpu", "forward", "depthwise")
    # a 1-D and a 3-D problem of the same ratio can get different choices
    p1 = ConvProblem(1, (2, 8, 64), (8, 1, 9), (1,), ((4, 4),), (1,), 8)
    p3 = ConvProblem(3, (2, 8, 8, 8, 8), (8, 1, 3, 3, 3), (1, 1, 1), ((1, 1),) * 3, (1, 1, 1), 8)
    monkeypatch.setitem(cost_model.THRESHOLDS, cost_model.profile("cpu"), {"depthwise 1-D": {"forward": 0.0},
                                                       "depthwise 3-D": {"forward": 1e9}})
    assert p1.model_choice("cpu") == "fft" and p3.model_choice("cpu") == "direct"


def test_fit_threshold_finds_the_least_loss_split():
    # direct faster below ratio 1, FFT faster above: any threshold in (0.8, 1.2] loses nothing
    pts = [(0.5, 2.0, 1.0), (0.8, 1.5, 1.0), (1.2, 1.0, 2.0), (3.0, 1.0, 5.0)]
    t, loss = cost_model.fit_threshold(pts)
    assert 0.8 < t <= 1.2 and loss == pytest.approx(1.0)
    assert cost_model.fit_threshold([(1.0, 1.0, 2.0)])[0] < 1.0   # FFT faster: a threshold below
    assert cost_model.fit_threshold([(1.0, 2.0, 1.0)])[0] > 1.0   # direct faster: above
    with pytest.raises(ValueError):
        cost_model.fit_threshold([])


def test_fit_model_finds_a_fixed_cost_only_where_the_data_need_one():
    # FFT time = its work plus a fixed cost K per call, direct time = direct work / 3: the FFT
    # is faster iff direct / (fft + K) > 3. Small problems then want a higher ratio than large
    # ones, which no threshold on direct / fft alone can follow.
    def points(k_true):
        return [(r * f, f, f + k_true, r * f / 3.0) for f in (1e6, 4e6, 1.6e7, 6.4e7)
                for r in (2.0, 2.6, 3.3, 4.1, 5.2)]
    with_cost = points(5e6)
    k, t, loss = cost_model.fit_model(with_cost)
    assert k > 0 and loss == pytest.approx(1.0)
    assert cost_model.fit_threshold([(d / f, tf, td) for d, f, tf, td in with_cost])[1] > 1.01  # K = 0 loses
    for d, f, tf, td in with_cost:  # every problem on its faster path
        assert (d / (f + k) >= t) == (tf < td)
    assert cost_model.fit_model(points(0.0))[0] == 0.0   # no fixed cost in the data: none fitted
    with pytest.raises(ValueError):
        cost_model.fit_model([])


def test_fixed_work_enters_the_model_ratio(monkeypatch):
    pb = ConvProblem(3, (2, 8, 8, 8, 8), (8, 1, 3, 3, 3), (1, 1, 1), ((1, 1),) * 3, (1, 1, 1), 8)
    direct, fft = pb.work()
    assert pb.arithmetic_ratio() == pytest.approx(direct / fft)
    monkeypatch.setitem(cost_model.FIXED_WORK, cost_model.profile("cpu"), {"depthwise 3-D": {"forward": fft}})
    assert pb.model_ratio("cpu") == pytest.approx(direct / (2 * fft))
    assert pb.model_ratio("cpu", "grad_input") == pytest.approx(direct / fft)   # per direction
    assert pb.model_ratio("cuda") == pytest.approx(direct / fft)                # per device type
    assert cost_model.fixed_work("cpu", "forward", "dense 2-D") == 0.0
    with pytest.raises(ValueError, match="direction"):
        cost_model.fixed_work("cpu", "sideways", "dense 2-D")


@pytest.mark.compile
def test_export_with_a_dynamic_size_takes_eager_choice_and_runs_every_size():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(8, 1, 9, 9))

        def forward(self, x):
            return fftconv_ext.conv2d(x, self.w, padding=4, groups=8)
    net = Net()
    x = torch.randn(2, 8, 24, 24)
    h = torch.export.Dim("h", min=12, max=64)
    ep = torch.export.export(net, (x,), dynamic_shapes={"x": {2: h}})
    for size in (24, 17, 40):
        xi = torch.randn(2, 8, size, 24)
        assert torch.allclose(ep.module()(xi), F.conv2d(xi, net.w, padding=4, groups=8), atol=1e-4)


class _CountingOps:
    """torch.ops.fftconv with a count of each op's calls."""

    def __init__(self):
        self.calls = {}

    def __getattr__(self, name):
        op = getattr(torch.ops.fftconv, name)

        def call(*args):
            self.calls[name] = self.calls.get(name, 0) + 1
            return op(*args)
        return call


@pytest.mark.parametrize("verdicts", [
    {"forward": "direct", "grad_input": "fft", "grad_weight": "fft"},
    {"forward": "fft", "grad_input": "direct", "grad_weight": "fft"},
    {"forward": "direct", "grad_input": "direct", "grad_weight": "direct"},
    {"forward": "direct", "grad_input": "fft", "grad_weight": "direct"},
])
def test_benchmark_chooses_each_direction_by_its_own_measurement(tmp_path, monkeypatch, verdicts):
    # scripted measurements, told apart by what the measured function returns:
    # forward (2, 8, 12, 12), input gradient (2, 4, 12, 12), weight gradient (8, 4, 5, 5)
    monkeypatch.setattr(fftconv_ext.backends, "cache_dir", str(tmp_path))
    monkeypatch.setattr(fftconv_ext.backends, "benchmark", True)
    direction_of = {(2, 8, 12, 12): "forward", (2, 4, 12, 12): "grad_input", (8, 4, 5, 5): "grad_weight"}
    measured = []

    def fake_measure(run_fft, run_direct, device):
        direction = direction_of[tuple(run_fft().shape)]
        measured.append(direction)
        return verdicts[direction]
    monkeypatch.setattr(algo_mod, "_measure", fake_measure)
    monkeypatch.setattr(cost_model, "clear_choice", lambda *a: None)  # in the measured band
    ops = _CountingOps()
    monkeypatch.setattr(fftconv_ext.problem, "_ops_ns", ops)
    x = torch.randn(2, 4, 12, 12, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(8, dtype=torch.float64, requires_grad=True)
    for _ in range(2):  # measured once, then remembered
        y = fftconv_ext.conv2d(x, w, b, padding=2)
        grads = torch.autograd.grad(y.square().sum(), (x, w, b))
        ref = torch.autograd.grad(F.conv2d(x, w, b, padding=2).square().sum(), (x, w, b))
        assert all(rel_err(g, r) < 1e-12 for g, r in zip(grads, ref))
    assert sorted(measured) == ["forward", "grad_input", "grad_weight"]
    ops.calls.clear()
    y = fftconv_ext.conv2d(x, w, b, padding=2)
    torch.autograd.grad(y.sum(), (x, w, b))
    fft_backward = [d for d in ("grad_input", "grad_weight") if verdicts[d] == "fft"]
    pb = ConvProblem(2, (2, 4, 12, 12), (8, 4, 5, 5), (1, 1), ((2, 2), (2, 2)), (1, 1), 1)
    joined = len(fft_backward) == 1 and pb.joins_backward("cpu", ({"grad_input", "grad_weight"} - set(fft_backward)).pop())
    if len(fft_backward) == 2 or joined:
        # one joint pass (a direct gradient rides along where the model says so)
        assert ops.calls == {"conv2d_backward": 1}
    elif fft_backward:
        assert ops.calls.get("conv2d_" + fft_backward[0]) == 1 and "conv2d_backward" not in ops.calls
    else:
        assert not ops.calls  # everything direct
    stored = [json.load(open(p))["choice"] for p in glob.glob(os.path.join(tmp_path, "auto", "*.json"))]
    assert sorted(stored) == sorted(verdicts.values())


