"""A converted model leaves the Python process it was made in: torch.export save/load,
AOTInductor packages (loaded from Python and from the C++ example) and torch.jit.trace,
each loaded in a fresh process, with a dynamic batch and a dynamic spatial size, for
algo="fft" and the default "auto"; compared against eager outputs made here."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import fftconv_ext

pytestmark = [pytest.mark.compile, pytest.mark.subprocess]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = [(2, 4, 24, 20), (3, 4, 37, 20), (1, 4, 64, 20)]  # batch and height vary; the first is the example


def _model(algo):
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(4, 4, 15, padding=7, groups=4), nn.GELU(), nn.Conv2d(4, 6, 1),
                          nn.Conv2d(6, 6, (9, 7), padding="same", groups=2), nn.ReLU()).eval()
    return fftconv_ext.convert(plain, algo=algo).eval()


def _inputs():
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(s, generator=gen) for s in SHAPES]


def _dynamic_shapes():
    return ({0: torch.export.Dim("batch", min=1, max=16), 2: torch.export.Dim("height", min=16, max=256)},)


def _fresh_process(script, *args, timeout=600):
    """Runs `script` in a new interpreter (its own session, killed on timeout), returns stdout."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, cwd=ROOT)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        raise
    assert proc.returncode == 0, out
    return out


def _assert_matches(outputs_path, model, inputs):
    outputs = torch.load(outputs_path)
    assert len(outputs) == len(inputs)
    with torch.no_grad():
        for x, got in zip(inputs, outputs):
            ref = model(x)
            assert got.shape == ref.shape
            assert float((got - ref).norm() / ref.norm()) <= 1e-5


def _holds_fftconv_ops(exported):
    return any(str(n.target).startswith("fftconv.") for n in exported.graph.nodes if n.op == "call_function")


@pytest.mark.parametrize("algo", ["fft", "auto"])
def test_torch_export_save_load_in_a_fresh_process(algo, tmp_path):
    model, inputs = _model(algo), _inputs()
    ep = torch.export.export(model, (inputs[0],), dynamic_shapes=_dynamic_shapes())
    if algo == "fft":
        assert _holds_fftconv_ops(ep)
    torch.export.save(ep, tmp_path / "model.pt2")
    torch.save(inputs, tmp_path / "inputs.pt")
    _fresh_process("""
        import sys, torch, fftconv_ext  # fftconv_ext registers the operators the program calls
        ep = torch.export.load(sys.argv[1])
        torch.save([ep.module()(x) for x in torch.load(sys.argv[2])], sys.argv[3])
    """, tmp_path / "model.pt2", tmp_path / "inputs.pt", tmp_path / "out.pt")
    _assert_matches(tmp_path / "out.pt", model, inputs)


def test_loading_without_the_operators_fails_with_the_documented_message(tmp_path):
    model, inputs = _model("fft"), _inputs()
    torch.export.save(torch.export.export(model, (inputs[0],)), tmp_path / "model.pt2")
    out = _fresh_process("""
        import sys, torch
        try:
            torch.export.load(sys.argv[1])
            print("LOADED")
        except Exception as e:
            print("FAILED:", type(e).__name__, e)
        import fftconv_ext
        torch.export.load(sys.argv[1])
        print("LOADED AFTER IMPORT")
    """, tmp_path / "model.pt2")
    assert "FAILED:" in out and "fftconv" in out and "LOADED AFTER IMPORT" in out, out


@pytest.mark.parametrize("algo", ["fft", "auto"])
def test_jit_trace_save_load_in_a_fresh_process(algo, tmp_path):
    model, inputs = _model(algo), _inputs()
    with torch.no_grad():
        traced = torch.jit.trace(model, (inputs[0],), check_trace=False)
    traced.save(str(tmp_path / "model.ts"))
    torch.save(inputs, tmp_path / "inputs.pt")
    _fresh_process("""
        import sys, torch, fftconv_ext
        m = torch.jit.load(sys.argv[1])
        torch.save([m(x) for x in torch.load(sys.argv[2])], sys.argv[3])
    """, tmp_path / "model.ts", tmp_path / "inputs.pt", tmp_path / "out.pt")
    _assert_matches(tmp_path / "out.pt", model, inputs)


def _aoti_package(algo, folder):
    """An AOTInductor package of the converted model, with a dynamic batch and height."""
    model, inputs = _model(algo), _inputs()
    ep = torch.export.export(model, (inputs[0],), dynamic_shapes=_dynamic_shapes())
    if algo == "fft":
        assert _holds_fftconv_ops(ep)
    path = torch._inductor.aoti_compile_and_package(ep, package_path=str(folder / "model.pt2"))
    return path, model, inputs, folder


@pytest.fixture(scope="module")
def aoti_package(tmp_path_factory):
    """The package of the algo="fft" model (its graph calls the operators), for Python and C++."""
    return _aoti_package("fft", tmp_path_factory.mktemp("aoti"))


