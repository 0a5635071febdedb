"""Each CUDA pipeline forced in turn (docs/design.md §17): parity with cuDNN in float64 and
float32, gradients, opcheck, the memory budget, and algo='auto' choosing among them on the
device. Skipped, with the reason, without a GPU; run by bench/gpu_check.sh. The unverified
pipelines are opted in here (backends.cuda_unverified): a pipeline whose tests pass on a GPU
gets its verified flag in csrc/verified_on_gpu.cpp."""
import pytest
import torch
import torch.nn.functional as F

import fftconv_ext
from fftconv_ext import algo as algo_mod
from fftconv_ext import cuda_pipelines
from conftest import rel_err, requires_cuda, fft_conv2d

pytestmark = requires_cuda

PIPELINES = list(cuda_pipelines.PIPELINES)
CASES = [
    ((2, 8, 32, 32), (8, 1, 31, 31), 1, 15, 1, 8),     # the small-plane kernel's domain: depthwise, small planes
    ((2, 8, 56, 56), (8, 1, 31, 31), 1, 15, 1, 8),     # RepLKNet-like depthwise
    ((2, 4, 20, 21), (6, 2, 5, 4), 1, "same", 1, 2),   # grouped, even kernel
    ((2, 3, 19, 23), (4, 3, 5, 3), (2, 3), (2, 1), (1, 2), 1),
    ((1, 2, 8, 9), (2, 1, 15, 13), 1, (7, 6), 1, 2),   # kernel > map
]


@pytest.fixture(autouse=True)
def _unverified_allowed(monkeypatch):
    """The pipelines under test are the ones not yet verified (conftest resets the rest)."""
    monkeypatch.setattr(fftconv_ext.backends, "cuda_unverified", True)


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_each_pipeline_matches_cudnn(pipeline, xs, ws, stride, padding, dilation, groups, dtype, tol):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*xs, generator=g, dtype=torch.float64)
    w = torch.randn(*ws, generator=g, dtype=torch.float64)
    b = torch.randn(ws[0], generator=g, dtype=torch.float64)
    ref = F.conv2d(x.cuda(), w.cuda(), b.cuda(), stride, padding, dilation, groups)
    with cuda_pipelines.forced_pipeline(pipeline):
        y = fft_conv2d(x.to("cuda", dtype), w.to("cuda", dtype), b.to("cuda", dtype), stride, padding, dilation,
                       groups)
    assert y.dtype == dtype and y.shape == ref.shape
    assert rel_err(y.double(), ref) <= tol


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_each_pipeline_gradcheck_and_opcheck(pipeline):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 9, 10, generator=g, dtype=torch.float64).cuda().requires_grad_()
    w = torch.randn(4, 1, 5, 4, generator=g, dtype=torch.float64).cuda().requires_grad_()
    b = torch.randn(4, generator=g, dtype=torch.float64).cuda().requires_grad_()
    with cuda_pipelines.forced_pipeline(pipeline):
        assert torch.autograd.gradcheck(lambda x, w, b: fft_conv2d(x, w, b, 1, 2, 1, 4), (x, w, b))
        torch.library.opcheck(torch.ops.fftconv.conv2d_forward.default,
                              (x.detach(), w.detach(), b.detach(), [1, 1], [2, 2, 1, 2], [1, 1], 4, False))


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_each_pipeline_float32_gradients_against_float64(pipeline):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 16, 32, 32, generator=g)
    w = torch.randn(16, 1, 13, 13, generator=g) / 13
    b = torch.randn(16, generator=g)
    gy = torch.randn(4, 16, 32, 32, generator=g)
    xd, wd, bd = (t.double().cuda().requires_grad_() for t in (x, w, b))
    ref = torch.autograd.grad(F.conv2d(xd, wd, bd, padding=6, groups=16), (xd, wd, bd), gy.double().cuda())
    xs, ws, bs = (t.cuda().requires_grad_() for t in (x, w, b))
    with cuda_pipelines.forced_pipeline(pipeline):
        got = torch.autograd.grad(fftconv_ext.conv2d(xs, ws, bs, padding=6, groups=16, algo="fft"), (xs, ws, bs),
                                  gy.cuda())
    assert all(rel_err(a.double(), r) <= 1e-5 for a, r in zip(got, ref))


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_forward_extra_memory_at_most_twice_the_output(pipeline):
    x = torch.randn(32, 384, 32, 32, device="cuda")
    w = torch.randn(384, 1, 31, 31, device="cuda") / 31
    with torch.no_grad(), cuda_pipelines.forced_pipeline(pipeline):
        fftconv_ext.conv2d(x, w, padding=15, groups=384, algo="fft")  # spectrum cached, plans made
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        y = fftconv_ext.conv2d(x, w, padding=15, groups=384, algo="fft")
        torch.cuda.synchronize()
    out = y.numel() * y.element_size()
    assert torch.cuda.max_memory_allocated() - before - out <= 2 * out


