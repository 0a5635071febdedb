"""Build of fftconv_ext: a CPU extension always, plus CUDA kernels linked to
cuFFT when the installed torch is a CUDA build and a CUDA toolkit is found.

Environment:
  FFTCONV_FORCE_CUDA=1    a missing CUDA toolkit or cuFFT is an error
  FFTCONV_DISABLE_CUDA=1  build the CPU extension only
  FFTCONV_BUILD_TESTING=1 also build fftconv_ext._testing, the test suite's hooks
                          (make test and CI set it; users' installs leave it out)
  TORCH_CUDA_ARCH_LIST    CUDA targets (default "8.0;9.0")
  CUDA_HOME / CUDA_PATH   the toolkit (else /usr/local/cuda, else nvcc's folder)

The extension is built against the torch installed in the target environment
(install torch first): `pip install .` finds it from inside pip's isolated build
environment, and `pip install --no-build-isolation .` uses it directly.
"""
import glob
import os
import shutil
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _find_cuda_home():
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            return os.environ[var]
    if os.path.exists("/usr/local/cuda/include/cuda_runtime.h"):
        return "/usr/local/cuda"
    nvcc = shutil.which("nvcc")
    if nvcc:
        home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        if os.path.exists(os.path.join(home, "include", "cuda_runtime.h")):
            return home
    return None


_cuda_home = _find_cuda_home()
if _cuda_home and not os.environ.get("CUDA_HOME"):
    # torch.utils.cpp_extension reads CUDA_HOME when imported.
    os.environ["CUDA_HOME"] = _cuda_home


def _import_installed_torch():
    """The torch of the environment being installed into.

    The extension must be compiled against the torch it will be loaded with: its
    C++ ABI and its CUDA libraries are those of one build. `pip install .` builds
    in an isolated environment that hides the target's site-packages; torch is
    therefore not a build requirement (pip would fetch another one, several GB,
    and the result would not load next to the user's), and is looked up where
    this interpreter installs packages instead.
    """
    try:
        import torch
        return torch
    except ImportError:
        pass
    import site
    import sysconfig
    hidden = [sysconfig.get_paths()[k] for k in ("purelib", "platlib")]
    if site.ENABLE_USER_SITE is not False:
        hidden.append(site.getusersitepackages())
    for path in dict.fromkeys(hidden):
        if os.path.isdir(os.path.join(path, "torch")) and path not in sys.path:
            sys.path.append(path)  # after the build environment's own packages
    try:
        import torch
        return torch
    except ImportError as e:
        raise RuntimeError(
            "fftconv_ext is compiled against the installed torch, and none was found in "
            f"{sys.executable}'s environment ({e}). Install torch first (pip install torch), "
            "then fftconv_ext (pip install .).") from e


torch = _import_installed_torch()
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _find_cufft(cuda_home):
    """(include_dir, lib_dir, link_flag) of cuFFT, or None."""
    candidates = []
    if cuda_home:
        candidates.append((os.path.join(cuda_home, "include"), os.path.join(cuda_home, "lib64")))
        candidates.append((os.path.join(cuda_home, "include"), os.path.join(cuda_home, "lib")))
    # CUDA wheels of torch ship cuFFT in site-packages/nvidia/...
    for sp in sys.path:
        for sub in ("nvidia/cu13", "nvidia/cufft", "nvidia/cu12"):
            base = os.path.join(sp, sub)
            if os.path.isdir(base):
                candidates.append((os.path.join(base, "include"), os.path.join(base, "lib")))
    for inc, lib in candidates:
        if not os.path.exists(os.path.join(inc, "cufft.h")):
            continue
        if os.path.exists(os.path.join(lib, "libcufft.so")):
            return inc, lib, "-lcufft"
        # Wheels ship only the versioned library (libcufft.so.12): link it by name.
        versioned = sorted(glob.glob(os.path.join(lib, "libcufft.so.*")), key=len)
        if versioned:
            return inc, lib, "-l:" + os.path.basename(versioned[0])
    return None


def _want_cuda():
    force = os.environ.get("FFTCONV_FORCE_CUDA") == "1"
    if os.environ.get("FFTCONV_DISABLE_CUDA") == "1":
        if force:
            raise RuntimeError("FFTCONV_FORCE_CUDA=1 and FFTCONV_DISABLE_CUDA=1 contradict each other")
        return None
    problems = []
    if torch.version.cuda is None:
        problems.append(f"the installed torch {torch.__version__} is not a CUDA build")
    if not _cuda_home or not os.path.exists(os.path.join(_cuda_home, "bin", "nvcc")):
        problems.append("no CUDA toolkit (nvcc) found; set CUDA_HOME")
    cufft = None
    if not problems:
        cufft = _find_cufft(_cuda_home)
        if cufft is None:
            problems.append("cuFFT (cufft.h, libcufft.so) not found under CUDA_HOME or site-packages/nvidia")
    if problems:
        msg = "fftconv_ext: building the CPU extension only: " + "; ".join(problems)
        if force:
            raise RuntimeError(msg.replace("building the CPU extension only", "FFTCONV_FORCE_CUDA=1 but"))
        print(msg, file=sys.stderr)
        return None
    return cufft


