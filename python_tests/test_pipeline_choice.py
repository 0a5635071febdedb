"""CUDA pipeline choice (docs/design.md §17), tested without a GPU: the choice logic with
scripted timings and outputs, the operator's record of choices, and the guard that keeps
pipelines never run on a GPU out until their output matched the direct convolution's."""
import glob
import json
import os
import warnings

import pytest
import torch
import torch.nn.functional as F

import fftconv_ext
from fftconv_ext import _C
from fftconv_ext import algo as algo_mod
from fftconv_ext import candidate_timing as timing, cost_model, cuda_pipelines
from fftconv_ext.problem import ConvProblem


def _scripted(monkeypatch, costs):
    """timing.time_once returns the scripted cost of the candidate being timed: the pipeline forced
    on this thread (read back from the operator) or 'direct'."""
    current = {"name": "direct"}
    real_forced = cuda_pipelines.forced_pipeline

    class _Forced:
        def __init__(self, name):
            self.name, self.inner = name, real_forced(name)

        def __enter__(self):
            current["name"] = self.name
            return self.inner.__enter__()

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

    monkeypatch.setattr(cuda_pipelines, "forced_pipeline", _Forced)
    timed = []

    def fake_time(fn, device):
        current["name"] = "direct"  # unless fn forces a pipeline
        fn()
        timed.append(current["name"])
        return costs[current["name"]]
    monkeypatch.setattr(timing, "time_once", fake_time)
    return timed


def _problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 10, 10, generator=g)
    w = torch.randn(4, 1, 5, 5, generator=g)
    return x, w, ConvProblem(2, tuple(x.shape), tuple(w.shape), (1, 1), ((2, 2), (2, 2)), (1, 1), 4)


def _on_cuda(monkeypatch, verified=("rows",)):
    """The CUDA candidate list for CPU tensors, with `verified` as the components run on a GPU
    and the unverified ones opted in (backends.cuda_unverified)."""
    monkeypatch.setattr(fftconv_ext.backends, "cuda_unverified", True)
    monkeypatch.setattr(cuda_pipelines, "pipelines_for", lambda device, target: cuda_pipelines.PIPELINES)
    monkeypatch.setattr(cuda_pipelines, "verified_components", lambda: frozenset(verified))
    monkeypatch.setattr(fftconv_ext.backends, "benchmark", True)
    monkeypatch.setattr(cost_model, "clear_choice", lambda *a: None)  # in the measured band


def _target(recorded, direction=cuda_pipelines.FORWARD, applies=None):
    return cuda_pipelines.PipelineTarget(recorded.append, applies, direction)


@pytest.mark.parametrize("fastest", ["direct", "rows", "planes", "small_plane"])
def test_the_fastest_candidate_is_chosen_recorded_and_remembered(monkeypatch, tmp_path, fastest):
    _on_cuda(monkeypatch)
    costs = {n: 1.0 for n in ("direct",) + cuda_pipelines.PIPELINES}
    costs[fastest] = 0.5
    timed = _scripted(monkeypatch, costs)
    x, w, pb = _problem()
    recorded = []
    run_fft = lambda: F.conv2d(x, w, padding=2, groups=4)  # noqa: E731  (outputs agree: the guard passes)
    choice = algo_mod.choose(pb, x, "forward", run_fft, run_fft, _target(recorded))
    assert choice == ("direct" if fastest == "direct" else "fft")
    assert recorded == ([] if fastest == "direct" else [fastest])
    assert set(timed) == {"direct", "rows", "planes", "small_plane"}  # every candidate was timed
    stored = [json.load(open(p))["choice"] for p in glob.glob(os.path.join(fftconv_ext.backends.cache_dir, "auto", "*"))]
    assert stored == ["direct" if fastest == "direct" else "fft:" + fastest]
    # the same process: remembered, nothing timed or recorded again
    timed.clear()
    assert algo_mod.choose(pb, x, "forward", run_fft, run_fft, _target(recorded)) == choice
    assert timed == [] and len(recorded) <= 1
    # a new process reads the choice back and records the pipeline in the operator without timing
    algo_mod.clear_memory()
    recorded.clear()
    assert algo_mod.choose(pb, x, "forward", run_fft, run_fft, _target(recorded)) == choice
    assert timed == [] and recorded == ([] if fastest == "direct" else [fastest])


