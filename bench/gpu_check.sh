#!/usr/bin/env bash
# GPU check for an H100/H200 machine (torch 2.11 + nvcc 13.0 there, 16 cores, no network), in
# the order that finds faults first and survives them:
#   build      sm_90, with every core (unless a build for this torch and Python was carried along)
#   memcheck   compute-sanitizer memcheck over the CUDA tests (PYTORCH_NO_CUDA_MEMORY_CACHING=1,
#              so that an access past an allocation is past the allocation), small-plane kernels first
#   racecheck  compute-sanitizer racecheck over the small-plane kernels' tests (shared memory, barriers)
#   tests      each CUDA test file in a process of its own with CUDA_LAUNCH_BLOCKING=1: a fault
#              ends that file's process only, and is blamed on the test that caused it
#   bench      every pipeline forced in turn beside both torch.fft compositions, cuDNN,
#              torch-fftconv and cupyx (forward, forward+backward, memory, auto's choice), the small-plane
#              kernel's A/B, a kernel profile, the quick benchmark, the transposed and 3-D
#              convolutions, fourier_mix
# Every stage has a time limit of its own, within one budget for the whole check
# (GPU_CHECK_SECONDS, default 530: one 9-minute command), and writes its logs, JSON and markdown
# into $OUT as soon as it ends; stages.tsv records each stage's exit status and seconds, and
# bench/gpu_summary.py prints the summary table at the end (also after a stage timed out).
# GPU_CHECK_STAGES picks stages (default: all, in the order above).
#
#   OUT=/some/dir bash bench/gpu_check.sh
#   OUT=/some/dir GPU_CHECK_STAGES="build bench" bash bench/gpu_check.sh    # a second run
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/fftconv_gpu_check}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OUT
BUDGET=${GPU_CHECK_SECONDS:-530}
STAGES=${GPU_CHECK_STAGES:-build memcheck racecheck tests bench}
t_start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t_start )) s] $*"; }
wanted() { case " $STAGES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
printf 'stage\tstatus\tseconds\tlimit\n' > "$OUT/stages.tsv"

# step NAME LIMIT LOG CMD...: CMD under its own time limit (cut to what is left of the budget),
# its output into $OUT/LOG (- for the console), its exit status and seconds appended to
# stages.tsv. Never stops the check.
step() {
  local name=$1 limit=$2 log=$3
  shift 3
  local left=$(( BUDGET - ($(date +%s) - t_start) ))
  if (( left < 15 )); then
    stamp "-- $name: skipped, the check's time budget is spent"
    printf '%s\tskipped\t0\t%s\n' "$name" "$limit" >> "$OUT/stages.tsv"
    return 0
  fi
  (( limit > left )) && limit=$left
  stamp "== $name (at most $limit s) =="
  local t0 rc
  t0=$(date +%s)
  if [ "$log" = - ]; then
    timeout -k 10 "$limit" "$@"
  else
    timeout -k 10 "$limit" "$@" > "$OUT/$log" 2>&1
  fi
  rc=$?
  [ "$log" = - ] || tail -n 3 "$OUT/$log"
  (( rc == 124 || rc == 137 )) && rc=timeout
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$limit" >> "$OUT/stages.tsv"
  stamp "-- $name: status $rc"
  return 0
}
summary() { python3 bench/gpu_summary.py "$OUT" | tee "$OUT/summary.md"; }
trap summary EXIT

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda)"

# Optional benchmark baselines carried as wheels (no network there): .whl/*.whl
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/fftconv_bench_site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/fftconv_bench_site"
fi

imports() { python3 -c "import fftconv_ext, fftconv_ext._testing, sys; sys.exit(0 if fftconv_ext.built_with_cuda() else 1)" 2>/dev/null; }
if wanted build; then
  if imports; then
    echo "using the carried CUDA build: $(ls fftconv_ext/_C*.so fftconv_ext/_testing*.so)" | tee "$OUT/build.log"
    printf 'build\tcarried\t0\t0\n' >> "$OUT/stages.tsv"
  else
    rm -f fftconv_ext/_C*.so fftconv_ext/_testing*.so
    step build 300 build.log env FFTCONV_FORCE_CUDA=1 FFTCONV_BUILD_TESTING=1 TORCH_CUDA_ARCH_LIST="9.0" \
      MAX_JOBS="$(nproc)" python3 setup.py build_ext --inplace
  fi
