"""fourier_mix against torch.fft.fft2(x.double()).real: values, norms, dtypes,
layouts, gradients, opcheck, compile, errors, non-finite values, threads, fuzzing."""
import threading

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fftconv_ext
from fftconv_ext import fourier_mix

SHAPES = [  # (..., tokens, hidden): odd, even, prime, degenerate
    (1, 1), (1, 8), (7, 1), (2, 2), (5, 6), (6, 5), (13, 17), (16, 16),
    (2, 65, 192), (3, 50, 33), (1, 3137, 24), (2, 2, 31, 40), (97, 768),
]


def reference(x, norm="backward"):
    return torch.fft.fft2(x.double(), norm=norm).real


def max_rel(y, ref):
    return ((y.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-300)).item()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("norm", ["backward", "ortho", "forward"])
def test_float64_matches_fft2_real(shape, norm):
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(len(shape)))
    y = fourier_mix(x, norm)
    assert y.shape == x.shape and y.dtype == torch.float64 and y.is_contiguous()
    assert max_rel(y, reference(x, norm)) <= 1e-12


@pytest.mark.parametrize("shape", [(8, 197, 768), (2, 3137, 64), (4, 64, 37)])
def test_float32_accuracy(shape):
    x = torch.randn(*shape)
    y = fourier_mix(x)
    assert y.dtype == torch.float32
    assert max_rel(y, reference(x)) <= 2e-5


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
def test_low_precision_computed_in_float32(dtype, tol):
    x = torch.randn(2, 50, 64).to(dtype)
    y = fourier_mix(x, "ortho")
    assert y.dtype == dtype and y.shape == x.shape
    # Reference from the same rounded input; the error left is the output rounding.
    assert max_rel(y, reference(x.float(), "ortho")) <= tol
    y.float().sum()  # finite values
    assert torch.isfinite(y).all()


def test_low_precision_backward():
    x = torch.randn(2, 10, 12, dtype=torch.bfloat16, requires_grad=True)
    fourier_mix(x).sum().backward()
    assert x.grad.dtype == torch.bfloat16
    xd = x.detach().double().requires_grad_()
    torch.fft.fft2(xd).real.sum().backward()
    assert max_rel(x.grad, xd.grad) <= 1.6e-2


@pytest.mark.parametrize("make", [
    lambda t: t.transpose(-1, -2),                # transposed view
    lambda t: t[..., ::2, 1::3],                   # strided slice
    lambda t: t.permute(2, 0, 1),                  # leading dims permuted
    lambda t: t.expand(3, -1, -1, -1)[:, 0],       # stride-0 expand
])
def test_non_contiguous_inputs(make):
    base = torch.randn(4, 22, 18, dtype=torch.float64)
    x = make(base.unsqueeze(0) if "expand" in make.__code__.co_names else base)
    before = x.clone()
    y = fourier_mix(x)
    assert torch.equal(x, before), "input was modified"
    assert max_rel(y, reference(x)) <= 1e-12
    assert y.data_ptr() != base.data_ptr()


def test_empty_and_leading_dims():
    for shape in [(0, 5, 6), (3, 0, 6), (3, 5, 0), (2, 3, 4, 5, 6)]:
        x = torch.randn(*shape, dtype=torch.float64)
        y = fourier_mix(x)
        assert y.shape == x.shape
        if x.numel():
            assert max_rel(y, reference(x)) <= 1e-12


@pytest.mark.parametrize("shape,norm", [((2, 5, 6), "backward"), ((7, 4), "ortho"), ((3, 9, 11), "forward"),
                                        ((1, 13, 1), "backward")])
def test_gradcheck(shape, norm):
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fourier_mix(t, norm), (x,))
    assert torch.autograd.gradgradcheck(lambda t: fourier_mix(t, norm), (x,))


def test_backward_matches_autograd_through_fft2():
    x = torch.randn(2, 31, 24, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 31, 24, dtype=torch.float64)
    (gx,) = torch.autograd.grad(fourier_mix(x), x, g)
    (ref,) = torch.autograd.grad(torch.fft.fft2(x).real, x, g)
    assert max_rel(gx, ref) <= 1e-12


@pytest.mark.parametrize("shape,norm", [((2, 5, 6), "backward"), ((3, 7), "ortho"), ((1, 4, 9, 8), "forward")])
def test_opcheck(shape, norm):
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.fftconv.fourier_mix.default, (x, norm))