def test_algo_fft_chooses_among_the_pipelines_only(monkeypatch):
    _on_cuda(monkeypatch)
    timed = _scripted(monkeypatch, {"direct": 0.1, "rows": 1.0, "planes": 0.7, "small_plane": 0.9})
    x, w, pb = _problem()
    recorded = []
    run = lambda: F.conv2d(x, w, padding=2, groups=4)  # noqa: E731
    assert algo_mod.choose(pb, x, "forward", run, run, _target(recorded), with_direct=False) == "fft"
    assert recorded == ["planes"] and "direct" not in timed


def test_a_mismatching_unverified_pipeline_is_disqualified_with_one_warning(monkeypatch):
    _on_cuda(monkeypatch)
    _scripted(monkeypatch, {"direct": 1.0, "rows": 1.0, "planes": 0.1, "small_plane": 0.5})
    x, w, pb = _problem()
    def fft_of(inp):
        good = F.conv2d(inp, w, padding=2, groups=4)

        def run_fft():  # the 'planes' pipeline computes garbage; the others agree
            forced = _C.force_pipeline("default")
            _C.force_pipeline(forced)
            return good + 1.0 if forced == "planes" else good.clone()
        return run_fft, lambda: good
    recorded = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        choice = algo_mod.choose(pb, x, "forward", *fft_of(x), _target(recorded))
        # another problem in the same process: 'planes' is not tried again, no second warning
        x2 = torch.randn(2, 4, 12, 12)
        algo_mod.choose(pb.with_sizes(x2.shape, w.shape), x2, "forward", *fft_of(x2), _target(recorded))
    mismatch = [c for c in caught if "planes" in str(c.message)]
    assert len(mismatch) == 1 and "disagreed" in str(mismatch[0].message) and "(2, 4, 10, 10)" in str(mismatch[0].message)
    assert choice == "fft" and recorded == ["small_plane", "small_plane"]  # the fastest of those that agreed
    assert "planes" in cuda_pipelines.disqualified


def test_verified_pipelines_are_not_compared(monkeypatch):
    _on_cuda(monkeypatch, verified=("rows", "planes", "small_plane"))
    _scripted(monkeypatch, {"direct": 1.0, "rows": 0.5, "planes": 0.8, "small_plane": 0.9})
    x, w, pb = _problem()
    directs = []

    def run_direct():
        directs.append(1)
        return F.conv2d(x, w, padding=2, groups=4)
    recorded = []
    wrong = F.conv2d(x, w, padding=2, groups=4) + 1.0  # would fail any comparison
    algo_mod.choose(pb, x, "forward", lambda: wrong, run_direct, _target(recorded))
    assert recorded == ["rows"]
    # direct ran only as a candidate (warm-up and rounds), never as a reference
    assert len(directs) == 1 + timing.ROUNDS


def test_every_pipeline_disqualified_falls_back_to_the_verified_default(monkeypatch):
    _on_cuda(monkeypatch, verified=())
    _scripted(monkeypatch, {"direct": 1.0, "rows": 0.1, "planes": 0.1, "small_plane": 0.1})
    x, w, pb = _problem()
    recorded = []
    with pytest.warns(RuntimeWarning):
        choice = algo_mod.choose(pb, x, "forward", lambda: torch.full((2, 4, 10, 10), float("nan")),
                                 lambda: F.conv2d(x, w, padding=2, groups=4), _target(recorded), with_direct=False)
    assert choice == "fft" and recorded == ["default"]


def test_measure_many_picks_the_smallest_median_after_one_warm_up_each(monkeypatch):
    monkeypatch.setattr(timing, "time_once", lambda fn, dev: fn())
    calls = {"a": 0, "b": 0, "c": 0}

    def run(name, costs):
        def fn():
            calls[name] += 1
            return costs[calls[name] - 1]
        return fn
    cpu = torch.device("cpu")
    # b's warm-up is slow and one of its calls too: its median still wins
    runs = {"a": run("a", [1.0] + [3.0] * 9), "b": run("b", [9.0, 1.0, 8.0, 1.0, 1.0, 1.0]),
            "c": run("c", [1.0] + [2.0] * 9)}
    assert timing.measure_many(runs, cpu) == "b"
    assert calls == {n: 1 + timing.ROUNDS for n in calls}


