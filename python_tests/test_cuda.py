"""CUDA path: parity with cuDNN and with the CPU path, gradients, low precision, streams.

Skipped, with the reason, on machines without a GPU; run by bench/gpu_check.sh
on an H100/H200.
"""
import pytest
import torch
import torch.nn.functional as F

import fftconv_ext
from conftest import reference_conv, rel_err, requires_cuda, fft_conv1d, fft_conv2d

pytestmark = requires_cuda

CASES = [
    ((2, 8, 56, 56), (8, 1, 31, 31), 1, 15, 1, 8),     # RepLKNet-like depthwise
    ((2, 4, 20, 21), (6, 2, 5, 4), 1, "same", 1, 2),   # grouped, even kernel
    ((2, 3, 19, 23), (4, 3, 5, 3), (2, 3), (2, 1), (1, 2), 1),
    ((1, 2, 8, 9), (2, 1, 15, 13), 1, (7, 6), 1, 2),   # kernel > map
]


def test_built_with_cuda():
    assert fftconv_ext.built_with_cuda(), "a GPU is present but the extension was built without CUDA"


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CASES)
def test_parity_with_cudnn_float64(xs, ws, stride, padding, dilation, groups):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*xs, generator=g, dtype=torch.float64)
    w = torch.randn(*ws, generator=g, dtype=torch.float64)
    b = torch.randn(ws[0], generator=g, dtype=torch.float64)
    y = fft_conv2d(x.cuda(), w.cuda(), b.cuda(), stride, padding, dilation, groups)
    ref = F.conv2d(x.cuda(), w.cuda(), b.cuda(), stride, padding, dilation, groups)
    assert y.is_cuda and y.shape == ref.shape
    assert rel_err(y, ref) <= 1e-10
    assert rel_err(y.cpu(), reference_conv(x, w, b, stride, padding, dilation, groups)) <= 1e-10


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CASES)
def test_float32_against_float64(xs, ws, stride, padding, dilation, groups):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*xs, generator=g)
    w = torch.randn(*ws, generator=g)
    y = fft_conv2d(x.cuda(), w.cuda(), None, stride, padding, dilation, groups)
    ref = reference_conv(x, w, None, stride, padding, dilation, groups)
    assert rel_err(y.cpu(), ref) <= 1e-5


@pytest.mark.parametrize("mode", ["zeros", "circular", "reflect"])
def test_gradcheck_cuda(mode):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 9, 10, generator=g, dtype=torch.float64).cuda().requires_grad_()
    w = torch.randn(6, 2, 3, 4, generator=g, dtype=torch.float64).cuda().requires_grad_()
    b = torch.randn(6, generator=g, dtype=torch.float64).cuda().requires_grad_()
    # reflect padding is F.pad's, whose CUDA backward accumulates with atomicAdd (listed as
    # nondeterministic in torch.use_deterministic_algorithms): bitwise reentrancy cannot hold there
    nondet_tol = 1e-12 if mode == "reflect" else 0.0
    assert torch.autograd.gradcheck(
        lambda x, w, b: fft_conv2d(x, w, b, (1, 2), (1, 2), (2, 1), 2, padding_mode=mode), (x, w, b),
        nondet_tol=nondet_tol)


def test_opcheck_cuda():
    x = torch.randn(2, 4, 12, 11, dtype=torch.float64, device="cuda", requires_grad=True)
    w = torch.randn(4, 1, 5, 5, dtype=torch.float64, device="cuda", requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.fftconv.conv2d_forward, (x, w, b, [1, 1], [2, 2, 2, 2], [1, 1], 4, False))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_cuda(dtype):
    x = torch.randn(2, 8, 32, 32, device="cuda", dtype=dtype)
    w = torch.randn(8, 1, 13, 13, device="cuda", dtype=dtype)
    y = fft_conv2d(x, w, padding=6, groups=8)
    assert y.dtype == dtype
    ref = F.conv2d(x.double(), w.double(), padding=6, groups=8)
    assert rel_err(y, ref) <= (2e-3 if dtype == torch.float16 else 1e-2)