@pytest.mark.parametrize("algo", ["fft", "auto"])
def test_aoti_package_loads_in_a_fresh_python_process(algo, aoti_package, tmp_path):
    path, model, inputs, folder = aoti_package if algo == "fft" else _aoti_package(algo, tmp_path)
    torch.save(inputs, folder / "inputs.pt")
    _fresh_process("""
        import sys, torch, fftconv_ext
        runner = torch._inductor.aoti_load_package(sys.argv[1])
        torch.save([runner(x) for x in torch.load(sys.argv[2])], sys.argv[3])
    """, path, folder / "inputs.pt", folder / "out_py.pt")
    _assert_matches(folder / "out_py.pt", model, inputs)


def test_operator_library_does_not_link_libtorch_python():
    path = fftconv_ext.library_path()
    ldd = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    assert "libtorch_cpu" in ldd and "libtorch_python" not in ldd, ldd
    # and it registers the operators by itself, in a process that never imports fftconv_ext
    out = _fresh_process("""
        import sys, torch
        torch.ops.load_library(sys.argv[1])
        x, w = torch.randn(1, 2, 9, 9, dtype=torch.float64), torch.randn(2, 1, 5, 5, dtype=torch.float64)
        y = torch.ops.fftconv.conv2d_forward(x, w, None, [1, 1], [2, 2, 2, 2], [1, 1], 2, False)
        print(float((y - torch.nn.functional.conv2d(x, w, padding=2, groups=2)).abs().max()))
    """, path)
    assert float(out.strip().splitlines()[-1]) < 1e-12


def _write_raw(path, t):
    import numpy as np
    with open(path, "wb") as f:
        np.array([t.dim(), *t.shape], dtype=np.int64).tofile(f)
        t.contiguous().numpy().astype(np.float32).tofile(f)


def _read_raw(path):
    import numpy as np
    with open(path, "rb") as f:
        dims = int(np.fromfile(f, dtype=np.int64, count=1)[0])
        shape = np.fromfile(f, dtype=np.int64, count=dims)
        return torch.from_numpy(np.fromfile(f, dtype=np.float32).reshape(shape))


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is needed to build the C++ example")
def test_cpp_example_runs_the_aoti_package_without_python(aoti_package):
    path, model, inputs, folder = aoti_package
    build = folder / "build"
    example = os.path.join(ROOT, "examples", "aoti_cpp")
    prefix = torch.utils.cmake_prefix_path
    for cmd in (["cmake", "-S", example, "-B", str(build), f"-DCMAKE_PREFIX_PATH={prefix}"],
                ["cmake", "--build", str(build), "-j", "2"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    with torch.no_grad():
        for i, x in enumerate(inputs):
            _write_raw(folder / f"in{i}.bin", x)
            run = subprocess.run([str(build / "run_aoti"), fftconv_ext.library_path(), path, str(folder / f"in{i}.bin"),
                                  str(folder / f"out{i}.bin")], capture_output=True, text=True, timeout=300, env=env)
            assert run.returncode == 0, run.stdout + run.stderr
            got, ref = _read_raw(folder / f"out{i}.bin"), model(x)
            assert got.shape == ref.shape
            assert float((got - ref).norm() / ref.norm()) <= 1e-5
    # the program links no Python at all
    ldd = subprocess.run(["ldd", str(build / "run_aoti")], capture_output=True, text=True).stdout
    assert "libpython" not in ldd and "libtorch_python" not in ldd, ldd


@pytest.mark.parametrize("make", [
    lambda: _model("fft"),
    lambda: fftconv_ext.convert(nn.Sequential(nn.ConvTranspose2d(4, 4, 9, padding=4)), algo="fft"),
    lambda: nn.Sequential(fftconv_ext.nn.FourierMix()),
    lambda: nn.Sequential(fftconv_ext.nn.SGConv1d(4, 32)),
], ids=["conv", "conv_transpose", "fourier_mix", "sgconv"])
def test_jit_script_refuses_with_the_ways_that_work_and_leaves_the_model_alone(make):
    model = make()
    before = [type(m) for m in model.modules()]
    with pytest.raises(RuntimeError, match=r"torch\.jit\.script cannot compile .*torch\.jit\.trace or torch\.export"):
        torch.jit.script(model)
    assert [type(m) for m in model.modules()] == before


def test_jit_script_of_the_reverted_model_matches_the_converted_one():
    model, inputs = _model("fft"), _inputs()
    with pytest.raises(RuntimeError, match=r"fftconv_ext\.revert\(model\)"):
        torch.jit.script(model)
    scripted = torch.jit.script(fftconv_ext.revert(model))
    with torch.no_grad():
        for x in inputs:
            got, want = scripted(x), model(x)
            assert float((got - want).norm() / want.norm()) <= 1e-5
