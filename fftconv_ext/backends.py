"""Run-time settings of the operator, in the style of ``torch.backends.cudnn``.

    >>> import fftconv_ext
    >>> fftconv_ext.backends.cpu_lanes = False          # for the rest of the process
    >>> with fftconv_ext.backends.flags(cuda_small_plane=True):  # for a block
    ...     y = fftconv_ext.conv2d(x, w, padding="same", groups=x.shape[1])

==============================  ===========================================================  =========
attribute                       effect                                                        default
==============================  ===========================================================  =========
``cpu_lanes``                   CPU: depthwise stride-1 small planes take the lane pipeline   ``True``
                                (docs/design.md §12); ``False``: the chunked pipeline
``cpu_chunk_bytes``             CPU: spectra bytes per chunk of the chunked pipeline          1 MiB
``device_checks``               the forward's NaN/Inf and silent-edit checks made on the      ``None``
                                device without a host wait (docs/design.md §14); ``None``:
                                the device's default (on for CUDA, off for the CPU)
``cuda_unverified``             CUDA: let code run that has not yet passed the GPU check      ``False``
                                (``verified_on_gpu()`` lists it); ``False``: never, whatever
                                the other settings, ``algo`` or a recorded choice ask for
``cuda_small_plane``            CUDA: the small-plane kernels (docs/design.md §13) on         ``False``
                                problems ``algo`` did not choose for; needs
                                ``cuda_unverified`` until they have run on a GPU
``cuda_small_plane_shared_kb``  CUDA: shared memory per block of the small-plane kernel       48
                                (at most what the device gives a block)
``benchmark``                   ``algo="auto"`` measures problems near its cost model's      ``False``
                                threshold on their first call (as ``torch.backends.cudnn.
                                benchmark``); ``False``: the cost model decides, nothing is
                                timed
``cache_dir``                   where ``benchmark`` keeps its measured choices across          ``None``
                                processes (one file per problem); ``None``: in memory only
``cpu_isa``                     read-only: ``"avx2+fma"`` or ``"baseline"``, the build of     (detected)
                                the CPU vector loops that runs
==============================  ===========================================================  =========

Every default is what has been measured and tested on that device. On CUDA
only what has passed the GPU check runs by default: today the row-pruned pipeline
(``verified_on_gpu()``); the whole-plane pipeline, the small-plane kernels and
the device checks wait for ``cuda_unverified = True``. The
environment variables ``FFTCONV_CPU_LANES``, ``FFTCONV_CPU_CHUNK_BYTES``,
``FFTCONV_DEVICE_CHECKS``, ``FFTCONV_CUDA_UNVERIFIED``, ``FFTCONV_CUDA_SMALL_PLANE``,
``FFTCONV_CUDA_SMALL_PLANE_SHARED_KB``, ``FFTCONV_BENCHMARK`` and ``FFTCONV_CACHE_DIR`` are read once, when the package is imported, as start-up defaults;
``FFTCONV_CPU_BASELINE=1`` (read once by the compiled code) forces the baseline CPU build.
Later changes to the environment have no effect: use the attributes.

The settings are process-wide, like ``torch.backends.cudnn``'s; ``flags`` restores the
previous values on exit, also on an exception.
"""
from __future__ import annotations

import contextlib
import os
import sys
import types
from typing import Iterator, Optional

from . import _C

_BOOL_WORDS = {"1": True, "0": False}  # other values leave the default


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"fftconv_ext.backends.{name} must be a bool, got {value!r}")
    return value


def _check_int(name: str, value, lo: int, hi: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bound = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"fftconv_ext.backends.{name} must be an int {bound}, got {value!r}")
    return int(value)


def _switch(name: str, doc: str) -> property:
    """An on/off setting of the compiled operator as a bool attribute."""
    def get(self) -> bool:
        return bool(_C.get_setting(name))

    def set(self, value: bool) -> None:
        self._set(name, int(_check_bool(name, value)))
    return property(get, set, doc=doc)


