"""algo='direct' / 'fft' / 'auto': same results, auto remembers its choice on disk."""
import json
import os

import pytest
import torch
import torch.nn.functional as F

import fftconv_ext
from fftconv_ext import algo as algo_mod
from conftest import reference_conv, rel_err


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


def test_auto_measures_once_and_persists(tmp_path, monkeypatch):
    monkeypatch.setattr(fftconv_ext.backends, "cache_dir", str(tmp_path))
    x = torch.randn(2, 16, 24, 24)
    w = torch.randn(16, 1, 9, 9)
    # a problem in the measured band (neither side 4x cheaper by arithmetic)
    fftconv_ext.conv2d(x, w, padding=4, groups=16)
    path = os.path.join(tmp_path, "algo.json")
    with open(path) as f:
        data = json.load(f)
    assert len(data) == 1 and list(data.values())[0] in ("fft", "direct")
    choice = list(data.values())[0]
    # a new process (simulated) reads the choice back instead of measuring again
    algo_mod.clear_memory()
    calls = []
    monkeypatch.setattr(algo_mod, "_time_once", lambda fn, dev: calls.append(1) or 0.0)
    fftconv_ext.conv2d(x, w, padding=4, groups=16)
    assert calls == []
    key = list(data)[0]
    assert algo_mod._memory[key] == choice


def test_choices_of_another_build_are_measured_again(tmp_path, monkeypatch):
    # a rebuilt operator (other library file) may be faster: its problems are keyed apart
    monkeypatch.setattr(fftconv_ext.backends, "cache_dir", str(tmp_path))
    x = torch.randn(2, 16, 24, 24)
    w = torch.randn(16, 1, 9, 9)
    fftconv_ext.conv2d(x, w, padding=4, groups=16)
    algo_mod.clear_memory()
    monkeypatch.setattr(algo_mod, "_build", "another-build")
    calls = []
    monkeypatch.setattr(algo_mod, "_time_once", lambda fn, dev: calls.append(1) or 0.0)
    fftconv_ext.conv2d(x, w, padding=4, groups=16)
    assert calls, "a choice stored by another build was reused"
    with open(os.path.join(tmp_path, "algo.json")) as f:
        assert len(json.load(f)) == 2


@pytest.mark.parametrize("switch,value", [("cpu_lanes", False), ("cuda_fused", True), ("device_checks", True),
                                          ("cpu_chunk_bytes", 1 << 18), ("cuda_fused_shared_kb", 96)])
def test_choices_under_another_pipeline_setting_are_measured_again(tmp_path, monkeypatch, switch, value):
    # the settings pick the operator's pipeline per call, so they change its speed: keyed apart
    monkeypatch.setattr(fftconv_ext.backends, "cache_dir", str(tmp_path))
    x = torch.randn(2, 16, 24, 24)
    w = torch.randn(16, 1, 9, 9)
    fftconv_ext.conv2d(x, w, padding=4, groups=16)
    calls = []
    monkeypatch.setattr(algo_mod, "_time_once", lambda fn, dev: calls.append(1) or 0.0)
    fftconv_ext.conv2d(x, w, padding=4, groups=16)
    assert calls == []  # same setting: the stored choice
    monkeypatch.setattr(fftconv_ext.backends, switch, value)
    fftconv_ext.conv2d(x, w, padding=4, groups=16)
    assert calls, "a choice measured under another pipeline setting was reused"


