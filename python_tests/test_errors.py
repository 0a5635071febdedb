"""Bad input: fftconv_ext raises where torch.nn.functional raises, naming the argument."""
import pytest
import torch
import torch.nn.functional as F

import fftconv_ext


def _ok():
    x = torch.randn(2, 4, 10, 10)
    w = torch.randn(6, 2, 3, 3)
    b = torch.randn(6)
    return x, w, b


BAD = {
    "wrong input rank": (lambda x, w, b: dict(input=x[0, 0]), "input"),
    "wrong weight rank": (lambda x, w, b: dict(weight=w[0]), "weight"),
    "channels != weight channels x groups": (lambda x, w, b: dict(input=x[:, :3]), "channels"),
    "groups do not divide out channels": (lambda x, w, b: dict(weight=torch.randn(5, 1, 3, 3), bias=None, groups=4), "groups"),
    "groups do not divide in channels": (lambda x, w, b: dict(groups=3), "groups"),
    "bias of the wrong size": (lambda x, w, b: dict(bias=torch.randn(5)), "bias"),
    "bias of the wrong rank": (lambda x, w, b: dict(bias=torch.randn(6, 1)), "bias"),
    "weight dtype mismatch": (lambda x, w, b: dict(weight=w.double()), "dtype"),
    "bias dtype mismatch": (lambda x, w, b: dict(bias=b.double()), "bias"),
    "kernel larger than padded input": (lambda x, w, b: dict(weight=torch.randn(6, 2, 13, 3)), "kernel"),
    "negative padding": (lambda x, w, b: dict(padding=-1), "padding"),
    "zero stride": (lambda x, w, b: dict(stride=0), "stride"),
    "same with stride": (lambda x, w, b: dict(padding="same", stride=2), "same"),
    "unknown padding string": (lambda x, w, b: dict(padding="full"), "padding"),
    "zero dilation": (lambda x, w, b: dict(dilation=0), "dilation"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_raises_like_torch(name):
    x, w, b = _ok()
    make, needle = BAD[name]
    args = dict(input=x, weight=w, bias=b, stride=1, padding=0, dilation=1, groups=2)
    args.update(make(x, w, b))
    with pytest.raises(Exception):
        F.conv2d(**args)
    with pytest.raises((ValueError, RuntimeError, TypeError)) as info:
        fftconv_ext.conv2d(**args)
    assert needle in str(info.value)


def test_device_mismatch():
    # (F.conv2d lets a meta weight through on CPU input; a real CPU/CUDA mismatch raises in both.)
    x, w, b = _ok()
    with pytest.raises(ValueError, match="device"):
        fftconv_ext.conv2d(x, w.to("meta"), b, groups=2)
    with pytest.raises(ValueError, match="device"):
        fftconv_ext.conv2d(x, w, b.to("meta"), groups=2)


def test_integer_input_rejected():
    # Integer convolution is outside this library: a clear error instead of a silent cast.
    x, w, b = _ok()
    with pytest.raises(ValueError, match="floating"):
        fftconv_ext.conv2d(x.long(), w.long(), b.long(), groups=2)


def test_errors_are_runtime_and_value_errors():
    x, w, b = _ok()
    with pytest.raises(RuntimeError):
        fftconv_ext.conv2d(x, w, b, groups=3)
    with pytest.raises(ValueError):
        fftconv_ext.conv2d(x, w, b, groups=3)


def test_bad_padding_mode():
    x, w, b = _ok()
    with pytest.raises(ValueError, match="padding_mode"):
        fftconv_ext.conv2d(x, w, b, groups=2, padding_mode="mirror")


def test_not_a_tensor():
    _, w, b = _ok()
    with pytest.raises(TypeError, match="input"):
        fftconv_ext.conv2d([[1.0]], w, b)


def test_conv1d_errors():
    x = torch.randn(2, 4, 10)
    w = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match="input"):
        fftconv_ext.conv1d(x[0, 0], w, groups=2)
    with pytest.raises(ValueError, match="kernel"):
        fftconv_ext.conv1d(x, torch.randn(4, 2, 11), groups=2)
    with pytest.raises(ValueError, match="same"):
        fftconv_ext.conv1d(x, w, padding="same", stride=2, groups=2)


def test_raw_op_checks_arguments():
    """Direct calls of torch.ops.fftconv.* are checked in C++ too (no crash)."""
    x, w, b = _ok()
    ops = torch.ops.fftconv
    with pytest.raises(RuntimeError, match="padding"):
        ops.conv2d_forward(x, w, b, [1, 1], [1, 1], [1, 1], 2, False)
    with pytest.raises(RuntimeError, match="stride"):
        ops.conv2d_forward(x, w, b, [0, 1], [0, 0, 0, 0], [1, 1], 2, False)
    with pytest.raises(RuntimeError, match="groups"):
        ops.conv2d_forward(x, w, b, [1, 1], [0, 0, 0, 0], [1, 1], 3, False)
    with pytest.raises(RuntimeError, match="bias"):
        ops.conv2d_forward(x, w, b[:5], [1, 1], [0, 0, 0, 0], [1, 1], 2, False)
    with pytest.raises(RuntimeError, match="grad_output"):
        ops.conv2d_grad_input(torch.randn(2, 6, 3, 3), w, [2, 4, 10, 10], [1, 1], [0, 0, 0, 0], [1, 1], 2, False)
    with pytest.raises(RuntimeError, match="dtype"):
        ops.conv2d_forward(x, w.double(), None, [1, 1], [0, 0, 0, 0], [1, 1], 2, False)


@pytest.mark.skipif(not fftconv_ext.built_with_cuda(), reason="the cuFFT error path exists only in CUDA builds")
def test_cufft_errors_name_status_and_problem_size():
    # No GPU needed: the message is built from the status code (CUFFT_ALLOC_FAILED = 2).
    with pytest.raises(RuntimeError, match=r"cuFFT plan creation failed with CUFFT_ALLOC_FAILED \(2\) for 8 "
                                           r"transforms of length 1024"):
        fftconv_ext._testing.cufft_check(2, "plan creation", 1024, 8, 1)
    with pytest.raises(RuntimeError, match=r"CUFFT_INVALID_SIZE \(8\) for 3 2-D transforms of 3137 x 768"):
        fftconv_ext._testing.cufft_check(8, "execution", 768, 3, 3137)
    fftconv_ext._testing.cufft_check(0, "execution", 1, 1, 1)  # CUFFT_SUCCESS: no error


def test_joint_backward_op_rejects_bad_operands():
    ops = torch.ops.fftconv
    x = torch.randn(2, 4, 10, 10)
    w = torch.randn(4, 1, 3, 3)
    g = torch.randn(2, 4, 10, 10)
    args = ([1, 1], [1, 1, 1, 1], [1, 1], 4, False)
    with pytest.raises(RuntimeError, match="grad_output has shape"):
        ops.conv2d_backward(g[:, :3], x, w, *args)
    with pytest.raises(RuntimeError, match="dtype"):
        ops.conv2d_backward(g, x, w.double(), *args)
    with pytest.raises(RuntimeError, match="grad_output"):
        ops.conv2d_backward(g.double(), x, w, *args)
    with pytest.raises(RuntimeError, match="dtype"):
        ops.conv2d_backward(g.half(), x, w, *args)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        ops.conv2d_backward(g.int(), x.int(), w.int(), *args)
    # float16 operands together are computed in float32 and returned in float16
    gx, gw = ops.conv2d_backward(g.half(), x.half(), w.half(), *args)
    rx, rw = ops.conv2d_backward(g.half().float(), x.half().float(), w.half().float(), *args)
    assert gx.dtype == gw.dtype == torch.float16
    assert torch.allclose(gx.float(), rx, rtol=1e-2, atol=1e-2) and torch.allclose(gw.float(), rw, rtol=1e-2, atol=1e-1)
