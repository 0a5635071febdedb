"""Gradients (gradcheck, against F.conv2d), opcheck of every registered op, torch.compile."""
import pytest
import torch
import torch.nn.functional as F

import fftconv_ext
from conftest import rel_err, fft_conv1d, fft_conv2d

CASES = [
    # (c_in, c_out, groups, size, kernel, stride, padding, dilation, mode)
    (3, 3, 3, (9, 10), (5, 4), 1, "same", 1, "zeros"),          # depthwise
    (4, 6, 2, (9, 8), (3, 3), 1, 1, 1, "zeros"),                # grouped
    (2, 3, 1, (8, 9), (3, 4), 1, (1, 2), 1, "zeros"),           # dense
    (2, 2, 1, (11, 10), (3, 3), (2, 3), 1, 1, "zeros"),         # stride
    (2, 4, 2, (11, 12), (3, 2), 1, (2, 1), (2, 3), "zeros"),    # dilation
    (2, 2, 2, (10, 9), (3, 3), (2, 2), 2, (1, 2), "zeros"),     # stride + dilation
    (2, 2, 1, (6, 5), (9, 7), 1, (4, 3), 1, "zeros"),           # kernel > map
    (2, 2, 2, (7, 8), (3, 5), 1, (1, 2), 1, "circular"),
    (2, 2, 1, (7, 8), (3, 3), 1, 1, 1, "reflect"),
]


def _tensors(c_in, c_out, groups, size, kernel, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c_in, *size, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(c_out, c_in // groups, *kernel, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(c_out, generator=g, dtype=torch.float64, requires_grad=True)
    return x, w, b


@pytest.mark.parametrize("c_in,c_out,groups,size,kernel,stride,padding,dilation,mode", CASES)
def test_gradcheck_conv2d(c_in, c_out, groups, size, kernel, stride, padding, dilation, mode):
    x, w, b = _tensors(c_in, c_out, groups, size, kernel)

    def f(x, w, b):
        return fft_conv2d(x, w, b, stride, padding, dilation, groups, padding_mode=mode)

    assert torch.autograd.gradcheck(f, (x, w, b))


@pytest.mark.parametrize("c_in,c_out,groups,size,kernel,stride,padding,dilation,mode", CASES[:6])
def test_gradients_match_torch(c_in, c_out, groups, size, kernel, stride, padding, dilation, mode):
    x, w, b = _tensors(c_in, c_out, groups, size, kernel, seed=1)
    y = fft_conv2d(x, w, b, stride, padding, dilation, groups)
    g = torch.randn_like(y)
    ours = torch.autograd.grad(y, (x, w, b), g)
    ref = torch.autograd.grad(F.conv2d(x, w, b, stride, padding, dilation, groups), (x, w, b), g)
    for a, r in zip(ours, ref):
        assert rel_err(a, r) <= 1e-10


def test_gradgradcheck():
    x, w, b = _tensors(4, 4, 2, (7, 8), (3, 3))
    assert torch.autograd.gradgradcheck(
        lambda x, w, b: fft_conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2), groups=2),
        (x, w, b))


def test_gradcheck_conv1d():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 17, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2, 6, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: fft_conv1d(x, w, b, stride=2, padding=3, dilation=2, groups=2), (x, w, b))


def test_only_some_inputs_require_grad():
    x, w, b = _tensors(2, 2, 2, (8, 8), (3, 3))
    y = fft_conv2d(x.detach(), w, None, padding=1, groups=2)
    (gw,) = torch.autograd.grad(y.sum(), (w,))
    ref = torch.autograd.grad(F.conv2d(x.detach(), w, None, padding=1, groups=2).sum(), (w,))[0]
    assert rel_err(gw, ref) <= 1e-10