class _Backends(types.ModuleType):
    """The module's class: attribute access goes to the compiled settings."""

    # the settings version: bumped by every change, so caches of decided calls
    # (fftconv_ext.algo) key on one int instead of reading every setting per call
    _version = 0

    def _set(self, name: str, value: int) -> None:
        _C.set_setting(name, value)
        type(self)._version += 1

    cpu_lanes = _switch("cpu_lanes", "CPU: small depthwise planes take the lane pipeline.")

    @property
    def cpu_chunk_bytes(self) -> int:
        return int(_C.get_setting("cpu_chunk_bytes"))

    @cpu_chunk_bytes.setter
    def cpu_chunk_bytes(self, value: int) -> None:
        self._set("cpu_chunk_bytes", _check_int("cpu_chunk_bytes", value, 4096))

    @property
    def device_checks(self) -> Optional[bool]:
        v = _C.get_setting("device_checks")
        return None if v < 0 else bool(v)

    @device_checks.setter
    def device_checks(self, value: Optional[bool]) -> None:
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"fftconv_ext.backends.device_checks must be None, True or False, got {value!r}")
        self._set("device_checks", -1 if value is None else int(value))

    cuda_unverified = _switch("cuda_unverified",
                              "CUDA: let code run that has not passed the GPU check yet (see verified_on_gpu()).")
    cuda_small_plane = _switch("cuda_small_plane", "CUDA: the small-plane kernels (opt-in; needs cuda_unverified).")

    def verified_on_gpu(self) -> dict:
        """``{component: passed the GPU check}`` for every gated CUDA pipeline, kernel and
        check (one table in the operator's source, csrc/verified_on_gpu.cpp). The ``False``
        ones run only with ``cuda_unverified = True``."""
        return dict(zip(_C.gpu_component_names(), _C.gpu_components_verified()))

    @property
    def cuda_small_plane_shared_kb(self) -> int:
        return int(_C.get_setting("cuda_small_plane_shared_bytes")) >> 10

    @cuda_small_plane_shared_kb.setter
    def cuda_small_plane_shared_kb(self, value: int) -> None:
        self._set("cuda_small_plane_shared_bytes", _check_int("cuda_small_plane_shared_kb", value, 1, 200) << 10)

    _benchmark = False

    @property
    def benchmark(self) -> bool:
        """algo="auto" measures problems near its cost model's threshold (off by default)."""
        return type(self)._benchmark

    @benchmark.setter
    def benchmark(self, value: bool) -> None:
        type(self)._benchmark = _check_bool("benchmark", value)
        type(self)._version += 1

    _cache_dir: Optional[str] = None

    @property
    def cache_dir(self) -> Optional[str]:
        """Where benchmark mode keeps measured choices across processes; None: memory only."""
        return type(self)._cache_dir

    @cache_dir.setter
    def cache_dir(self, value) -> None:
        if value is not None and (not isinstance(value, (str, os.PathLike)) or not os.fspath(value)):
            raise TypeError(f"fftconv_ext.backends.cache_dir must be None or a non-empty path, got {value!r}")
        type(self)._cache_dir = None if value is None else os.path.abspath(os.fspath(value))
        type(self)._version += 1

    @property
    def cpu_isa(self) -> str:
        return _C.cpu_isa()

    def pipeline_key(self) -> tuple:
        """The settings that select among the operator's pipelines: a choice
        ``algo="auto"`` measured under one of them says nothing about another."""
        return (self.cpu_lanes, self.cpu_isa, self.cpu_chunk_bytes, self.device_checks, self.cuda_unverified,
                self.cuda_small_plane, self.cuda_small_plane_shared_kb)

    @contextlib.contextmanager
    def flags(self, **settings) -> Iterator[None]:
        """Set attributes for the duration of a ``with`` block, then restore them.

        ``with fftconv_ext.backends.flags(cpu_lanes=False, device_checks=True): ...``
        """
        names = ("cpu_lanes", "cpu_chunk_bytes", "device_checks", "cuda_unverified", "cuda_small_plane",
                 "cuda_small_plane_shared_kb", "benchmark", "cache_dir")
        unknown = sorted(set(settings) - set(names))
        if unknown:
            raise TypeError(f"fftconv_ext.backends.flags: unknown setting(s) {unknown}; expected some of {list(names)}")
        old = {name: getattr(self, name) for name in settings}
        try:
            for name, value in settings.items():
                setattr(self, name, value)
            yield
        finally:
            for name, value in old.items():
                setattr(self, name, value)


def _read_environment(module: _Backends) -> None:
    """The FFTCONV_* variables as start-up defaults (read once, here)."""
    env = os.environ

    def word(var: str) -> Optional[bool]:
        v = env.get(var)
        return None if v is None else _BOOL_WORDS.get(v.strip())

    if word("FFTCONV_CPU_LANES") is not None:
        module.cpu_lanes = word("FFTCONV_CPU_LANES")
    if env.get("FFTCONV_CPU_CHUNK_BYTES", "").isdigit() and int(env["FFTCONV_CPU_CHUNK_BYTES"]) >= 4096:
        module.cpu_chunk_bytes = int(env["FFTCONV_CPU_CHUNK_BYTES"])
    if word("FFTCONV_DEVICE_CHECKS") is not None:
        module.device_checks = word("FFTCONV_DEVICE_CHECKS")
    if word("FFTCONV_CUDA_UNVERIFIED") is not None:
        module.cuda_unverified = word("FFTCONV_CUDA_UNVERIFIED")
    if word("FFTCONV_CUDA_SMALL_PLANE") is not None:
        module.cuda_small_plane = word("FFTCONV_CUDA_SMALL_PLANE")
    kb = env.get("FFTCONV_CUDA_SMALL_PLANE_SHARED_KB", "")
    if kb.isdigit() and 1 <= int(kb) <= 200:
        module.cuda_small_plane_shared_kb = int(kb)
    if word("FFTCONV_BENCHMARK") is not None:
        module.benchmark = word("FFTCONV_BENCHMARK")
    if env.get("FFTCONV_CACHE_DIR"):
        module.cache_dir = env["FFTCONV_CACHE_DIR"]


sys.modules[__name__].__class__ = _Backends
_read_environment(sys.modules[__name__])
