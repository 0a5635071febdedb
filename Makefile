# fftconv_ext: make install | make test | make bench
#
# Uses the active virtual environment when there is one ($VIRTUAL_ENV), else
# creates .venv. torch is installed only when missing (TORCH_SPEC, default the
# CPU build that lies on this machine's disk); the extension is built against
# whatever torch is there, without build isolation.

PYTHON     ?= python3
TORCH_SPEC ?= torch==2.13.0
DEPS       ?= numpy scipy pytest hypothesis ninja setuptools wheel tqdm matplotlib
THREADS    ?= 2

ifdef VIRTUAL_ENV
PY := $(VIRTUAL_ENV)/bin/python
else
PY := $(CURDIR)/.venv/bin/python
endif

# exit status 0 when fftconv_ext is installed editable from this folder
export EDITABLE_HERE := import importlib.metadata as m, json, os, sys; \
u = json.loads(m.distribution("fftconv_ext").read_text("direct_url.json") or "{}"); \
sys.exit(0 if u.get("dir_info", {}).get("editable") and u.get("url") == "file://" + os.getcwd() else 1)

.PHONY: install bench-deps deploy-deps test test-python test-quick test-slow test-cpp bench clean

install:
	@if [ -z "$$VIRTUAL_ENV" ] && [ ! -x .venv/bin/python ]; then $(PYTHON) -m venv .venv; fi
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q $(DEPS)
	@# the first time an editable install (pip builds in a temporary folder); after that an
	@# in-place rebuild, which recompiles only what changed (ninja, in build/)
	@if $(PY) -c "$$EDITABLE_HERE" 2>/dev/null; then \
	  echo "FFTCONV_BUILD_TESTING=1 $(PY) setup.py -q build_ext --inplace"; \
	  FFTCONV_BUILD_TESTING=1 $(PY) setup.py -q build_ext --inplace > build.log 2>&1 || { tail -40 build.log; exit 1; }; \
	else \
	  echo "FFTCONV_BUILD_TESTING=1 $(PY) -m pip install -q --no-build-isolation --no-deps -e ."; \
	  FFTCONV_BUILD_TESTING=1 $(PY) -m pip install -q --no-build-isolation --no-deps -e .; \
	fi
	@$(PY) -c "import fftconv_ext, torch; print('fftconv_ext', fftconv_ext.__version__, '| torch', torch.__version__, '| CUDA kernels built:', fftconv_ext.built_with_cuda())"

# bench-deps: the tests also check that every benchmark baseline computes the layer it claims
test: install bench-deps deploy-deps test-cpp test-python

test-python:
	FFTCONV_TEST_THREADS=$(THREADS) $(PY) -m pytest -q -m "not slow" --durations=25 python_tests

# while working: the suite without the heavy groups (processes, compilers, whole networks, training)
test-quick:
	FFTCONV_TEST_THREADS=$(THREADS) $(PY) -m pytest -q -m "not (slow or subprocess or compile or models or training)" python_tests

# the hypothesis searches at 5,000 examples each (the "long" profile of conftest.py), and the slow marks
test-slow: install
	HYPOTHESIS_PROFILE=long FFTCONV_TEST_THREADS=$(THREADS) $(PY) -m pytest -q -m "hypothesis or slow" --durations=15 python_tests

test-cpp:
	cmake -S . -B build-cmake -DPython3_EXECUTABLE=$(PY) > /dev/null
	cmake --build build-cmake -j 2 > /dev/null
	ctest --test-dir build-cmake --output-on-failure

# The packages compared against, without their dependencies (they would pull another torch).
BENCH_PKGS ?= fft-conv-pytorch==1.2.0 torch-fftconv==1.0.0

bench-deps: install
	-$(PY) -m pip install -q --no-deps $(BENCH_PKGS)

# the ONNX exporter's and runtime's packages: the deployment tests export and run converted models
DEPLOY_PKGS ?= onnx onnxscript onnxruntime

deploy-deps: install
	$(PY) -m pip install -q $(DEPLOY_PKGS)

bench: bench-deps
	$(PY) -m fftconv_ext.bench --threads $(THREADS) $(BENCH_ARGS)

clean:
	rm -rf build build-cmake build.log *.egg-info fftconv_ext/*.so fftconv_ext/lib/*.so