@pytest.mark.compile
def test_torch_compile_fullgraph():
    x = torch.randn(2, 17, 12)
    f = torch.compile(lambda t: fourier_mix(t, "ortho") * 2.0, fullgraph=True, backend="aot_eager")
    assert torch.allclose(f(x), fourier_mix(x, "ortho") * 2.0, rtol=0, atol=0)


@pytest.mark.parametrize("bad,err,match", [
    (lambda: fourier_mix(torch.randn(5)), ValueError, "at least 2 dimensions"),
    (lambda: fourier_mix(torch.randn(3, 4), norm="none"), ValueError, "norm"),
    (lambda: fourier_mix(torch.ones(3, 4, dtype=torch.int64)), TypeError, "real floating"),
    (lambda: fourier_mix(torch.randn(3, 4, dtype=torch.complex64)), TypeError, "real floating"),
    (lambda: fourier_mix([[1.0]]), TypeError, "must be a Tensor"),
    (lambda: torch.ops.fftconv.fourier_mix(torch.randn(4), "backward"), ValueError, "at least 2 dimensions"),
    (lambda: torch.ops.fftconv.fourier_mix(torch.randn(4, 4), "bad"), ValueError, "norm must be"),
    (lambda: torch.ops.fftconv.fourier_mix(torch.ones(4, 4, dtype=torch.int32), "backward"), TypeError,
     "real floating"),
])
def test_bad_arguments_raise_python_errors(bad, err, match):
    with pytest.raises(err, match=match):
        bad()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_spreads_over_its_plane_only(value):
    x = torch.randn(3, 9, 10, dtype=torch.float64)
    x[1, 4, 7] = value
    y = fourier_mix(x)
    ref = reference(x)
    assert torch.equal(torch.isfinite(y), torch.isfinite(ref))
    assert not torch.isfinite(y[1]).any(), "a non-finite value must reach every output of its plane"
    for p in (0, 2):
        assert max_rel(y[p], ref[p]) <= 1e-12


def test_module():
    m = fftconv_ext.nn.FourierMix("ortho")
    x = torch.randn(2, 10, 8, dtype=torch.float64)
    assert max_rel(m(x), reference(x, "ortho")) <= 1e-12
    assert list(m.parameters()) == [] and "ortho" in repr(m)
    with pytest.raises(ValueError, match="norm"):
        fftconv_ext.nn.FourierMix("bad")


def test_eight_threads_bitwise_equal_serial():
    xs = [torch.randn(2, 20 + 7 * i, 16 + 5 * i, generator=torch.Generator().manual_seed(i)) for i in range(12)]
    serial = [fourier_mix(x) for x in xs]
    out = [[None] * len(xs) for _ in range(8)]

    def worker(t):
        for rep in range(3):
            for j in range(len(xs)):
                i = (j + t) % len(xs)
                out[t][i] = fourier_mix(xs[i])

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    [th.start() for th in threads]
    [th.join() for th in threads]
    assert all(torch.equal(out[t][i], serial[i]) for t in range(8) for i in range(len(xs)))


def test_repeated_calls_bitwise_equal():
    x = torch.randn(4, 197, 96)
    assert torch.equal(fourier_mix(x), fourier_mix(x))


# ---- fuzzing -----------------------------------------------------------------

@st.composite
def fourier_problem(draw):
    lead = draw(st.lists(st.integers(0, 3), min_size=0, max_size=2))
    n = draw(st.integers(1, 40))
    d = draw(st.integers(1, 40))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    norm = draw(st.sampled_from(["backward", "ortho", "forward"]))
    layout = draw(st.sampled_from(["contiguous", "transposed", "sliced"]))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    if layout == "transposed":
        x = torch.randn(*lead, d, n, generator=g, dtype=dtype).transpose(-1, -2)
    elif layout == "sliced":
        x = torch.randn(*lead, 2 * n, d + 1, generator=g, dtype=dtype)[..., ::2, 1:]
    else:
        x = torch.randn(*lead, n, d, generator=g, dtype=dtype)
    return x, norm


def _check_fuzz(problem):
    x, norm = problem
    before = x.clone()
    y = fourier_mix(x, norm)
    assert torch.equal(x, before)
    assert y.shape == x.shape and y.dtype == x.dtype
    if x.numel():
        tol = 1e-12 if x.dtype == torch.float64 else 2e-5
        assert max_rel(y, reference(x, norm)) <= tol


@given(fourier_problem())
def test_hypothesis_fourier_mix(problem):
    _check_fuzz(problem)

