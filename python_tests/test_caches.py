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


def _compares():
    return fftconv_ext._testing.spectrum_cache_value_comparisons()


def test_training_step_compares_no_cached_values():
    """Same-shaped layers (another live tensor's entry) and a weight whose version moved on
    are not compared by value: on CUDA each comparison waits for the device."""
    fftconv_ext.clear_caches()
    torch.manual_seed(1)
    convs = [fftconv_ext.nn.FFTConv2d(4, 4, 7, padding=3, groups=4, algo="fft").double() for _ in range(3)]
    opt = torch.optim.SGD([p for c in convs for p in c.parameters()], lr=1e-3)
    x = torch.randn(2, 4, 16, 16, dtype=torch.float64)
    for _ in range(4):
        opt.zero_grad()
        convs[2](convs[1](convs[0](x))).sum().backward()
        c0 = _compares()
        opt.step()
        y = convs[2](convs[1](convs[0](x)))
        assert _compares() == c0  # the new weights: no comparison with the three stale entries
        ref = x
        for c in convs:
            ref = F.conv2d(ref, c.weight, c.bias, padding=3, groups=4)
        assert rel_err(y.detach(), ref.detach()) <= 1e-10
    assert fftconv_ext.cache_info()["spectra"] == 3


def test_equal_values_in_two_live_tensors_get_two_entries():
    fftconv_ext.clear_caches()
    x, w = _problem()
    w2 = w.clone()
    y1, y2 = fft_conv2d(x, w, padding=3, groups=4), fft_conv2d(x, w2, padding=3, groups=4)
    assert fftconv_ext.cache_info()["spectra"] == 2
    assert torch.equal(y1, y2)


def test_per_call_views_are_found_by_value():
    """conv1d hands the operator a new view of its weight each call: those entries' owners are
    dead, and a later view with the same values finds the spectrum by value."""
    fftconv_ext.clear_caches()
    torch.manual_seed(2)
    x = torch.randn(2, 4, 64, dtype=torch.float64)
    w = torch.randn(4, 1, 15, dtype=torch.float64)
    c0 = _compares()
    for _ in range(3):
        y = fftconv_ext.conv1d(x, w, padding=7, groups=4, algo="fft")
    assert fftconv_ext.cache_info()["spectra"] == 1
    assert _compares() == c0 + 2
    assert rel_err(y, F.conv1d(x, w, padding=7, groups=4)) <= 1e-10


def test_in_place_step_that_keeps_values_recomputes_correctly():
    fftconv_ext.clear_caches()
    x, w = _problem()
    y0 = fft_conv2d(x, w, padding=3, groups=4)
    with torch.no_grad():
        w.add_(0.0)  # version moves on, values do not
    assert torch.equal(fft_conv2d(x, w, padding=3, groups=4), y0)
    assert fftconv_ext.cache_info()["spectra"] == 1


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


# With the cache off the CPU pipelines make each group block's kernel spectra
# as they reach it (spectrum_cache.h). These problems are large enough for
# several batch and group blocks per call, so block offsets are exercised.
@pytest.mark.parametrize("case", [
    dict(x=(6, 64, 40, 40), w=(64, 1, 9, 9), padding=4, groups=64),                 # depthwise, many blocks
    dict(x=(3, 64, 24, 24), w=(64, 16, 7, 7), padding=3, groups=4),                 # grouped
    dict(x=(2, 24, 20, 20), w=(48, 24, 5, 5), padding=(1, 3), groups=1),            # dense, asymmetric
    dict(x=(4, 32, 33, 30), w=(32, 1, 11, 7), padding=5, stride=2, dilation=(2, 1), groups=32),
    dict(x=(2, 16, 18, 18), w=(16, 1, 9, 9), padding=4, groups=16, padding_mode="circular"),
])
def test_cache_off_forward_and_gradients_match_reference(case):
    fftconv_ext.set_cache_limit(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*case["x"], generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(*case["w"], generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(case["w"][0], generator=g, dtype=torch.float64, requires_grad=True)
    kw = {k: v for k, v in case.items() if k not in ("x", "w")}
    y = fft_conv2d(x, w, b, **kw)
    assert fftconv_ext.cache_info()["spectra"] == 0
    pm = kw.pop("padding_mode", "zeros")
    pad = kw.pop("padding")
    if pm == "circular":
        ref = F.conv2d(F.pad(x, (pad,) * 4, mode="circular"), w, b, **kw)
    else:
        ref = F.conv2d(x, w, b, padding=pad, **kw)
    assert rel_err(y, ref) <= 1e-10
    gy = torch.randn_like(ref)
    got = torch.autograd.grad(y, (x, w, b), gy)
    want = torch.autograd.grad(ref, (x, w, b), gy)
    for a, e in zip(got, want):
        assert rel_err(a, e) <= 1e-10
    assert fftconv_ext.cache_info()["spectra"] == 0


def test_cache_off_gradcheck():
    fftconv_ext.set_cache_limit(0)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 9, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: fft_conv2d(x, w, padding=(2, 1), groups=2), (x, w))


def test_cache_off_and_on_agree_bitwise_on_a_cached_call():
    # the same spectra, made per block or all at once, must give the same numbers
    x, w = _problem()
    fftconv_ext.set_cache_limit(0)
    off = fft_conv2d(x, w, padding=3, groups=4)
    fftconv_ext.set_cache_limit(32)
    on = fft_conv2d(x, w, padding=3, groups=4)
    assert rel_err(off, on) <= 1e-14


def test_weight_turned_non_finite_after_caching_takes_the_fallback():
    # a cache hit skips the weight's finiteness check; a changed weight must not hit
    x, w = _problem()
    _check(x, w)
    w = w.clone()
    _check(x, w)
    w[1, 0, 2, 2] = float("nan")
    y = fft_conv2d(x, w, padding=3, groups=4)
    ref = F.conv2d(x, w, padding=3, groups=4)
    assert torch.equal(torch.isnan(y), torch.isnan(ref))
    assert rel_err(y.nan_to_num(), ref.nan_to_num()) <= 1e-10


def test_signed_zero_is_a_new_weight_not_a_wrong_one():
    x, w = _problem()
    w = w.clone()
    w[0, 0, 0, 0] = 0.0
    _check(x, w)
    w[0, 0, 0, 0] = -0.0  # bitwise different, same values: recomputed, same answer
    _check(x, w)


def test_bad_spectrum_cache_limit_is_a_python_error():
    # the spectrum-only setter the benchmark uses checks its argument like set_cache_limit does
    with pytest.raises(RuntimeError, match="non-negative"):
        fftconv_ext._C.set_cache_limits(-1, -1)
    assert fftconv_ext.cache_info()["limit"] == 32
