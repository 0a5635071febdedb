"""conv3d and conv_transpose3d (the depth fold over the 2-D operator) and their layers against
torch.nn.functional in float64: parity over stride, dilation, groups, padding ('same',
'valid', asymmetric, beyond the kernel's reach, kernel larger than the input), padding modes,
output_padding, channels_last_3d and unbatched inputs; gradcheck and gradgradcheck; opcheck of
the op on a folded problem; compile; low precision and autocast; errors; hypothesis;
FFTConv3d / FFTConvTranspose3d and convert()/revert() on a small 3-D U-Net."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import fftconv_ext
from fftconv_ext import ConvArgumentError
from fftconv_ext.depth_fold import DepthFold
from fftconv_ext.nn import FFTConv3d, FFTConvTranspose3d
from conftest import TOL64, random_case, reference_conv, rel_err

# (input shape, weight shape, stride, padding, dilation, groups)
CASES = [
    ((2, 3, 6, 7, 8), (4, 3, 3, 3, 3), 1, 0, 1, 1),
    ((2, 3, 6, 7, 8), (4, 3, 3, 3, 3), 1, 1, 1, 1),
    ((2, 4, 9, 8, 7), (4, 1, 5, 5, 5), 1, "same", 1, 4),             # depthwise 'same'
    ((1, 4, 8, 9, 10), (6, 2, 4, 2, 3), 1, "same", (1, 2, 1), 2),     # even kernel: asymmetric 'same'
    ((2, 2, 9, 10, 11), (4, 2, 3, 4, 3), (2, 3, 2), (1, 2, 0), 1, 1),  # strided
    ((2, 2, 9, 10, 11), (2, 1, 3, 3, 2), (2, 1, 3), 1, (2, 3, 1), 2),  # strided and dilated
    ((1, 3, 5, 6, 7), (3, 1, 9, 11, 8), 1, (4, 5, 4), 1, 3),          # kernel larger than the input
    ((1, 2, 4, 5, 6), (2, 2, 1, 2, 3), (1, 2, 1), (3, 4, 2), 1, 1),    # padding beyond the kernel's reach
    ((2, 2, 7, 6, 5), (2, 2, 3, 3, 3), 1, "valid", (2, 1, 1), 1),
    ((1, 4, 12, 12, 12), (4, 1, 7, 7, 7), 2, 3, 1, 4),               # stride-2 depthwise 7x7x7
]


@pytest.mark.parametrize("algo", ["fft", "auto"])
@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CASES)
def test_conv3d_matches_torch(xs, ws, stride, padding, dilation, groups, algo):
    x, w, b = random_case(xs, ws)
    y = fftconv_ext.conv3d(x, w, b, stride, padding, dilation, groups, algo=algo)
    ref = F.conv3d(x, w, b, stride, padding, dilation, groups)
    assert y.shape == ref.shape and y.dtype == ref.dtype and y.is_contiguous()
    assert rel_err(y, ref) <= TOL64
    y1 = fftconv_ext.conv3d(x[0], w, None, stride, padding, dilation, groups, algo=algo)  # unbatched, no bias
    assert rel_err(y1, F.conv3d(x[0], w, None, stride, padding, dilation, groups)) <= TOL64


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", [1, (2, 1, 3), "same"])
def test_padding_modes_match_nn_conv3d(mode, padding):
    x, w, b = random_case((2, 3, 6, 7, 8), (3, 1, 5, 3, 7), seed=1)
    y = fftconv_ext.conv3d(x, w, b, padding=padding, groups=3, padding_mode=mode, algo="fft")
    ref = reference_conv(x, w, b, padding=padding, groups=3, padding_mode=mode)
    assert y.shape == ref.shape and rel_err(y, ref) <= TOL64


def test_channels_last_3d_empty_and_inputs_untouched():
    x, w, b = random_case((2, 4, 6, 7, 8), (4, 2, 3, 5, 3), seed=2)
    copies = [t.clone() for t in (x, w, b)]
    xcl = x.contiguous(memory_format=torch.channels_last_3d)
    y = fftconv_ext.conv3d(xcl, w, b, padding=1, groups=2, algo="fft")
    ref = F.conv3d(xcl, w, b, padding=1, groups=2)
    assert rel_err(y, ref) <= TOL64
    # the layout F gives (in float64 PyTorch's CPU kernels return it contiguous; float32 keeps it,
    # test_edge_inputs.py)
    assert y.is_contiguous() == ref.is_contiguous()
    for t, c in zip((x, w, b), copies):
        assert torch.equal(t, c)
    assert fftconv_ext.conv3d(x[:0], w, b, padding=1, groups=2, algo="fft").shape == \
        F.conv3d(x[:0], w, b, padding=1, groups=2).shape


def test_gradcheck_and_gradgradcheck():
    x, w, b = random_case((2, 2, 4, 5, 4), (4, 1, 3, 2, 3), seed=3)
    x, w, b = (t.requires_grad_() for t in (x, w, b))

    def fn(x_, w_, b_):
        return fftconv_ext.conv3d(x_, w_, b_, stride=(2, 1, 1), padding=(1, 1, 2), dilation=(1, 2, 1), groups=2,
                                  algo="fft")
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))

    def tfn(x_, w_, b_):
        return fftconv_ext.conv_transpose3d(x_, w_, b_, stride=(2, 1, 2), padding=1, output_padding=(1, 0, 1),
                                            groups=2, dilation=1, algo="fft")
    wt = torch.randn(2, 2, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    xt = torch.randn(1, 2, 3, 4, 3, dtype=torch.float64, requires_grad=True)
    bt = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(tfn, (xt, wt, bt))
    assert torch.autograd.gradgradcheck(tfn, (xt, wt, bt))


def test_float32_gradients_against_float64():
    x, w, b = random_case((1, 4, 10, 12, 12), (4, 1, 7, 7, 7), dtype=torch.float32, seed=4)
    xs, ws, bs = (t.requires_grad_() for t in (x, w, b))
    y = fftconv_ext.conv3d(xs, ws, bs, padding="same", groups=4, algo="fft")
    gy = torch.randn_like(y)
    got = torch.autograd.grad(y, (xs, ws, bs), gy)
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, w, b))
    ref = torch.autograd.grad(F.conv3d(xd, wd, bd, padding="same", groups=4), (xd, wd, bd), gy.double())
    assert all(rel_err(a, r) <= 1e-5 for a, r in zip(got, ref))


def test_opcheck_on_a_folded_problem():
    # conv3d is the registered 2-D ops on the folded operands: check those ops on such a problem
    x, w, b = random_case((2, 2, 5, 4, 6), (4, 1, 3, 3, 2), seed=5)
    fold = DepthFold((5, 4, 6), (3, 3, 2), [(1, 1), (1, 0), (0, 1)], (1, 2, 1), (1, 1, 2))
    xf, wf = fold.fold_input(x).requires_grad_(), fold.fold_weight(w).requires_grad_()
    args = (fold.stride2, fold.padding4, fold.dilation2, 2, False)
    torch.library.opcheck(torch.ops.fftconv.conv2d_forward.default, (xf, wf, b, *args))
    y = torch.ops.fftconv.conv2d_forward(xf, wf, b, *args)
    torch.library.opcheck(torch.ops.fftconv.conv2d_grad_input.default,
                          (torch.randn_like(y), wf, list(xf.shape), *args))


@pytest.mark.compile
def test_compile_fullgraph_and_meta():
    x, w, b = random_case((2, 4, 6, 7, 8), (4, 2, 3, 5, 3), dtype=torch.float32)
    f = torch.compile(lambda x, w, b: fftconv_ext.conv3d(x, w, b, 1, 2, 1, 2, algo="fft"), fullgraph=True,
                      backend="aot_eager")
    assert rel_err(f(x, w, b), F.conv3d(x, w, b, 1, 2, 1, 2)) <= 1e-5
    wt = torch.randn(4, 3, 3, 3, 3)
    g = torch.compile(lambda x, w: fftconv_ext.conv_transpose3d(x, w, None, 2, 1, 1, algo="fft"), fullgraph=True,
                      backend="aot_eager")
    assert rel_err(g(x, wt), F.conv_transpose3d(x, wt, None, 2, 1, 1)) <= 1e-5
    xm, wm, bm = (t.to("meta") for t in (x, w, b))
    ym = fftconv_ext.conv3d(xm, wm, bm, 1, 2, 1, 2)
    assert ym.device.type == "meta" and ym.shape == F.conv3d(x, w, b, 1, 2, 1, 2).shape
    ytm = fftconv_ext.conv_transpose3d(xm, wt.to("meta"), None, 2, 1, 1)
    assert ytm.shape == F.conv_transpose3d(x, wt, None, 2, 1, 1).shape


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
def test_low_precision(dtype, tol):
    x, w, b = random_case((1, 4, 8, 9, 10), (4, 1, 5, 5, 5), dtype=dtype, seed=6)
    y = fftconv_ext.conv3d(x, w, b, padding=2, groups=4, algo="fft")
    assert y.dtype == dtype
    assert rel_err(y, F.conv3d(x.double(), w.double(), b.double(), padding=2, groups=4)) <= tol
    wt = w  # (C_in, C_out / groups, k...) with groups = C_in
    yt = fftconv_ext.conv_transpose3d(x, wt, b, 2, 2, 1, 4, algo="fft")
    assert yt.dtype == dtype
    assert rel_err(yt, F.conv_transpose3d(x.double(), wt.double(), b.double(), 2, 2, 1, 4)) <= tol


def test_autocast_matches_torch():
    x, w, b = random_case((1, 4, 8, 9, 10), (4, 2, 5, 5, 5), dtype=torch.float32, seed=7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fftconv_ext.conv3d(x, w, b, padding=2, groups=2, algo="fft")
        ref = F.conv3d(x, w, b, padding=2, groups=2)
    assert y.dtype == ref.dtype == torch.bfloat16
    assert rel_err(y, F.conv3d(x.double(), w.double(), b.double(), padding=2, groups=2)) <= 1e-2


@pytest.mark.parametrize("kwargs,match", [
    (dict(stride=0), "stride"),
    (dict(dilation=(1, 0, 1)), "dilation"),
    (dict(padding=-1), "padding"),
    (dict(padding=(1, 1)), "padding"),
    (dict(padding="same", stride=2), "same"),
    (dict(groups=3), "groups"),
    (dict(padding_mode="mirror"), "padding_mode"),
    (dict(padding_mode="reflect", padding=6), "reflect"),
    (dict(algo="winograd"), "algo"),
])
def test_conv3d_bad_arguments_name_the_argument(kwargs, match):
    x, w, b = random_case((2, 4, 6, 7, 8), (4, 2, 3, 3, 3))
    base = dict(stride=1, padding=0, dilation=1, groups=2)
    base.update(kwargs)
    with pytest.raises(ConvArgumentError, match=match):
        fftconv_ext.conv3d(x, w, b, **base)


def test_shape_errors():
    x, w, b = random_case((2, 4, 6, 7, 8), (4, 2, 3, 3, 3))
    with pytest.raises(ConvArgumentError, match="5-D"):
        fftconv_ext.conv3d(x, w[0], b, groups=2)
    with pytest.raises(ConvArgumentError, match="channels"):
        fftconv_ext.conv3d(x[:, :2], w, b, groups=2)
    with pytest.raises(ConvArgumentError, match="larger"):
        fftconv_ext.conv3d(x[:, :, :2], w, b, groups=2)
    with pytest.raises(ConvArgumentError, match="in_channels"):
        fftconv_ext.conv_transpose3d(x[:, :3], w, None)
    with pytest.raises(ConvArgumentError, match="output_padding"):
        fftconv_ext.conv_transpose3d(x, w, None, stride=2, output_padding=2)


def test_nan_and_inf_land_where_torch_puts_them():
    x, w, b = random_case((2, 2, 6, 7, 8), (4, 2, 3, 3, 3), seed=8)
    x[0, 1, 2, 3, 4] = float("nan")
    x[1, 0, 0, 0, 0] = float("inf")
    y = fftconv_ext.conv3d(x, w, b, padding=1, algo="fft")
    ref = F.conv3d(x, w, b, padding=1)
    assert torch.equal(y.isnan(), ref.isnan()) and torch.equal(y.isinf(), ref.isinf())
    finite = ref.isfinite()
    assert rel_err(y[finite], ref[finite]) <= TOL64


# ---- transposed ------------------------------------------------------------------------

# (input shape, weight shape, stride, padding, output_padding, groups, dilation)
T_CASES = [
    ((2, 4, 4, 5, 3), (4, 3, 3, 3, 3), 1, 0, 0, 1, 1),
    ((2, 4, 4, 5, 3), (4, 3, 3, 4, 3), 2, 1, 1, 2, 1),
    ((1, 4, 3, 4, 5), (4, 2, 3, 2, 3), (2, 3, 1), (1, 0, 2), (1, 2, 0), 2, (1, 1, 2)),
    ((1, 2, 4, 4, 4), (2, 1, 3, 3, 3), 1, 1, 1, 2, 3),                 # output_padding >= stride
    ((1, 3, 4, 5, 6), (3, 1, 9, 7, 11), 1, 4, 0, 3, 1),                 # depthwise, kernel > input
    ((2, 2, 4, 4, 4), (2, 2, 4, 4, 4), 2, 1, 0, 1, 1),                  # decoder upsampling 4x4x4 s2
]


@pytest.mark.parametrize("algo", ["fft", "auto"])
@pytest.mark.parametrize("xs,ws,stride,padding,output_padding,groups,dilation", T_CASES)
def test_conv_transpose3d_matches_torch(xs, ws, stride, padding, output_padding, groups, dilation, algo):
    g = torch.Generator().manual_seed(9)
    x = torch.randn(*xs, generator=g, dtype=torch.float64)
    w = torch.randn(*ws, generator=g, dtype=torch.float64)
    b = torch.randn(ws[1] * groups, generator=g, dtype=torch.float64)
    args = (stride, padding, output_padding, groups, dilation)
    y = fftconv_ext.conv_transpose3d(x, w, b, *args, algo=algo)
    ref = F.conv_transpose3d(x, w, b, *args)
    assert y.shape == ref.shape and y.is_contiguous() and rel_err(y, ref) <= TOL64
    assert rel_err(fftconv_ext.conv_transpose3d(x[0], w, None, *args, algo=algo),
                   F.conv_transpose3d(x[0], w, None, *args)) <= TOL64


# ---- hypothesis ------------------------------------------------------------------------

@given(data=st.data())
def test_hypothesis_conv3d(data):
    _hypothesis_conv3d(data)


@given(data=st.data())
def test_hypothesis_conv_transpose3d(data):
    _hypothesis_conv_transpose3d(data)




def _draw_common(data):
    groups = data.draw(st.integers(1, 2), label="groups")
    c_in = groups * data.draw(st.integers(1, 2), label="cpg")
    opg = data.draw(st.integers(1, 2), label="opg")
    size = tuple(data.draw(st.integers(1, 7), label="size") for _ in range(3))
    kernel = tuple(data.draw(st.integers(1, 5), label="kernel") for _ in range(3))
    stride = tuple(data.draw(st.integers(1, 3), label="stride") for _ in range(3))
    dilation = tuple(data.draw(st.integers(1, 3), label="dilation") for _ in range(3))
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2 ** 16), label="seed"))
    batch = data.draw(st.integers(1, 2), label="batch")
    return groups, c_in, opg, size, kernel, stride, dilation, g, batch


def _hypothesis_conv3d(data):
    groups, c_in, opg, size, kernel, stride, dilation, g, batch = _draw_common(data)
    padding = tuple(data.draw(st.integers(0, 4), label="padding") for _ in range(3))
    mode = data.draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]), label="mode")
    if any(n + 2 * p < d * (k - 1) + 1 for n, p, k, d in zip(size, padding, kernel, dilation)):
        return  # torch refuses it too (test_shape_errors)
    if mode == "reflect" and any(p >= n for p, n in zip(padding, size)):
        return
    if mode == "circular" and any(p > n for p, n in zip(padding, size)):
        return
    x = torch.randn((batch, c_in) + size, generator=g, dtype=torch.float64)
    w = torch.randn((opg * groups, c_in // groups) + kernel, generator=g, dtype=torch.float64)
    b = torch.randn(opg * groups, generator=g, dtype=torch.float64) if data.draw(st.booleans(), label="bias") else None
    y = fftconv_ext.conv3d(x, w, b, stride, padding, dilation, groups, padding_mode=mode, algo="fft")
    ref = reference_conv(x, w, b, stride, padding, dilation, groups, padding_mode=mode)
    assert y.shape == ref.shape
    assert rel_err(y, ref) <= TOL64


def _hypothesis_conv_transpose3d(data):
    groups, c_in, opg, size, kernel, stride, dilation, g, batch = _draw_common(data)
    output_padding = tuple(data.draw(st.integers(0, max(s, d) - 1), label="output_padding")
                           for s, d in zip(stride, dilation))
    padding = tuple(data.draw(st.integers(0, 3), label="padding") for _ in range(3))
    out = [(n - 1) * s - 2 * p + d * (k - 1) + op + 1
           for n, k, p, op, s, d in zip(size, kernel, padding, output_padding, stride, dilation)]
    if min(out) <= 0:
        return
    x = torch.randn((batch, c_in) + size, generator=g, dtype=torch.float64)
    w = torch.randn((c_in, opg) + kernel, generator=g, dtype=torch.float64)
    b = torch.randn(opg * groups, generator=g, dtype=torch.float64) if data.draw(st.booleans(), label="bias") else None
    args = (stride, padding, output_padding, groups, dilation)
    y = fftconv_ext.conv_transpose3d(x, w, b, *args, algo="fft")
    ref = F.conv_transpose3d(x, w, b, *args)
    assert y.shape == ref.shape
    assert rel_err(y, ref) <= TOL64


# ---- layers and conversion -------------------------------------------------------------

def test_conv3d_layer_state_dict_repr_and_never_stale():
    torch.manual_seed(0)
    ours = FFTConv3d(4, 6, (3, 5, 5), padding=(1, 2, 2), groups=2, algo="fft").double()
    theirs = nn.Conv3d(4, 6, (3, 5, 5), padding=(1, 2, 2), groups=2).double()
    theirs.load_state_dict(ours.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 4, 6, 7, 8, dtype=torch.float64)
    assert rel_err(ours(x), theirs(x)) <= TOL64
    assert "algo='fft'" in repr(ours)
    with pytest.raises(ValueError, match="algo"):
        FFTConv3d(4, 6, 3, algo="nope")
    with torch.no_grad():
        ours.weight.data.mul_(3)
        theirs.weight.data.mul_(3)
    assert rel_err(ours(x), theirs(x)) <= TOL64


def test_conv_transpose3d_layer_output_size():
    torch.manual_seed(0)
    ours = FFTConvTranspose3d(4, 2, 4, stride=2, padding=1, algo="fft").double()
    theirs = nn.ConvTranspose3d(4, 2, 4, stride=2, padding=1).double()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 4, 3, 4, 5, dtype=torch.float64)
    assert rel_err(ours(x), theirs(x)) <= TOL64
    target = [7, 9, 11]
    assert rel_err(ours(x, output_size=target), theirs(x, output_size=target)) <= TOL64


class _UNet3d(nn.Module):
    """A small 3-D U-Net-like model: large-kernel depthwise stages (RepUX-Net-like), a
    stride-2 down and a transposed up convolution, a 3x3x3 one left alone by min_kernel_size."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv3d(2, 8, 3, padding=1)
        self.dw = nn.Conv3d(8, 8, 7, padding=3, groups=8)
        self.down = nn.Conv3d(8, 16, 2, stride=2)
        self.dw2 = nn.Conv3d(16, 16, (9, 9, 9), padding=4, groups=16, padding_mode="replicate")
        self.up = nn.ConvTranspose3d(16, 8, 8, stride=2, padding=3)
        self.head = nn.Conv3d(8, 1, 1)

    def forward(self, x):
        a = torch.relu(self.dw(self.stem(x)))
        b = torch.relu(self.dw2(self.down(a)))
        return self.head(a + self.up(b))


