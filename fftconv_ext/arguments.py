"""What every functional entry point checks of its arguments, as torch.nn.functional does,
with errors that name the argument: tensors, dtypes and devices, stride / padding / dilation /
groups, empty shapes; the output memory format F.conv* gives; the key of a call whose checks and
choice are remembered; whether operands are finite."""
from __future__ import annotations

import operator
from typing import Sequence, Tuple

import torch

from . import _C
from ._shapes import LOW_PRECISION, autocast_dtype
from .algo import settings_version
from .tracing import is_tracing


class ConvArgumentError(ValueError, RuntimeError):
    """Bad argument to fftconv_ext.conv1d/2d/3d or conv_transpose1d/2d/3d.

    A ValueError, and also a RuntimeError as torch.nn.functional raises for
    the same mistakes, so existing ``except RuntimeError`` code keeps working.
    """


def as_int(value):
    """value as a Python int when it is an integer (int, numpy integer, anything with
    __index__) and not a bool, else None: PyTorch accepts all of these."""
    if isinstance(value, (bool, float)) or value is None:
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def int_tuple(value, n: int, name: str) -> Tuple[int, ...]:
    single = as_int(value)
    if single is not None:
        return (single,) * n
    if isinstance(value, (bool, str)):
        raise ConvArgumentError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
    try:
        items = tuple(value)
    except TypeError:
        raise ConvArgumentError(f"{name} must be an int or a tuple of {n} ints, got {value!r}") from None
    if len(items) == 1:
        items = items * n
    ints = tuple(as_int(v) for v in items)
    if len(ints) != n or any(v is None for v in ints):
        raise ConvArgumentError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
    return ints


def check_tensors(input, weight, bias, dim: int, fname: str) -> None:
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{fname}: input must be a Tensor, got {type(input).__name__}")
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{fname}: weight must be a Tensor, got {type(weight).__name__}")
    if bias is not None and not isinstance(bias, torch.Tensor):
        raise TypeError(f"{fname}: bias must be a Tensor or None, got {type(bias).__name__}")
    if input.dim() not in (dim + 1, dim + 2):
        raise ConvArgumentError(
            f"{fname}: input must be {dim + 1}-D (unbatched) or {dim + 2}-D (batched), "
            f"got shape {tuple(input.shape)}")
    if weight.dim() != dim + 2:
        raise ConvArgumentError(
            f"{fname}: weight must be {dim + 2}-D (out_channels, in_channels/groups, kernel...), "
            f"got shape {tuple(weight.shape)}")
    if not input.is_floating_point():
        raise ConvArgumentError(f"{fname}: input must be a floating-point tensor, got {input.dtype}")
    # inside torch.autocast the op casts its operands to the region's dtype (csrc/conv/autocast.cpp), as
    # F.conv2d does: mixed floating dtypes are then expected
    mixed_ok = autocast_dtype(input.device) is not None
    if weight.dtype != input.dtype and not (mixed_ok and weight.is_floating_point()):
        raise ConvArgumentError(
            f"{fname}: weight dtype {weight.dtype} does not match input dtype {input.dtype}")
    if weight.device != input.device:
        raise ConvArgumentError(
            f"{fname}: weight is on device {weight.device} but input is on device {input.device}")
    if bias is not None:
        if bias.dtype != input.dtype and not (mixed_ok and bias.is_floating_point()):
            raise ConvArgumentError(f"{fname}: bias dtype {bias.dtype} does not match input dtype {input.dtype}")
        if bias.device != input.device:
            raise ConvArgumentError(f"{fname}: bias is on device {bias.device} but input is on device {input.device}")
        if bias.dim() != 1 or bias.shape[0] != weight.shape[0]:
            raise ConvArgumentError(
                f"{fname}: bias must have shape ({weight.shape[0]},) = (out_channels,), "
                f"got {tuple(bias.shape)}")
    if input.device.type == "cuda" and not _C.built_with_cuda():
        raise RuntimeError(
            f"{fname}: input is on {input.device} but fftconv_ext was built without CUDA; reinstall "
            "with a CUDA build of torch and a CUDA toolkit (see README, 'Build')")
    if input.device.type not in ("cpu", "cuda", "meta"):
        raise ConvArgumentError(f"{fname}: only CPU, CUDA and meta tensors are supported, got {input.device}")