def test_matches_tolerance():
    ref = torch.randn(2, 3, 8, 8)
    assert cuda_pipelines.matches(ref + 1e-6 * ref.abs().max(), ref)
    assert not cuda_pipelines.matches(ref + 1e-2 * ref.abs().max(), ref)
    assert not cuda_pipelines.matches(ref[:1], ref)
    bad = ref.clone()
    bad[0, 0, 0, 0] = float("inf")
    assert not cuda_pipelines.matches(bad, ref)
    # half precision: both sides rounded, a wider band; float64: a narrow one
    half = ref.to(torch.bfloat16)
    assert cuda_pipelines.matches((ref * (1 + 4e-3)).to(torch.bfloat16), half)
    assert not cuda_pipelines.matches((ref + 0.1 * ref.abs().max()).to(torch.bfloat16), half)
    assert not cuda_pipelines.matches(ref.double() * (1 + 1e-6), ref.double())


def test_the_operator_records_choices_and_forces_pipelines_per_thread():
    assert _C.pipeline_names() == ["default", "rows", "planes", "small_plane"]
    verified = dict(zip(_C.pipeline_names(), _C.pipelines_verified()))
    assert verified["default"] and verified["rows"]  # the default is what has run on a GPU
    assert cuda_pipelines.verified_pipelines() <= set(cuda_pipelines.PIPELINES)
    _C.clear_pipeline_choices()
    _C.set_pipeline_choice([2, 4, 10, 10], [4, 1, 5, 5], [1, 1], [2, 2, 2, 2], [1, 1], 4, False, 0, False, 0,
                           "planes")
    _C.set_pipeline_choice([2, 4, 10, 10], [4, 1, 5, 5], [1, 1], [2, 2, 2, 2], [1, 1], 4, False, 0, False, 0,
                           "planes")  # the same problem: one entry
    assert _C.pipeline_choice_count() == 1
    algo_mod.clear_memory()
    assert _C.pipeline_choice_count() == 0
    with pytest.raises(ValueError, match="pipeline must be one of"):
        _C.force_pipeline("winograd")
    with pytest.raises(ValueError, match="direction"):
        _C.set_pipeline_choice([2, 4, 10, 10], [4, 1, 5, 5], [1, 1], [2, 2, 2, 2], [1, 1], 4, False, 0, False, 4,
                               "rows")
    assert _C.force_pipeline("planes") == "default"
    with cuda_pipelines.forced_pipeline("small_plane"):
        assert _C.force_pipeline("small_plane") == "small_plane"
    assert _C.force_pipeline("default") == "planes"


def test_cpu_calls_measure_no_pipelines(monkeypatch):
    # the CPU driver picks its own pipeline: auto on the CPU times fft against direct only
    seen = []
    monkeypatch.setattr(cuda_pipelines, "measure_pipelines", lambda *a, **k: seen.append(1) or "fft:rows")
    monkeypatch.setattr(fftconv_ext.backends, "benchmark", True)
    monkeypatch.setattr(cost_model, "clear_choice", lambda *a: None)
    x, w = torch.randn(2, 4, 16, 16), torch.randn(4, 1, 7, 7)
    y = fftconv_ext.conv2d(x, w, padding=3, groups=4)
    assert seen == [] and torch.allclose(y, F.conv2d(x, w, padding=3, groups=4), atol=1e-4)
    assert cuda_pipelines.pipelines_for(torch.device("cpu"), cuda_pipelines.PipelineTarget(print)) == ()


def test_the_pipeline_setter_keys_the_problem_as_the_op_sees_it(monkeypatch):
    # every padding mode and 1-D: the setter hands the op's own shapes and arguments over
    seen = []
    real = _C.set_pipeline_choice
    monkeypatch.setattr(fftconv_ext._C, "set_pipeline_choice", lambda *a: seen.append(a))
    from fftconv_ext.problem import ConvProblem
    cpu = torch.device("cpu")
    x, w = (2, 4, 10, 11), (4, 2, 5, 3)
    ConvProblem(2, x, w, (1, 2), ((2, 2), (1, 1)), (1, 1), 2, "reflect").pipeline_target(
        cpu, torch.float32, 1).record("planes")
    assert seen[-1][:7] == ([2, 4, 14, 13], [4, 2, 5, 3], [1, 2], [0, 0, 0, 0], [1, 1], 2, False)
    assert seen[-1][8:] == (False, 1, "planes")
    ConvProblem(2, x, w, (1, 1), ((2, 2), (1, 1)), (1, 1), 2, "circular").pipeline_target(
        cpu, torch.float32, 0).record("rows")
    assert seen[-1][:7] == ([2, 4, 10, 11], [4, 2, 5, 3], [1, 1], [2, 2, 1, 1], [1, 1], 2, True)
    ConvProblem(1, (2, 4, 11), (4, 2, 3), (2,), ((1, 1),), (1,), 2, "zeros").pipeline_target(
        cpu, torch.float32, 2).record("small_plane")
    assert seen[-1][:7] == ([2, 4, 1, 11], [4, 2, 1, 3], [1, 2], [0, 0, 1, 1], [1, 1], 2, False)
    # and the op accepts them
    for a in seen:
        real(*a)