def test_convert_and_revert_a_3d_unet():
    torch.manual_seed(0)
    model = _UNet3d().double()
    x = torch.randn(1, 2, 8, 10, 12, dtype=torch.float64)
    ref = model(x)
    converted = fftconv_ext.convert(model, min_kernel_size=7, algo="fft")
    assert sorted(converted.fftconv_converted) == ["dw", "dw2", "up"]
    assert isinstance(converted.dw, FFTConv3d) and isinstance(converted.up, FFTConvTranspose3d)
    assert type(converted.stem) is nn.Conv3d
    assert rel_err(converted(x), ref) <= TOL64
    converted.load_state_dict(model.state_dict(), strict=True)
    xg = x.clone().requires_grad_()
    g1 = torch.autograd.grad(converted(xg).square().sum(), [xg] + list(converted.parameters()))
    xg2 = x.clone().requires_grad_()
    g2 = torch.autograd.grad(model(xg2).square().sum(), [xg2] + list(model.parameters()))
    assert all(rel_err(a, b) <= 1e-9 for a, b in zip(g1, g2))
    back = fftconv_ext.revert(converted)
    assert type(back.dw) is nn.Conv3d and type(back.up) is nn.ConvTranspose3d
    assert rel_err(back(x), ref) <= TOL64


# ---- the fold itself -------------------------------------------------------------------