def _op_samples():
    samples = []
    for c_in, c_out, groups, size, kernel, stride, padding, dilation, _ in CASES[:6]:
        x, w, b = _tensors(c_in, c_out, groups, size, kernel)
        s2 = list(stride) if isinstance(stride, tuple) else [stride] * 2
        d2 = list(dilation) if isinstance(dilation, tuple) else [dilation] * 2
        if padding == "same":
            p4 = []
            for k, d in zip(kernel, d2):
                t = d * (k - 1)
                p4 += [t // 2, t - t // 2]
        else:
            pp = padding if isinstance(padding, tuple) else (padding, padding)
            p4 = [pp[0], pp[0], pp[1], pp[1]]
        samples.append((x, w, b, s2, p4, d2, groups))
    return samples


@pytest.mark.parametrize("idx", range(6))
def test_opcheck_all_ops(idx):
    x, w, b, s2, p4, d2, groups = _op_samples()[idx]
    ops = torch.ops.fftconv
    y = ops.conv2d_forward(x.detach(), w.detach(), b.detach(), s2, p4, d2, groups, False)
    g = torch.randn_like(y).requires_grad_()
    torch.library.opcheck(ops.conv2d_forward, (x, w, b, s2, p4, d2, groups, False))
    torch.library.opcheck(ops.conv2d_forward, (x, w, None, s2, p4, d2, groups, False))
    torch.library.opcheck(ops.conv2d_grad_input, (g, w, list(x.shape), s2, p4, d2, groups, False))
    torch.library.opcheck(ops.conv2d_grad_weight, (g, x, list(w.shape), s2, p4, d2, groups, False))


def test_opcheck_circular():
    x, w, b = _tensors(2, 2, 2, (7, 8), (3, 5))
    torch.library.opcheck(torch.ops.fftconv.conv2d_forward, (x, w, b, [1, 1], [1, 1, 2, 2], [1, 1], 2, True))


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(8, 1, 9, 9))
        self.b = torch.nn.Parameter(torch.randn(8))
        self.norm = torch.nn.GroupNorm(2, 8)

    def forward(self, x):
        return x + self.norm(fft_conv2d(x, self.w, self.b, padding="same", groups=8))


@pytest.mark.compile
def test_torch_compile_fullgraph_matches_eager():
    torch.manual_seed(0)
    m = _Block()
    x = torch.randn(2, 8, 20, 20, requires_grad=True)
    eager = m(x)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")(x)
    assert torch.allclose(eager, compiled, rtol=1e-5, atol=1e-5)
    g_eager = torch.autograd.grad(eager.sum(), x)[0]
    g_comp = torch.autograd.grad(compiled.sum(), x)[0]
    assert torch.allclose(g_eager, g_comp, rtol=1e-5, atol=1e-5)


BACKWARD_CASES = [  # (input, weight, stride, padding (t, b, l, r), dilation, groups)
    ((2, 4, 17, 18), (4, 1, 5, 4), [1, 1], [2, 2, 1, 2], [1, 1], 4),
    ((2, 6, 19, 23), (4, 3, 5, 3), [2, 3], [2, 2, 1, 1], [1, 2], 2),
    ((3, 8, 12, 12), (8, 1, 7, 7), [1, 1], [3, 3, 3, 3], [1, 1], 8),
    ((4, 64, 24, 24), (64, 1, 9, 9), [1, 1], [4, 4, 4, 4], [1, 1], 64),   # large enough for the joint pass
    ((2, 96, 20, 20), (96, 2, 7, 7), [1, 1], [3, 3, 3, 3], [1, 1], 48),  # grouped, joint pass
    ((0, 4, 10, 10), (4, 1, 3, 3), [1, 1], [1, 1, 1, 1], [1, 1], 4),     # empty batch
    ((4, 8, 48, 48), (8, 8, 5, 5), [1, 1], [2, 2, 2, 2], [1, 1], 1),     # dense, one group: two pipelines
]


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", BACKWARD_CASES)
def test_joint_backward_equals_the_two_gradient_ops(xs, ws, stride, padding, dilation, groups):
    ops = torch.ops.fftconv
    g = torch.Generator().manual_seed(3)
    x = torch.randn(*xs, generator=g, dtype=torch.float64)
    w = torch.randn(*ws, generator=g, dtype=torch.float64)
    args = (stride, padding, dilation, groups, False)
    gy = torch.randn(ops.conv2d_forward(x, w, None, *args).shape, generator=g, dtype=torch.float64)
    gx, gw = ops.conv2d_backward(gy, x, w, *args)
    # against F.conv2d's own gradients in float64 (independent of our two other ops)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(xr, [padding[2], padding[3], padding[0], padding[1]]),
                                     wr, None, stride, 0, dilation, groups)
    ref.backward(gy)
    assert gx.shape == x.shape and gw.shape == w.shape
    if x.numel():
        assert rel_err(gx, xr.grad) <= 1e-10 and rel_err(gw, wr.grad) <= 1e-10
    else:
        assert torch.equal(gw, torch.zeros_like(w))