def check_not_empty(x, weight, out_channels_axis: int, fname: str) -> None:
    """The empty shapes torch.nn.functional refuses: a spatial axis of length 0 in an input with a
    batch and channels (only zero batch or zero channel inputs are supported), and a weight with
    no output channels (x is the batched input)."""
    if x.shape[0] > 0 and x.shape[1] > 0 and any(n == 0 for n in x.shape[2:]):
        raise ConvArgumentError(f"{fname}: input has an empty spatial axis, shape {tuple(x.shape)}: only inputs with "
                                f"zero batch or zero channels may be empty")
    if weight.shape[out_channels_axis] == 0:
        raise ConvArgumentError(f"{fname}: weight has no output channels, shape {tuple(weight.shape)}")


def memory_format_of(x) -> torch.memory_format:
    """The memory format F.conv* gives its output: channels_last for a 4-D input in that layout
    (and not also contiguous); channels_last_3d for a 5-D one where PyTorch's kernels keep it
    (oneDNN on the CPU: float32 and bfloat16; cuDNN); else contiguous."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if x.dim() == 5 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d) and (
            x.device.type != "cpu" or x.dtype in (torch.float32, torch.bfloat16)):
        return torch.channels_last_3d
    return torch.contiguous_format


def stride_dilation_groups(stride, dilation, groups, dim: int, fname: str):
    """stride and dilation as positive dim-tuples and groups as a positive int, as F.conv* accept them."""
    stride = int_tuple(stride, dim, "stride")
    dilation = int_tuple(dilation, dim, "dilation")
    if any(s <= 0 for s in stride):
        raise ConvArgumentError(f"{fname}: stride must be positive, got {stride}")
    if any(d <= 0 for d in dilation):
        raise ConvArgumentError(f"{fname}: dilation must be positive, got {dilation}")
    groups_int = as_int(groups)
    if groups_int is None or groups_int <= 0:
        raise ConvArgumentError(f"{fname}: groups must be a positive int, got {groups!r}")
    return stride, dilation, groups_int


def resolve_padding(padding, kernel: Sequence[int], stride, dilation, fname: str):
    """Per-axis (left, right) padding, F.conv conventions ('same' puts the odd extra on the right)."""
    n = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * n
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ConvArgumentError(
                    f"{fname}: padding='same' is not supported for strided convolutions (stride={stride})")
            pads = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                pads.append((total // 2, total - total // 2))
            return pads
        raise ConvArgumentError(f"{fname}: padding must be 'same', 'valid', an int or a tuple, got {padding!r}")
    pad = int_tuple(padding, n, "padding")
    if any(p < 0 for p in pad):
        raise ConvArgumentError(f"{fname}: padding must be non-negative, got {padding!r}")
    return [(p, p) for p in pad]


# algo="auto" calls whose arguments were checked and decided before go straight
# to the chosen path: the checks, padding resolution and choice cost ~20 us of
# Python, a fifth of a small direct convolution. Keyed by everything the checks
# and the choice depend on; never used while tracing.
MAX_DECIDED_CALLS = 4096


def decided_call_for(decided_calls: dict, input, weight, bias, stride, padding, dilation, groups, padding_mode,
                     dim: int, algo):
    """(key, the decided call or None) of a call. The key: the arguments as given, the settings'
    version, and the operands and calling context (type, shape, dtype, device and requires_grad
    of each tensor; grad mode, autocast dtype, thread count) as _C.operand_key packs them in one
    call. The key is None for non-tensor operands, an unhashable argument (a list) and while
    torch.jit traces: such calls take the checked path. This runs on every call: kept to one C++
    call and one hash."""
    operands = _C.operand_key(input, weight, bias)
    if operands is None:  # non-tensors: the checks then name the argument
        return None, None
    key = (dim, algo, operands, stride, padding, dilation, groups, padding_mode, settings_version())
    try:
        return key, decided_calls.get(key)
    except TypeError:
        return None, None


def all_finite(*tensors) -> bool:
    """Whether no tensor holds NaN/Inf (one read-back); True while tracing or on meta tensors,
    where values are unknown."""
    ts = [t for t in tensors if t is not None]
    if not ts or ts[0].device.type == "meta" or is_tracing(ts[0]) or torch.compiler.is_compiling():
        return True
    # a sum is finite iff every term is, unless it overflows: then the caller takes its (exact)
    # fallback for nothing, which is rare in float32/float64 and why float16/bfloat16 sum in float32;
    # a sum also reads the tensor once where isfinite(t).all() writes a mask first (4x slower)
    sums = [t.sum(dtype=torch.float32 if t.dtype in LOW_PRECISION else t.dtype).double() for t in ts]
    return bool(torch.isfinite(torch.stack(sums) if len(sums) > 1 else sums[0]).all())
