# Quick start: `make demo` (install, build, search, retrain, analyze) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EXT := $(wildcard das/_C*.so)
DEMO_OUT ?= results/demo

.PHONY: install build demo test bench clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

install: $(VENV)/.installed

# The library is built under build/ and then renamed into das/ in one step, so rebuilding while
# a sweep runs never hands a running trial a half-written file.
build: install
	$(PY) setup.py -q build_ext --build-lib build/lib > build.log 2>&1 || (cat build.log; exit 1)
	so=$$($(PY) -c "import sysconfig; print('_C' + sysconfig.get_config_var('EXT_SUFFIX'))"); \
	  cp build/lib/das/$$so das/.$$so.tmp && mv das/.$$so.tmp das/$$so
	$(PY) -c "import torch, das._C" && echo "extension das._C built"

# A small default run of the main job: 2 seeds of DAS and of a random architecture (sequential
# space, blur, all ops, 10 epochs) through the sweep runner, then the tables and the plots.
demo: build
	$(PY) scripts/sweep.py --study table1 --data blur --ops all --method das,random --seed 0-1 --epochs 10 \
	  --out $(DEMO_OUT)
	$(PY) analyze.py $(DEMO_OUT)

test: build
	$(PY) -m pytest -q tests

bench: build
	$(PY) benchmarks/bench_ops.py
	$(PY) benchmarks/bench_batched_ops.py --clock cpu
	$(PY) benchmarks/bench_engine.py

clean:
	rm -rf build das/_C*.so