def test_lopsided_problems_are_not_measured(monkeypatch):
    calls = []
    monkeypatch.setattr(algo_mod, "_time_once", lambda fn, dev: calls.append(1) or 0.0)
    x = torch.randn(1, 2, 64, 64)
    # 1x1 kernel: direct is far cheaper
    fftconv_ext.conv2d(x, torch.randn(2, 1, 1, 1), groups=2)
    # a dense 1x1 (and 1-tap 1-D) convolution: the spectral product alone matches direct's work,
    # whatever the estimate of the transforms
    fftconv_ext.conv2d(torch.randn(2, 64, 28, 28), torch.randn(32, 64, 1, 1))
    fftconv_ext.conv2d(torch.randn(2, 64, 28, 28), torch.randn(32, 64, 1, 1), stride=2)
    fftconv_ext.conv1d(torch.randn(2, 64, 300), torch.randn(32, 64, 1))
    # 127x127 kernel on 128x128: the FFT is far cheaper
    fftconv_ext.conv2d(torch.randn(1, 2, 128, 128), torch.randn(2, 1, 127, 127), padding=63, groups=2)
    assert calls == []


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
    monkeypatch.setattr(algo_mod, "_time_once",
                        lambda fn, dev: 0.0 if (fn.__name__ == "run_fft") == (forced == "fft") else 1.0)
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


def test_near_ties_get_more_rounds_and_a_slow_spell_does_not_decide(monkeypatch):
    # fft takes 1.1 units, direct 1.0, but the machine is 3x slower during the
    # first calls: a choice from the first timing of each would pick fft. The
    # same-round ratios see through the spell; the near tie gets the extra rounds.
    spell = iter([3.0] * 4 + [1.0] * 1000)

    def fake_time(fn, device):
        return fn() * next(spell)
    monkeypatch.setattr(algo_mod, "_time_once", fake_time)
    calls = {"fft": 0, "direct": 0}

    def run(name, cost):
        def fn():
            calls[name] += 1
            return cost
        return fn
    choice = algo_mod._measure(run("fft", 1.1), run("direct", 1.0), torch.device("cpu"))
    assert choice == "direct"
    n = 1 + algo_mod._ROUNDS + algo_mod._TIE_ROUNDS  # warm-up + rounds + tie rounds
    assert calls == {"fft": n, "direct": n}
    # a clear case stops after the first rounds
    calls.update(fft=0, direct=0)
    assert algo_mod._measure(run("fft", 0.5), run("direct", 1.0), torch.device("cpu")) == "fft"
    assert calls == {"fft": 1 + algo_mod._ROUNDS, "direct": 1 + algo_mod._ROUNDS}
    # a lopsided, expensive one (5x or more, over 20 ms, in the warm-up calls) after the warm-up
    calls.update(fft=0, direct=0)
    assert algo_mod._measure(run("fft", 0.1), run("direct", 1.0), torch.device("cpu")) == "fft"
    assert calls == {"fft": 1, "direct": 1}
    # a lopsided cheap one (sub-millisecond first calls are mostly set-up) gets its rounds
    calls.update(fft=0, direct=0)
    assert algo_mod._measure(run("fft", 1e-4), run("direct", 1e-3), torch.device("cpu")) == "fft"
    assert calls == {"fft": 1 + algo_mod._ROUNDS, "direct": 1 + algo_mod._ROUNDS}


def test_a_tie_is_settled_by_the_arithmetic_estimate(monkeypatch):
    # fastest calls within 15 %: the preferred path (the arithmetic estimate's), whichever
    # side the timings lean to, so that fresh processes on a noisy machine choose alike
    monkeypatch.setattr(algo_mod, "_time_once", lambda fn, dev: fn())
    cpu = torch.device("cpu")
    for prefer in ("fft", "direct"):
        assert algo_mod._measure(lambda: 1.1e-3, lambda: 1.0e-3, cpu, prefer=prefer) == prefer
        assert algo_mod._measure(lambda: 1.0e-3, lambda: 1.1e-3, cpu, prefer=prefer) == prefer
    # outside the band the timings decide
    assert algo_mod._measure(lambda: 1.3e-3, lambda: 1.0e-3, cpu, prefer="fft") == "direct"
    assert algo_mod._measure(lambda: 1.0e-3, lambda: 1.3e-3, cpu, prefer="direct") == "fft"
    # without a preference, the faster one
    assert algo_mod._measure(lambda: 1.1e-3, lambda: 1.0e-3, cpu) == "direct"


