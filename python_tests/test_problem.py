"""ConvProblem, the one description of a call: run(direction, algorithm) against torch's own
convolution and its autograd in float64, for 1-, 2- and 3-D problems, both algorithms; the
model's ratio from its definition; keys that tell problems apart."""
import math

import pytest
import torch
import torch.nn.functional as F

import fftconv_ext
from fftconv_ext.problem import ConvProblem
from conftest import TOL64, rel_err

_F = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

# (x shape, w shape, stride, pads, dilation, groups)
CASES = [
    ((2, 4, 19), (6, 2, 5), (1,), ((2, 2),), (1,), 2),
    ((2, 4, 13, 11), (4, 1, 5, 3), (1, 1), ((2, 2), (1, 1)), (1, 1), 4),
    ((1, 3, 12, 10), (6, 3, 3, 4), (2, 1), ((1, 1), (0, 0)), (1, 2), 1),
    ((1, 2, 7, 8, 9), (4, 1, 3, 3, 3), (1, 1, 1), ((1, 1),) * 3, (1, 1, 1), 2),
]


def _operands(x_shape, w_shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*x_shape, dtype=torch.float64, generator=g)
    w = torch.randn(*w_shape, dtype=torch.float64, generator=g)
    b = torch.randn(w_shape[0], dtype=torch.float64, generator=g)
    return x, w, b


