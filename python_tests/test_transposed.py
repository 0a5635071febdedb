"""conv_transpose1d / conv_transpose2d and their layers against torch.nn.functional in
float64: parity over stride, dilation, groups, output_padding, padding and kernels larger
than the input; gradients (gradcheck, gradgradcheck); compile; low precision; errors;
FFTConvTranspose*d and convert()/revert() on a small decoder."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import fftconv_ext
from fftconv_ext import ConvArgumentError
from fftconv_ext.nn import FFTConvTranspose1d, FFTConvTranspose2d
from conftest import TOL64, random_case, rel_err

# (input shape, weight shape, stride, padding, output_padding, groups, dilation)
CASES_2D = [
    ((2, 4, 9, 10), (4, 3, 5, 4), 1, 0, 0, 1, 1),
    ((2, 4, 9, 10), (4, 3, 5, 4), 2, 1, 1, 2, 1),
    ((2, 4, 9, 10), (4, 2, 3, 3), (2, 3), (1, 2), (1, 0), 2, (2, 1)),
    ((2, 4, 7, 7), (4, 1, 3, 3), 1, 1, 1, 4, 3),           # output_padding >= stride (dilation allows it)
    ((1, 6, 5, 6), (6, 1, 13, 11), 1, 6, 0, 6, 1),         # depthwise, kernel larger than the input
    ((2, 8, 16, 16), (8, 1, 31, 31), 1, 15, 0, 8, 1),      # depthwise large kernel, 'same'-like
    ((2, 4, 8, 8), (4, 2, 4, 4), 2, 1, 0, 1, 1),           # decoder upsampling 4x4 stride 2
    ((2, 3, 6, 7), (3, 2, 5, 3), (3, 2), (4, 1), (2, 1), 1, (1, 2)),  # padding beyond the kernel reach
]


def _case(xs, ws, groups, dtype=torch.float64, seed=0):
    return random_case(xs, ws, bias_channels=ws[1] * groups, dtype=dtype, seed=seed)  # (c_in, c_out / groups, ...)


@pytest.mark.parametrize("algo", ["fft", "auto"])
@pytest.mark.parametrize("xs,ws,stride,padding,output_padding,groups,dilation", CASES_2D)
def test_conv_transpose2d_matches_torch(xs, ws, stride, padding, output_padding, groups, dilation, algo):
    x, w, b = _case(xs, ws, groups)
    y = fftconv_ext.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation, algo=algo)
    ref = F.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation)
    assert y.shape == ref.shape and y.dtype == ref.dtype
    assert rel_err(y, ref) <= TOL64
    # unbatched and without bias
    y1 = fftconv_ext.conv_transpose2d(x[0], w, None, stride, padding, output_padding, groups, dilation, algo=algo)
    assert rel_err(y1, F.conv_transpose2d(x[0], w, None, stride, padding, output_padding, groups, dilation)) <= TOL64


@pytest.mark.parametrize("xs,ws,stride,padding,output_padding,groups,dilation", CASES_2D)
def test_conv_transpose1d_matches_torch(xs, ws, stride, padding, output_padding, groups, dilation):
    pick = lambda v: v[1] if isinstance(v, tuple) else v  # noqa: E731  (the W axis of the 2-D case)
    x, w, b = _case(xs, ws, groups)
    x, w = x[:, :, 0], w[:, :, 0]
    args = (pick(stride), pick(padding), pick(output_padding), groups, pick(dilation))
    y = fftconv_ext.conv_transpose1d(x, w, b, *args, algo="fft")
    ref = F.conv_transpose1d(x, w, b, *args)
    assert y.shape == ref.shape and rel_err(y, ref) <= TOL64
    assert rel_err(fftconv_ext.conv_transpose1d(x[-1], w, b, *args, algo="fft"),
                   F.conv_transpose1d(x[-1], w, b, *args)) <= TOL64


def test_empty_batch_channels_last_and_inputs_untouched():
    x, w, b = _case((2, 4, 9, 10), (4, 3, 5, 4), 2)
    copies = [t.clone() for t in (x, w, b)]
    xcl = x.contiguous(memory_format=torch.channels_last)
    y = fftconv_ext.conv_transpose2d(xcl, w, b, 2, 1, 1, 2, algo="fft")
    assert rel_err(y, F.conv_transpose2d(x, w, b, 2, 1, 1, 2)) <= TOL64
    for t, c in zip((x, w, b), copies):
        assert torch.equal(t, c)
    empty = fftconv_ext.conv_transpose2d(x[:0], w, b, 2, 1, 1, 2, algo="fft")
    assert empty.shape == F.conv_transpose2d(x[:0], w, b, 2, 1, 1, 2).shape


def test_gradcheck_and_gradgradcheck():
    x, w, b = _case((2, 4, 5, 6), (4, 2, 3, 4), 2)
    x, w, b = (t.requires_grad_() for t in (x, w, b))
    for dim in (1, 2):
        f = fftconv_ext.conv_transpose2d if dim == 2 else fftconv_ext.conv_transpose1d
        xi, wi = (x, w) if dim == 2 else (x[:, :, 0].detach().requires_grad_(), w[:, :, 0].detach().requires_grad_())

        def fn(x_, w_, b_):
            return f(x_, w_, b_, stride=2, padding=1, output_padding=1, groups=2, dilation=1, algo="fft")
        assert torch.autograd.gradcheck(fn, (xi, wi, b))
        assert torch.autograd.gradgradcheck(fn, (xi, wi, b))


def test_float32_gradients_against_float64():
    x, w, b = _case((2, 8, 12, 12), (8, 1, 13, 13), 8, dtype=torch.float32)
    gy = torch.randn(2, 8, 24, 24)
    xs, ws, bs = (t.requires_grad_() for t in (x, w, b))
    got = torch.autograd.grad(fftconv_ext.conv_transpose2d(xs, ws, bs, 2, 6, 1, 8, algo="fft"), (xs, ws, bs), gy)
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, w, b))
    ref = torch.autograd.grad(F.conv_transpose2d(xd, wd, bd, 2, 6, 1, 8), (xd, wd, bd), gy.double())
    assert all(rel_err(a, r) <= 1e-5 for a, r in zip(got, ref))


@pytest.mark.compile
def test_compile_fullgraph_and_meta():
    x, w, b = _case((2, 4, 9, 10), (4, 3, 5, 4), 1, dtype=torch.float32)
    f = torch.compile(lambda x, w, b: fftconv_ext.conv_transpose2d(x, w, b, 2, 1, 1, algo="fft"), fullgraph=True,
                      backend="aot_eager")
    assert rel_err(f(x, w, b), F.conv_transpose2d(x, w, b, 2, 1, 1)) <= 1e-5
    xm, wm, bm = (t.to("meta") for t in (x, w, b))
    ym = fftconv_ext.conv_transpose2d(xm, wm, bm, 2, 1, 1)
    assert ym.device.type == "meta" and ym.shape == F.conv_transpose2d(x, w, b, 2, 1, 1).shape


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
def test_low_precision(dtype, tol):
    x, w, b = _case((2, 4, 10, 10), (4, 1, 9, 9), 4, dtype=dtype)
    y = fftconv_ext.conv_transpose2d(x, w, b, 1, 4, 0, 4, algo="fft")
    assert y.dtype == dtype
    assert rel_err(y, F.conv_transpose2d(x.double(), w.double(), b.double(), 1, 4, 0, 4)) <= tol


def test_autocast_matches_torch():
    x, w, b = _case((2, 4, 10, 10), (4, 2, 7, 7), 2, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fftconv_ext.conv_transpose2d(x, w, b, 2, 3, 1, 2, algo="fft")
        ref = F.conv_transpose2d(x, w, b, 2, 3, 1, 2)
    assert y.dtype == ref.dtype == torch.bfloat16
    assert rel_err(y, F.conv_transpose2d(x.double(), w.double(), b.double(), 2, 3, 1, 2)) <= 1e-2


@pytest.mark.parametrize("kwargs,match", [
    (dict(output_padding=2, stride=2), "output_padding"),
    (dict(padding="same"), "padding"),
    (dict(stride=0), "stride"),
    (dict(dilation=(1, 0)), "dilation"),
    (dict(padding=-1), "padding"),
    (dict(groups=3), "groups"),
    (dict(padding=20), "output size"),
    (dict(algo="winograd"), "algo"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    x, w, b = _case((2, 6, 9, 10), (6, 2, 5, 4), 2)
    base = dict(stride=1, padding=0, output_padding=0, groups=2, dilation=1)
    base.update(kwargs)
    with pytest.raises(ConvArgumentError, match=match):
        fftconv_ext.conv_transpose2d(x, w, b, **base)


def test_shape_errors():
    x, w, b = _case((2, 6, 9, 10), (6, 2, 5, 4), 2)
    with pytest.raises(ConvArgumentError, match="in_channels"):
        fftconv_ext.conv_transpose2d(x[:, :4], w, None, groups=2)
    with pytest.raises(ConvArgumentError, match="bias"):
        fftconv_ext.conv_transpose2d(x, w, b[:3], groups=2)
    with pytest.raises(ConvArgumentError, match="weight dtype"):
        fftconv_ext.conv_transpose2d(x, w.float(), None, groups=2)
    with pytest.raises(ConvArgumentError, match="4-D"):
        fftconv_ext.conv_transpose2d(x, w[0], None, groups=2)


@given(data=st.data())
def test_hypothesis_conv_transpose2d(data):
    _hypothesis_case(data, 2)


@given(data=st.data())
def test_hypothesis_conv_transpose1d(data):
    _hypothesis_case(data, 1)



def _hypothesis_case(data, dim):
    groups = data.draw(st.integers(1, 3), label="groups")
    c_in = groups * data.draw(st.integers(1, 2), label="cpg")
    opg = data.draw(st.integers(1, 2), label="opg")
    size = tuple(data.draw(st.integers(1, 9), label="size") for _ in range(dim))
    kernel = tuple(data.draw(st.integers(1, 7), label="kernel") for _ in range(dim))
    stride = tuple(data.draw(st.integers(1, 3), label="stride") for _ in range(dim))
    dilation = tuple(data.draw(st.integers(1, 3), label="dilation") for _ in range(dim))
    output_padding = tuple(data.draw(st.integers(0, max(s, d) - 1), label="output_padding")
                           for s, d in zip(stride, dilation))
    padding = tuple(data.draw(st.integers(0, 4), label="padding") for _ in range(dim))
    out = [(n - 1) * s - 2 * p + d * (k - 1) + op + 1
           for n, k, p, op, s, d in zip(size, kernel, padding, output_padding, stride, dilation)]
    if min(out) <= 0:
        return  # torch refuses it too (test_bad_arguments_name_the_argument)
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2 ** 16), label="seed"))
    x = torch.randn((data.draw(st.integers(1, 2), label="batch"), c_in) + size, generator=g, dtype=torch.float64)
    w = torch.randn((c_in, opg) + kernel, generator=g, dtype=torch.float64)
    b = torch.randn(opg * groups, generator=g, dtype=torch.float64) if data.draw(st.booleans(), label="bias") else None
    f, ref_f = (fftconv_ext.conv_transpose2d, F.conv_transpose2d) if dim == 2 else \
        (fftconv_ext.conv_transpose1d, F.conv_transpose1d)
    y = f(x, w, b, stride, padding, output_padding, groups, dilation, algo="fft")
    ref = ref_f(x, w, b, stride, padding, output_padding, groups, dilation)
    assert y.shape == ref.shape
    assert rel_err(y, ref) <= TOL64


# ---- layers and conversion -------------------------------------------------------------

@pytest.mark.parametrize("cls,torch_cls,shape", [(FFTConvTranspose2d, nn.ConvTranspose2d, (2, 8, 9, 9)),
                                                  (FFTConvTranspose1d, nn.ConvTranspose1d, (2, 8, 20))])
def test_layer_state_dict_output_size_and_repr(cls, torch_cls, shape):
    torch.manual_seed(0)
    ours = cls(8, 4, 5, stride=2, padding=2, groups=2, algo="fft").double()
    theirs = torch_cls(8, 4, 5, stride=2, padding=2, groups=2).double()
    theirs.load_state_dict(ours.state_dict())
    ours.load_state_dict(theirs.state_dict())  # both ways
    x = torch.randn(*shape, dtype=torch.float64)
    assert rel_err(ours(x), theirs(x)) <= TOL64
    target = [2 * n for n in shape[2:]]  # output_size= picks the output_padding
    assert ours(x, output_size=target).shape == theirs(x, output_size=target).shape
    assert rel_err(ours(x, output_size=target), theirs(x, output_size=target)) <= TOL64
    assert "algo='fft'" in repr(ours)
    with pytest.raises(ValueError, match="algo"):
        cls(8, 4, 5, algo="nope")
    # the spectrum cache is never stale: an edit through .data changes the output
    ours(x)
    ours.weight.data.mul_(2)
    theirs.weight.data.mul_(2)
    assert rel_err(ours(x), theirs(x)) <= TOL64


class _Decoder(nn.Module):
    """A small U-Net-like decoder: a large-kernel depthwise transposed layer, a stride-2
    upsampling one, a 1-D head and a 3x3 conv (left alone by min_kernel_size)."""

    def __init__(self):
        super().__init__()
        self.big = nn.ConvTranspose2d(8, 8, 13, padding=6, groups=8)
        self.up = nn.ConvTranspose2d(8, 4, 8, stride=2, padding=3)
        self.small = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.ConvTranspose1d(4, 2, 9, padding=4)

    def forward(self, x):
        y = self.small(self.up(torch.relu(self.big(x))))
        return self.head(y.mean(2))


def test_convert_and_revert_a_decoder():
    torch.manual_seed(0)
    model = _Decoder().double()
    x = torch.randn(2, 8, 10, 10, dtype=torch.float64)
    ref = model(x)
    converted = fftconv_ext.convert(model, min_kernel_size=7, algo="fft")
    assert isinstance(converted.big, FFTConvTranspose2d) and isinstance(converted.up, FFTConvTranspose2d)
    assert isinstance(converted.head, FFTConvTranspose1d) and type(converted.small) is nn.Conv2d
    assert sorted(converted.fftconv_converted) == ["big", "head", "up"]
    assert rel_err(converted(x), ref) <= TOL64
    converted.load_state_dict(model.state_dict(), strict=True)
    back = fftconv_ext.revert(converted)
    assert type(back.big) is nn.ConvTranspose2d and type(back.head) is nn.ConvTranspose1d
    assert rel_err(back(x), ref) <= TOL64
    # gradients through the converted model match the original's
    xg = x.clone().requires_grad_()
    g1 = torch.autograd.grad(converted(xg).square().sum(), [xg] + list(converted.parameters()))
    xg2 = x.clone().requires_grad_()
    g2 = torch.autograd.grad(model(xg2).square().sum(), [xg2] + list(model.parameters()))
    assert all(rel_err(a, b) <= 1e-9 for a, b in zip(g1, g2))


def test_repeated_calls_take_the_decided_path_with_the_same_results(monkeypatch, tmp_path):
    # a call seen before skips the checks and the choice (as conv2d's decided calls do)
    monkeypatch.setattr(fftconv_ext.backends, "cache_dir", str(tmp_path))
    fftconv_ext.algo.clear_memory()
    x, w, b = _case((2, 4, 9, 10), (4, 3, 5, 4), 2)
    chosen = []
    real_choose = fftconv_ext.transposed.choose
    monkeypatch.setattr(fftconv_ext.transposed, "choose", lambda *a, **k: chosen.append(1) or real_choose(*a, **k))
    ref = F.conv_transpose2d(x, w, b, 2, 1, 1, 2)
    for algo in ("auto", "fft", "direct"):
        for unbatched in (False, True):
            xi = x[0] if unbatched else x
            r = ref[0] if unbatched else ref
            for _ in range(3):
                assert rel_err(fftconv_ext.conv_transpose2d(xi, w, b, 2, 1, 1, 2, algo=algo), r) <= TOL64
    assert len(chosen) == 2  # auto chose once per input shape; later calls were decided
    fftconv_ext.algo.clear_memory()


def test_nan_and_inf_land_where_torch_puts_them():
    x, w, b = _case((2, 4, 9, 10), (4, 3, 5, 4), 2)
    x[0, 1, 3, 4] = float("nan")
    x[1, 2, 0, 0] = float("inf")
    y = fftconv_ext.conv_transpose2d(x, w, b, 2, 1, 1, 2, algo="fft")
    ref = F.conv_transpose2d(x, w, b, 2, 1, 1, 2)
    assert torch.equal(y.isnan(), ref.isnan()) and torch.equal(y.isinf(), ref.isinf())
    finite = ref.isfinite()
    assert rel_err(y[finite], ref[finite]) <= TOL64
    w2 = w.clone()
    w2[0, 0, 0, 0] = float("nan")
    x2 = torch.randn(2, 4, 9, 10, dtype=torch.float64)
    assert torch.equal(fftconv_ext.conv_transpose2d(x2, w2, b, 2, 1, 1, 2, algo="fft").isnan(),
                       F.conv_transpose2d(x2, w2, b, 2, 1, 1, 2).isnan())