def test_fold_and_unfold_are_adjoint():
    fold = DepthFold((5, 6, 7), (3, 4, 2), [(1, 2), (2, 1), (0, 1)], (2, 3, 1), (1, 2, 1))
    g = torch.Generator().manual_seed(10)
    x = torch.randn(2, 3, 5, 6, 7, generator=g, dtype=torch.float64)
    xf = torch.randn(fold.folded_input_size(2, 3), generator=g, dtype=torch.float64)
    # <fold_input(x), xf> == <x, unfold_input(xf)>
    assert torch.allclose((fold.fold_input(x) * xf).sum(), (x * fold.unfold_input(xf)).sum())
    y = torch.randn((2, 3) + fold.out_spatial, generator=g, dtype=torch.float64)
    yf = torch.randn((2, 3) + fold.folded_out, generator=g, dtype=torch.float64)
    assert torch.allclose((fold.fold_output(y) * yf).sum(), (y * fold.unfold_output(yf)).sum())
    assert fold.pitch % 6 == 0  # a whole number of height strides and dilations per slice


def test_fold_transform_length_is_close_to_the_3d_alias_free_one():
    # depthwise 21^3 'same' on 32^3: the folded axis needs about depth x pitch points
    fold = DepthFold((32, 32, 32), (21, 21, 21), [(10, 10)] * 3, (1, 1, 1), (1, 1, 1))
    n_fold, n_w = fftconv_ext._C.fft_shape([1, 1, *fold.folded_spatial], [1, 1, *fold.folded_kernel],
                                           fold.stride2, fold.padding4, fold.dilation2, 1, False)
    assert n_fold * n_w <= 1.1 * (32 + 10) ** 3


