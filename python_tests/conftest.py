import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# Hypothesis budgets: "ci" by default; HYPOTHESIS_PROFILE=long for a deep search.
settings.register_profile("ci", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_num_threads(int(os.environ.get("FFTCONV_TEST_THREADS", "2")))

try:
    import fftconv_ext._testing  # noqa: F401  (the test hooks: fftconv_ext._testing.*)
except ImportError as e:  # a user install: built without them
    raise ImportError("the tests need fftconv_ext._testing: build with FFTCONV_BUILD_TESTING=1 "
                      "(make test does)") from e

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    """||y - ref|| / ||ref||, in float64."""
    y, ref = y.double(), ref.double()
    denom = ref.norm().item()
    diff = (y - ref).norm().item()
    return diff / denom if denom > 0 else diff


def random_case(x_shape, w_shape, *, bias=True, bias_channels=None, dtype=torch.float64, seed=0):
    """(x, w, b) drawn from N(0, 1) by a generator seeded with ``seed``, in this order; b has
    ``bias_channels`` entries (default: the weight's first dimension) or is None without bias."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*x_shape, generator=g, dtype=dtype)
    w = torch.randn(*w_shape, generator=g, dtype=dtype)
    b = torch.randn(w_shape[0] if bias_channels is None else bias_channels, generator=g, dtype=dtype) if bias else None
    return x, w, b


def reference_conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """torch.nn.Conv1d/Conv2d/Conv3d in float64 with the given weights: the independent reference."""
    dim = w.dim() - 2
    cls = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)[dim - 1]
    batched = x.dim() == dim + 2
    c_in = x.shape[1] if batched else x.shape[0]
    m = cls(c_in, w.shape[0], tuple(w.shape[2:]), stride=stride, padding=padding, dilation=dilation,
            groups=groups, bias=b is not None, padding_mode=padding_mode).double()
    with torch.no_grad():
        m.weight.copy_(w.double())
        if b is not None:
            m.bias.copy_(b.double())
    with torch.no_grad():
        return m(x.double())


def LanesOff():
    """The CPU's chunked pipelines instead of the lane ones, for a with block."""
    import fftconv_ext
    return fftconv_ext.backends.flags(cpu_lanes=False)


def fft_conv2d(*args, **kwargs):
    """fftconv_ext.conv2d forced onto the FFT operator (algo='auto' might pick F.conv2d)."""
    import fftconv_ext
    return fftconv_ext.conv2d(*args, algo="fft", **kwargs)


def fft_conv1d(*args, **kwargs):
    import fftconv_ext
    return fftconv_ext.conv1d(*args, algo="fft", **kwargs)


# Tolerances of the tests (relative errors against a float64 reference, conftest.rel_err):
# float64 through the FFT operator; float64 on small planes (short transforms: the lane and
# small-plane pipelines); float32 against a float64 reference.
TOL64 = 1e-10
TOL64_SMALL_PLANES = 1e-12
TOL32 = 3e-6

_SETTINGS = ("cpu_lanes", "cpu_chunk_bytes", "device_checks", "cuda_unverified", "cuda_small_plane",
             "cuda_small_plane_shared_kb", "benchmark")
_SPECTRA_LIMIT, _PLAN_LIMIT = fftconv_ext.cache_info()["limit"], 4096  # the limits at start (set_cache_limit)


@pytest.fixture(autouse=True)
def _fresh_process_state(tmp_path, monkeypatch):
    """Every test starts from the same process state, whatever ran before it: the backends
    settings as at import, no remembered algo='auto' choices, empty spectrum and plan caches at
    their default limits, and a cache folder of its own (never the user's)."""
    from fftconv_ext import algo
    backends = fftconv_ext.backends
    settings_before = {name: getattr(backends, name) for name in _SETTINGS}
    monkeypatch.setattr(backends, "cache_dir", str(tmp_path / "fftconv_cache"))
    algo.clear_memory()
    fftconv_ext.clear_caches()
    yield
    for name, value in settings_before.items():
        if getattr(backends, name) != value:
            setattr(backends, name, value)
    algo.clear_memory()
    fftconv_ext.clear_caches()
    fftconv_ext.set_cache_limit(_SPECTRA_LIMIT, plans=_PLAN_LIMIT)


def _descendants(pid: int) -> list:
    """Every process below pid (from /proc's parent links): torchrun starts its ranks in sessions
    of their own, so killing a process group does not reach them."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def run_processes(cmd, timeout: float, **kwargs):
    """subprocess.run(cmd, capture_output=True, text=True) in a session of its own; on a timeout
    the command and every process it started are killed (none is left behind) and
    subprocess.TimeoutExpired is raised."""
    import signal
    import subprocess
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        for pid in [proc.pid] + _descendants(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.communicate()
        raise
    finally:
        for pid in _descendants(proc.pid):  # anything still running after the command ended
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
