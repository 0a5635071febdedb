"""The small-plane CUDA kernel (csrc/fftconv/small_plane/forward.h).

Its phases are host-and-device functions; `_testing.small_plane_emulate` runs them on
the CPU block by block, item by item, exactly as the kernel's threads would
(shared memory starting as NaN, so a read of an unwritten slot shows). These
tests check that emulation against float64 F.conv2d on every compiled pair of
transform lengths, forward and input gradient, so the kernel's indexing and
transforms are tested without a GPU. The CUDA tests at the end run the kernel
itself (backends.cuda_small_plane = True) where a GPU is present."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import fftconv_ext
from conftest import TOL32, TOL64_SMALL_PLANES, rel_err, requires_cuda

LENGTHS = (16, 32, 48, 64)

# (H or W, kernel) whose "same"-padded alias-free length rounds up to each compiled length
AXIS_FOR_LENGTH = {16: (10, 5), 32: (20, 9), 48: (32, 31), 64: (40, 21)}


def _lengths(x_shape, w_shape, padding, dilation=(1, 1), stride=(1, 1), circular=False):
    groups = x_shape[1] // w_shape[1]
    return tuple(fftconv_ext._testing.small_plane_lengths(list(x_shape), list(w_shape), list(stride), list(padding),
                                                     list(dilation), groups, circular))


def _emulate(src, w, b, x_shape, padding, dilation=(1, 1), circular=False, adjoint=False, reverse=False):
    return fftconv_ext._testing.small_plane_emulate(src, w, b, list(x_shape), [1, 1], list(padding), list(dilation),
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
    assert lengths, "the small-plane kernel must take this problem"
    if expect is not None:
        assert lengths == expect
    tol = TOL64_SMALL_PLANES if dtype == torch.float64 else TOL32
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
    outs = [fftconv_ext._testing.small_plane_emulate(x, *args, shared_bytes=kb << 10) for kb in (2, 12, 24, 200)]
    assert rel_err(outs[0], F.conv2d(x, w, b, padding=4, groups=3)) < TOL64_SMALL_PLANES
    for y in outs[1:]:
        assert torch.equal(y, outs[0])


@pytest.mark.parametrize("where", [None, (0, 0, 0, 0), (10, 2, 19, 19), (4, 1, 7, 13)])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("adjoint", [False, True])
def test_load_flags_nonfinite_source(where, value, adjoint):
    """The load phase sets the device checks' flag (device_checks.h) exactly when the source
    holds NaN or Inf, wherever it is: first or last element, first or last block."""
    torch.manual_seed(3)
    x = torch.randn(11, 3, 20, 20, dtype=torch.float64)
    if where is not None:
        x[where] = value
    w = torch.randn(3, 1, 9, 9, dtype=torch.float64)
    flag = torch.zeros(1, dtype=torch.int32)
    fftconv_ext._testing.small_plane_emulate(x, w, None, list(x.shape), [1, 1], [4] * 4, [1, 1], 3, False, adjoint,
                                        shared_bytes=12 << 10, nonfinite=flag)
    assert flag.item() == (0 if where is None else 1)


def test_nonfinite_flag_must_be_one_int32():
    x, w = torch.randn(2, 3, 20, 20, dtype=torch.float64), torch.randn(3, 1, 9, 9, dtype=torch.float64)
    for bad in (torch.zeros(1), torch.zeros(2, dtype=torch.int32)):
        with pytest.raises(RuntimeError, match="nonfinite flag must be a CPU int32 tensor of one element"):
            fftconv_ext._testing.small_plane_emulate(x, w, None, list(x.shape), [1, 1], [4] * 4, [1, 1], 3, False, False,
                                                nonfinite=bad)


def test_circular_padding_at_a_compiled_period():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 16, 32, dtype=torch.float64)
    w = torch.randn(3, 1, 5, 7, dtype=torch.float64)
    padding = (2, 2, 3, 3)
    assert _lengths(x.shape, w.shape, padding, circular=True) == (16, 32)
    ref = F.conv2d(F.pad(x, (3, 3, 2, 2), mode="circular"), w, groups=3)
    assert rel_err(_emulate(x, w, None, x.shape, padding, circular=True), ref) < TOL64_SMALL_PLANES
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
        fftconv_ext._testing.small_plane_emulate(x, torch.randn(w_shape, dtype=torch.float64), None, list(x_shape),
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
    monkeypatch.setattr(fftconv_ext.backends, "cuda_unverified", True)  # what the GPU check verifies
    monkeypatch.setattr(fftconv_ext.backends, "cuda_small_plane", True)
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
    monkeypatch.setattr(fftconv_ext.backends, "cuda_unverified", True)  # what the GPU check verifies
    # forced, not toggled with cuda_small_plane: algo='fft' records its own choice on a first call
    with fftconv_ext.cuda_pipelines.forced_pipeline("rows"):
        off = fftconv_ext.conv2d(x, w, b, padding=15, groups=16, algo="fft")
    with fftconv_ext.cuda_pipelines.forced_pipeline("small_plane"):
        on = fftconv_ext.conv2d(x, w, b, padding=15, groups=16, algo="fft")
    assert not torch.equal(on, off), "both calls ran one pipeline"
    torch.cuda.synchronize()
    assert torch.equal(x, x0) and torch.equal(w, w0)
    ref = F.conv2d(x.double(), w.double(), b.double(), padding=15, groups=16)
    assert rel_err(on, ref) < TOL32 and rel_err(off, ref) < TOL32


@requires_cuda
def test_cuda_kernel_float64_keeps_the_cufft_pipeline(monkeypatch):
    monkeypatch.setattr(fftconv_ext.backends, "cuda_unverified", True)  # what the GPU check verifies
    monkeypatch.setattr(fftconv_ext.backends, "cuda_small_plane", True)
    x = torch.randn(2, 3, 20, 20, device="cuda", dtype=torch.float64)
    w = torch.randn(3, 1, 9, 9, device="cuda", dtype=torch.float64)
    y = fftconv_ext.conv2d(x, w, padding=4, groups=3, algo="fft")
    assert rel_err(y, F.conv2d(x, w, padding=4, groups=3)) < TOL64_SMALL_PLANES


# ---- the small-plane backward (small_plane/backward.h) ------------------------------


def _emulate_backward(go, x, w, padding, dilation=(1, 1), circular=False, input_grad=True, reverse=False,
                      shared_bytes=0, target_blocks=528):
    return fftconv_ext._testing.small_plane_emulate_backward(go, x, w, [1, 1], list(padding), list(dilation), x.shape[1],
                                                        circular, input_grad, reverse, shared_bytes, target_blocks)


def _check_backward(x_shape, k, padding, dilation=(1, 1), dtype=torch.float64, circular=False, seed=0, **kw):
    torch.manual_seed(seed)
    c = x_shape[1]
    x = torch.randn(x_shape, dtype=dtype)
    w = torch.randn(c, 1, *k, dtype=dtype)
    assert _lengths(x_shape, w.shape, padding, dilation, circular=circular), "the small-plane kernel must take this problem"
    xd, wd = x.double().requires_grad_(), w.double().requires_grad_()
    pad = (padding[2], padding[3], padding[0], padding[1])
    y = F.conv2d(F.pad(xd, pad, mode="circular" if circular else "constant"), wd, dilation=dilation, groups=c)
    go = torch.randn(y.shape, dtype=dtype)
    ref_gin, ref_gw = torch.autograd.grad(y, (xd, wd), go.double())
    tol = TOL64_SMALL_PLANES if dtype == torch.float64 else TOL32
    x0, w0, g0 = x.clone(), w.clone(), go.clone()
    gin, gw = _emulate_backward(go, x, w, padding, dilation, circular, **kw)
    assert torch.equal(x, x0) and torch.equal(w, w0) and torch.equal(go, g0)
    assert gin.dtype == dtype and gw.dtype == dtype
    assert rel_err(gin, ref_gin) < tol and rel_err(gw, ref_gw) < tol
    _, gw_alone = _emulate_backward(go, x, w, padding, dilation, circular, input_grad=False, **kw)
    assert torch.equal(gw_alone, gw)  # the same sums in the same order
    # threads of a phase in any order; the partial sums are added in block order whatever the order of blocks
    gin_r, gw_r = _emulate_backward(go, x, w, padding, dilation, circular, reverse=True, **kw)
    assert torch.equal(gin_r, gin) and torch.equal(gw_r, gw)
    return gin, gw


@pytest.mark.parametrize("nh", LENGTHS)
@pytest.mark.parametrize("nw", LENGTHS)
def test_backward_every_compiled_length_pair(nh, nw):
    (h, kh), (w, kw) = AXIS_FOR_LENGTH[nh], AXIS_FOR_LENGTH[nw]
    _check_backward((3, 2, h, w), (kh, kw), (kh // 2, kh // 2, kw // 2, kw // 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", [
    ((4, 3, 32, 32), (31, 31), (15, 15, 15, 15), (1, 1)),   # the GPU target layer, scaled down: n = 48
    ((13, 3, 16, 16), (7, 7), (3, 3, 3, 3), (1, 1)),        # batch over several rounds and blocks
    ((2, 3, 20, 27), (5, 5), (2, 2, 2, 2), (2, 2)),         # dilation, non-square plane
    ((1, 2, 12, 30), (4, 6), (1, 2, 3, 2), (1, 1)),         # even kernels, asymmetric padding
    ((2, 2, 24, 24), (9, 9), (0, 0, 0, 0), (1, 1)),         # valid: output smaller than the input
    ((2, 2, 10, 10), (3, 3), (6, 6, 6, 6), (1, 1)),         # output larger than the input
    ((2, 2, 14, 14), (31, 31), (15, 15, 15, 15), (1, 1)),   # taps dropped (docs/design.md §2)
])
def test_backward_geometries(case, dtype):
    x_shape, k, padding, dilation = case
    _check_backward(x_shape, k, padding, dilation, dtype=dtype)


def test_backward_circular_padding():
    _check_backward((3, 2, 16, 32), (5, 7), (2, 2, 3, 3), circular=True)


@pytest.mark.parametrize("shared_kb,target_blocks", [(2, 1), (2, 1000), (48, 4), (200, 1), (48, 528)])
def test_backward_blocks_and_rounds_do_not_change_results_beyond_rounding(shared_kb, target_blocks):
    """One plane a round or all at once, one block per channel or one per round: the same gradients."""
    gin, gw = _check_backward((11, 3, 20, 20), (9, 9), (4, 4, 4, 4), shared_bytes=shared_kb << 10,
                              target_blocks=target_blocks, seed=3)
    gin0, gw0 = _check_backward((11, 3, 20, 20), (9, 9), (4, 4, 4, 4), seed=3)
    assert torch.equal(gin, gin0)  # per-plane work: bitwise
    assert rel_err(gw, gw0) < 1e-14  # sums over the batch in another grouping


@given(st.integers(1, 5), st.integers(1, 3), st.integers(2, 64), st.integers(1, 64), st.integers(1, 31),
       st.integers(1, 31), st.integers(0, 16), st.integers(0, 16), st.integers(1, 3), st.integers(0, 1000),
       st.integers(1, 64))
def test_backward_search(n, c, h, w, kh, kw, ph, pw, d, seed, target_blocks):
    padding = (ph, ph // 2, pw, pw // 2)
    if (h + ph + ph // 2 - d * (kh - 1) - 1 < 0) or (w + pw + pw // 2 - d * (kw - 1) - 1 < 0):
        return
    if not _lengths((n, c, h, w), (c, 1, kh, kw), padding, (d, d)):
        return
    _check_backward((n, c, h, w), (kh, kw), padding, (d, d), seed=seed, target_blocks=target_blocks)


@requires_cuda
@pytest.mark.parametrize("nh", LENGTHS)
@pytest.mark.parametrize("nw", LENGTHS)
def test_cuda_backward_every_length_pair(nh, nw, monkeypatch):
    # both gradients through conv2d_backward, and the weight gradient alone
    monkeypatch.setattr(fftconv_ext.backends, "cuda_unverified", True)  # what the GPU check verifies
    monkeypatch.setattr(fftconv_ext.backends, "cuda_small_plane", True)
    (h, kh), (w, kw) = AXIS_FOR_LENGTH[nh], AXIS_FOR_LENGTH[nw]
    torch.manual_seed(1)
    x = torch.randn(9, 5, h, w, device="cuda")
    wt = torch.randn(5, 1, kh, kw, device="cuda")
    pad = [kh // 2, kh // 2, kw // 2, kw // 2]
    y = F.conv2d(x.double(), wt.double(), padding=(kh // 2, kw // 2), groups=5)
    go = torch.randn(y.shape, device="cuda")
    args = ([1, 1], pad, [1, 1], 5, False)
    gin, gw = torch.ops.fftconv.conv2d_backward(go, x, wt, *args)
    gw_alone = torch.ops.fftconv.conv2d_grad_weight(go, x, list(wt.shape), *args)
    rx = torch.nn.grad.conv2d_input(x.shape, wt.double(), go.double(), padding=(kh // 2, kw // 2), groups=5)
    rw = torch.nn.grad.conv2d_weight(x.double(), wt.shape, go.double(), padding=(kh // 2, kw // 2), groups=5)
    assert rel_err(gin, rx) < TOL32 and rel_err(gw, rw) < 1e-5 and rel_err(gw_alone, rw) < 1e-5
    # deterministic: the partial sums are added in a fixed order
    assert torch.equal(torch.ops.fftconv.conv2d_backward(go, x, wt, *args)[1], gw)


@requires_cuda
def test_cuda_small_plane_opcheck_and_memory(monkeypatch):
    monkeypatch.setattr(fftconv_ext.backends, "cuda_unverified", True)  # what the GPU check verifies
    monkeypatch.setattr(fftconv_ext.backends, "cuda_small_plane", True)
    x = torch.randn(3, 4, 20, 20, device="cuda", requires_grad=True)
    w = torch.randn(4, 1, 9, 9, device="cuda", requires_grad=True)
    b = torch.randn(4, device="cuda", requires_grad=True)
    args = ([1, 1], [4, 4, 4, 4], [1, 1], 4, False)
    assert _lengths(x.shape, w.shape, args[1]) == (32, 32)
    torch.library.opcheck(torch.ops.fftconv.conv2d_forward.default, (x, w, b, *args))
    # no memory kept across calls beyond the cached kernel spectrum (the backward's partial sums included)
    fftconv_ext.clear_caches()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    for _ in range(3):
        y = fftconv_ext.conv2d(x, w, b, padding=4, groups=4, algo="fft")
        y.sum().backward()
    del y
    x.grad = w.grad = b.grad = None
    fftconv_ext.clear_caches()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == base


def test_emulation_hooks_reject_bad_operands():
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    w = torch.randn(3, 1, 5, 5, dtype=torch.float64)
    go = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="source must have shape"):
        _emulate(torch.randn(2, 3, 15, 16, dtype=torch.float64), w, None, x.shape, (2, 2, 2, 2))
    with pytest.raises(RuntimeError, match="one dtype"):
        _emulate(x.float(), w, None, x.shape, (2, 2, 2, 2))
    with pytest.raises(RuntimeError, match="grad_output must have shape"):
        _emulate_backward(go[:, :, :15], x, w, (2, 2, 2, 2))
    with pytest.raises(RuntimeError, match="one dtype"):
        _emulate_backward(go.int(), x, w, (2, 2, 2, 2))


@pytest.mark.parametrize("x_shape,padding", [((1, 4, 0, 8), (2, 2, 2, 2)), ((2, 4, 8, 0), (2, 2, 2, 2))])
def test_an_empty_input_axis_is_declined_not_divided_by(x_shape, padding):
    # padding that still gives an output from an empty axis used to reach the kernel's fast
    # divisions with a divisor of zero: SIGFPE, the whole process gone. Now the kernel declines it.
    assert _lengths(x_shape, (4, 1, 3, 3), padding) == ()
    x, w = torch.randn(x_shape, dtype=torch.float64), torch.randn(4, 1, 3, 3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="does not take"):
        fftconv_ext._testing.small_plane_emulate(x, w, None, list(x_shape), [1, 1], list(padding), [1, 1], 4, False,
                                                 False)
    go = torch.randn(x_shape[0], 4, x_shape[2] + 2, x_shape[3] + 2, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="does not take"):
        fftconv_ext._testing.small_plane_emulate_backward(go, x, w, [1, 1], list(padding), [1, 1], 4, False, True)