def test_flop_counts_of_a_converted_3d_model_do_not_change():
    from torch.utils.flop_counter import FlopCounterMode
    torch.manual_seed(0)
    model = _UNet3d()
    converted = fftconv_ext.convert(model, min_kernel_size=7)
    x = torch.randn(1, 2, 8, 10, 12)
    counts = []
    for m in (model, converted):
        with FlopCounterMode(display=False) as counter:
            m(x).sum().backward()
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] > 0


def test_kernel_taller_than_the_slice_pitch():
    # 'same' padding of a kernel over twice the map: taps of adjacent depths share folded rows
    x, w, b = random_case((1, 2, 3, 2, 3), (2, 1, 3, 7, 2), seed=11)
    fold = DepthFold((3, 2, 3), (3, 7, 2), [(1, 1), (3, 3), (0, 1)], (1, 1, 1), (1, 1, 1))
    assert fold.tap_pitch < 7
    y = fftconv_ext.conv3d(x, w, b, padding="same", groups=2, algo="fft")
    assert rel_err(y, F.conv3d(x, w, b, padding="same", groups=2)) <= TOL64
    xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x_, w_: fftconv_ext.conv3d(x_, w_, None, padding="same", groups=2, algo="fft"), (xs, ws))


def test_nan_and_inf_in_transposed_land_where_torch_puts_them():
    g = torch.Generator().manual_seed(12)
    x = torch.randn(1, 2, 3, 4, 5, generator=g, dtype=torch.float64)
    w = torch.randn(2, 3, 3, 3, 3, generator=g, dtype=torch.float64)
    x[0, 1, 1, 2, 3] = float("nan")
    x[0, 0, 2, 0, 0] = float("-inf")
    y = fftconv_ext.conv_transpose3d(x, w, None, 2, 1, 1, algo="fft")
    ref = F.conv_transpose3d(x, w, None, 2, 1, 1)
    assert torch.equal(y.isnan(), ref.isnan()) and torch.equal(y.isinf(), ref.isinf())
    finite = ref.isfinite()
    assert rel_err(y[finite], ref[finite]) <= TOL64


