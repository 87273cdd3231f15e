# unet-mice: the two commands a new user needs are `make demo` and `make test`.
# Each creates or updates the virtual environment in .venv first (Python 3.11).

PYTHON_BASE ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo

.PHONY: venv demo test test-fast benchmark notebooks run-notebooks clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PYTHON) || $(PYTHON_BASE) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.txt -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)  ## the whole pipeline on the synthetic demo acquisition
	$(PYTHON) -m unetlib demo --out $(DEMO_DIR)

NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg

# Two test processes, a test module each at a time (module fixtures are built once): most
# tests wait on process start-up, files and small models, so a 2-core machine runs the
# suite in about half the time (567 tests on a 2-core AMD EPYC: 6.2 min here, 11-13 min in one process).
TEST_WORKERS ?= 2

test: $(STAMP)  ## unit tests, headless notebook runs, then nbval on the committed notebooks
	$(PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadfile
	$(PYTHON) -m pytest $(NBVAL) notebooks/

test-fast: $(STAMP)  ## skip the slow tests
	$(PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow"

notebooks: $(STAMP)  ## rebuild the notebooks from tools/build_notebooks.py with demo outputs
	$(PYTHON) tools/build_notebooks.py --execute

run-notebooks: $(STAMP)  ## the suite headless into out/notebooks (PARAMS=sets.yaml for sets)
	$(PYTHON) -m unetlib run-notebooks --out out/notebooks $(if $(PARAMS),--params $(PARAMS))

benchmark: $(STAMP)  ## split, pipeline and training/prediction speed
	$(PYTHON) benchmarks/bench_split.py
	$(PYTHON) benchmarks/bench_pipeline.py
	$(PYTHON) benchmarks/bench_train.py

clean:
	rm -rf $(DEMO_DIR) runs .pytest_cache
