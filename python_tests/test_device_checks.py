"""The forward's checks on the device (csrc/fftconv/device_checks.h): the CUDA forward's
default, run here on the CPU through fftconv_ext.backends.device_checks = True.

A call whose kernel spectrum is cached for the same weight tensor at its current version
does not read anything back to the host: it flags NaN/Inf in the input, or weight values
that changed without a version bump (`.data` edits), on the device, and then recomputes the
output with a direct correlation. The references are float64 torch.nn.functional.
"""
import pytest
import torch
import torch.nn.functional as F

import fftconv_ext
from fftconv_ext import _testing

from conftest import fft_conv2d, reference_conv, rel_err, requires_cuda


@pytest.fixture
def device_checks(monkeypatch):
    monkeypatch.setattr(fftconv_ext.backends, "device_checks", True)
    fftconv_ext.clear_caches()
    yield
    fftconv_ext.clear_caches()


def hits():
    return _testing.spectrum_cache_unchecked_hits()


# (x shape, w shape, conv kwargs)
CASES = [
    ((2, 8, 20, 20), (8, 1, 7, 7), dict(padding=3, groups=8)),                       # depthwise "same"
    ((2, 6, 17, 23), (4, 3, 5, 3), dict(padding=(2, 1), groups=2)),                  # grouped, mixed kernel
    ((2, 4, 21, 19), (6, 4, 5, 5), dict(stride=2, padding=2)),                       # dense, strided
    ((1, 4, 16, 18), (4, 1, 3, 5), dict(dilation=(2, 3), padding=(2, 6), groups=4)),  # dilated
    ((2, 4, 15, 15), (4, 1, 5, 5), dict(padding="same", groups=4)),                  # odd same
    ((2, 4, 15, 15), (4, 1, 4, 4), dict(padding="same", groups=4)),                  # even same: asymmetric
    ((2, 3, 12, 12), (3, 1, 5, 5), dict(padding=2, groups=3, padding_mode="circular")),
    ((2, 4, 12, 14), (4, 4, 3, 3), dict(padding=0)),                                 # valid
]


def _call(x, w, b, kw):
    return fft_conv2d(x, w, b, **kw)


def _ref(x, w, b, kw):
    kw = dict(kw)
    return reference_conv(x, w, b, **kw)