def test_side_stream_matches_default_stream():
    x = torch.randn(4, 16, 40, 40, device="cuda")
    w = torch.randn(16, 1, 21, 21, device="cuda")
    ref = fft_conv2d(x, w, padding=10, groups=16)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        y = fft_conv2d(x, w, padding=10, groups=16)
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    assert torch.equal(y, ref)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_second_device():
    x = torch.randn(2, 4, 20, 20, dtype=torch.float64)
    w = torch.randn(4, 1, 7, 7, dtype=torch.float64)
    y = fft_conv2d(x.to("cuda:1"), w.to("cuda:1"), padding=3, groups=4)
    assert y.device == torch.device("cuda:1")
    assert rel_err(y.cpu(), reference_conv(x, w, padding=3, groups=4)) <= 1e-10


def test_device_mismatch_is_a_python_error():
    x = torch.randn(1, 2, 8, 8, device="cuda")
    w = torch.randn(2, 1, 3, 3)
    with pytest.raises(ValueError, match="device"):
        fft_conv2d(x, w, groups=2)


@pytest.mark.parametrize("where", ["input", "weight"])
def test_nonfinite_cuda(where):
    x = torch.randn(2, 4, 12, 12, dtype=torch.float64, device="cuda")
    w = torch.randn(4, 1, 5, 5, dtype=torch.float64, device="cuda")
    (x if where == "input" else w).view(-1)[7] = float("nan")
    torch.testing.assert_close(fft_conv2d(x, w, padding=2, groups=4), F.conv2d(x, w, padding=2, groups=4),
                               equal_nan=True, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("grad_enabled", [False, True])
def test_cached_spectrum_never_stale_after_data_edit(grad_enabled):
    # an edit through .data bumps no version counter (gradcheck perturbs that way)
    x = torch.randn(2, 4, 20, 20, dtype=torch.float64, device="cuda")
    w = torch.randn(4, 1, 7, 7, dtype=torch.float64, device="cuda", requires_grad=True)
    with torch.set_grad_enabled(grad_enabled):
        fft_conv2d(x, w, padding=3, groups=4)
        w.data[1, 0, 2, 2] += 1.0
        y = fft_conv2d(x, w, padding=3, groups=4)
    assert rel_err(y.detach(), F.conv2d(x, w.detach(), padding=3, groups=4)) <= 1e-10


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CASES)
def test_cache_off_matches_cudnn_with_gradients(xs, ws, stride, padding, dilation, groups):
    # with the spectrum cache off the CUDA driver makes the whole spectrum per call (spectrum_cache.h)
    limit = fftconv_ext.cache_info()["limit"]
    fftconv_ext._C.set_cache_limits(0, -1)
    try:
        g = torch.Generator(device="cuda").manual_seed(5)
        x = torch.randn(*xs, generator=g, dtype=torch.float64, device="cuda", requires_grad=True)
        w = torch.randn(*ws, generator=g, dtype=torch.float64, device="cuda", requires_grad=True)
        y = fft_conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
        ref = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
        assert rel_err(y, ref) <= 1e-10
        gy = torch.randn_like(ref)
        for a, e in zip(torch.autograd.grad(y, (x, w), gy), torch.autograd.grad(ref, (x, w), gy)):
            assert rel_err(a, e) <= 1e-10
        assert fftconv_ext.cache_info()["spectra"] == 0
    finally:
        fftconv_ext._C.set_cache_limits(limit, -1)


def test_fourier_mix_and_conv_on_a_fresh_thread():
    # a thread whose first CUDA work is a cuFFT execution has no current context until one is bound
    import threading
    x = torch.randn(3, 31, 12, device="cuda")
    xc = torch.randn(2, 4, 20, 20, device="cuda")
    wc = torch.randn(4, 1, 7, 7, device="cuda")
    box = {}

    def work():
        try:
            box["mix"] = fftconv_ext.fourier_mix(x)
            box["conv"] = fft_conv2d(xc, wc, padding=3, groups=4)
        except Exception as e:  # noqa: BLE001 - reported below
            box["error"] = e
    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert "error" not in box, box.get("error")
    assert rel_err(box["mix"], torch.fft.fft2(x).real) <= 1e-5
    assert rel_err(box["conv"], F.conv2d(xc, wc, padding=3, groups=4)) <= 1e-5


