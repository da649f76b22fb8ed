# The two commands of the README: `make demo` and `make test`.
# Both bootstrap .venv from the pinned requirements on a fresh clone and install the package
# itself in editable mode (its fsspec and zarr entry points, package data), without touching
# the pins. The project needs Python >= 3.12: python3.13 or python3.12 on PATH, else the
# newest such version pyenv has installed, else the one .venv was made with (`make
# PYTHON=/path/to/python3.x` chooses one).
VENV := .venv
PYTHON ?= $(shell for candidate in python3.13 python3.12 $$(ls -d \
	"$$(pyenv root 2>/dev/null || echo "$${PYENV_ROOT:-$$HOME/.pyenv}")"/versions/3.*/bin/python3 \
	2>/dev/null | sort -rV) $(VENV)/bin/python; do \
	"$$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null \
	&& { command -v "$$candidate"; break; }; done)
ifeq ($(strip $(PYTHON)),)
ifneq ($(filter-out clean-lab,$(or $(MAKECMDGOALS),venv)),)
$(error no Python >= 3.12 found: install python3.12 or python3.13 (e.g. pyenv install 3.12), or run make PYTHON=/path/to/python3.12)
endif
endif
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
DEV_STAMP := $(VENV)/.dev-requirements-installed
# Test processes (pytest-xdist): most tests wait on servers and child processes, so two per
# core still pay off; `make test TEST_WORKERS=0` runs in one process.
TEST_WORKERS ?= 2

.PHONY: demo test venv clean-lab

venv: $(STAMP)

# A .venv of another Python (an older clone's 3.11) is made anew.
$(STAMP): requirements.txt pyproject.toml
	version='import sys; print(*sys.version_info[:2], sep=".")'; \
	if [ "$$($(PY) -c "$$version" 2>/dev/null)" != "$$($(PYTHON) -c "$$version")" ]; then \
		$(PYTHON) -m venv --clear $(VENV); fi
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