def test_rounds_go_on_until_the_fastest_calls_settle(monkeypatch):
    # direct's first calls run at several times its cost (fresh pages, a library's set-up)
    # and come down over a few calls to 1.0, against fft's steady 1.3: three rounds would
    # see direct at 2.0 and pick fft; rounds go on until direct's fastest call stops improving
    slow = iter([4.0, 3.0, 2.4, 2.0, 1.6, 1.2] + [1.0] * 1000)
    calls = {"fft": 0, "direct": 0}
    monkeypatch.setattr(algo_mod, "_time_once", lambda fn, dev: fn())

    def fft():
        calls["fft"] += 1
        return 1.3e-3

    def direct():
        calls["direct"] += 1
        return 1.0e-3 * next(slow)
    assert algo_mod._measure(fft, direct, torch.device("cpu")) == "direct"
    # warm-up, 5 falling rounds, then rounds until the new minimum held _SETTLE_ROUNDS rounds
    assert calls["direct"] == 6 + 1 + algo_mod._SETTLE_ROUNDS
    # a path that never settles stops at the round cap
    calls.update(fft=0, direct=0)
    falling = iter([1.0 - 0.1 * i for i in range(1000)])

    def direct_falling():
        calls["direct"] += 1
        return 1.0e-3 * max(next(falling), 0.01) ** 3
    algo_mod._measure(fft, direct_falling, torch.device("cpu"))
    assert calls["direct"] <= 1 + algo_mod._MAX_ROUNDS


def test_overruling_the_arithmetic_estimate_takes_two_agreeing_measurements(monkeypatch):
    monkeypatch.setattr(algo_mod, "_time_once", lambda fn, dev: fn())
    cpu = torch.device("cpu")
    # fft 30 % slower than direct in the first measurement only (a slow spell): the preferred fft stays
    spell = {"n": 0}

    def fft_spell():
        spell["n"] += 1
        return 1.3e-3 if spell["n"] <= 1 + algo_mod._ROUNDS else 1.0e-3  # warm-up and the first rounds
    assert algo_mod._measure(fft_spell, lambda: 1.0e-3, cpu, prefer="fft") == "fft"
    # 30 % slower in both: the measurements overrule the estimate
    assert algo_mod._measure(lambda: 1.3e-3, lambda: 1.0e-3, cpu, prefer="fft") == "direct"
    # 3x slower: one measurement overrules it (warm-up and three settled rounds of each)
    calls = []
    assert algo_mod._measure(lambda: calls.append(1) or 3.0e-3, lambda: 1.0e-3, cpu, prefer="fft") == "direct"
    assert len(calls) == 1 + algo_mod._ROUNDS


def test_a_lopsided_gap_of_a_few_ms_decides_after_one_more_call(monkeypatch):
    monkeypatch.setattr(algo_mod, "_time_once", lambda fn, dev: fn())
    cpu = torch.device("cpu")
    calls = {"fft": 0, "direct": 0}

    def fft():
        calls["fft"] += 1
        return 1.0e-3

    def direct_steady():
        calls["direct"] += 1
        return 10e-3
    # 10 ms against 1 ms in the warm-up and again: decided after two calls of each
    assert algo_mod._measure(fft, direct_steady, cpu, prefer="direct") == "fft"
    assert calls == {"fft": 2, "direct": 2}
    # the slow first call was set-up (direct runs at 0.8 ms after it): rounds decide
    calls.update(fft=0, direct=0)
    first = iter([10e-3] + [0.8e-3] * 1000)

    def direct_setup():
        calls["direct"] += 1
        return next(first)
    assert algo_mod._measure(fft, direct_setup, cpu) == "direct"
    assert calls["direct"] > 2


@pytest.mark.skipif(not (os.uname().sysname == "Linux" and __import__("platform").libc_ver()[0] == "glibc"),
                    reason="glibc's malloc only")
