"""long_conv1d against direct float64 references (F.conv1d for causal, an explicit DFT for circular)."""
import pytest
import torch
import torch.nn.functional as F

import fftconv_ext
from conftest import rel_err


def _causal_reference(u, k, D):
    C, Lk = k.shape
    y = F.conv1d(F.pad(u.double(), (Lk - 1, 0)), k.double().flip(-1).unsqueeze(1), groups=C)
    return y + D.double().view(1, -1, 1) * u.double() if D is not None else y


def _circular_reference(u, k, D):
    L = u.shape[-1]
    kz = torch.zeros(k.shape[0], L, dtype=torch.float64)
    kz[:, : k.shape[1]] = k.double()
    n = torch.arange(L, dtype=torch.float64)
    dft = torch.exp(-2j * torch.pi * n[:, None] * n[None, :] / L)  # explicit DFT matrix
    y = ((u.double().to(dft.dtype) @ dft) * (kz.to(dft.dtype) @ dft)) @ dft.conj() / L
    y = y.real
    return y + D.double().view(1, -1, 1) * u.double() if D is not None else y


@pytest.mark.parametrize("L", [64, 97, 100, 127, 256, 1000])  # power of two, prime, even, odd
@pytest.mark.parametrize("short", [True, False])
@pytest.mark.parametrize("causal", [True, False])
def test_long_conv1d_matches_reference(L, short, causal):
    g = torch.Generator().manual_seed(L)
    C = 3
    Lk = L // 3 + 1 if short else L
    u = torch.randn(2, C, L, generator=g, dtype=torch.float64)
    k = torch.randn(C, Lk, generator=g, dtype=torch.float64)
    D = torch.randn(C, generator=g, dtype=torch.float64)
    y = fftconv_ext.long_conv1d(u, k, D, causal=causal)
    ref = (_causal_reference if causal else _circular_reference)(u, k, D)
    assert y.shape == u.shape
    assert rel_err(y, ref) <= 1e-10
    y_nod = fftconv_ext.long_conv1d(u, k, causal=causal)
    assert rel_err(y_nod, (_causal_reference if causal else _circular_reference)(u, k, None)) <= 1e-10


@pytest.mark.parametrize("causal", [True, False])
def test_long_conv1d_gradcheck(causal):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(2, 3, 23, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(3, 11, generator=g, dtype=torch.float64, requires_grad=True)
    D = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, k, D: fftconv_ext.long_conv1d(u, k, D, causal=causal), (u, k, D))


def test_long_conv1d_opcheck():
    u = torch.randn(2, 3, 40, dtype=torch.float64, requires_grad=True)
    k = torch.randn(3, 40, dtype=torch.float64, requires_grad=True)
    D = torch.randn(3, dtype=torch.float64)
    torch.library.opcheck(torch.ops.fftconv.long_conv1d, (u, k, D, True))
    torch.library.opcheck(torch.ops.fftconv.long_conv1d, (u, k, None, False))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_long_conv1d_low_precision(dtype):
    u = torch.randn(2, 4, 300).to(dtype)
    k = (torch.randn(4, 300) / 30).to(dtype)
    y = fftconv_ext.long_conv1d(u, k)
    assert y.dtype == dtype
    assert rel_err(y, _causal_reference(u, k, None)) <= (3e-3 if dtype == torch.float16 else 2e-2)


def test_long_conv1d_bad_input():
    u = torch.randn(2, 3, 10)
    with pytest.raises(ValueError, match="kernel length"):
        fftconv_ext.long_conv1d(u, torch.randn(3, 11))
    with pytest.raises(ValueError, match="k must be"):
        fftconv_ext.long_conv1d(u, torch.randn(4, 5))
    with pytest.raises(ValueError, match="u must be"):
        fftconv_ext.long_conv1d(u[0], torch.randn(3, 5))
    with pytest.raises(ValueError, match="D must be"):
        fftconv_ext.long_conv1d(u, torch.randn(3, 5), torch.randn(4))
    with pytest.raises(ValueError, match="dtype"):
        fftconv_ext.long_conv1d(u, torch.randn(3, 5, dtype=torch.float64))


from hypothesis import given
from hypothesis import strategies as st


def _fuzz_long_conv1d(data):
    B = data.draw(st.integers(0, 2), label="B")  # B = 0: an empty batch
    C = data.draw(st.integers(1, 3), label="C")
    L = data.draw(st.integers(1, 300), label="L")
    Lk = data.draw(st.integers(1, L), label="Lk")
    causal = data.draw(st.booleans(), label="causal")
    with_d = data.draw(st.booleans(), label="D")
    strided = data.draw(st.booleans(), label="strided")
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    u = torch.randn(B, 2 * C, L, generator=g, dtype=torch.float64)
    u = u[:, ::2] if strided else u[:, :C].contiguous()
    k = torch.randn(C, Lk, generator=g, dtype=torch.float64)
    D = torch.randn(C, generator=g, dtype=torch.float64) if with_d else None
    y = fftconv_ext.long_conv1d(u, k, D, causal=causal)
    ref = (_causal_reference if causal else _circular_reference)(u, k, D)
    assert y.shape == ref.shape
    if B:
        assert rel_err(y, ref) <= 1e-10


@given(data=st.data())
def test_hypothesis_long_conv1d(data):
    _fuzz_long_conv1d(data)



@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", ["u", "k"])
@pytest.mark.parametrize("causal", [True, False])
def test_long_conv1d_non_finite_like_conv1d(value, where, causal):
    """Non-finite values land where the direct convolution puts them, forward and backward."""
    g = torch.Generator().manual_seed(1)
    u = torch.randn(2, 3, 40, generator=g, dtype=torch.float64)
    k = torch.randn(3, 12, generator=g, dtype=torch.float64)
    (u[1, 2] if where == "u" else k[2])[5] = value
    ua, ka = u.clone().requires_grad_(), k.clone().requires_grad_()
    ur, kr = u.clone().requires_grad_(), k.clone().requires_grad_()
    y = fftconv_ext.long_conv1d(ua, ka, causal=causal)
    if causal:
        ref = _causal_reference(ur, kr, None)
    else:  # direct circular convolution (a DFT reference would spread the value everywhere)
        ref = F.conv1d(F.pad(ur, (11, 0), mode="circular"), kr.flip(-1).unsqueeze(1), groups=3)
    torch.testing.assert_close(y, ref, equal_nan=True, rtol=1e-10, atol=1e-10)
    assert torch.isfinite(y[0, :2]).all()  # other channels stay finite
    grad = torch.randn(y.shape, generator=g, dtype=torch.float64)
    y.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(ua.grad, ur.grad, equal_nan=True, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ka.grad, kr.grad, equal_nan=True, rtol=1e-10, atol=1e-10)


def test_long_conv1d_nan_is_local_in_causal_mode():
    """A NaN at position t of u reaches only outputs t..L-1 (causality), as in F.conv1d."""
    u = torch.randn(1, 2, 50, dtype=torch.float64)
    k = torch.randn(2, 10, dtype=torch.float64)
    u[0, 1, 30] = float("nan")
    y = fftconv_ext.long_conv1d(u, k)
    torch.testing.assert_close(y, _causal_reference(u, k, None), equal_nan=True, rtol=1e-10, atol=1e-10)
    assert torch.isfinite(y[0, 1, :30]).all() and torch.isnan(y[0, 1, 30:40]).all()
    assert torch.isfinite(y[0, 0]).all()
