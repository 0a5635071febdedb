"""Measured choices of benchmark mode, remembered: the key of a problem (what a measured choice
depends on) and the persistent cache under ``backends.cache_dir``: one small file per problem,
written whole and renamed into place, so concurrent processes never lose or corrupt each other's
entries; an unreadable, foreign or malformed file is ignored."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from typing import Optional

import torch

from . import backends


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}"


_build: Optional[str] = None


def build_id() -> str:
    """Identity of the compiled operator (size and modification time of its
    library): a rebuilt operator may be faster or slower, so choices measured
    with another build are not reused."""
    global _build
    if _build is None:
        from . import _C
        try:
            st = os.stat(_C.__file__)
            _build = f"{st.st_size}-{st.st_mtime_ns}"
        except (OSError, AttributeError):
            _build = "unknown"
    return _build


def problem_key(device: torch.device, dtype: torch.dtype, problem, direction: str) -> str:
    """What a measured choice depends on: the device, the software, the operator's settings,
    the thread count, and the problem (problem.ConvProblem.description) and direction."""
    threads = torch.get_num_threads() if device.type == "cpu" else 0
    return "|".join(map(str, (_device_name(device), torch.__version__, build_id(), backends.pipeline_key(), threads,
                              dtype, problem.description(), direction)))


def entry_path(key: str) -> Optional[str]:
    """The file that holds the measured choice of problem `key`, or None (no cache_dir)."""
    if backends.cache_dir is None:
        return None
    name = hashlib.sha256(key.encode()).hexdigest()[:32] + ".json"
    return os.path.join(backends.cache_dir, "auto", name)


def _valid(choice) -> bool:
    return isinstance(choice, str) and choice.split(":")[0] in ("fft", "direct")


def read_entry(key: str) -> Optional[str]:
    path = entry_path(key)
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    # another problem's file (a hash collision, a hand edit) or a malformed one: not ours
    if not isinstance(data, dict) or data.get("key") != key or not _valid(data.get("choice")):
        return None
    return data["choice"]


def write_entry(key: str, choice: str) -> None:
    path = entry_path(key)
    if path is None:
        return
    try:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"key": key, "choice": choice}, f)
            os.replace(tmp, path)  # atomic: a reader sees the old file or the new one, whole
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass  # a read-only folder: the choice lives in memory for this process
