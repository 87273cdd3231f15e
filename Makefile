# unet-mice: the two commands a new user needs are `make demo` and `make test`.
# Each creates or updates the virtual environment in .venv first (Python 3.11).

PYTHON_BASE ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo

.PHONY: venv demo test test-fast benchmark notebooks clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PYTHON) || $(PYTHON_BASE) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.txt -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)  ## the whole pipeline on the synthetic demo acquisition
	$(PYTHON) -m unetlib demo --out $(DEMO_DIR)

test: $(STAMP)  ## unit tests, headless notebook runs and nbval regression
	$(PYTHON) -m pytest

test-fast: $(STAMP)  ## skip the slow tests
	$(PYTHON) -m pytest -m "not slow"

benchmark: $(STAMP)
	$(PYTHON) benchmarks/bench_split.py

clean:
	rm -rf $(DEMO_DIR) runs .pytest_cache
