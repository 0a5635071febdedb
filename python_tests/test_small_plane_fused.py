"""The fused small-plane CUDA kernel (csrc/fftconv/small_plane_fused.h).

Its phases are host-and-device functions; `_C._small_plane_emulate` runs them on
the CPU block by block, item by item, exactly as the kernel's threads would
(shared memory starting as NaN, so a read of an unwritten slot shows). These
tests check that emulation against float64 F.conv2d on every compiled pair of
transform lengths, forward and input gradient, so the kernel's indexing and
transforms are tested without a GPU. The CUDA tests at the end run the kernel
itself (FFTCONV_CUDA_FUSED=1) where a GPU is present."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import fftconv_ext
from conftest import rel_err, requires_cuda

LENGTHS = (16, 32, 48, 64)
TOL64, TOL32 = 1e-12, 3e-6

# (H or W, kernel) whose "same"-padded alias-free length rounds up to each compiled length
AXIS_FOR_LENGTH = {16: (10, 5), 32: (20, 9), 48: (32, 31), 64: (40, 21)}


def _lengths(x_shape, w_shape, padding, dilation=(1, 1), stride=(1, 1), circular=False):
    groups = x_shape[1] // w_shape[1]
    return tuple(fftconv_ext._C._small_plane_lengths(list(x_shape), list(w_shape), list(stride), list(padding),
                                                     list(dilation), groups, circular))


def _emulate(src, w, b, x_shape, padding, dilation=(1, 1), circular=False, adjoint=False, reverse=False):
    return fftconv_ext._C._small_plane_emulate(src, w, b, list(x_shape), [1, 1], list(padding), list(dilation),
                                               x_shape[1], circular, adjoint, reverse)


def _grad_input_ref(x_shape, w, g, padding, dilation):
    """Input gradient of F.conv2d in float64 (padding as (top, bottom, left, right))."""
    x = torch.zeros(x_shape, dtype=torch.float64, requires_grad=True)
    y = F.conv2d(F.pad(x, (padding[2], padding[3], padding[0], padding[1])), w.double(), dilation=dilation,
                 groups=x_shape[1])
    (gx,) = torch.autograd.grad(y, x, g.double())
    return gx


def _check(x_shape, k, padding, dilation=(1, 1), dtype=torch.float64, bias=True, expect=None, seed=0):
    torch.manual_seed(seed)
    c = x_shape[1]
    x = torch.randn(x_shape, dtype=dtype)
    w = torch.randn(c, 1, *k, dtype=dtype)
    b = torch.randn(c, dtype=dtype) if bias else None
    lengths = _lengths(x_shape, w.shape, padding, dilation)
    assert lengths, "the fused kernel must take this problem"
    if expect is not None:
        assert lengths == expect
    tol = TOL64 if dtype == torch.float64 else TOL32
    pad = (padding[2], padding[3], padding[0], padding[1])
    ref = F.conv2d(F.pad(x.double(), pad), w.double(), None if b is None else b.double(), dilation=dilation, groups=c)
    x_before = x.clone()
    y = _emulate(x, w, b, x_shape, padding, dilation)
    assert y.dtype == dtype and y.shape == ref.shape
    assert rel_err(y, ref) < tol
    assert torch.equal(x, x_before)
    g = torch.randn(ref.shape, dtype=dtype)
    gx = _emulate(g, w, None, x_shape, padding, dilation, adjoint=True)
    assert gx.shape == x.shape
    assert rel_err(gx, _grad_input_ref(x_shape, w, g, padding, dilation)) < tol
    # Threads of a phase run in any order: reversing every phase's items must change nothing.
    assert torch.equal(_emulate(x, w, b, x_shape, padding, dilation, reverse=True), y)
    assert torch.equal(_emulate(g, w, None, x_shape, padding, dilation, adjoint=True, reverse=True), gx)


@pytest.mark.parametrize("nh", LENGTHS)
@pytest.mark.parametrize("nw", LENGTHS)
def test_every_compiled_length_pair(nh, nw):
    (h, kh), (w, kw) = AXIS_FOR_LENGTH[nh], AXIS_FOR_LENGTH[nw]
    _check((3, 2, h, w), (kh, kw), (kh // 2, kh // 2, kw // 2, kw // 2), expect=(nh, nw))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", [
    ((2, 8, 32, 32), (31, 31), (15, 15, 15, 15), (1, 1)),   # the GPU target layer, scaled down: n = 48
    ((13, 3, 16, 16), (7, 7), (3, 3, 3, 3), (1, 1)),        # 13 batch elements over blocks of several planes
    ((2, 3, 20, 27), (5, 5), (2, 2, 2, 2), (2, 2)),         # dilation, non-square plane
    ((1, 2, 12, 30), (4, 6), (1, 2, 3, 2), (1, 1)),         # even kernels, asymmetric padding
    ((2, 2, 24, 24), (9, 9), (0, 0, 0, 0), (1, 1)),         # valid: output smaller than input
    ((2, 2, 10, 10), (3, 3), (6, 6, 6, 6), (1, 1)),         # padding beyond the kernel's reach: output larger
    ((1, 1, 64, 64), (1, 1), (0, 0, 0, 0), (1, 1)),         # 1x1 at the largest length
    ((2, 1, 2, 33), (3, 17), (1, 1, 8, 8), (1, 1)),         # two-row planes
])
def test_geometries(case, dtype):
    x_shape, k, padding, dilation = case
    _check(x_shape, k, padding, dilation, dtype=dtype, bias=dtype == torch.float64)


def test_planes_per_block_do_not_change_results():
    """Blocks of 1 plane, the default, and a whole 11-element batch (a partial last block in between)."""
    torch.manual_seed(2)
    x = torch.randn(11, 3, 20, 20, dtype=torch.float64)
    w = torch.randn(3, 1, 9, 9, dtype=torch.float64)
    b = torch.randn(3, dtype=torch.float64)
    args = (w, b, list(x.shape), [1, 1], [4] * 4, [1, 1], 3, False, False, False)
    outs = [fftconv_ext._C._small_plane_emulate(x, *args, shared_bytes=kb << 10) for kb in (2, 12, 24, 200)]
    assert rel_err(outs[0], F.conv2d(x, w, b, padding=4, groups=3)) < TOL64
    for y in outs[1:]:
        assert torch.equal(y, outs[0])


def test_circular_padding_at_a_compiled_period():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 16, 32, dtype=torch.float64)
    w = torch.randn(3, 1, 5, 7, dtype=torch.float64)
    padding = (2, 2, 3, 3)
    assert _lengths(x.shape, w.shape, padding, circular=True) == (16, 32)
    ref = F.conv2d(F.pad(x, (3, 3, 2, 2), mode="circular"), w, groups=3)
    assert rel_err(_emulate(x, w, None, x.shape, padding, circular=True), ref) < TOL64
    # a period that is not a compiled length is never changed, so the kernel declines it
    assert _lengths((2, 3, 20, 32), w.shape, padding, circular=True) == ()


@pytest.mark.parametrize("x_shape,w_shape,padding,stride", [
    ((2, 4, 32, 32), (4, 1, 7, 7), (3, 3, 3, 3), (2, 2)),     # strided
    ((2, 4, 32, 32), (4, 2, 7, 7), (3, 3, 3, 3), (1, 1)),     # grouped, not depthwise
    ((2, 4, 32, 32), (8, 1, 7, 7), (3, 3, 3, 3), (1, 1)),     # depthwise with a channel multiplier
    ((2, 4, 56, 56), (4, 1, 31, 31), (15, 15, 15, 15), (1, 1)),  # alias-free length 71 > 64
    ((2, 4, 1, 64), (4, 1, 1, 9), (0, 0, 4, 4), (1, 1)),     # one-row planes (1-D): no H transform to fuse
])
def test_declines(x_shape, w_shape, padding, stride):
    assert _lengths(x_shape, w_shape, padding, stride=stride) == ()
    with pytest.raises(RuntimeError, match="does not take"):
        x = torch.randn(x_shape, dtype=torch.float64)
        fftconv_ext._C._small_plane_emulate(x, torch.randn(w_shape, dtype=torch.float64), None, list(x_shape),
                                            list(stride), list(padding), [1, 1], x_shape[1] // w_shape[1], False,
                                            False)


@given(st.integers(1, 5), st.integers(1, 3), st.integers(1, 64), st.integers(1, 64), st.integers(1, 31),
       st.integers(1, 31), st.integers(0, 16), st.integers(0, 16), st.integers(1, 3), st.integers(0, 1000))
def test_search(n, c, h, w, kh, kw, ph, pw, d, seed):
    """Random depthwise problems; those the kernel takes must match F.conv2d."""
    padding = (ph, ph // 2, pw, pw // 2)
    if (h + ph + ph // 2 - d * (kh - 1) - 1 < 0) or (w + pw + pw // 2 - d * (kw - 1) - 1 < 0):
        return  # kernel larger than the padded input
    if not _lengths((n, c, h, w), (c, 1, kh, kw), padding, (d, d)):
        return
    _check((n, c, h, w), (kh, kw), padding, (d, d), seed=seed)


# ---- the kernel itself, on a GPU --------------------------------------------


@requires_cuda
@pytest.mark.parametrize("nh", LENGTHS)
@pytest.mark.parametrize("nw", LENGTHS)
def test_cuda_kernel_every_length_pair(nh, nw, monkeypatch):
    monkeypatch.setenv("FFTCONV_CUDA_FUSED", "1")
    (h, kh), (w, kw) = AXIS_FOR_LENGTH[nh], AXIS_FOR_LENGTH[nw]
    torch.manual_seed(0)
    x = torch.randn(9, 5, h, w, device="cuda", requires_grad=True)
    wt = torch.randn(5, 1, kh, kw, device="cuda", requires_grad=True)
    b = torch.randn(5, device="cuda", requires_grad=True)
    pad = (kh // 2, kw // 2)
    assert _lengths(x.shape, wt.shape, (pad[0], pad[0], pad[1], pad[1])) == (nh, nw)
    y = fftconv_ext.conv2d(x, wt, b, padding=pad, groups=5, algo="fft")
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, wt, b))
    ref = F.conv2d(xd, wd, bd, padding=pad, groups=5)
    assert rel_err(y, ref) < TOL32
    g = torch.randn_like(y)
    gx, gw, gb = torch.autograd.grad(y, (x, wt, b), g)
    rx, rw, rb = torch.autograd.grad(ref, (xd, wd, bd), g.double())
    assert rel_err(gx, rx) < TOL32 and rel_err(gw, rw) < 1e-5 and rel_err(gb, rb) < 1e-6


@requires_cuda
def test_cuda_kernel_matches_cufft_pipeline_and_leaves_inputs(monkeypatch):
    torch.manual_seed(0)
    x = torch.randn(32, 16, 32, 32, device="cuda")
    w = torch.randn(16, 1, 31, 31, device="cuda")
    b = torch.randn(16, device="cuda")
    x0, w0 = x.clone(), w.clone()
    monkeypatch.setenv("FFTCONV_CUDA_FUSED", "0")
    off = fftconv_ext.conv2d(x, w, b, padding=15, groups=16, algo="fft")
    monkeypatch.setenv("FFTCONV_CUDA_FUSED", "1")
    on = fftconv_ext.conv2d(x, w, b, padding=15, groups=16, algo="fft")
    torch.cuda.synchronize()
    assert torch.equal(x, x0) and torch.equal(w, w0)
    ref = F.conv2d(x.double(), w.double(), b.double(), padding=15, groups=16)
    assert rel_err(on, ref) < TOL32 and rel_err(off, ref) < TOL32


@requires_cuda
def test_cuda_kernel_float64_keeps_the_cufft_pipeline(monkeypatch):
    monkeypatch.setenv("FFTCONV_CUDA_FUSED", "1")
    x = torch.randn(2, 3, 20, 20, device="cuda", dtype=torch.float64)
    w = torch.randn(3, 1, 9, 9, device="cuda", dtype=torch.float64)
    y = fftconv_ext.conv2d(x, w, padding=4, groups=3, algo="fft")
    assert rel_err(y, F.conv2d(x, w, padding=4, groups=3)) < TOL64
