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


def _example_value(v):
    """An int for a size: itself, or a symbolic size's example value (None if it has none, or
    under torch.compile, whose symbolic sizes give none without a guard on their value)."""
    if isinstance(v, torch.SymInt):
        if torch.compiler.is_compiling():
            return None
    elif isinstance(v, int):
        return v
    node = getattr(v, "node", None)
    hint = getattr(node, "hint", None)
    return int(hint) if isinstance(hint, int) else None


def example_sizes(value):
    """Nested tuples of sizes with every symbolic size replaced by its example value, or None
    where one has none."""
    if isinstance(value, (tuple, list)):
        out = [example_sizes(v) for v in value]
        return None if any(o is None for o in out) else tuple(out)
    return _example_value(value)