@pytest.mark.parametrize("xs,ws,kw", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hit_takes_the_unchecked_path_and_matches(device_checks, xs, ws, kw, dtype):
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(xs, generator=g, dtype=dtype), torch.randn(ws, generator=g, dtype=dtype)
    b = torch.randn(ws[0], generator=g, dtype=dtype)
    ref = _ref(x, w, b, kw)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    h0 = hits()
    y1 = _call(x, w, b, kw)  # makes and caches the spectrum (the weight flagged on the device)
    assert hits() == h0
    y2 = _call(x, w, b, kw)  # same tensor, same version: checked on the device
    assert hits() == h0 + 1
    assert rel_err(y1, ref) < tol and rel_err(y2, ref) < tol
    assert torch.equal(y1, y2)


@pytest.mark.parametrize("xs,ws,kw", CASES)
def test_nonfinite_input_lands_where_f_conv2d_puts_it(device_checks, xs, ws, kw):
    g = torch.Generator().manual_seed(2)
    x, w = torch.randn(xs, generator=g, dtype=torch.float64), torch.randn(ws, generator=g, dtype=torch.float64)
    b = torch.randn(ws[0], generator=g, dtype=torch.float64)
    _call(x, w, b, kw)  # cache the spectrum
    bad = x.clone()
    bad[0, 0, 3, 4] = float("nan")
    bad[-1, -1, -1, 0] = float("inf")
    bad[0, -1, 0, -1] = float("-inf")
    before = bad.clone()
    h0 = hits()
    y = _call(bad, w, b, kw)
    assert hits() == h0 + 1, "the call should have taken the device-checked path"
    ref = _ref(bad, w, b, kw)
    assert torch.equal(y.isnan(), ref.isnan())
    assert torch.equal(y.isinf(), ref.isinf())
    assert torch.equal(y[y.isinf()], ref[ref.isinf()])  # signs of the infinities too
    fin = ref.isfinite()
    assert (y[fin] - ref[fin]).abs().max() < 1e-10
    assert torch.equal(bad.isnan(), before.isnan()) and torch.equal(bad.nan_to_num(), before.nan_to_num())
    # and the next finite call is back on the FFT path with the right answer
    assert rel_err(_call(x, w, b, kw), _ref(x, w, b, kw)) < 1e-12


@pytest.mark.parametrize("xs,ws,kw", CASES)
def test_silent_weight_edit_is_caught_on_the_device(device_checks, xs, ws, kw):
    """`.data` edits bump no version counter: the stale spectrum must not be used."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(xs, generator=g, dtype=torch.float64)
    w = torch.randn(ws, generator=g, dtype=torch.float64, requires_grad=True)
    _call(x, w, None, kw)
    v = w._version
    w.data.mul_(-0.5).add_(0.25)
    assert w._version == v
    h0 = hits()
    y = _call(x, w, None, kw)
    assert hits() == h0 + 1
    assert rel_err(y, _ref(x, w.detach(), None, kw)) < 1e-12


def edits_seen():
    return _testing.spectrum_cache_silent_edits_seen()


def test_silently_edited_weight_goes_back_to_host_checks(device_checks):
    """A tensor seen edited through `.data` takes the host checks for 16 calls, then 32 after
    the next edit seen, ...: a loop that edits `.data` every step does not flag (and
    recompute directly) every call."""
    g = torch.Generator().manual_seed(12)
    x = torch.randn(2, 4, 16, 16, generator=g, dtype=torch.float64)
    w = torch.randn(4, 1, 7, 7, generator=g, dtype=torch.float64)
    kw = dict(padding=3, groups=4)
    _call(x, w, None, kw)
    h0, e0 = hits(), edits_seen()
    w.data.add_(1.0)
    y = _call(x, w, None, kw)  # device path: flagged, direct, and the flag read back
    assert hits() == h0 + 1 and edits_seen() == e0
    assert rel_err(y, _ref(x, w, None, kw)) < 1e-12
    for _ in range(16):  # the edit is seen: host checks (the first recomputes the spectrum)
        assert rel_err(_call(x, w, None, kw), _ref(x, w, None, kw)) < 1e-12
    assert edits_seen() == e0 + 1 and hits() == h0 + 1
    _call(x, w, None, kw)  # then the device path again
    assert hits() == h0 + 2
    # a training loop editing `.data` every step: every output right, few device-path calls
    h1 = hits()
    for step in range(100):
        w.data.mul_(0.99)
        assert rel_err(_call(x, w, None, kw), _ref(x, w, None, kw)) < 1e-12
    assert hits() - h1 <= 3  # at the calls where the 32-, 64-call penalties ran out
    # an untouched tensor of the same shape is not affected
    w2 = torch.randn(4, 1, 7, 7, generator=g, dtype=torch.float64)
    _call(x, w2, None, kw)
    h2 = hits()
    _call(x, w2, None, kw)
    assert hits() == h2 + 1


def test_silent_nonfinite_weight_edit(device_checks):
    """A NaN written into a cached weight through `.data`: the device's direct correlation
    multiplies the zero padding as F.conv2d does, so NaN lands exactly where F puts it
    (also where the NaN tap meets only padding)."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4, 12, 12, generator=g, dtype=torch.float64)
    w = torch.randn(4, 1, 5, 5, generator=g, dtype=torch.float64)
    _call(x, w, None, dict(padding=2, groups=4))
    w.data[1, 0, 0, 0] = float("nan")
    y = _call(x, w, None, dict(padding=2, groups=4))
    ref = reference_conv(x, w, padding=2, groups=4)
    assert torch.equal(y.isnan(), ref.isnan())
    fin = ref.isfinite()
    assert (y[fin] - ref[fin]).abs().max() < 1e-12


DW = dict(padding=3, groups=4)


def _cached_depthwise(seed):
    """A float32 depthwise problem whose weight's spectrum the first call has cached."""
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(2, 4, 16, 16, generator=g), torch.randn(4, 1, 7, 7, generator=g)
    _call(x, w, None, DW)
    return x, w


def test_version_bump_goes_back_to_the_host_check(device_checks):
    x, w = _cached_depthwise(5)
    h0 = hits()
    with torch.no_grad():
        w.mul_(2)  # an optimizer step: the version moves on
    y = _call(x, w, None, dict(padding=3, groups=4))
    assert hits() == h0  # new values: a new spectrum, the weight flagged on the device
    assert rel_err(y, reference_conv(x, w, padding=3, groups=4)) < 1e-5
    _call(x, w, None, dict(padding=3, groups=4))
    assert hits() == h0 + 1


def test_other_tensor_with_same_values_is_checked_on_the_host(device_checks):
    x, w = _cached_depthwise(6)
    h0 = hits()
    y = _call(x, w.clone(), None, dict(padding=3, groups=4))
    assert hits() == h0
    assert rel_err(y, reference_conv(x, w, padding=3, groups=4)) < 1e-5


def test_inference_tensors_and_cache_off(device_checks):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 16, 16, generator=g)
    with torch.inference_mode():
        w = torch.randn(4, 1, 7, 7, generator=g)
        h0 = hits()
        for _ in range(2):
            y = _call(x, w, None, dict(padding=3, groups=4))
        assert hits() == h0  # inference tensors have no version counter
    assert rel_err(y, reference_conv(x, w.clone(), padding=3, groups=4)) < 1e-5
    w2 = torch.randn(4, 1, 7, 7, generator=g)
    fftconv_ext.set_cache_limit(0)
    try:
        for _ in range(2):
            y = _call(x, w2, None, dict(padding=3, groups=4))
        assert hits() == h0
        assert rel_err(y, reference_conv(x, w2, padding=3, groups=4)) < 1e-5
    finally:
        fftconv_ext.set_cache_limit(32)