@pytest.mark.parametrize("choices", [("direct", "fft", "fft"), ("fft", "direct", "fft"), ("direct", "fft", "direct"),
                                     ("fft", "fft", "fft")])
def test_auto_training_takes_each_direction_s_choice(monkeypatch, tmp_path, choices):
    # algo='auto' in training chooses the forward, the input gradient and the weight gradient apart
    # (as for conv2d): scripted choices, gradients against F.conv3d in float64
    import fftconv_ext.functional as FXM
    monkeypatch.setattr(fftconv_ext.backends, "cache_dir", str(tmp_path))
    fftconv_ext.algo.clear_memory()
    scripted = dict(zip(("forward", "grad_input", "grad_weight"), choices))
    monkeypatch.setattr(FXM, "choose", lambda problem, x, direction, *a, **k: scripted[direction])
    calls = []

    class Counting:
        def __getattr__(self, name):
            op = getattr(torch.ops.fftconv, name)
            return lambda *a: calls.append(name) or op(*a)
    monkeypatch.setattr(fftconv_ext.problem, "_ops_ns", Counting())
    x, w, b = random_case((2, 4, 7, 8, 9), (4, 1, 5, 5, 3), seed=13)
    for kernel_taller_than_pitch in (False, True):
        wk = torch.randn(4, 1, 3, 13, 3, dtype=torch.float64) if kernel_taller_than_pitch else w
        padding = (1, 6, 1) if kernel_taller_than_pitch else (2, 2, 1)
        xs, ws, bs = (t.clone().requires_grad_() for t in (x, wk, b))
        y = fftconv_ext.conv3d(xs, ws, bs, padding=padding, groups=4)
        gy = torch.randn_like(y)
        got = torch.autograd.grad(y, (xs, ws, bs), gy)
        xd, wd, bd = (t.clone().requires_grad_() for t in (x, wk, b))
        ref = F.conv3d(xd, wd, bd, padding=padding, groups=4)
        assert rel_err(y, ref) <= TOL64
        assert all(rel_err(a, r) <= TOL64 for a, r in zip(got, torch.autograd.grad(ref, (xd, wd, bd), gy)))
    fft_grads = [c for c in choices[1:] if c == "fft"]
    assert bool(fft_grads) == any(n.startswith("conv2d_") for n in calls)
    fftconv_ext.algo.clear_memory()


