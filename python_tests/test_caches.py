"""The kernel-spectrum cache never serves a stale spectrum, and stays bounded."""
import pytest
import torch
import torch.nn.functional as F

import fftconv_ext
from conftest import reference_conv, rel_err, fft_conv1d, fft_conv2d


@pytest.fixture(autouse=True)
def _fresh_cache():
    fftconv_ext.clear_caches()
    fftconv_ext.set_cache_limit(32)
    yield
    fftconv_ext.set_cache_limit(32)
    fftconv_ext.clear_caches()


def _problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 16, 16, generator=g, dtype=torch.float64)
    w = torch.randn(4, 1, 7, 7, generator=g, dtype=torch.float64)
    return x, w


def _check(x, w):
    y = fft_conv2d(x, w, padding=3, groups=4)
    assert rel_err(y, reference_conv(x, w, padding=3, groups=4)) <= 1e-10


def test_repeated_calls_hit_the_cache():
    x, w = _problem()
    _check(x, w)
    assert fftconv_ext.cache_info()["spectra"] == 1
    _check(x, w)
    assert fftconv_ext.cache_info()["spectra"] == 1


@pytest.mark.parametrize("edit", ["inplace", "data", "copy_", "optimizer", "load_state_dict"])
def test_weight_changes_are_seen(edit):
    x, w = _problem()
    conv = torch.nn.Conv2d(4, 4, 7, padding=3, groups=4, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(w)
    p = conv.weight
    _check(x, p.detach())
    y0 = fft_conv2d(x, p, padding=3, groups=4)
    if edit == "inplace":
        with torch.no_grad():
            p.mul_(-0.5)
    elif edit == "data":
        p.data[0, 0, 3, 3] += 1.0  # bypasses the version counter
    elif edit == "copy_":
        with torch.no_grad():
            p.copy_(torch.randn_like(p))
    elif edit == "optimizer":
        opt = torch.optim.SGD([p], lr=0.1)
        fft_conv2d(x, p, padding=3, groups=4).sum().backward()
        opt.step()
    else:
        conv.load_state_dict({"weight": torch.randn_like(p)})
    y1 = fft_conv2d(x, p, padding=3, groups=4)
    assert not torch.allclose(y0, y1)
    assert rel_err(y1, reference_conv(x, p.detach(), padding=3, groups=4)) <= 1e-10


def test_training_keeps_one_spectrum_per_weight():
    # every step changes the weight; its new spectrum replaces the old one instead of piling up
    fftconv_ext.clear_caches()
    torch.manual_seed(0)
    convs = [fftconv_ext.nn.FFTConv2d(4, 4, k, padding=k // 2, groups=4, algo="fft").double() for k in (7, 9)]
    opt = torch.optim.SGD([p for c in convs for p in c.parameters()], lr=1e-3)
    x = torch.randn(2, 4, 16, 16, dtype=torch.float64)
    for _ in range(5):
        opt.zero_grad()
        convs[1](convs[0](x)).sum().backward()
        opt.step()
        assert fftconv_ext.cache_info()["spectra"] == 2
    with torch.no_grad():  # and the cached spectrum is the current weight's
        for c in convs:
            assert rel_err(c(x), F.conv2d(x, c.weight, c.bias, padding=c.padding, groups=4)) <= 1e-10


def test_cache_limit_bounds_entries_and_zero_disables():
    x, _ = _problem()
    fftconv_ext.set_cache_limit(3)
    for i in range(10):
        w = torch.randn(4, 1, 5 + 2 * (i % 5), 5 + 2 * (i % 5), dtype=torch.float64)
        _check(x, w)
        assert fftconv_ext.cache_info()["spectra"] <= 3
    fftconv_ext.set_cache_limit(0)
    assert fftconv_ext.cache_info()["spectra"] == 0
    _check(x, torch.randn(4, 1, 7, 7, dtype=torch.float64))
    assert fftconv_ext.cache_info()["spectra"] == 0
    fftconv_ext.clear_caches()
    assert fftconv_ext.cache_info() == {"limit": 0, "spectra": 0, "plans": 0}


def test_bad_cache_limit():
    with pytest.raises(ValueError, match="entries"):
        fftconv_ext.set_cache_limit(-1)


def test_inference_mode_weights():
    x, w = _problem()
    with torch.inference_mode():
        wi = w.clone()  # an inference tensor
        _check(x, wi)
        wi.mul_(2.0)
        _check(x, wi)
