"""Why the FFT modules refuse torch.jit.script, and what to use instead.

Their forward runs Python that prepares each operator call (argument checks, the
mapping of 1-D and 3-D problems onto the 2-D operator, the algorithm choice), and
TorchScript compiles only a subset of Python. torch.jit.script's
``__prepare_scriptable__`` hook could swap each layer for its plain torch class,
but the hook's result is assigned into the parent module, so scripting would
silently change the user's own model. The modules raise instead, naming the
ways that do work: torch.jit.trace and torch.export record the operators
(the FFT path is kept), and ``fftconv_ext.revert(model)`` is a plain torch model
that scripts.
"""
from __future__ import annotations


class NotScriptable:
    """Mixin: ``torch.jit.script`` of a module that holds this one raises a RuntimeError
    that says what to use instead, before anything in the model is changed."""
    _revertible = False  # True where fftconv_ext.revert() gives the plain torch module

    def __prepare_scriptable__(self):
        name = type(self).__name__
        ways = "torch.jit.trace or torch.export (both keep the FFT operators; see docs/deploy.md)"
        if self._revertible:
            ways += ", or script fftconv_ext.revert(model), which computes with plain torch convolutions"
        raise RuntimeError(
            f"torch.jit.script cannot compile {name}: its forward runs Python that prepares the fftconv "
            f"operator call, which TorchScript does not compile. Use {ways}.")
