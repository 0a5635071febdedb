"""fftconv_ext.backends: the settings API, its start-up defaults from the environment
(read once), and the separation of the product module from the test hooks."""
import json
import os
import subprocess
import sys

import pytest
import torch

import fftconv_ext
from fftconv_ext import backends
from conftest import LanesOff, reference_conv, rel_err

SETTINGS = ("cpu_lanes", "cpu_chunk_bytes", "device_checks", "cuda_unverified", "cuda_small_plane", "cuda_small_plane_shared_kb",
            "benchmark", "cache_dir")


def _fresh_process(code: str, **env) -> dict:
    """Run code in a new interpreter with only the given FFTCONV_* variables set;
    it prints one JSON value, returned here."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FFTCONV_")}
    clean.update(env)
    out = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


_READ = ("import json, fftconv_ext; b = fftconv_ext.backends; "
         "print(json.dumps({n: getattr(b, n) for n in %r}))" % (SETTINGS,))


@pytest.mark.subprocess
def test_defaults_without_environment():
    got = _fresh_process(_READ)
    assert got == {"cpu_lanes": True, "cpu_chunk_bytes": 1 << 20, "device_checks": None, "cuda_unverified": False,
                   "cuda_small_plane": False, "cuda_small_plane_shared_kb": 48, "benchmark": False, "cache_dir": None}


@pytest.mark.subprocess
def test_environment_gives_start_up_defaults(tmp_path):
    got = _fresh_process(_READ, FFTCONV_CPU_LANES="0", FFTCONV_CPU_CHUNK_BYTES="262144", FFTCONV_DEVICE_CHECKS="1",
                         FFTCONV_CUDA_UNVERIFIED="1", FFTCONV_CUDA_SMALL_PLANE="1", FFTCONV_CUDA_SMALL_PLANE_SHARED_KB="96",
                         FFTCONV_BENCHMARK="1", FFTCONV_CACHE_DIR=str(tmp_path))
    assert got == {"cpu_lanes": False, "cpu_chunk_bytes": 262144, "device_checks": True, "cuda_unverified": True,
                   "cuda_small_plane": True, "cuda_small_plane_shared_kb": 96, "benchmark": True, "cache_dir": str(tmp_path)}
    assert _fresh_process(_READ, FFTCONV_DEVICE_CHECKS="0")["device_checks"] is False


@pytest.mark.subprocess
@pytest.mark.parametrize("value", ["", "yes", "true", "2"])
def test_other_environment_values_leave_the_default(value):
    # only "1" turns a switch on and "0" off
    got = _fresh_process(_READ, FFTCONV_DEVICE_CHECKS=value, FFTCONV_CUDA_SMALL_PLANE=value, FFTCONV_CPU_LANES=value,
                         FFTCONV_CUDA_UNVERIFIED=value)
    assert (got["device_checks"], got["cuda_small_plane"], got["cpu_lanes"], got["cuda_unverified"]) == (None, False, True,
                                                                                                  False)


@pytest.mark.subprocess
def test_environment_is_read_once():
    code = ("import json, os, fftconv_ext; os.environ['FFTCONV_CPU_LANES'] = '0'; "
            "os.environ['FFTCONV_DEVICE_CHECKS'] = '1'; b = fftconv_ext.backends; "
            "print(json.dumps([b.cpu_lanes, b.device_checks]))")
    assert _fresh_process(code) == [True, None]


def test_the_compiled_operator_reads_the_settings():
    # the attribute is the compiled setting, not a Python copy
    with backends.flags(cpu_chunk_bytes=1 << 16, cuda_small_plane_shared_kb=64, device_checks=False):
        assert fftconv_ext._C.get_setting("cpu_chunk_bytes") == 1 << 16
        assert fftconv_ext._C.get_setting("cuda_small_plane_shared_bytes") == 64 << 10
        assert fftconv_ext._C.get_setting("device_checks") == 0
    assert fftconv_ext._C.get_setting("device_checks") == -1


def test_cpu_lanes_switches_the_pipeline_and_results_agree():
    # the lane pipeline runs a plane lane-by-lane, the chunked one through MKL: results
    # differ by rounding only, and both match float64 F.conv2d
    x, w = torch.randn(2, 8, 16, 16), torch.randn(8, 1, 13, 13)
    assert fftconv_ext._testing.lane_pipeline_mode(x.shape, w.shape, [1, 1], [6, 6, 6, 6], [1, 1], 8, False) > 0
    ref = reference_conv(x, w, padding=6, groups=8)
    lanes = fftconv_ext.conv2d(x, w, padding=6, groups=8, algo="fft")
    with LanesOff():
        assert backends.cpu_lanes is False
        chunked = fftconv_ext.conv2d(x, w, padding=6, groups=8, algo="fft")
    assert backends.cpu_lanes is True
    assert rel_err(lanes, ref) < 1e-5 and rel_err(chunked, ref) < 1e-5
    assert not torch.equal(lanes, chunked), "cpu_lanes=False ran the same pipeline"


def test_flags_restores_on_exception():
    before = {n: getattr(backends, n) for n in SETTINGS}
    with pytest.raises(RuntimeError, match="inside"):
        with backends.flags(cpu_lanes=False, cuda_small_plane=True, device_checks=True, cpu_chunk_bytes=8192):
            assert (backends.cpu_lanes, backends.cuda_small_plane, backends.device_checks) == (False, True, True)
            raise RuntimeError("inside")
    assert {n: getattr(backends, n) for n in SETTINGS} == before


def test_every_change_bumps_the_settings_version():
    v0 = backends._version
    with backends.flags(cpu_lanes=False):
        assert backends._version > v0
    assert backends._version > v0 + 1


@pytest.mark.parametrize("name,value,error", [
    ("cpu_lanes", 0, TypeError), ("cuda_small_plane", "1", TypeError), ("cuda_unverified", 1, TypeError), ("device_checks", 1, TypeError),
    ("cpu_chunk_bytes", 100, ValueError), ("cpu_chunk_bytes", 1.5, ValueError),
    ("cuda_small_plane_shared_kb", 0, ValueError), ("cuda_small_plane_shared_kb", 500, ValueError), ("cache_dir", "", TypeError), ("cache_dir", 3, TypeError),
    ("benchmark", 1, TypeError)])
def test_bad_values_name_the_setting(name, value, error):
    before = getattr(backends, name)
    with pytest.raises(error, match=name):
        setattr(backends, name, value)
    assert getattr(backends, name) == before


def test_flags_rejects_unknown_names():
    with pytest.raises(TypeError, match="cpu_lane"):
        with backends.flags(cpu_lane=False):
            pass


@pytest.mark.subprocess
def test_cpu_isa_is_read_only_and_honours_the_baseline_switch():
    assert backends.cpu_isa in ("avx2+fma", "baseline")
    with pytest.raises(AttributeError):
        backends.cpu_isa = "baseline"
    got = _fresh_process("import json, fftconv_ext; print(json.dumps(fftconv_ext.backends.cpu_isa))",
                         FFTCONV_CPU_BASELINE="1")
    assert got == "baseline"


@pytest.mark.subprocess
def test_user_code_never_loads_the_test_hooks():
    code = """
