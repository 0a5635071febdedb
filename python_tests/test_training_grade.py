"""Training-grade behaviour, as PyTorch's own convolutions have it: torch.autocast (the ops
cast their operands as aten::conv2d does and return the lower-precision dtype), meta
tensors (shapes, dtypes, memory format; build on meta and materialise), and the
transformations models are trained and deployed with: torch.compile, torch.export,
torch.jit.trace, vmap, activation checkpointing and deterministic mode."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fftconv_ext
from fftconv_ext.nn import FFTConv1d, FFTConv2d, FourierMix, LongConv2d, S4DConv, SGConv1d
from conftest import rel_err, requires_cuda

BF16_TOL = 2e-2  # relative error of bfloat16 results (8 bits of mantissa) against the same math in PyTorch


def _pair(layer_cls, ref_cls, *args, **kwargs):
    torch.manual_seed(0)
    ours = layer_cls(*args, algo="fft", **kwargs)
    ref = ref_cls(*args, **kwargs)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


# ---- autocast -----------------------------------------------------------------------------------

@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("dim", [1, 2])
def test_layers_under_cpu_autocast_match_pytorch(x_dtype, dim):
    if dim == 2:
        ours, ref = _pair(FFTConv2d, nn.Conv2d, 8, 8, 15, padding=7, groups=8)
        x = torch.randn(2, 8, 20, 18)
    else:
        ours, ref = _pair(FFTConv1d, nn.Conv1d, 8, 8, 31, padding=15, groups=4)
        x = torch.randn(2, 8, 100)
    x = x.to(x_dtype)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, r = ours(xa), ref(xb)
    assert y.dtype == r.dtype == torch.bfloat16
    assert rel_err(y.float(), r.float()) < BF16_TOL
    g = torch.randn_like(r)
    y.backward(g)
    r.backward(g)
    assert xa.grad.dtype == xb.grad.dtype == x_dtype
    assert rel_err(xa.grad.float(), xb.grad.float()) < BF16_TOL
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        assert p.grad.dtype == q.grad.dtype == torch.float32, name
        assert rel_err(p.grad, q.grad) < BF16_TOL, name


def test_the_failing_snippet_now_runs():
    m = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.GELU(),
                      FFTConv2d(16, 16, 31, padding=15, groups=16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(torch.randn(2, 3, 32, 32))
        y.float().square().mean().backward()  # the backward inside the region too
    assert y.dtype == torch.bfloat16 and y.shape == (2, 16, 32, 32)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
               for p in m.parameters())


def test_functional_under_autocast_with_float32_operands():
    # F.conv2d under autocast returns bfloat16 for float32 operands: so do we, on both paths
    x, w, b = torch.randn(2, 4, 16, 16), torch.randn(4, 1, 9, 9), torch.randn(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = F.conv2d(x, w, b, padding=4, groups=4)
        for algo in ("fft", "direct", "auto"):
            y = fftconv_ext.conv2d(x, w, b, padding=4, groups=4, algo=algo)
            assert y.dtype == ref.dtype == torch.bfloat16, algo
            assert rel_err(y.float(), ref.float()) < BF16_TOL, algo
        y1 = fftconv_ext.conv1d(x[:, :, 0], w[:, :, 0], b, padding=4, groups=4, algo="fft")
        assert y1.dtype == F.conv1d(x[:, :, 0], w[:, :, 0], b, padding=4, groups=4).dtype


def test_float64_is_left_alone_by_autocast():
    x, w = torch.randn(1, 2, 12, 12, dtype=torch.float64), torch.randn(2, 1, 5, 5, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fftconv_ext.conv2d(x, w, padding=2, groups=2, algo="fft")
    assert y.dtype == torch.float64
    assert rel_err(y, F.conv2d(x, w, padding=2, groups=2)) < 1e-12


def test_outside_autocast_mixed_dtypes_are_still_refused():
    with pytest.raises(fftconv_ext.ConvArgumentError, match="weight dtype"):
        fftconv_ext.conv2d(torch.randn(1, 2, 8, 8, dtype=torch.bfloat16), torch.randn(2, 1, 3, 3), groups=2)


def test_long_conv1d_under_autocast():
    u, k, D = torch.randn(2, 4, 64), torch.randn(4, 48), torch.randn(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fftconv_ext.long_conv1d(u, k, D)
    assert y.dtype == torch.bfloat16
    # the same math on the bfloat16-rounded operands, in float64
    ub, kb, Db = (t.bfloat16().double() for t in (u, k, D))
    ref = fftconv_ext.long_conv1d(ub, kb, Db)
    assert rel_err(y.double(), ref) < BF16_TOL
    # the layers built on it
    s4 = S4DConv(4, state=8)
    sg = SGConv1d(4, l_max=64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert s4(u).dtype == torch.bfloat16 and sg(u).dtype == torch.bfloat16


def test_fourier_mix_under_autocast_keeps_its_dtype_as_torch_fft_does():
    x = torch.randn(2, 9, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fftconv_ext.fourier_mix(x)
        ref = torch.fft.fft2(x).real
    assert y.dtype == ref.dtype == torch.float32
    assert rel_err(y, ref) < 1e-5
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert FourierMix()(x).dtype == torch.float32


@pytest.mark.compile
def test_autocast_under_torch_compile_fullgraph():
    x, w = torch.randn(2, 4, 16, 16), torch.randn(4, 1, 9, 9)

    def f(x, w):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fftconv_ext.conv2d(x, w, padding=4, groups=4, algo="fft")
    eager = f(x, w)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")(x, w)
    assert compiled.dtype == eager.dtype == torch.bfloat16
    assert rel_err(compiled.float(), eager.float()) < 1e-2


@pytest.mark.compile
def test_autocast_under_torch_export():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = FFTConv2d(4, 4, 9, padding=4, groups=4, algo="fft")

        def forward(self, x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.conv(x)
    m, x = M(), torch.randn(2, 4, 16, 16)
    ep = torch.export.export(m, (x,))
    y = ep.module()(x)
    assert y.dtype == torch.bfloat16
    assert rel_err(y.float(), m(x).float()) < 1e-2


def _train(model, x, target, steps=12, lr=1e-2):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x).float(), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_converted_convnext_trains_under_bf16_autocast():
    torch.manual_seed(0)
    model = fftconv_ext.models.ConvNeXt(depths=(1, 1, 1, 1), dims=(16, 24, 32, 48), num_classes=4)
    fast = fftconv_ext.convert(model, algo="fft")
    assert fast.fftconv_converted, "nothing was converted"
    x, target = torch.randn(8, 3, 64, 64), torch.randint(0, 4, (8,))
    losses = _train(fast, x, target)
    assert losses[-1] < 0.7 * losses[0], losses


def test_converted_replknet_block_trains_under_bf16_autocast():
    from fftconv_ext.models.replknet import RepLKBlock
    torch.manual_seed(0)
    block = nn.Sequential(RepLKBlock(8, 8, 13, 5, 0.0), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    fast = fftconv_ext.convert(block, algo="fft")
    assert fast.fftconv_converted
    x, target = torch.randn(6, 8, 16, 16), torch.randint(0, 3, (6,))
    losses = _train(fast, x, target, steps=15, lr=5e-2)
    assert losses[-1] < 0.7 * losses[0], losses


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast_training_step(dtype):
    torch.manual_seed(0)
    ours, ref = _pair(FFTConv2d, nn.Conv2d, 8, 8, 15, padding=7, groups=8)
    ours, ref = ours.cuda(), ref.cuda()
    x = torch.randn(4, 8, 32, 32, device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        y, r = ours(x), ref(x)
    assert y.dtype == r.dtype == dtype
    assert rel_err(y.float(), r.float()) < (5e-3 if dtype == torch.float16 else BF16_TOL)
    # a training step with a GradScaler (float16), as mixed-precision training runs it
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    opt = torch.optim.SGD(ours.parameters(), lr=1e-3)
    with torch.autocast("cuda", dtype=dtype):
        loss = ours(x).float().square().mean()
        ref_loss = ref(x).float().square().mean()
    scaler.scale(loss).backward()
    ref_loss.backward()
    scaler.unscale_(opt)
    assert rel_err(ours.weight.grad, ref.weight.grad) < 5e-2
    scaler.step(opt)
    scaler.update()
    assert all(torch.isfinite(p).all() for p in ours.parameters())


# ---- meta tensors -------------------------------------------------------------------------------

def test_every_op_on_meta_tensors():
    meta = torch.device("meta")
    x, w, b = (torch.empty(s, device=meta) for s in ((2, 4, 16, 12), (8, 2, 5, 3), (8,)))
    y = fftconv_ext.conv2d(x, w, b, stride=2, padding=(2, 1), groups=2)
    assert y.device == meta and y.shape == F.conv2d(x, w, b, stride=2, padding=(2, 1), groups=2).shape
    y = fftconv_ext.conv2d(x.to(memory_format=torch.channels_last), w, b, padding="same", groups=2)
    assert y.shape == (2, 8, 16, 12) and y.is_contiguous(memory_format=torch.channels_last)
    y = fftconv_ext.conv2d(x.bfloat16(), w.bfloat16(), padding=2, groups=2)
    assert y.dtype == torch.bfloat16
    y1 = fftconv_ext.conv1d(x[:, :, 0], w[:, :, 0], b, padding=2, groups=2, dilation=2)
    assert y1.shape == F.conv1d(x[:, :, 0], w[:, :, 0], b, padding=2, groups=2, dilation=2).shape
    u, k, D = (torch.empty(s, device=meta) for s in ((2, 4, 64), (4, 32), (4,)))
    assert fftconv_ext.long_conv1d(u, k, D).shape == (2, 4, 64)
    assert fftconv_ext.fourier_mix(torch.empty(2, 9, 16, device=meta)).shape == (2, 9, 16)


@pytest.mark.parametrize("make,shape", [
    (lambda: FFTConv2d(4, 6, 7, padding=3, groups=2), (2, 4, 16, 16)),
    (lambda: FFTConv1d(4, 4, 9, padding=4), (2, 4, 32)),
    (lambda: LongConv2d(4), (2, 4, 16, 16)),
    (lambda: SGConv1d(4, l_max=32), (2, 4, 32)),
    (lambda: S4DConv(4, state=8), (2, 4, 32)),
    (lambda: FourierMix(), (2, 9, 16)),
])
def test_every_layer_builds_and_runs_on_meta(make, shape):
    with torch.device("meta"):
        layer = make()
        y = layer(torch.empty(shape))
    assert y.device.type == "meta"
    layer.to_empty(device="cpu")
    cpu_y = layer.to("cpu")(torch.zeros(shape)) if not list(layer.parameters()) else None
    assert cpu_y is None or cpu_y.shape == y.shape


def test_build_on_meta_then_materialise_matches_f_conv2d():
    with torch.device("meta"):
        model = nn.Sequential(FFTConv2d(4, 4, 11, padding=5, groups=4, algo="fft"), nn.GELU(),
                              FFTConv2d(4, 8, 7, padding=3, algo="fft"))
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    for m in model:
        if isinstance(m, nn.Conv2d):
            m.reset_parameters()
    x = torch.randn(2, 4, 20, 20)
    c1, c2 = model[0], model[2]
    ref = F.conv2d(F.gelu(F.conv2d(x.double(), c1.weight.double(), c1.bias.double(), padding=5, groups=4)),
                   c2.weight.double(), c2.bias.double(), padding=3)
    assert rel_err(model(x).double(), ref) < 1e-5


# ---- transformations ----------------------------------------------------------------------------

def test_vmap_over_a_batch_of_inputs():
    x, w = torch.randn(3, 2, 4, 12, 12, dtype=torch.float64), torch.randn(4, 1, 5, 5, dtype=torch.float64)
    y = torch.vmap(lambda xi: fftconv_ext.conv2d(xi, w, padding=2, groups=4, algo="fft"))(x)
    ref = torch.stack([F.conv2d(xi, w, padding=2, groups=4) for xi in x])
    assert rel_err(y, ref) < 1e-12


def test_jit_trace():
    m = FFTConv2d(4, 4, 9, padding=4, groups=4, algo="fft").double()
    x = torch.randn(2, 4, 16, 16, dtype=torch.float64)
    traced = torch.jit.trace(m, (x,))
    x2 = torch.randn(2, 4, 16, 16, dtype=torch.float64)
    assert rel_err(traced(x2), F.conv2d(x2, m.weight, m.bias, padding=4, groups=4)) < 1e-12


@pytest.mark.compile
def test_torch_export_round_trip():
    m = FFTConv2d(4, 4, 9, padding=4, groups=4, algo="fft").double()
    x = torch.randn(2, 4, 16, 16, dtype=torch.float64)
    ep = torch.export.export(m, (x,))
    assert "fftconv" in str(ep.graph)
    assert rel_err(ep.module()(x), F.conv2d(x, m.weight, m.bias, padding=4, groups=4)) < 1e-12


def test_activation_checkpointing():
    from torch.utils.checkpoint import checkpoint
    m = FFTConv2d(4, 4, 9, padding=4, groups=4, algo="fft").double()
    x = torch.randn(2, 4, 16, 16, dtype=torch.float64, requires_grad=True)
    checkpoint(m, x, use_reentrant=False).square().sum().backward()
    g_ckpt, w_ckpt = x.grad.clone(), m.weight.grad.clone()
    x.grad = None
    m.weight.grad = None
    m(x).square().sum().backward()
    assert rel_err(g_ckpt, x.grad) < 1e-12 and rel_err(w_ckpt, m.weight.grad) < 1e-12


def test_deterministic_mode_gives_bitwise_repeats():
    torch.use_deterministic_algorithms(True)
    try:
        x, w = torch.randn(2, 8, 24, 24), torch.randn(8, 1, 13, 13)
        runs = []
        for _ in range(2):
            xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
            y = fftconv_ext.conv2d(xg, wg, padding=6, groups=8, algo="fft")
            y.square().sum().backward()
            runs.append((y, xg.grad, wg.grad))
        assert all(torch.equal(a, b) for a, b in zip(*runs))
    finally:
        torch.use_deterministic_algorithms(False)