def test_transposed_convolutions_record_the_input_gradient_pipeline(monkeypatch):
    # conv_transpose2d is the input gradient of a correlation (design §18): its measured
    # pipeline is recorded for that direction (1) of that correlation's problem
    _on_cuda(monkeypatch)
    monkeypatch.setattr(cuda_pipelines, "measure_pipelines", lambda *a, **k: "fft:planes")
    seen = []
    real = _C.set_pipeline_choice
    monkeypatch.setattr(_C, "set_pipeline_choice", lambda *a: seen.append(a))
    x, w = torch.randn(2, 4, 9, 10, dtype=torch.float64), torch.randn(4, 3, 5, 4, dtype=torch.float64)
    y = fftconv_ext.conv_transpose2d(x, w, None, stride=2, padding=1, output_padding=1, groups=2)
    assert torch.allclose(y, F.conv_transpose2d(x, w, None, 2, 1, 1, 2), atol=1e-10)
    assert seen == [([2, 6, 20, 21], [4, 3, 5, 4], [2, 2], [1, 1, 1, 1], [1, 1], 2, False, 0, True, 1, "planes")]
    real(*seen[0])
    fftconv_ext.conv_transpose1d(x[:, :, 0], w[:, :, 0], None, stride=3, padding=2, groups=2)
    assert seen[-1][:6] == ([2, 6, 1, 27], [4, 3, 1, 4], [1, 3], [0, 0, 2, 2], [1, 1], 2)
    real(*seen[-1])


# ---- the gate: nothing that has not run on a GPU runs unless asked for ----------------------

def test_by_default_the_only_candidate_is_the_verified_pipeline():
    # every direction, whatever the problem takes: with cuda_unverified off only 'rows' is measured
    assert fftconv_ext.backends.cuda_unverified is False
    for direction in (cuda_pipelines.FORWARD, cuda_pipelines.GRAD_INPUT, cuda_pipelines.GRAD_WEIGHT):
        assert cuda_pipelines.candidate_pipelines(_target([], direction)) == ("rows",)


def test_the_default_configuration_forces_no_unverified_pipeline(monkeypatch):
    # the real candidate list (not a scripted one) on a simulated CUDA device: choose() forces
    # nothing but 'rows', records nothing but 'rows', and no comparison against cuDNN is needed
    # by default nothing is timed or recorded: the operator runs its default (verified) pipeline;
    # under benchmark, only cuDNN and the default pipeline are timed
    monkeypatch.setattr(cuda_pipelines, "pipelines_for", lambda device, target: cuda_pipelines.candidate_pipelines(target))
    timed = _scripted(monkeypatch, {"direct": 1.0, "rows": 0.5, "planes": 0.1, "small_plane": 0.1})
    x, w, pb = _problem()
    recorded = []
    run = lambda: F.conv2d(x, w, padding=2, groups=4)  # noqa: E731
    for benchmark in (False, True):
        monkeypatch.setattr(fftconv_ext.backends, "benchmark", benchmark)
        monkeypatch.setattr(cost_model, "choice", lambda *a: "fft")
        monkeypatch.setattr(cost_model, "clear_choice", lambda *a: None)
        for with_direct in (True, False):
            algo_mod.clear_memory()
            assert algo_mod.choose(pb, x, "forward", run, run, _target(recorded), with_direct=with_direct) == "fft"
        if not benchmark:
            assert timed == [] and recorded == []
    assert set(timed) <= {"direct", "rows"} and set(recorded) <= {"rows"}