import json, sys, torch, fftconv_ext
from fftconv_ext.nn import FFTConv2d
x = torch.randn(2, 8, 16, 16)
fftconv_ext.conv2d(x, torch.randn(8, 1, 7, 7), padding=3, groups=8).sum()
m = fftconv_ext.convert(torch.nn.Sequential(torch.nn.Conv2d(8, 8, 9, padding=4, groups=8)))
m(x).sum().backward()
fftconv_ext.models.create_model("fit_tiny", num_classes=3, img_size=32, patch_size=8)
hooks = [n for n in dir(fftconv_ext._C) if n.startswith("_") and not n.startswith("__")]
print(json.dumps(["fftconv_ext._testing" in sys.modules, hooks]))
"""
    assert _fresh_process(code) == [False, []]


@pytest.mark.subprocess
def test_models_are_reachable_after_import_and_imported_lazily():
    code = """
import json, sys, fftconv_ext
before = "fftconv_ext.models" in sys.modules
FiT = fftconv_ext.models.FiT
print(json.dumps([before, FiT.__name__]))
"""
    assert _fresh_process(code) == [False, "FiT"]


def test_verified_on_gpu_is_one_table_and_gates_everything_else():
    table = backends.verified_on_gpu()
    assert set(table) == {"rows", "planes", "small_plane", "small_plane_weight_gradient", "small_plane_joint_backward",
                          "device_checks"}
    # the one pipeline that has passed the GPU check; flipping a flag takes a commit with its GPU run
    assert [name for name, ok in table.items() if ok] == ["rows"]
    assert backends.cuda_unverified is False
    for name, ok in table.items():
        assert fftconv_ext._C.gpu_component_enabled(name) is ok
    with backends.flags(cuda_unverified=True):
        assert all(fftconv_ext._C.gpu_component_enabled(name) for name in table)
        assert fftconv_ext._C.get_setting("cuda_unverified") == 1
    assert fftconv_ext._C.get_setting("cuda_unverified") == 0


def test_a_disqualified_component_stays_off_until_cleared():
    with backends.flags(cuda_unverified=True):
        fftconv_ext._C.disqualify_gpu_component("planes")
        try:
            assert not fftconv_ext._C.gpu_component_enabled("planes")
            assert fftconv_ext._C.gpu_component_enabled("small_plane")
        finally:
            fftconv_ext._C.clear_gpu_disqualifications()
        assert fftconv_ext._C.gpu_component_enabled("planes")
    with pytest.raises(ValueError, match="GPU component must be one of"):
        fftconv_ext._C.gpu_component_enabled("winograd")
