"""Threads, bounded memory, aliasing, and a hypothesis search over conv1d."""
import threading

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fftconv_ext
from conftest import fft_conv1d, fft_conv2d, reference_conv, rel_err


def _problem(i):
    g = torch.Generator().manual_seed(i)
    h, k, c = 12 + 3 * (i % 5), 3 + 2 * (i % 4), 2 + (i % 3)
    x = torch.randn(2, c, h, h + 1, generator=g)
    w = torch.randn(c, 1, k, k, generator=g)
    return x, w, c, k


def test_eight_threads_bitwise_equal_serial():
    problems = [_problem(i) for i in range(16)]
    serial = [fft_conv2d(x, w, padding=k // 2, groups=c) for x, w, c, k in problems]
    results = [[None] * len(problems) for _ in range(8)]
    errors = []

    def worker(t):
        try:
            for rep in range(3):
                for j in range(len(problems)):
                    i = (j + t) % len(problems)  # different shapes at the same time
                    x, w, c, k = problems[i]
                    results[t][i] = fft_conv2d(x, w, padding=k // 2, groups=c)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for t in range(8):
        for i in range(len(problems)):
            assert torch.equal(results[t][i], serial[i])


def _rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def test_memory_stays_bounded_over_5000_calls():
    fftconv_ext.set_cache_limit(8)
    try:
        shapes = [_problem(i) for i in range(50)]
        for x, w, c, k in shapes:  # warm-up: allocator pools, plan caches
            fft_conv2d(x, w, padding=k // 2, groups=c)
        start = _rss_mib()
        for n in range(5000):
            x, w, c, k = shapes[n % 50]
            w = w + 0.0 if n % 7 == 0 else w  # some fresh weights: new cache entries
            fft_conv2d(x, w, padding=k // 2, groups=c)
        growth = _rss_mib() - start
        assert fftconv_ext.cache_info()["spectra"] <= 8
        print(f"\n[memory] RSS growth over 5000 calls on 50 shapes, cache limit 8: {growth:.1f} MiB")
        assert growth < 64, f"RSS grew by {growth:.1f} MiB over 5000 calls"
    finally:
        fftconv_ext.set_cache_limit(32)
        fftconv_ext.clear_caches()


def test_outputs_never_alias_inputs():
    x = torch.randn(1, 2, 8, 8)
    w = torch.randn(2, 1, 1, 1)
    y = fft_conv2d(x, w, groups=2)
    assert y.data_ptr() != x.data_ptr() and y.data_ptr() != w.data_ptr()
    xs = x.clone().requires_grad_()
    ws = w.clone().requires_grad_()
    fft_conv2d(xs, ws, groups=2).sum().backward()
    assert xs.grad.data_ptr() != xs.data_ptr()


def _conv1d_case(data):
    groups = data.draw(st.sampled_from([1, 2, 3]), label="groups")
    cpg = data.draw(st.integers(1, 2), label="cpg")
    opg = data.draw(st.integers(1, 2), label="opg")
    length = data.draw(st.integers(1, 64), label="length")
    k = data.draw(st.integers(1, 40), label="k")
    d = data.draw(st.integers(1, 3), label="d")
    s = data.draw(st.integers(1, 3), label="s")
    if s == 1 and data.draw(st.booleans(), label="same"):
        padding = "same"
    else:
        padding = data.draw(st.integers(0, 20), label="padding")
    mode = data.draw(st.sampled_from(["zeros", "zeros", "circular", "reflect", "replicate"]), label="mode")
    layout = data.draw(st.sampled_from(["contiguous", "strided", "unbatched"]), label="layout")
    dtype = data.draw(st.sampled_from([torch.float64, torch.float32]), label="dtype")
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    x = torch.randn(2, groups * cpg * 2, length, generator=g, dtype=dtype)[:, ::2]
    if layout == "contiguous":
        x = x.contiguous()
    elif layout == "unbatched":
        x = x[0]
    w = torch.randn(groups * opg, cpg, k, generator=g, dtype=dtype)
    b = torch.randn(groups * opg, generator=g, dtype=dtype)
    try:
        ref = reference_conv(x, w, b, s, padding, d, groups, padding_mode=mode)
    except (RuntimeError, ValueError, NotImplementedError):  # the torch reference refuses this case, so ours must too
        with pytest.raises((RuntimeError, ValueError)):
            fft_conv1d(x, w, b, s, padding, d, groups, padding_mode=mode)
        return
    y = fft_conv1d(x, w, b, s, padding, d, groups, padding_mode=mode)
    assert y.shape == ref.shape and y.dtype == dtype
    if dtype == torch.float64:
        assert rel_err(y, ref) <= 1e-10
    else:
        # float32: relative to the magnitude of the terms summed (the correlation of |x| and
        # |w|), not of the result, which cancellation can make arbitrarily small
        scale = reference_conv(x.abs(), w.abs(), b.abs(), s, padding, d, groups, padding_mode=mode)
        assert (y.double() - ref).norm() <= 1e-5 * scale.norm()


@given(data=st.data())
def test_hypothesis_conv1d(data):
    _conv1d_case(data)