fi
if ! imports; then
  echo "!! the CUDA build does not import: nothing else can run"
  python3 -c "import fftconv_ext" 2>&1 | tail -5
  exit 1
fi
python3 -c "import fftconv_ext; print('verified on a GPU:', fftconv_ext.backends.verified_on_gpu())"

PYTEST=(python3 -m pytest -p no:cacheprovider --rootdir=. -o addopts= -v --tb=short -rfE)
if python3 -c "import pytest_timeout" 2>/dev/null; then PYTEST+=(--timeout 120); fi
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1 || true)
# riskiest first: the small-plane kernels, the whole-plane pipeline, the device checks, then the rest
SANITIZED=(python_tests/test_small_plane.py python_tests/test_cuda_pipelines.py
           python_tests/test_device_checks.py python_tests/test_cuda.py)

if wanted memcheck; then
  if [ -n "$SAN" ]; then
    step memcheck 110 memcheck.log env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$SAN" --tool memcheck \
      --error-exitcode 97 --print-limit 20 --log-file "$OUT/memcheck.sanitizer.log" \
      "${PYTEST[@]}" -x -k cuda "${SANITIZED[@]}" --junitxml="$OUT/memcheck.xml"
  else
    echo "!! no compute-sanitizer found"; printf 'memcheck\tno sanitizer\t0\t0\n' >> "$OUT/stages.tsv"
  fi
fi
if wanted racecheck && [ -n "$SAN" ]; then
  step racecheck 60 racecheck.log "$SAN" --tool racecheck --error-exitcode 97 --print-limit 20 \
    --log-file "$OUT/racecheck.sanitizer.log" \
    "${PYTEST[@]}" -x -k "cuda and (kernel or backward)" python_tests/test_small_plane.py \
    --junitxml="$OUT/racecheck.xml"
fi

if wanted tests; then
  for f in test_cuda test_cuda_pipelines test_small_plane test_device_checks test_training_grade \
           test_whole_plane test_pipeline_choice test_errors; do
    step "tests:$f" 45 "tests-$f.log" env CUDA_LAUNCH_BLOCKING=1 "${PYTEST[@]}" "python_tests/$f.py" \
      --junitxml="$OUT/tests-$f.xml"
  done
fi

if wanted bench; then
  step "bench:pipelines" 90 bench-pipelines.log python3 bench/gpu_pipelines.py --json "$OUT/gpu_pipelines.json" --md "$OUT/gpu_pipelines.md"
  step "bench:quick" 75 bench-quick.log python3 -m fftconv_ext.bench --device cuda --quick --no-progress --out "$OUT"
  step "bench:small_plane_ab" 40 bench-small_plane_ab.log python3 bench/gpu_small_plane_ab.py --json "$OUT/gpu_small_plane_ab.json"
  step "bench:nd" 55 bench-nd.log python3 -m fftconv_ext.bench --device cuda --nd --quick --no-progress --out "$OUT"
  step "bench:profile" 25 bench-profile.log python3 bench/gpu_profile.py --json "$OUT/gpu_profile.json"
  step "bench:fourier_mix" 20 - python3 - <<'PY'
import json, os, torch
from fftconv_ext.bench.fit import fit_markdown, run_fourier_mix
rows = run_fourier_mix(torch.device("cuda"))
with open(os.path.join(os.environ["OUT"], "gpu_fourier_mix.json"), "w") as f:
    json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "fourier_mix": rows}, f, indent=1)
print(fit_markdown(rows, [], 12).split("### FiT-Base")[0])
PY
fi
stamp "done"