def test_off_by_default_on_cpu(monkeypatch):
    """device_checks=None (the default) leaves the CPU on host checks (the start-up
    environment variable's parsing is tested in test_backends.py)."""
    monkeypatch.setattr(fftconv_ext.backends, "device_checks", None)
    fftconv_ext.clear_caches()
    x, w = torch.randn(2, 4, 16, 16), torch.randn(4, 1, 7, 7)
    h0 = hits()
    for _ in range(3):
        y = _call(x, w, None, dict(padding=3, groups=4))
    assert hits() == h0
    assert rel_err(y, reference_conv(x, w, padding=3, groups=4)) < 1e-5


def test_nn_module_and_gradients(device_checks):
    """A module's weight is the same tensor every call: the forward hits; the backward is exact."""
    torch.manual_seed(8)
    m = fftconv_ext.nn.FFTConv2d(6, 6, 9, padding=4, groups=6, algo="fft").double()
    x = torch.randn(2, 6, 14, 14, dtype=torch.float64, requires_grad=True)
    m(x)
    h0 = hits()
    y = m(x)
    assert hits() == h0 + 1
    y.square().sum().backward()
    xr = x.detach().clone().requires_grad_()
    wr = m.weight.detach().clone().requires_grad_()
    br = m.bias.detach().clone().requires_grad_()
    F.conv2d(xr, wr, br, padding=4, groups=6).square().sum().backward()
    for a, r in ((x.grad, xr.grad), (m.weight.grad, wr.grad), (m.bias.grad, br.grad)):
        assert rel_err(a, r) < 1e-11


def _grads(x, w, b, gy, conv):
    xs, ws, bs = (t.detach().clone().requires_grad_() for t in (x, w, b))
    return torch.autograd.grad(conv(xs, ws, bs), (xs, ws, bs), gy)