def test_auto_training_gradients_of_a_nan_output_gradient_land_where_torch_puts_them(monkeypatch, tmp_path):
    import fftconv_ext.functional as FXM
    monkeypatch.setattr(fftconv_ext.backends, "cache_dir", str(tmp_path))
    fftconv_ext.algo.clear_memory()
    monkeypatch.setattr(FXM, "choose", lambda *a, **k: "fft")
    x, w, b = random_case((1, 2, 6, 7, 8), (2, 1, 3, 3, 3), seed=14)
    for call in range(3):  # the first call, and the decided calls after it
        xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = fftconv_ext.conv3d(xs, ws, b, padding=1, groups=2)
        gy = torch.randn_like(y)
        gy[0, 1, 2, 3, 4] = float("nan")
        got = torch.autograd.grad(y, (xs, ws), gy)
        xd, wd = x.clone().requires_grad_(), w.clone().requires_grad_()
        ref = torch.autograd.grad(F.conv3d(xd, wd, b, padding=1, groups=2), (xd, wd), gy)
        for a, r in zip(got, ref):
            assert torch.equal(a.isnan(), r.isnan()), call
    fftconv_ext.algo.clear_memory()


def test_wrong_dtype_device_and_types_are_python_errors():
    x, w, b = random_case((1, 2, 5, 6, 7), (2, 1, 3, 3, 3))
    for f, wt in ((fftconv_ext.conv3d, w), (fftconv_ext.conv_transpose3d, w)):
        with pytest.raises(ConvArgumentError, match="dtype"):
            f(x, wt.float(), None, groups=2)
        with pytest.raises(ConvArgumentError, match="device"):
            f(x, wt.to("meta"), None, groups=2)
        with pytest.raises(TypeError, match="Tensor"):
            f(x.tolist(), wt, None, groups=2)
    with pytest.raises(ConvArgumentError, match="bias"):
        fftconv_ext.conv3d(x, w, b[:1], groups=2)
    with pytest.raises(ConvArgumentError, match="floating"):
        fftconv_ext.conv3d(x.long(), w, None, groups=2)