def _sources(folder_filter):
    """The .cpp files under csrc/ whose folder (relative to csrc/) passes folder_filter."""
    found = glob.glob("csrc/**/*.cpp", recursive=True)
    return sorted(f for f in found if folder_filter(os.path.dirname(os.path.relpath(f, "csrc"))))


def _is_product(folder):
    # testing/: the _testing module; tests/: the C++ unit tests (CMake); cuda/: CUDA builds only
    top = folder.split(os.sep)[0]
    return top not in ("testing", "tests", "cuda")


OPS_LIBRARY = "fftconv_ext.lib.libfftconv_ops"


class _BuildExtension(BuildExtension):
    """Builds the operator library first, then links the Python module _C and the
    test hooks _testing against it: one copy of its caches and settings, loaded once."""

    def build_extensions(self):
        self.extensions.sort(key=lambda e: e.name != OPS_LIBRARY)
        super().build_extensions()

    def build_extension(self, ext):
        if ext.name != OPS_LIBRARY:
            core = self.get_ext_fullpath(OPS_LIBRARY)
            here = os.path.dirname(self.get_ext_fullpath(ext.name))
            ext.library_dirs = list(ext.library_dirs) + [os.path.dirname(os.path.abspath(core))]
            rpath = os.path.relpath(os.path.dirname(os.path.abspath(core)), os.path.abspath(here))
            ext.extra_link_args = list(ext.extra_link_args) + [
                "-l:" + os.path.basename(core), f"-Wl,-rpath,$ORIGIN/{rpath}"]
        super().build_extension(ext)


def _extensions():
    include_dirs = [os.path.join(ROOT, "csrc")]
    # the operators and their registrations: no Python in them (module.cpp is the Python front)
    sources = [f for f in _sources(_is_product) if os.path.basename(f) != "module.cpp"]
    testing_sources = _sources(lambda folder: folder == "testing")
    # at::parallel_for is a header template: without OpenMP it compiles to a
    # serial loop in this extension, whatever torch's own thread count.
    cxx_flags = ["-O3", "-fopenmp"]
    link_flags = ["-fopenmp"]
    cufft = _want_cuda()
    # (name, sources, links libtorch_python): py_limited_api=True is how torch's extension
    # helpers leave libtorch_python out of the link
    modules = [(OPS_LIBRARY, sources, False), ("fftconv_ext._C", ["csrc/module.cpp"], True)]
    if os.environ.get("FFTCONV_BUILD_TESTING") == "1":
        modules.append(("fftconv_ext._testing", testing_sources, True))
    if cufft is None:
        return [CppExtension(name, srcs, include_dirs=include_dirs, extra_compile_args={"cxx": cxx_flags},
                             extra_link_args=link_flags, py_limited_api=not python)
                for name, srcs, python in modules]
    inc, lib, link = cufft
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    modules[0] = (OPS_LIBRARY, sources + _sources(lambda folder: folder.split(os.sep)[0] == "cuda")
                  + sorted(glob.glob("csrc/**/*.cu", recursive=True)), False)
    print(f"fftconv_ext: building with CUDA ({_cuda_home}), cuFFT from {lib}, "
          f"archs {os.environ['TORCH_CUDA_ARCH_LIST']}", file=sys.stderr)
    return [CUDAExtension(
        name, srcs,
        include_dirs=include_dirs + [inc],
        library_dirs=[lib],
        extra_compile_args={"cxx": cxx_flags + ["-DFFTCONV_WITH_CUDA"],
                            "nvcc": ["-O3", "-DFFTCONV_WITH_CUDA"]},
        extra_link_args=link_flags + [link, f"-Wl,-rpath,{lib}"],
        py_limited_api=not python,
    ) for name, srcs, python in modules]


setup(
    name="fftconv_ext",
    version="0.1.0",
    description="Fused FFT convolutions for PyTorch (CPU and CUDA/cuFFT)",
    packages=find_packages(include=["fftconv_ext", "fftconv_ext.*"]),
    ext_modules=_extensions(),
    cmdclass={"build_ext": _BuildExtension},
    python_requires=">=3.9",
    install_requires=["torch>=2.4", "numpy"],
    extras_require={
        "test": ["pytest", "hypothesis", "scipy"],
        "train": ["tqdm"],  # progress bars of python -m fftconv_ext.train
        # the FFT-convolution packages the benchmark compares against (install them with
        # --no-deps next to your torch: `make bench` does)
        "bench": ["tqdm", "matplotlib", "scipy", "fft-conv-pytorch==1.2.0", "torch-fftconv==1.0.0"],
    },
)
