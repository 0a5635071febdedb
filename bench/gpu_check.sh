#!/usr/bin/env bash
# GPU check for an H100/H200 machine (torch 2.11 + nvcc 13.0 there, no network):
# build for sm_90 (unless an sm_90 build for this torch and Python was carried
# along and imports), run the CUDA tests (every pipeline forced in turn), every
# CUDA pipeline timed beside the torch.fft compositions, cuDNN and the peers
# (forward and forward+backward, memory, auto's choice), a kernel profile of the
# target layer, the fused small-plane kernel's A/B and shared-memory sweep, the
# quick benchmark against cuDNN and torch.fft, the transposed and 3-D convolutions,
# fourier_mix against torch.fft.
# Writes under $OUT:
#   gpu_check.log  build.log  cuda_tests.xml  <gpu>.json/.md/.png  gpu_extra.json
#   gpu_pipelines.json/.md  gpu_fused_ab.json  <gpu>-nd.json/.md
# Every stage has its own time limit; with a carried build the whole check
# takes about 5 minutes and at most 8 (a build there adds up to 5).
#
#   OUT=/some/dir bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
t_start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t_start )) s] $*"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda)"

# Optional benchmark baselines carried as wheels (no network there): .whl/*.whl
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/fftconv_bench_site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/fftconv_bench_site"
fi

stamp "== build (sm_90) =="
if python3 -c "import fftconv_ext, sys; sys.exit(0 if fftconv_ext.built_with_cuda() else 1)" 2>/dev/null; then
  echo "using the carried sm_90 build: $(ls fftconv_ext/_C*.so fftconv_ext/_testing*.so)" | tee "$OUT/build.log"
else
  rm -f fftconv_ext/_C*.so fftconv_ext/_testing*.so
  FFTCONV_FORCE_CUDA=1 FFTCONV_BUILD_TESTING=1 TORCH_CUDA_ARCH_LIST="9.0" MAX_JOBS=16 timeout 300 \
    python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1
  tail -3 "$OUT/build.log"
fi
python3 -c "import fftconv_ext; print('CUDA kernels built:', fftconv_ext.built_with_cuda())" || exit 1

stamp "== CUDA tests =="
timeout 150 python3 -m pytest -q -p no:cacheprovider --rootdir=. -o addopts="" --timeout 60 --tb=short -rfEs \
  python_tests/test_cuda.py python_tests/test_cuda_pipelines.py python_tests/test_pipeline_choice.py \
  python_tests/test_errors.py python_tests/test_bench.py \
  python_tests/test_small_plane_fused.py python_tests/test_device_checks.py python_tests/test_training_grade.py \
  --junitxml="$OUT/cuda_tests.xml" 2>&1 | tail -60

# The device checks (csrc/nonfinite/device_checks.h, default on for CUDA) had not run on a GPU
# when this script was written: if their smoke test fails, the rest of the check runs with
# them off, so that the benchmark still measures the operator.
stamp "== device checks smoke test =="
if ! timeout 20 python3 - <<'PY'
import torch, fftconv_ext, fftconv_ext._testing
x = torch.randn(4, 64, 32, 32, device="cuda")
w = torch.randn(64, 1, 31, 31, device="cuda") / 31
ref = torch.nn.functional.conv2d(x.double(), w.double(), padding=15, groups=64)
h0 = fftconv_ext._testing.spectrum_cache_unchecked_hits()
for _ in range(3):
    y = fftconv_ext.conv2d(x, w, padding=15, groups=64, algo="fft")
torch.cuda.synchronize()
err = ((y.double() - ref).norm() / ref.norm()).item()
hits = fftconv_ext._testing.spectrum_cache_unchecked_hits() - h0
print(f"device checks: {hits} unchecked hits of 3 calls, rel err {err:.1e}")
assert hits == 2 and err < 1e-5
PY
then
  echo "!! device checks failed their smoke test: off (FFTCONV_DEVICE_CHECKS=0) for the rest of this check"
  export FFTCONV_DEVICE_CHECKS=0
fi

stamp "== every CUDA pipeline beside the compositions, cuDNN and the peers; auto's choice =="
timeout 100 python3 bench/gpu_pipelines.py --json "$OUT/gpu_pipelines.json" --md "$OUT/gpu_pipelines.md"

stamp "== kernel profile of the target layer =="
timeout 20 python3 bench/gpu_profile.py --json /tmp/gpu_profile.json

stamp "== fused small-plane kernel: A/B against the cuFFT pipeline, the composition, cuDNN =="
timeout 40 python3 bench/gpu_fused_ab.py --json "$OUT/gpu_fused_ab.json"

stamp "== quick benchmark =="
timeout 75 python3 -m fftconv_ext.bench --device cuda --quick --no-progress --out "$OUT"

stamp "== transposed convolutions vs cuDNN, a torch.fft composition, torch-fftconv =="
timeout 55 python3 -m fftconv_ext.bench --device cuda --nd --quick --no-progress --out "$OUT"

stamp "== fourier_mix vs torch.fft.fft2(x).real =="
timeout 20 python3 - <<'PY'
import json, os, torch
from fftconv_ext.bench.fit import fit_markdown, run_fourier_mix
rows = run_fourier_mix(torch.device("cuda"))
extra = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "fourier_mix": rows}
try:
    with open("/tmp/gpu_profile.json") as f:
        extra["profile"] = json.load(f)
except OSError:
    pass
with open(os.path.join(os.environ["OUT"], "gpu_extra.json"), "w") as f:
    json.dump(extra, f, indent=1)
print(fit_markdown(rows, [], 12).split("### FiT-Base")[0])
PY
stamp "done"
