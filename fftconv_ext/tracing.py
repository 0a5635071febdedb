"""Whether a call runs under a tracer or a dispatch mode: there the values are unknown or
every op is watched, so nothing is measured, remembered or read back."""
from __future__ import annotations

import torch


def is_tracing(t: torch.Tensor) -> bool:
    """True under torch.compile / torch.export tracing, and for meta, fake and functional tensors."""
    if torch.compiler.is_compiling():
        return True
    return t.device.type == "meta" or type(t).__name__ in ("FakeTensor", "FunctionalTensor")


def under_dispatch_mode() -> bool:
    """Whether a TorchDispatchMode (FlopCounterMode, a debug mode) sees every op: timings
    there would measure the mode and add the measurement's calls to what it records."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode
    return _get_current_dispatch_mode() is not None
