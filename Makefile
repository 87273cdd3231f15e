# unet-mice: a new user needs `make demo`, `make lab` and `make test`.
# Each creates or updates the virtual environment in .venv first (Python 3.11).

PYTHON_BASE ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo

.PHONY: venv demo lab napari lint test test-fast test-browser chromium qt-headless benchmark notebooks run-notebooks clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PYTHON) || $(PYTHON_BASE) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.txt -e .[test]
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)  ## the whole pipeline on the synthetic demo acquisition
	$(PYTHON) -m unetlib demo --out $(DEMO_DIR)

# JupyterLab of .venv on notebooks/: its "python3" kernel, the one the notebooks name, is
# .venv's Python (Jupyter prefers the environment's kernels over the user's own).
# LAB_ARGS passes more options, e.g. LAB_ARGS="--port 8899 --no-browser".
LAB_ARGS ?=
lab: $(STAMP)  ## open the notebooks in JupyterLab with this environment's kernel
	JUPYTER_PREFER_ENV_PATH=1 $(VENV)/bin/jupyter lab notebooks/ \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg

# Two test processes, a test file each at a time (module fixtures are built once): most
# tests wait on process start-up, files and small models, so a 2-core machine runs the
# suite in about half the time (586 tests on a 2-core AMD EPYC: 7.8 min; one process took
# 11-13 min for 567 tests). make test runs nbval's notebooks in the same session, as one
# unit in suite order, started first (tests/conftest.py orders the files): one process
# runs the notebooks while the other runs tests, instead of one core idling through them.
# test-fast keeps pytest-xdist's order (files with the most tests first): measured as fast.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)  ## ruff (pyproject.toml's [tool.ruff]): pyflakes, pycodestyle, import order, bugbear
	$(VENV)/bin/ruff check unetlib tests benchmarks tools

test: lint  ## lint, unit tests and the docstrings' examples, headless notebook runs, nbval on the committed notebooks
	$(PYTHON) -m pytest $(XDIST) --no-loadscope-reorder $(NBVAL) notebooks tests unetlib

test-fast: lint  ## skip the slow tests
	$(PYTHON) -m pytest $(XDIST) -m "not slow"

test-browser: $(STAMP)  ## only the notebooks in JupyterLab in headless Chromium (part of make test)
	$(PYTHON) -m pytest -m browser tests/test_browser.py

# The browser test drives Debian's chromium with its chromedriver (nothing is downloaded at
# run time); .ci/run calls this before make test. Installing needs root.
chromium:  ## install chromium and chromium-driver with apt-get when they are missing
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
		echo "chromium and chromedriver are installed"; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	else \
		echo "as root: apt-get install -y chromium chromium-driver"; exit 1; \
	fi

napari: $(STAMP)  ## open napari with the unetlib plugin (Plugins > unet-mice: Annotate, Train, Quantify)
	$(VENV)/bin/napari

# tests/test_napari.py runs a real napari viewer on a virtual X display (Xvfb) with Qt's
# xcb platform; .ci/run calls this before make test. Installing needs root.
QT_HEADLESS_PACKAGES := xvfb libgl1-mesa-dri libegl1 libfontconfig1 libdbus-1-3 libxkbcommon-x11-0 \
	libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 \
	libxcb-shape0 libxcb-xinerama0 libxcb-xkb1
qt-headless:  ## install Xvfb and what Qt needs to draw napari's viewer without a screen (apt-get)
	@if dpkg -s $(QT_HEADLESS_PACKAGES) > /dev/null 2>&1; then \
		echo "Xvfb and Qt's xcb libraries are installed"; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(QT_HEADLESS_PACKAGES); \
	else \
		echo "as root: apt-get install -y $(QT_HEADLESS_PACKAGES)"; exit 1; \
	fi

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