def test_cache_clear_returns_cuda_memory():
    import fftconv_ext
    fftconv_ext.clear_caches()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    x = torch.randn(4, 64, 56, 56, device="cuda")
    w = torch.randn(64, 1, 31, 31, device="cuda")
    with torch.no_grad():
        for _ in range(3):
            fft_conv2d(x, w, padding=15, groups=64)
    fftconv_ext.clear_caches()
    del x, w
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == base


def test_more_than_2_pow_31_elements():
    need = 48 * 2**30
    free, _ = torch.cuda.mem_get_info()
    if free < need:
        pytest.skip(f"needs about 48 GiB of free CUDA memory, {free / 2**30:.0f} GiB free")
    x = torch.randn(1, 1, 2**16, 2**15 + 1, device="cuda")  # 2^31 + 2^16 elements
    assert x.numel() > 2**31
    w = torch.randn(1, 1, 3, 3, device="cuda")
    with torch.no_grad():
        y = fft_conv2d(x, w, padding=1)
    for r0 in (1, 2**15, 2**16 - 5):  # rows far apart, checked against cuDNN on a window
        ref = F.conv2d(x[..., r0 - 1:r0 + 5, :], w, padding=(0, 1))
        assert rel_err(y[..., r0:r0 + 4, :], ref) <= 1e-5


@pytest.mark.parametrize("causal", [True, False])
def test_long_conv1d_cuda(causal):
    u = torch.randn(2, 3, 1000, dtype=torch.float64)
    k = torch.randn(3, 400, dtype=torch.float64)
    D = torch.randn(3, dtype=torch.float64)
    y = fftconv_ext.long_conv1d(u.cuda(), k.cuda(), D.cuda(), causal=causal)
    ref = fftconv_ext.long_conv1d(u, k, D, causal=causal)  # the CPU path, itself checked against F.conv1d / DFT
    assert y.is_cuda and rel_err(y.cpu(), ref) <= 1e-10


# ---- fourier_mix on CUDA ------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3137, 24), (3, 65, 192), (1, 7), (4, 50, 33)])
@pytest.mark.parametrize("norm", ["backward", "ortho"])
def test_fourier_mix_cuda_float64(shape, norm):
    x = torch.randn(*shape, dtype=torch.float64)
    y = fftconv_ext.fourier_mix(x.cuda(), norm)
    ref = torch.fft.fft2(x, norm=norm).real
    assert y.is_cuda and y.shape == x.shape
    assert ((y.cpu() - ref).abs().max() / ref.abs().max()).item() <= 1e-12


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-5), (torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
def test_fourier_mix_cuda_dtypes(dtype, tol):
    x = torch.randn(8, 197, 768, device="cuda").to(dtype)
    y = fftconv_ext.fourier_mix(x.transpose(0, 1).contiguous().transpose(0, 1), "ortho")  # non-contiguous
    assert y.dtype == dtype
    ref = torch.fft.fft2(x.double(), norm="ortho").real
    assert ((y.double() - ref).abs().max() / ref.abs().max()).item() <= tol


def test_fourier_mix_cuda_gradcheck_and_opcheck():
    x = torch.randn(2, 9, 10, dtype=torch.float64, device="cuda", requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fftconv_ext.fourier_mix(t, "ortho"), (x,))
    torch.library.opcheck(torch.ops.fftconv.fourier_mix.default, (x, "ortho"))


def test_fourier_mix_cuda_memory_back_to_baseline():
    fftconv_ext.clear_caches()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    x = torch.randn(8, 3137, 768, device="cuda")
    for _ in range(3):
        y = fftconv_ext.fourier_mix(x)
    del x, y
    fftconv_ext.clear_caches()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == base


def test_cufft_plan_failure_is_a_runtime_error_naming_status_and_size():
    with pytest.raises(RuntimeError, match=r"cuFFT plan creation.* failed with CUFFT_\w+ \(\d+\) for 4 transforms of length 0"):
        fftconv_ext._testing.cufft_plan(0, 0, 4, 1)
