"""Shape arithmetic shared by the Python layer (the C++ side has its own copy in
csrc/core/geometry.h, conv_output_length): one place each."""
from __future__ import annotations

import torch

LOW_PRECISION = (torch.float16, torch.bfloat16)
AUTOCAST_DEVICE_TYPES = ("cpu", "cuda")  # the device types whose autocast regions the ops follow


def output_length(n: int, k: int, pad_l: int, pad_r: int, stride: int, dilation: int) -> int:
    """Outputs of a correlation along one axis, as F.conv computes it (0 when the
    dilated kernel is longer than the padded input)."""
    span = dilation * (k - 1) + 1
    padded = n + pad_l + pad_r
    return 0 if padded < span else (padded - span) // stride + 1


def autocast_dtype(device: torch.device):
    """The dtype of the torch.autocast region active for device's type, or None outside one."""
    kind = device.type
    if kind not in AUTOCAST_DEVICE_TYPES or not torch.is_autocast_enabled(kind):
        return None
    return torch.get_autocast_dtype(kind)


def upcast(*tensors):
    """float16/bfloat16 tensors as float32, the others as they are (None stays None)."""
    return tuple(t if t is None or t.dtype not in LOW_PRECISION else t.float() for t in tensors)


def restore(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A result computed in float32 for a float16/bfloat16 dtype, returned in dtype."""
    return y if y.dtype == dtype else y.to(dtype)