@pytest.mark.parametrize("algorithm", ["fft", "direct"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{len(c[0]) - 2}d-{c[0]}-{c[1]}")
def test_run_matches_torch_in_every_direction(case, algorithm):
    x_shape, w_shape, stride, pads, dilation, groups = case
    dim = len(x_shape) - 2
    pb = ConvProblem(dim, x_shape, w_shape, stride, pads, dilation, groups, bias=True)
    x, w, b = _operands(x_shape, w_shape)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    ref = _F[dim](xr, wr, b, stride, [pl for pl, _ in pads], dilation, groups)
    gy = torch.randn_like(ref)
    ref_gx, ref_gw = torch.autograd.grad(ref, (xr, wr), gy)

    assert rel_err(pb.run("forward", algorithm, x, w, b), ref) <= TOL64
    assert rel_err(pb.run("grad_input", algorithm, x, w, grad=gy), ref_gx) <= TOL64
    assert rel_err(pb.run("grad_weight", algorithm, x, w, grad=gy), ref_gw) <= TOL64
    gx, gw = pb.run("backward", algorithm, x, w, grad=gy)
    assert rel_err(gx, ref_gx) <= TOL64 and rel_err(gw, ref_gw) <= TOL64


@pytest.mark.parametrize("algorithm", ["fft", "direct"])
@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_run_forward_with_padding_modes_and_uneven_padding(algorithm, mode):
    # 'same' with an even kernel pads unevenly (one more on the right), as nn.Conv2d does
    x, w, b = _operands((2, 3, 10, 9), (3, 1, 4, 5))
    pads = ((1, 2), (2, 2))
    pb = ConvProblem(2, tuple(x.shape), tuple(w.shape), (1, 1), pads, (1, 1), 3, mode, bias=True)
    padded = F.pad(x, [2, 2, 1, 2], mode="constant" if mode == "zeros" else mode)
    ref = F.conv2d(padded, w, b, groups=3)
    assert rel_err(pb.run("forward", algorithm, x, w, b), ref) <= TOL64


def test_run_never_modifies_its_operands():
    x, w, b = _operands((2, 4, 13, 11), (4, 1, 5, 3))
    pb = ConvProblem(2, tuple(x.shape), tuple(w.shape), (1, 1), ((2, 2), (1, 1)), (1, 1), 4, bias=True)
    gy = torch.randn(2, 4, 13, 11, dtype=torch.float64)
    before = [t.clone() for t in (x, w, b, gy)]
    for algorithm in ("fft", "direct"):
        pb.run("forward", algorithm, x, w, b)
        pb.run("backward", algorithm, x, w, grad=gy)
    assert all(torch.equal(a, c) for a, c in zip((x, w, b, gy), before))


def test_run_refuses_unknown_directions_and_algorithms():
    pb = ConvProblem(2, (1, 1, 8, 8), (1, 1, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    with pytest.raises(ValueError, match="direction must be one of"):
        pb.run("sideways", "fft")
    with pytest.raises(ValueError, match="algorithm must be 'fft' or 'direct'"):
        pb.run("forward", "auto")


def test_arithmetic_ratio_from_its_definition():
    # direct multiply-adds over the FFT estimate, with the operator's own FFT shape
    pb = ConvProblem(2, (2, 16, 24, 24), (16, 1, 9, 9), (1, 1), ((4, 4), (4, 4)), (1, 1), 16)
    fft_shape = fftconv_ext._C.fft_shape([2, 16, 24, 24], [16, 1, 9, 9], [1, 1], [4, 4, 4, 4], [1, 1], 16, False)
    points = math.prod(fft_shape)
    direct = 2 * 16 * 1 * 81 * 24 * 24
    fft = 2 * (16 + 16) * 2.5 * points * math.log2(points) + 2 * 16 * 1 * points * 2
    assert pb.arithmetic_ratio() == pytest.approx(direct / fft, rel=1e-12)
    # one tap: ratio 0, always direct
    one = ConvProblem(2, (2, 16, 24, 24), (16, 16, 1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    assert one.arithmetic_ratio() == 0.0 and one.model_choice("cpu") == "direct"


def test_descriptions_tell_problems_apart():
    base = dict(dim=2, x_shape=(2, 4, 16, 16), w_shape=(4, 1, 5, 5), stride=(1, 1), pads=((2, 2), (2, 2)),
                dilation=(1, 1), groups=4)
    pb = ConvProblem(**base)
    assert ConvProblem(**base).description() == pb.description() and hash(ConvProblem(**base)) == hash(pb)
    others = [dict(base, x_shape=(3, 4, 16, 16)), dict(base, pads=((1, 3), (2, 2))), dict(base, stride=(2, 1)),
              dict(base, padding_mode="reflect"), dict(base, transposed=True), dict(base, bias=True)]
    descriptions = {ConvProblem(**o).description() for o in others}
    assert len(descriptions) == len(others) and pb.description() not in descriptions
    # plain values only: what a key file holds and what torch.compile can treat as a constant
    assert all(isinstance(v, (int, str, bool, tuple)) for v in pb.description())


# (x shape, w shape, stride, padding, dilation, groups): last-axis zero padding wider than
# DIRECT_CPU_MAX_WIDTH_PAD, which the direct path pads itself on the CPU
WIDE_PADDING = [
    ((2, 6, 9, 23), (6, 1, 3, 11), (1, 1), (1, 5), (1, 1), 6),
    ((1, 4, 10, 20), (4, 1, 7, 7), (2, 2), (6, 6), (2, 2), 4),
    ((2, 3, 30), (6, 1, 13), (1,), (6,), (1,), 3),
    ((1, 1, 16, 16), (1, 1, 15, 15), (1, 1), (7, 7), (1, 1), 1),
]


@pytest.mark.parametrize("case", WIDE_PADDING, ids=lambda c: f"{c[0]}-{c[1]}")
def test_direct_path_pads_wide_columns_itself_and_matches_torch(case):
    from fftconv_ext.problem import DIRECT_CPU_MAX_WIDTH_PAD
    x_shape, w_shape, stride, padding, dilation, groups = case
    dim = len(x_shape) - 2
    pb = ConvProblem(dim, x_shape, w_shape, stride, tuple((p, p) for p in padding), dilation, groups, bias=True)
    assert pb.direct_width_pad == padding[-1] > DIRECT_CPU_MAX_WIDTH_PAD
    x, w, b = _operands(x_shape, w_shape, seed=3)
    xr, wr, br = x.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_()
    y = fftconv_ext.conv2d if dim == 2 else fftconv_ext.conv1d
    ours = y(xr, wr, br, stride, padding, dilation, groups, algo="direct")
    ref = _F[dim](x.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_(), stride, padding,
                  dilation, groups)
    assert ours.shape == ref.shape and rel_err(ours, ref) < TOL64
    g = torch.randn_like(ref)
    ref_leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    ref_grads = torch.autograd.grad(_F[dim](*ref_leaves, stride, padding, dilation, groups), ref_leaves, g)
    for a, e in zip(torch.autograd.grad(ours, (xr, wr, br), g), ref_grads):
        assert rel_err(a, e) < TOL64
    for call in range(2):  # the first call and the decided call after it
        again = y(x, w, b, stride, padding, dilation, groups, algo="direct")
        assert rel_err(again, ref.detach()) < TOL64
    # narrow padding, unequal sides and 3-D problems are left to torch as they are
    assert ConvProblem(2, (1, 2, 9, 9), (2, 1, 9, 9), (1, 1), ((4, 4), (4, 4)), (1, 1), 2).direct_width_pad == 0
    assert ConvProblem(2, (1, 2, 9, 9), (2, 1, 9, 12), (1, 1), ((4, 4), (5, 6)), (1, 1), 2).direct_width_pad == 0
    assert ConvProblem(3, (1, 2, 9, 9, 9), (2, 1, 11, 11, 11), (1, 1, 1), ((5, 5),) * 3, (1, 1, 1),
                       2).direct_width_pad == 0


def test_dilated_gradients_take_the_fft_where_the_profile_says_so(monkeypatch):
    from fftconv_ext import cost_model
    dilated = ConvProblem(2, (2, 8, 32, 32), (8, 1, 7, 7), (1, 1), ((6, 6), (6, 6)), (2, 2), 8)
    plain = ConvProblem(2, (2, 8, 32, 32), (8, 1, 7, 7), (1, 1), ((3, 3), (3, 3)), (1, 1), 8)
    monkeypatch.setitem(cost_model.THRESHOLDS, cost_model.profile("cpu"),
                        {"depthwise 2-D": {d: 1e9 for d in cost_model.DIRECTIONS}})  # direct everywhere
    monkeypatch.setitem(cost_model.SLOW_DILATED_DIRECT, cost_model.profile("cpu"), ("grad_input",))
    assert dilated.model_choice("cpu", "grad_input") == "fft" == dilated.clear_choice("cpu", "grad_input")
    assert dilated.model_choice("cpu", "forward") == "direct" == dilated.model_choice("cpu", "grad_weight")
    assert plain.model_choice("cpu", "grad_input") == "direct"
    transposed = ConvProblem(2, (2, 8, 32, 32), (8, 1, 7, 7), (1, 1), ((6, 6), (6, 6)), (2, 2), 8, transposed=True)
    assert transposed.model_choice("cpu", "forward") == "fft"  # its forward is the input-gradient kernel
    monkeypatch.setitem(cost_model.SLOW_DILATED_DIRECT, cost_model.profile("cpu"), ())
    assert dilated.model_choice("cpu", "grad_input") == "direct"
