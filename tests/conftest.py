"""Shared pytest fixtures: small synthetic data made by unetlib.data.synthetic, temp folders."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_browser import SCREENSHOTS

# Quiet TensorFlow's C++ start-up banner; must be set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
ISBI_DIR = REPO_ROOT.parent / "shared" / "data" / "isbi2012-membrane"
_SESSION_START = time.time()


def pytest_configure(config: pytest.Config) -> None:
    """Let Ctrl-C reach the tests of Ctrl-C (test_interrupts, the interrupts doctests).

    A script that starts the suite in the background without job control (``make test &``)
    starts it with SIGINT ignored, and ``unetlib.core.interrupts`` rightly leaves an ignored
    SIGINT alone; the test processes take Python's own handler back.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_terminal_summary(terminalreporter) -> None:
    """Name the browser test's screenshots of this run (the CI log shows where they are)."""
    shots = sorted(path.name for path in SCREENSHOTS.glob("*.png")
                   if path.stat().st_mtime >= _SESSION_START)
    if shots:
        terminalreporter.write_line(f"browser screenshots in {SCREENSHOTS}: {', '.join(shots)}")


# The files that take longest, longest first (summed test durations of a fresh clone's
# make test, AMD EPYC CPU family 25, 2 cores, 2026-12-06): handed out first, down to those
# of ~15 s, so that the last files handed out are short and both test processes finish
# together (a 36 s file handed out last kept one process busy 37 s after the other ended).
# A stale list costs only a worse schedule.
LONGEST_FIRST = ("test_learning.py", "test_hardening_2.py", "test_browser.py", "test_train.py",
                 "test_notebooks.py", "test_crossval.py", "test_study.py", "test_faults.py",
                 "test_export.py", "test_cli.py", "test_environment.py", "test_napari.py",
                 "test_finetune.py", "test_study_analysis.py", "test_demo_study.py",
                 "test_runtime.py", "test_bad_inputs.py", "test_hardening.py", "test_isbi.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the longest work first: the notebooks, ``LONGEST_FIRST``, then files by how many
    slow tests they hold; each file's tests, and the notebooks, keep their order.

    pytest-xdist hands files out in this order (``--no-loadscope-reorder``), so no long file
    starts last while the other test process sits idle.
    """
    slow_tests: dict[Path, int] = {}
    for item in items:
        slow_tests[item.path] = (slow_tests.get(item.path, 0)
                                 + (item.get_closest_marker("slow") is not None))

    def rank(item: pytest.Item) -> tuple[int, int]:
        if item.path.suffix == ".ipynb":
            return (0, 0)
        if item.path.name in LONGEST_FIRST:
            return (1, LONGEST_FIRST.index(item.path.name))
        return (2, -slow_tests[item.path])

    items.sort(key=rank)  # stable


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """With ``--dist loadfile``, hand nbval's notebooks to one test process as one unit.

    ``make test`` runs the tests, the docstrings' examples and the committed notebooks in
    one session: one process runs the notebooks, in suite order since each reads what the
    one before wrote, while the other runs test files. Every other file stays one unit
    (its module fixtures are built once).
    """
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling  # only under pytest-xdist

    class NotebooksTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "notebooks" if path.endswith(".ipynb") else path

    return NotebooksTogether(config, log)


@pytest.fixture(scope="module", autouse=True)
def _environment_restored_after_each_module():
    """Undo what third-party code writes into ``os.environ`` (bioimageio.core sets
    KERAS_BACKEND to torch on import), so no later test's subprocess inherits it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def fresh_keras_session() -> None:
    """Start the test on a new Keras graph, so layer names and seeds repeat from test to test.

    Without Keras' ``gc.collect()`` (``free_memory=False``): late in a test process a full
    collection takes about a second, and the tests that asked for it twice per test spent a
    quarter of their time there. Python's own collector still frees the old graphs.
    """
    import keras  # lazy: most test files never load TensorFlow

    keras.backend.clear_session(free_memory=False)


@pytest.fixture(scope="session")
def isbi_dir() -> Path:
    """The real ISBI 2012 training set beside the repository; skip when it is absent."""
    if not (ISBI_DIR / "images").is_dir():
        pytest.skip(f"real data not found at {ISBI_DIR} (only present beside the team's checkout)")
    return ISBI_DIR


@contextlib.contextmanager
def _one_builder(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path``: the first test process builds, the others
    wait and then reuse what it built."""
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def shared_folder(tmp_path_factory, name: str) -> Path:
    """A folder every pytest-xdist worker of this session sees (one session's own temp
    folder without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name


@pytest.fixture(scope="session")
def organ_run(tmp_path_factory) -> dict[str, Path]:
    """A small multi-organ run trained once per test session on the synthetic organ data.

    Returns the paths ``run`` (the run folder), ``stack`` (the 16-cycle acquisition it was
    trained on, with ImageJ timing) and ``root``. Trained like the multi-organ learning
    test in test_train (held-out Dice ~0.99/0.97/0.95), in ~15 s on a fast CPU; the
    pytest-xdist workers share it (the first trains it, the others wait for it).
    """
    from helpers import organ_data

    from unetlib.core.config import PipelineConfig, TrainConfig, model_preset
    from unetlib.runs.train import train

    root = shared_folder(tmp_path_factory, "organ_run")
    with _one_builder(root.parent / "organ_run.lock"):
        if not (root / "run" / "metrics.json").is_file():
            shutil.rmtree(root, ignore_errors=True)  # what a builder that failed left
            root.mkdir(parents=True)
            data = organ_data(root)
            config = TrainConfig(model=model_preset("small"), epochs=10, steps_per_epoch=30,
                                 pipeline=PipelineConfig(batch_size=8, patch_size=64,
                                                                    val_fraction=0.25, seed=0))
            train(data, root / "run", config, verbose=0)
    return {"run": root / "run", "stack": root / "stack.tif", "root": root}
