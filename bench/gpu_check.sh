#!/usr/bin/env bash
# GPU check for a lent H100/H200 (torch 2.11 + nvcc 13.0 there, no network):
# build for sm_90, run the CUDA tests, run the quick benchmark and fourier_mix
# against torch.fft, write JSON and logs under $OUT. Meant to finish well inside 8 minutes.
#
#   OUT=/some/dir bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"

echo "== build (sm_90) =="
t0=$(date +%s)
# Editable, so the tests below (run from the source tree) import the built extension.
export FFTCONV_FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="9.0" MAX_JOBS=16
python3 -m pip install --no-build-isolation --no-deps -q -e . > "$OUT/build.log" 2>&1 \
  || python3 setup.py build_ext --inplace >> "$OUT/build.log" 2>&1
tail -5 "$OUT/build.log"
echo "build took $(( $(date +%s) - t0 )) s"
python3 -c "import fftconv_ext; print('CUDA kernels built:', fftconv_ext.built_with_cuda())" || exit 1

echo "== CUDA tests =="
python3 -m pytest -q -p no:cacheprovider --rootdir=. python_tests/test_cuda.py python_tests/test_autograd.py \
  python_tests/test_errors.py \
  --junitxml="$OUT/cuda_tests.xml" 2>&1 | tail -25 | tee "$OUT/cuda_tests.log"

echo "== quick benchmark =="
python3 -m fftconv_ext.bench --device cuda --quick --out "$OUT" 2>&1 | tee "$OUT/bench.log"

echo "== fourier_mix vs torch.fft.fft2(x).real =="
python3 - <<'PY' 2>&1 | tee "$OUT/fourier_mix.log"
import json, os, torch
from fftconv_ext.bench.fit import fit_markdown, run_fourier_mix
rows = run_fourier_mix(torch.device("cuda"))
with open(os.path.join(os.environ["OUT"], "fourier_mix.json"), "w") as f:
    json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=1)
print(fit_markdown(rows, [], 12).split("### FiT-Base")[0])
PY