@pytest.mark.subprocess
def test_measuring_moves_glibc_mmap_threshold_to_where_a_loop_settles():
    # in a fresh process that has freed a 4 MB tensor, a 16 MB one is still served by a fresh
    # mmap (mallinfo2's hblkhd grows by it); after the first measurement on the CPU it comes
    # from the heap, as in a process that has freed a tensor near 32 MB before
    import subprocess
    import sys
    code = """
import ctypes, torch
from fftconv_ext import algo
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
def mapped_by(n):
    before = libc.mallinfo2().hblkhd
    t = torch.empty(n, dtype=torch.uint8)
    grew = libc.mallinfo2().hblkhd - before
    del t
    return grew
small = mapped_by(4 << 20)
algo._measure(lambda: None, lambda: None, torch.device("cpu"))
print(small >= 4 << 20, mapped_by(16 << 20) == 0)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    if "mallinfo2" in r.stderr:
        pytest.skip("glibc without mallinfo2")
    assert r.stdout.split() == ["True", "True"]


@pytest.mark.parametrize("ratio,expect", [(2.0, "fft"), (0.5, "direct")])
def test_choose_hands_the_arithmetic_estimate_to_the_measurement(monkeypatch, ratio, expect):
    seen = []
    monkeypatch.setattr(algo_mod, "_measure", lambda f, d, dev, prefer=None: seen.append(prefer) or "fft")
    monkeypatch.setattr(algo_mod, "_ratio", lambda *a: ratio)
    monkeypatch.setattr(algo_mod, "_store", lambda key, choice: None)
    fftconv_ext.conv2d(torch.randn(1, 2, 12, 12), torch.randn(2, 1, 5, 5), padding=2, groups=2)
    assert seen == [expect]


def test_clear_arithmetic_gaps_are_not_measured(monkeypatch):
    # a 3x3 depthwise layer: the FFT path does over 4x direct's arithmetic (such layers
    # had flipped between fresh processes on timing noise); no measurement
    calls = []
    monkeypatch.setattr(algo_mod, "_time_once", lambda fn, dev: calls.append(1) or 0.0)
    x, w = torch.randn(2, 8, 64, 64), torch.randn(8, 1, 3, 3)
    assert algo_mod._ratio(tuple(x.shape), tuple(w.shape), ((64, 64), (3, 3), ((1, 1), (1, 1)), (1, 1), (1, 1))) < 0.25
    y = fftconv_ext.conv2d(x, w, padding=1, groups=8)
    assert calls == [] and torch.allclose(y, F.conv2d(x, w, padding=1, groups=8), atol=1e-5)
    # a 31x31 depthwise layer on 32x32: direct does over 4x the FFT path's arithmetic; on the
    # CPU (where measuring a direct backward costs seconds) that decides, elsewhere it is measured
    geometry = ((32, 32), (31, 31), ((15, 15), (15, 15)), (1, 1), (1, 1))
    ratio = algo_mod._ratio((2, 8, 32, 32), (8, 1, 31, 31), geometry)
    assert ratio > 4.0
    assert algo_mod.clear_choice(ratio, "cpu") == "fft"
    assert algo_mod.clear_choice(ratio, "cuda") is None
    assert algo_mod.clear_choice(1 / ratio, "cuda") == "direct"
    assert not algo_mod.measured((2, 8, 32, 32), (8, 1, 31, 31), geometry, "cpu")
    assert algo_mod.measured((2, 8, 32, 32), (8, 1, 31, 31), geometry, "cuda")
    fftconv_ext.conv2d(torch.randn(2, 8, 32, 32), torch.randn(8, 1, 31, 31), padding=15, groups=8)
    assert calls == []


def _fake_measures(monkeypatch, verdicts):
    """algo._measure replaced by a list of verdicts, consumed in order; returns the calls made."""
    calls = []

    def fake(run_fft, run_direct, device, prefer=None):
        calls.append(1)
        return verdicts[len(calls) - 1]
    monkeypatch.setattr(algo_mod, "_measure", fake)
    return calls


@pytest.mark.parametrize("verdicts,final", [(["direct", "fft", "fft"], "fft"),
                                            (["direct", "fft", "direct"], "direct"),
                                            (["fft", "fft"], "fft")])
def test_a_measured_choice_is_checked_again_once(tmp_path, monkeypatch, verdicts, final):
    """A first measurement taken on a busy machine is not kept forever: the RECHECK_AT-th call
    measures again, a disagreement gets a third measurement, and the result is stored."""
    monkeypatch.setattr(fftconv_ext.backends, "cache_dir", str(tmp_path))
    calls = _fake_measures(monkeypatch, verdicts)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 16, 24, 24, generator=g, dtype=torch.float64)
    w = torch.randn(16, 1, 9, 9, generator=g, dtype=torch.float64)
    ref = reference_conv(x, w, padding=4, groups=16)
    used = []
    real_fft = fftconv_ext.functional._fft_conv
    monkeypatch.setattr(fftconv_ext.functional, "_fft_conv", lambda *a: used.append("fft") or real_fft(*a))
    for i in range(algo_mod.RECHECK_AT + 20):
        used.clear()
        y = fftconv_ext.conv2d(x, w, padding=4, groups=16)
        assert rel_err(y, ref) <= 1e-10
        expect = verdicts[0] if i + 1 < algo_mod.RECHECK_AT else final
        assert ("fft" in used) == (expect == "fft"), i
        if i + 1 < algo_mod.RECHECK_AT:
            assert len(calls) == 1
    assert len(calls) == len(verdicts)  # once per process, then never again
    with open(os.path.join(tmp_path, "algo.json")) as f:
        assert list(json.load(f).values()) == [final]


def test_arithmetic_choices_are_not_checked_again(monkeypatch):
    calls = _fake_measures(monkeypatch, [])
    x = torch.randn(1, 2, 128, 128)
    w = torch.randn(2, 1, 127, 127)  # the FFT far cheaper by arithmetic
    for _ in range(algo_mod.RECHECK_AT + 5):
        fftconv_ext.conv2d(x, w, padding=63, groups=2)
    assert calls == []


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
])
def test_auto_chooses_each_direction_by_its_own_measurement(tmp_path, monkeypatch, verdicts):
    # scripted measurements, told apart by what the measured function returns:
    # forward (2, 8, 12, 12), input gradient (2, 4, 12, 12), weight gradient (8, 4, 5, 5)
    monkeypatch.setattr(fftconv_ext.backends, "cache_dir", str(tmp_path))
    direction_of = {(2, 8, 12, 12): "forward", (2, 4, 12, 12): "grad_input", (8, 4, 5, 5): "grad_weight"}
    measured = []

    def fake_measure(run_fft, run_direct, device, prefer=None):
        direction = direction_of[tuple(run_fft().shape)]
        measured.append(direction)
        return verdicts[direction]
    monkeypatch.setattr(algo_mod, "_measure", fake_measure)
    monkeypatch.setattr(algo_mod, "_ratio", lambda *a: 1.0)  # in the measured band
    ops = _CountingOps()
    monkeypatch.setattr(fftconv_ext.functional, "_ops_ns", ops)
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
    if len(fft_backward) == 2:
        assert ops.calls.get("conv2d_backward") == 1  # one joint pass
    elif fft_backward:
        assert ops.calls.get("conv2d_" + fft_backward[0]) == 1 and "conv2d_backward" not in ops.calls
    else:
        assert not ops.calls  # everything direct
    stored = json.load(open(os.path.join(tmp_path, "algo.json")))
    assert sorted(stored.values()) == sorted(verdicts.values())


def test_inference_calls_keep_the_single_choice(monkeypatch):
    calls = []
    monkeypatch.setattr(algo_mod, "_measure", lambda f, d, dev, prefer=None: calls.append(1) or "fft")
    monkeypatch.setattr(algo_mod, "_ratio", lambda *a: 1.0)
    x, w = torch.randn(2, 4, 12, 12), torch.randn(4, 1, 5, 5, requires_grad=True)
    with torch.no_grad():
        y = fftconv_ext.conv2d(x, w, padding=2, groups=4)
    assert y.grad_fn is None and calls == [1]
