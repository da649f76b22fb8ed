# The two commands of the README: `make demo` and `make test`.
# Both bootstrap .venv from the pinned requirements on a fresh clone and install the package
# itself in editable mode (its fsspec entry point, package data), without touching the pins.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
DEV_STAMP := $(VENV)/.dev-requirements-installed
# Test processes (pytest-xdist): most tests wait on servers and child processes, so two per
# core still pay off; `make test TEST_WORKERS=0` runs in one process.
TEST_WORKERS ?= 2

.PHONY: demo test venv clean-lab

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --editable .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(DEV_STAMP)

demo: $(STAMP)
	$(PY) -m sentinel2_l1c.demo $(DEMO_ARGS)

test: $(DEV_STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

clean-lab:
	rm -rf lab