def test_auto_chooses_among_the_pipelines_on_the_device(tmp_path, monkeypatch):
    monkeypatch.setattr(fftconv_ext.backends, "cache_dir", str(tmp_path))
    x = torch.randn(8, 64, 32, 32, device="cuda")
    w = torch.randn(64, 1, 31, 31, device="cuda") / 31
    y = fftconv_ext.conv2d(x, w, padding=15, groups=64, algo="fft")
    choice = [v for v in algo_mod._memory.values()]
    assert len(choice) == 1 and choice[0].startswith("fft:")
    assert fftconv_ext._C.pipeline_choice_count() >= 1
    assert rel_err(y.double(), F.conv2d(x.double(), w.double(), padding=15, groups=64)) <= 1e-5
    assert not cuda_pipelines.disqualified, "a pipeline disagreed with cuDNN on the GPU"


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("dim", [1, 2])
def test_transposed_convolutions_match_cudnn(pipeline, dim):
    # conv_transpose runs the input-gradient pipeline (docs/design.md §18): each pipeline in turn
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 8, 12, 12, generator=g, dtype=torch.float64).cuda()
    w = torch.randn(8, 2, 7, 5, generator=g, dtype=torch.float64).cuda()
    if dim == 1:
        x, w = x[:, :, 0], w[:, :, 0]
    ours = fftconv_ext.conv_transpose2d if dim == 2 else fftconv_ext.conv_transpose1d
    ref_f = F.conv_transpose2d if dim == 2 else F.conv_transpose1d
    # (stride, padding, output_padding, groups, dilation)
    for stride, padding, output_padding, groups, dilation in [(1, 3, 0, 4, 1), (2, 1, 1, 4, 1), (2, 2, 1, 2, 2)]:
        b = torch.randn(w.shape[1] * groups, generator=g, dtype=torch.float64).cuda()
        args = (stride, padding, output_padding, groups, dilation)
        with cuda_pipelines.forced_pipeline(pipeline):
            y = ours(x, w, b, *args, algo="fft")
        ref = ref_f(x, w, b, *args)
        assert y.shape == ref.shape and rel_err(y, ref) <= 1e-10


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_conv3d_and_conv_transpose3d_match_cudnn(pipeline):
    # the depth-folded problem (docs/design.md §19) on each pipeline in turn, forward and gradients
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 9, 10, 11, generator=g, dtype=torch.float64).cuda()
    cases = [((4, 1, 7, 7, 7), 1, 3, 1, 4), ((6, 2, 3, 4, 5), (2, 1, 2), 1, (1, 2, 1), 2),
             ((4, 4, 9, 13, 5), 1, (4, 6, 2), 1, 1)]  # depthwise, strided + dilated, kernel taller than the pitch
    for ws, stride, padding, dilation, groups in cases:
        w = torch.randn(*ws, generator=g, dtype=torch.float64).cuda().requires_grad_()
        b = torch.randn(ws[0], generator=g, dtype=torch.float64).cuda().requires_grad_()
        xg = x.clone().requires_grad_()
        with cuda_pipelines.forced_pipeline(pipeline):
            y = fftconv_ext.conv3d(xg, w, b, stride, padding, dilation, groups, algo="fft")
            gy = torch.randn_like(y)
            grads = torch.autograd.grad(y, (xg, w, b), gy)
        ref = F.conv3d(xg, w, b, stride, padding, dilation, groups)
        ref_grads = torch.autograd.grad(ref, (xg, w, b), gy)
        assert y.shape == ref.shape and rel_err(y, ref) <= 1e-10
        assert all(rel_err(a, r) <= 1e-9 for a, r in zip(grads, ref_grads))
    wt = torch.randn(4, 3, 4, 3, 5, generator=g, dtype=torch.float64).cuda()
    for stride, padding, output_padding in [(1, 2, 0), (2, 1, 1)]:
        with cuda_pipelines.forced_pipeline(pipeline):
            y = fftconv_ext.conv_transpose3d(x, wt, None, stride, padding, output_padding, algo="fft")
        ref = F.conv_transpose3d(x, wt, None, stride, padding, output_padding)
        assert y.shape == ref.shape and rel_err(y, ref) <= 1e-10


def test_conv3d_float32_and_auto_on_the_device():
    x = torch.randn(1, 16, 24, 24, 24, device="cuda")
    w = torch.randn(16, 1, 13, 13, 13, device="cuda") / 13 ** 1.5
    ref = F.conv3d(x.double(), w.double(), padding=6, groups=16)
    for algo in ("fft", "auto"):
        assert rel_err(fftconv_ext.conv3d(x, w, padding=6, groups=16, algo=algo), ref) <= 1e-5
