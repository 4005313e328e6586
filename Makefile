# Two entry points: `make demo` (the whole experiment on built-in demo data, CPU) and `make test`.
# Both create the local virtual environment .venv from requirements_qualiclip.txt on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo demo-findings test lint bench gpu-check clean-demo

venv: $(STAMP)

$(STAMP): requirements_qualiclip.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements_qualiclip.txt
	touch $(STAMP)

demo: $(STAMP)
	bash run_qualiclip_experiments.sh --demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench.py --device cpu --model_size micro

# GPU self-check (about 8 min, offline): GC_DEVICE=cpu GC_SIZE=micro runs it on a CPU
gpu-check: $(STAMP)
	PYTHON=$(PY) bash benchmarks/gpu_check.sh

demo-findings: $(STAMP)
	$(PY) -m tools.demo_findings --run_dir results/qualiclip_demo

clean-demo:
	rm -rf results/qualiclip_demo