def test_joint_backward_opcheck_and_double_backward():
    ops = torch.ops.fftconv
    x = torch.randn(2, 4, 9, 10, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(2, 4, 9, 9, dtype=torch.float64, requires_grad=True)
    args = ([1, 1], [1, 1, 1, 1], [1, 1], 2, False)
    torch.library.opcheck(ops.conv2d_backward.default, (gy, x, w, *args))
    assert torch.autograd.gradcheck(lambda a, b, c: ops.conv2d_backward(a, b, c, *args), (gy, x, w))


def test_joint_backward_non_finite_falls_back():
    ops = torch.ops.fftconv
    x = torch.randn(4, 64, 16, 16, dtype=torch.float64)
    w = torch.randn(64, 1, 5, 5, dtype=torch.float64)
    gy = torch.randn(4, 64, 16, 16, dtype=torch.float64)
    x[1, 3, 4, 5] = float("nan")
    args = ([1, 1], [2, 2, 2, 2], [1, 1], 64, False)
    gx, gw = ops.conv2d_backward(gy, x, w, *args)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    torch.nn.functional.conv2d(xr, wr, None, 1, 2, 1, 64).backward(gy)
    torch.testing.assert_close(gx, xr.grad, equal_nan=True, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gw, wr.grad, equal_nan=True, rtol=1e-10, atol=1e-10)


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _backward_case(data):
    """Gradients of conv2d (the joint backward op, or one of the two gradient ops)
    against autograd through F.conv2d in float64."""
    groups = data.draw(st.sampled_from([1, 2, 3, 4]), label="groups")
    cpg, opg = data.draw(st.integers(1, 2), label="cpg"), data.draw(st.integers(1, 2), label="opg")
    h, w_ = data.draw(st.integers(1, 20), label="h"), data.draw(st.integers(1, 20), label="w")
    kh, kw = data.draw(st.integers(1, 9), label="kh"), data.draw(st.integers(1, 9), label="kw")
    sh, sw = data.draw(st.integers(1, 3), label="sh"), data.draw(st.integers(1, 3), label="sw")
    dh, dw = data.draw(st.integers(1, 2), label="dh"), data.draw(st.integers(1, 2), label="dw")
    ph, pw = data.draw(st.integers(0, 6), label="ph"), data.draw(st.integers(0, 6), label="pw")
    mode = data.draw(st.sampled_from(["zeros", "zeros", "circular"]), label="mode")
    wants = data.draw(st.sampled_from(["both", "input", "weight"]), label="wants")
    n = data.draw(st.integers(1, 3), label="n")
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    x = torch.randn(n, groups * cpg, h, w_, generator=g, dtype=torch.float64)
    w = torch.randn(groups * opg, cpg, kh, kw, generator=g, dtype=torch.float64)
    b = torch.randn(groups * opg, generator=g, dtype=torch.float64)
    m = torch.nn.Conv2d(groups * cpg, groups * opg, (kh, kw), (sh, sw), (ph, pw), (dh, dw), groups,
                        padding_mode=mode).double()
    try:
        with torch.no_grad():
            m.weight.copy_(w)
            m.bias.copy_(b)
        out_shape = m(x).shape
    except RuntimeError:
        return  # not a valid convolution: covered by the forward fuzzing
    gy = torch.randn(out_shape, generator=g, dtype=torch.float64)
    xa, wa = x.clone().requires_grad_(wants != "weight"), w.clone().requires_grad_(wants != "input")
    y = fft_conv2d(xa, wa, b, (sh, sw), (ph, pw), (dh, dw), groups, padding_mode=mode)
    y.backward(gy)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    m.weight = torch.nn.Parameter(wr)
    m(xr).backward(gy)
    if wants != "weight":
        assert rel_err(xa.grad, xr.grad) <= 1e-10
    if wants != "input":
        assert rel_err(wa.grad, m.weight.grad) <= 1e-10


@given(data=st.data())
def test_hypothesis_gradients(data):
    _backward_case(data)