def test_opting_in_makes_unverified_pipelines_candidates_where_they_apply(monkeypatch):
    monkeypatch.setattr(fftconv_ext.backends, "cuda_unverified", True)
    assert cuda_pipelines.candidate_pipelines(_target([])) == ("rows", "planes", "small_plane")
    # a pipeline that would hand the problem to 'rows' is no candidate (it would time rows twice)
    only_planes = lambda name: name == "planes"  # noqa: E731
    assert cuda_pipelines.candidate_pipelines(_target([], applies=only_planes)) == ("rows", "planes")
    # the small-plane weight gradient is a component of its own: disqualifying the forward leaves it
    cuda_pipelines.disqualify("small_plane")
    assert cuda_pipelines.candidate_pipelines(_target([])) == ("rows", "planes")
    assert cuda_pipelines.candidate_pipelines(_target([], cuda_pipelines.GRAD_WEIGHT)) == ("rows", "planes", "small_plane")
    assert not _C.gpu_component_enabled("small_plane")  # the operator sees the disqualification too


def test_a_recorded_unverified_choice_is_not_reused_with_the_gate_closed(monkeypatch, tmp_path):
    # a choice measured with cuda_unverified on (or in another process) is measured again without it
    _on_cuda(monkeypatch)
    _scripted(monkeypatch, {"direct": 1.0, "rows": 0.5, "planes": 0.1, "small_plane": 1.0})
    x, w, pb = _problem()
    recorded = []
    run = lambda: F.conv2d(x, w, padding=2, groups=4)  # noqa: E731
    assert algo_mod.choose(pb, x, "forward", run, run, _target(recorded)) == "fft" and recorded == ["planes"]
    monkeypatch.setattr(fftconv_ext.backends, "cuda_unverified", False)
    monkeypatch.setattr(cuda_pipelines, "pipelines_for", lambda device, target: cuda_pipelines.candidate_pipelines(target))
    algo_mod.clear_memory()
    recorded.clear()
    timed = _scripted(monkeypatch, {"direct": 1.0, "rows": 0.5, "planes": 0.1, "small_plane": 1.0})
    assert algo_mod.choose(pb, x, "forward", run, run, _target(recorded)) == "fft"
    # measured again (the stored 'fft:planes' not taken), among cuDNN and the verified default only
    assert timed and set(timed) <= {"direct", "default"} and recorded in ([], ["rows"])


def test_pipeline_applies_tells_what_each_pipeline_runs_itself():
    def applies(name, x, wt, stride=(1, 1), pad=(3, 3, 3, 3), groups=None, double=False, direction=0):
        return _C.pipeline_applies(name, list(x), list(wt), list(stride), list(pad), [1, 1],
                                   groups if groups is not None else x[1], False, double, direction)
    dw = ((2, 8, 32, 32), (8, 1, 7, 7))
    assert applies("rows", *dw) and applies("planes", *dw) and applies("small_plane", *dw)
    assert not applies("planes", *dw, direction=cuda_pipelines.GRAD_WEIGHT)  # the weight gradient is rows' own
    assert applies("small_plane", *dw, direction=cuda_pipelines.GRAD_WEIGHT) and applies("small_plane", *dw, direction=cuda_pipelines.BACKWARD)
    assert not applies("rows", *dw, direction=cuda_pipelines.BACKWARD)  # no joint pass of its own
    assert not applies("small_plane", *dw, double=True)                 # float32 only
    assert not applies("small_plane", *dw, stride=(2, 2))
    assert not applies("small_plane", (2, 8, 32, 32), (8, 2, 7, 7), groups=4)  # not depthwise
    assert not applies("small_plane", (2, 8, 56, 56), (8, 1, 31, 31), pad=(15,) * 4)  # alias-free 71 > 64
    # an empty input axis whose padding still gives an output: no plane to split
    assert not applies("small_plane", (1, 4, 0, 8), (4, 1, 3, 3), pad=(2, 2, 2, 2))


def test_a_candidate_that_raises_is_disqualified_not_the_users_error(monkeypatch):
    _on_cuda(monkeypatch)
    _scripted(monkeypatch, {"direct": 1.0, "rows": 0.8, "planes": 0.1, "small_plane": 0.5})
    x, w, pb = _problem()
    good = F.conv2d(x, w, padding=2, groups=4)

    def run_fft():
        forced = _C.force_pipeline("default")
        _C.force_pipeline(forced)
        if forced == "planes":
            raise RuntimeError("fftconv: cuFFT plan creation failed with CUFFT_ALLOC_FAILED (2)")
        return good.clone()
    recorded = []
    with pytest.warns(RuntimeWarning, match="'planes' failed .*CUFFT_ALLOC_FAILED.*not used again"):
        choice = algo_mod.choose(pb, x, "forward", run_fft, lambda: good, _target(recorded))
    assert choice == "fft" and recorded == ["small_plane"] and "planes" in cuda_pipelines.disqualified
    assert not _C.gpu_component_enabled("planes")
    # a verified pipeline that raises is only no candidate for that problem
    algo_mod.clear_memory()
    for path in glob.glob(os.path.join(fftconv_ext.backends.cache_dir, "auto", "*")):
        os.remove(path)
    _on_cuda(monkeypatch, verified=("rows", "planes", "small_plane"))
    with pytest.warns(RuntimeWarning, match="not a candidate for this problem"):
        algo_mod.choose(pb, x, "forward", run_fft, lambda: good, _target(recorded))
    assert "planes" not in cuda_pipelines.disqualified


