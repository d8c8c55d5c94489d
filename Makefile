# make demo / make test set everything up from scratch: a virtualenv in .venv with the
# CPU build of torch that lies on this disk, the package in editable mode, and the data.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.samplenas-installed
TORCH_PIN ?= torch==2.13.0
# AnalogNAS-Bench's data file only: its declared dependencies are not needed (never imported)
ANALOG_PIN ?= analog-nasbench==0.1.3

.PHONY: setup data demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH_PIN)"
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev,bench]"
	$(PY) -m pip install -q --disable-pip-version-check --no-deps "$(ANALOG_PIN)"
	@touch $(STAMP)

data:
	@bash scripts/ensure-data.sh

demo: setup data
	$(VENV)/bin/samplenas demo

test: setup data
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

# The quick benchmarks (minutes); the long studies are run one by one, see BENCHMARKS.md.
bench: setup
	$(PY) benchmarks/sampling.py
	$(PY) benchmarks/space_throughput.py
	$(PY) benchmarks/supernet_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