@pytest.mark.parametrize("case", ["finite", "nan grad", "inf input", "silent edit"])
def test_backward_checks_on_the_device(device_checks, case):
    """The backward takes the forward's spectrum after one read-back of device flags; a NaN/Inf
    operand or a silent weight edit sends it to the host checks, which handle them exactly."""
    g = torch.Generator().manual_seed(13)
    x = torch.randn(2, 4, 14, 14, generator=g, dtype=torch.float64)
    w = torch.randn(4, 1, 7, 7, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    gy = torch.randn(2, 4, 14, 14, generator=g, dtype=torch.float64)
    if case == "nan grad":
        gy[1, 2, 3, 4] = float("nan")
    if case == "inf input":
        x[0, 1, 0, 0] = float("inf")
    with torch.no_grad():
        fft_conv2d(torch.zeros_like(x), w, b, padding=3, groups=4)  # caches the spectrum
    xs = x.clone().requires_grad_()
    y = fft_conv2d(xs, w, b, padding=3, groups=4)
    if case == "silent edit":
        w.data.mul_(-2.0)
    h0 = hits()
    got = torch.autograd.grad(y, (xs, w), gy)
    assert hits() == h0 + 1  # the backward's lookup went through the device checks
    ref = _grads(x, w.detach(), b, gy, lambda x_, w_, b_: F.conv2d(x_, w_, b_, padding=3, groups=4))
    for a, r in zip(got, ref):
        assert torch.equal(a.isnan(), r.isnan()) and torch.equal(a.isinf(), r.isinf())
        fin = r.isfinite()
        assert (a[fin] - r[fin]).abs().max() <= 1e-10 * max(1.0, r[fin].abs().max().item())


def test_gradcheck_with_device_checks(device_checks):
    """gradcheck perturbs the weight in place: every perturbation must reach the output."""
    g = torch.Generator().manual_seed(9)
    x = torch.randn(1, 2, 7, 7, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: fft_conv2d(x, w, b, padding=1, groups=2), (x, w, b))


# ---- CUDA (the default there) -----------------------------------------------------------

@pytest.fixture(params=["0", "1"], ids=["cufft", "small_plane"])
def cuda_default_checks(monkeypatch, request):
    """The device checks CUDA takes by default once they have passed the GPU check (opted in
    until then), with the cuFFT pipeline or the small-plane kernel."""
    monkeypatch.setattr(fftconv_ext.backends, "cuda_unverified", True)
    monkeypatch.setattr(fftconv_ext.backends, "device_checks", None)
    monkeypatch.setattr(fftconv_ext.backends, "cuda_small_plane", request.param == "1")
    fftconv_ext.clear_caches()


@requires_cuda
def test_cuda_forward_hit_does_not_synchronise(cuda_default_checks):
    """Under sync debug mode "error" any host wait raises: the op and the Python call around it."""
    x = torch.randn(4, 64, 32, 32, device="cuda")
    w = torch.randn(64, 1, 31, 31, device="cuda") / 31
    fft_conv2d(x, w, None, padding=15, groups=64)
    torch.cuda.synchronize()
    h0 = hits()
    torch.cuda.set_sync_debug_mode("error")
    try:
        y = torch.ops.fftconv.conv2d_forward(x, w, None, [1, 1], [15, 15, 15, 15], [1, 1], 64, False)
        y2 = fft_conv2d(x, w, None, padding=15, groups=64)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert hits() == h0 + 2
    ref = reference_conv(x.cpu(), w.cpu(), padding=15, groups=64)
    assert rel_err(y.cpu(), ref) < 1e-5 and rel_err(y2.cpu(), ref) < 1e-5


def _syncs(fn):
    """Host waits for the device during fn, counted through torch's sync debug mode."""
    import warnings
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@requires_cuda
def test_cuda_training_step_waits_at_most_twice(cuda_default_checks):
    """After an optimizer step the forward reads nothing back (the new weight is flagged on the
    device), the backward one value (device flags); inference forwards none."""
    torch.manual_seed(14)
    conv = fftconv_ext.nn.FFTConv2d(32, 32, 31, padding=15, groups=32, algo="fft").cuda()
    opt = torch.optim.SGD(conv.parameters(), lr=1e-3)
    x = torch.randn(4, 32, 32, 32, device="cuda")
    conv(x).sum().backward()
    opt.step()
    opt.zero_grad()
    out = {}
    assert _syncs(lambda: out.setdefault("y", conv(x))) == 0  # a new weight version, flagged on the device
    assert _syncs(lambda: out["y"].sum().backward()) <= 1
    with torch.no_grad():
        assert _syncs(lambda: conv(x)) == 0


@requires_cuda
def test_cuda_small_plane_nonfinite_input(cuda_default_checks):
    """float32 depthwise, the layer the small-plane kernel takes: its load sets the flag."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(6, 8, 32, 32, generator=g)
    w = torch.randn(8, 1, 31, 31, generator=g) / 31
    wc = w.cuda()
    fft_conv2d(x.cuda(), wc, None, padding=15, groups=8)
    for where in ((0, 0, 0, 0), (5, 7, 31, 31), (3, 2, 10, 20)):
        bad = x.clone()
        bad[where] = float("nan")
        h0 = hits()
        y = fft_conv2d(bad.cuda(), wc, None, padding=15, groups=8).cpu()
        assert hits() == h0 + 1
        ref = reference_conv(bad, w, padding=15, groups=8)
        assert torch.equal(y.isnan(), ref.isnan())
        fin = ref.isfinite()
        assert (y[fin].double() - ref[fin]).abs().max() < 1e-4
    assert rel_err(fft_conv2d(x.cuda(), wc, None, padding=15, groups=8).cpu(),
                   reference_conv(x, w, padding=15, groups=8)) < 1e-5


@requires_cuda
@pytest.mark.parametrize("xs,ws,kw", CASES)
def test_cuda_nonfinite_input_and_silent_edit(monkeypatch, xs, ws, kw):
    monkeypatch.setattr(fftconv_ext.backends, "cuda_unverified", True)  # the device checks are not verified yet
    monkeypatch.setattr(fftconv_ext.backends, "device_checks", None)
    fftconv_ext.clear_caches()
    g = torch.Generator().manual_seed(10)
    x, w = torch.randn(xs, generator=g, dtype=torch.float64), torch.randn(ws, generator=g, dtype=torch.float64)
    xc, wc = x.cuda(), w.cuda()
    _call(xc, wc, None, kw)
    bad = x.clone()
    bad[0, 0, 3, 4] = float("nan")
    bad[-1, -1, -1, 0] = float("inf")
    h0 = hits()
    y = _call(bad.cuda(), wc, None, kw).cpu()
    assert hits() == h0 + 1
    ref = _ref(bad, w, None, kw)
    assert torch.equal(y.isnan(), ref.isnan()) and torch.equal(y.isinf(), ref.isinf())
    fin = ref.isfinite()
    assert (y[fin] - ref[fin]).abs().max() < 1e-10
    wc.data.mul_(-0.5)
    y = _call(xc, wc, None, kw).cpu()
    assert rel_err(y, _ref(x, w * -0.5, None, kw)) < 1e-12


def _host_checks():
    return _testing.spectrum_cache_host_checks()


@pytest.mark.parametrize("xs,ws,kw", CASES[:4])
def test_a_training_step_forward_reads_nothing_back(device_checks, xs, ws, kw):
    # each optimizer step bumps the weight's version: its forward used to read the new weight's
    # finiteness back (a wait for the device on CUDA); now the weight is flagged on the device
    g = torch.Generator().manual_seed(21)
    x = torch.randn(xs, generator=g, dtype=torch.float64)
    w = torch.randn(ws, generator=g, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    h0 = _host_checks()
    for _ in range(3):
        y = _call(x, w, None, kw)
        assert rel_err(y.detach(), _ref(x, w.detach(), None, kw)) < 1e-12
        y.square().sum().backward()
        opt.step()
        opt.zero_grad()
    assert _host_checks() == h0


def test_a_new_nonfinite_weight_is_flagged_on_the_device_and_never_served_unchecked(device_checks, monkeypatch):
    g = torch.Generator().manual_seed(22)
    x = torch.randn(2, 4, 16, 16, generator=g, dtype=torch.float64)
    w = torch.randn(4, 1, 5, 5, generator=g, dtype=torch.float64)
    w[1, 0, 2, 3] = float("nan")
    w[3, 0, 0, 0] = float("inf")
    ref = reference_conv(x, w, padding=2, groups=4)
    h0 = _host_checks()
    for _ in range(2):  # the first call makes an unchecked entry, the second compares with it
        y = _call(x, w, None, dict(padding=2, groups=4))
        assert torch.equal(y.isnan(), ref.isnan()) and torch.equal(y.isinf(), ref.isinf())
        assert (y[ref.isfinite()] - ref[ref.isfinite()]).abs().max() < 1e-10
    assert _host_checks() == h0
    # the host path (checks off) must not take the entry made from NaN/Inf values
    monkeypatch.setattr(fftconv_ext.backends, "device_checks", False)
    y = _call(x, w, None, dict(padding=2, groups=4))
    assert torch.equal(y.isnan(), ref.isnan()) and torch.equal(y.isinf(), ref.isinf())