def test_the_reference_is_computed_without_tf32(monkeypatch):
    _on_cuda(monkeypatch)
    _scripted(monkeypatch, {"direct": 1.0, "rows": 0.8, "planes": 0.1, "small_plane": 0.5})
    x, w, pb = _problem()
    good = F.conv2d(x, w, padding=2, groups=4)
    seen = []

    def run_direct():
        seen.append(torch.backends.cudnn.allow_tf32)
        return good
    before = torch.backends.cudnn.allow_tf32
    algo_mod.choose(pb, x, "forward", lambda: good.clone(), run_direct, _target([]), with_direct=False)
    assert seen == [False]  # the one reference call, with TF32 off
    assert torch.backends.cudnn.allow_tf32 == before


def _joint_setup(monkeypatch, chose=("small_plane", "small_plane")):
    _on_cuda(monkeypatch)
    x, w, pb = _problem()
    for d, p in zip(("grad_input", "grad_weight"), chose):
        if p is not None:
            algo_mod._pipeline_of[algo_mod._fast_key(pb, x, d)] = p
    g = torch.Generator().manual_seed(1)
    refs = (torch.randn(2, 4, 10, 10, generator=g), torch.randn(4, 1, 5, 5, generator=g))
    return [algo_mod.chosen_pipeline(pb, x, d) for d in ("grad_input", "grad_weight")], refs


def test_the_joint_small_plane_backward_is_compared_before_it_is_recorded(monkeypatch):
    chose, refs = _joint_setup(monkeypatch)
    recorded, forced = [], []

    def joint():
        forced.append(_C.force_pipeline("default"))
        _C.force_pipeline(forced[-1])
        return tuple(r.clone() for r in refs)
    cuda_pipelines.check_joint_backward(chose, joint, lambda: refs, _target(recorded, cuda_pipelines.BACKWARD), "p")
    assert forced == ["small_plane"] and recorded == ["small_plane"]


def test_the_joint_backward_is_checked_once_per_problem():
    # the backward asks algo.once before it compares: the first call of a problem and settings only
    x, w, pb = _problem()
    assert algo_mod.once(pb, x, "joint backward")
    assert not algo_mod.once(pb, x, "joint backward")
    assert algo_mod.once(pb.with_sizes((3, 4, 10, 10), w.shape), x, "joint backward")
    with fftconv_ext.backends.flags(cpu_lanes=fftconv_ext.backends.cpu_lanes):  # any setting: a new version
        pass
    assert algo_mod.once(pb, x, "joint backward")


def test_a_disagreeing_joint_backward_is_disqualified(monkeypatch):
    chose, refs = _joint_setup(monkeypatch)
    recorded = []
    with pytest.warns(RuntimeWarning, match="joint backward .*disagreed"):
        cuda_pipelines.check_joint_backward(chose, lambda: (refs[0].clone(), refs[1] + 1.0), lambda: refs,
                                            _target(recorded, cuda_pipelines.BACKWARD), "p")
    assert recorded == [] and "small_plane_joint_backward" in cuda_pipelines.disqualified
    assert not _C.gpu_component_enabled("small_plane_joint_backward")


@pytest.mark.parametrize("chose", [("small_plane", "rows"), ("rows", "small_plane"), (None, "small_plane")])
def test_the_joint_backward_runs_only_where_both_gradients_chose_the_small_plane_kernel(monkeypatch, chose):
    chose, refs = _joint_setup(monkeypatch, chose)
    recorded, ran = [], []
    cuda_pipelines.check_joint_backward(chose, lambda: ran.append(1), lambda: ran.append(2),
                                        _target(recorded, cuda_pipelines.BACKWARD), "p")
    assert recorded == [] and ran == []
