"""S4D, SGConv and LongConv2d against independent float64 constructions."""
import math

import pytest
import torch
import torch.nn.functional as F

import fftconv_ext
from fftconv_ext.models import convnext_tiny
from fftconv_ext.nn import LongConv2d, S4DConv, S4DKernel, SGConv1d
from conftest import rel_err


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_s4d_kernel_matches_recurrence(init):
    torch.manual_seed(0)
    kern = S4DKernel(3, state=16, init=init, chunk=100).double()
    L = 256
    K = kern(L)
    # the discretised system stepped one position at a time, in float64 complex
    with torch.no_grad():
        dt = kern.log_dt.exp().unsqueeze(-1)
        A = torch.complex(-kern.log_A_real.exp(), kern.A_imag)
        Abar = torch.exp(dt * A)
        Bbar = (Abar - 1) / A * torch.view_as_complex(kern.B)
        C = torch.view_as_complex(kern.C)
        u = torch.randn(2, 3, L, dtype=torch.float64)
        x = torch.zeros(2, 3, A.shape[-1], dtype=torch.complex128)
        ys = []
        for t in range(L):
            x = Abar * x + Bbar * u[:, :, t:t + 1]
            ys.append(2 * (C * x).sum(-1).real)
        y_rec = torch.stack(ys, -1)
    y = fftconv_ext.long_conv1d(u, K.detach())
    assert rel_err(y, y_rec) <= 1e-10
    # the impulse response of the recurrence is the kernel
    impulse = [2 * (C * Abar ** t * Bbar).sum(-1).real for t in range(L)]
    assert rel_err(K.detach(), torch.stack(impulse, -1)) <= 1e-10


def test_s4d_long_sequence_fits_and_layer_runs():
    kern = S4DKernel(2, state=8, chunk=8192)
    assert kern(65536).shape == (2, 65536)
    layer = S4DConv(4, state=8)
    u = torch.randn(2, 4, 300, requires_grad=True)
    layer(u).sum().backward()
    assert u.grad is not None and layer.kernel.log_dt.grad is not None


def _lerp_upsample(row, factor):
    """Linear interpolation by an integer factor with half-pixel centres, edge-clamped."""
    n = len(row)
    out = []
    for i in range(n * factor):
        src = min(max((i + 0.5) / factor - 0.5, 0.0), n - 1)
        lo = int(math.floor(src))
        hi = min(lo + 1, n - 1)
        out.append(row[lo] * (1 - (src - lo)) + row[hi] * (src - lo))
    return out


def test_sgconv_kernel_matches_definition():
    torch.manual_seed(0)
    layer = SGConv1d(2, l_max=200, kernel_dim=8, decay=0.5).double()
    assert layer.num_scales == 1 + math.ceil(math.log2(200 / 8))
    subs = [p.detach().tolist() for p in layer.sub_kernels]
    expected = []
    for ch in range(2):
        row = []
        for i, sub in enumerate(subs):
            factor = 2 ** max(0, i - 1)
            up = _lerp_upsample(sub[ch], factor) if factor > 1 else sub[ch]
            row += [v * 0.5 ** i for v in up]
        expected.append(row)
    expected = torch.tensor(expected, dtype=torch.float64)
    expected = expected / expected.norm()
    L = 150
    k = layer.kernel(L)
    assert rel_err(k, expected[:, :L]) <= 1e-12
    u = torch.randn(3, 2, L, dtype=torch.float64)
    ref = F.conv1d(F.pad(u, (L - 1, 0)), expected[:, :L].flip(-1).unsqueeze(1), groups=2) + \
        layer.D.detach().view(1, -1, 1) * u
    assert rel_err(layer(u), ref) <= 1e-10


def test_sgconv_bidirectional():
    torch.manual_seed(1)
    layer = SGConv1d(2, l_max=64, kernel_dim=8, bidirectional=True).double()
    u = torch.randn(1, 2, 64, dtype=torch.float64)
    k = layer.kernel(64)
    ref = fftconv_ext.long_conv1d(u, k[:2], layer.D.detach()) + fftconv_ext.long_conv1d(u.flip(-1), k[2:]).flip(-1)
    assert rel_err(layer(u), ref) <= 1e-12


@pytest.mark.parametrize("size", [(13, 13), (14, 16), (56, 56), (7, 9)])
def test_longconv2d_equals_conv2d_with_its_kernel(size):
    torch.manual_seed(0)
    layer = LongConv2d(4, kernel_dim=5).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 4, *size, dtype=torch.float64)
    kernel = layer.materialize(*size).detach()
    assert kernel.shape[-1] >= max(size)  # as large as the feature map
    ref = F.conv2d(x, kernel, layer.bias.detach(), padding="same", groups=4)
    assert rel_err(layer(x), ref) <= 1e-10
    layer.eval()
    with torch.no_grad():
        assert rel_err(layer(x), ref) <= 1e-10
        layer.scales[0].mul_(2)  # the eval memo must notice
        ref2 = F.conv2d(x, layer.materialize(*size), layer.bias, padding="same", groups=4)
        assert rel_err(layer(x), ref2) <= 1e-10


def test_convnext_with_longconv2d_trains():
    torch.manual_seed(0)
    model = convnext_tiny(num_classes=10, token_mixer=lambda c: LongConv2d(c, kernel_dim=3))
    x = torch.randn(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
