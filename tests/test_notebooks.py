"""The notebook suite: headless papermill runs, batch parameter sets, nbval regression.

The committed notebooks themselves are re-executed and compared by nbval as part of the
test command (``pytest --nbval-lax notebooks/``); the tests here run them with tiny
parameters and check what they write, and show that nbval catches a changed output.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import papermill
import pytest
import yaml

from unetlib.app.notebooks import find_notebooks, notebook_parameters
from unetlib.core.io import read_image

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SUITE = ["01_reshaping.ipynb", "02_augmentation.ipynb", "03_train_grayscale.ipynb",
         "04_train_rgb.ipynb", "05_quantify.ipynb", "06_study.ipynb"]

# Small enough for a few seconds per notebook, big enough to exercise every step.
TINY = {"demo_cycles": 6, "pick_count": 4, "test_count": 2, "preset": "small", "epochs": 1,
        "steps_per_epoch": 2, "batch_size": 2, "patch_size": 64, "preview_count": 2,
        "package_path": "",  # export is tested in test_export; here it would only add time
        "crossval_folds": 2, "crossval_epochs": 1, "study_mice": 2, "study_cycles": 10}


def run_cli(*args: str, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unetlib", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=900, env=env)


def test_the_suite_is_complete_and_in_order():
    assert [path.name for path in find_notebooks(NOTEBOOKS)] == SUITE


def test_run_notebooks_finds_the_suite_by_default():
    from unetlib.app.notebooks import NOTEBOOKS_DIR

    # The runner's default folder is the repository's notebooks/, wherever the module sits.
    assert [path.name for path in find_notebooks(NOTEBOOKS_DIR)] == SUITE


@pytest.mark.parametrize("name", SUITE)
def test_notebooks_are_thin_with_one_commented_parameters_cell(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# ")
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1
    for line in tagged[0].source.splitlines():
        assert " = " in line and "  # " in line, f"parameter without a comment: {line!r}"
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert "def " not in code and "class " not in code and "lambda" not in code
    assert notebook.metadata.kernelspec.name == "python3"
    # Every parameter is a plain literal papermill can override.
    assert all(spec is not None for spec in notebook_parameters(NOTEBOOKS / name).values())


def test_stored_outputs_are_small_enough_to_review():
    for name in SUITE:
        size = (NOTEBOOKS / name).stat().st_size
        assert size < 400_000, f"{name} stores {size} bytes of output"


# The runner's sweep: notebooks 01-03 are enough for sets, a failing set, rebased demo paths
# and published numbers. Every notebook runs headless at its defaults under nbval and with
# these tiny parameters in JupyterLab (test_browser); running 04-06 here too took 80 s more.
SWEPT = SUITE[:3]


@pytest.mark.slow
def test_run_notebooks_with_two_parameter_sets_and_one_failing(tmp_path):
    swept_parameters = {name for notebook in SWEPT
                        for name in notebook_parameters(NOTEBOOKS / notebook)}
    params = tmp_path / "sets.yaml"
    params.write_text(yaml.safe_dump({
        "defaults": {key: value for key, value in TINY.items() if key in swept_parameters},
        "sets": {"small": {}, "broken": {"stack_path": str(tmp_path / "missing.tif")}},
    }))
    out = tmp_path / "out"
    # Started from a notebook's kernel in JupyterLab, which passes the server's
    # JPY_SESSION_NAME on: the executed copies must still hold static figures.
    from_a_notebook = {key: value for key, value in os.environ.items() if key != "UNETLIB_WIDGETS"}
    result = run_cli("run-notebooks", "--out", str(out), "--params", str(params),
                     "--only", ",".join(name[:2] for name in SWEPT),
                     env={**from_a_notebook, "JPY_SESSION_NAME": str(tmp_path / "sweep.ipynb")})
    assert result.returncode == 1, result.stderr[-2000:]
    assert "error: set 'broken' failed in 01_reshaping.ipynb, cell" in result.stderr
    assert "missing.tif" in result.stderr

    with open(out / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    status = {(row["set"], row["notebook"]): row["status"] for row in rows}
    assert sorted(status) == sorted((set_name, name) for set_name in ("small", "broken")
                                    for name in SWEPT)
    assert all(status[("small", name)] == "ok" for name in SWEPT)
    assert status[("broken", SWEPT[0])] == "failed"
    assert all(status[("broken", name)] == "skipped" for name in SWEPT[1:])
    trained = next(row for row in rows if row["notebook"] == SUITE[2] and row["set"] == "small")
    assert float(trained["epochs"]) == 1 and int(trained["test_frames"]) == TINY["test_count"]

    # Everything the small set wrote lives in its own folder, never beside the sources.
    demo = out / "small" / "demo"
    assert sorted(p.name for p in (demo / "data1d" / "results").glob("*_predict.png")) == [
        "0_predict.png", "1_predict.png"]
    # The published test Dice is that of the masks the notebook wrote, counted here.
    dice = []
    for index in range(TINY["test_count"]):
        predicted = np.asarray(read_image(demo / "data1d" / "results" / f"{index}_predict.png")) > 0
        truth = np.asarray(read_image(demo / "truth1d" / f"{index}.png")) > 0
        both = predicted.sum() + truth.sum()
        dice.append(1.0 if both == 0 else 2 * (predicted & truth).sum() / both)
    assert float(trained["test_dice"]) == pytest.approx(np.mean(dice), abs=5e-5)
    # The cross-validated score is the one of the folds the notebook trained and kept.
    crossval = json.loads((demo / "runs" / "gray1d_crossval" / "crossval.json").read_text())
    assert crossval["folds"] == 2 and len(crossval["held_out"]) == 2
    assert float(trained["crossval_dice"]) == pytest.approx(crossval["mean_dice"], abs=5e-5)
    assert [p.name for p in sorted((out / "small").glob("*.ipynb"))] == SWEPT
    for name in SWEPT:  # every viewer a figure (a JPEG), none a widget
        outputs = json.dumps([cell.get("outputs", [])
                              for cell in nbformat.read(out / "small" / name, as_version=4).cells])
        assert "application/vnd.jupyter.widget-view+json" not in outputs, name
    browser = next(cell for cell in nbformat.read(out / "small" / SUITE[0], as_version=4).cells
                   if cell.source.strip() == "frame_browser(stack)")
    assert [sorted(output.get("data", {})) for output in browser.outputs] == [["image/jpeg", "text/plain"]]
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == SUITE


@pytest.mark.slow
def test_rerunning_a_training_notebook_reuses_the_finished_run(tmp_path):
    # No cross-validation: its folds' reuse is test_crossval's, here it would only add time.
    parameters = {**TINY, "demo": False, "truth1d_dir": "", "package_path": "",
                  "crossval_folds": 0}
    # The data folder notebook 01 would write (its run is the papermill sweep's to test).
    from unetlib import PickConfig, SyntheticConfig, ensure_demo_stack, pick_frames

    data = tmp_path / "data1d"
    stack = ensure_demo_stack("", tmp_path / "demo", SyntheticConfig(cycles=TINY["demo_cycles"]))
    train = pick_frames(stack, data, PickConfig(count=TINY["pick_count"], channels=1))
    pick_frames(stack, data, PickConfig(count=TINY["test_count"], channels=1, subset="test",
                                        exclude=tuple(train.cycles)))
    # Real data: the masks come from the user; here the demo truth stands in once.
    from unetlib.app.demo import annotate_from_truth

    annotate_from_truth(data, tmp_path / "demo" / "truth.tif")
    run = {**{key: value for key, value in parameters.items()
              if key in notebook_parameters(NOTEBOOKS / SUITE[2])},
           "data1d_dir": str(data), "gray_run_dir": str(tmp_path / "run")}
    papermill.execute_notebook(str(NOTEBOOKS / SUITE[2]), str(tmp_path / "03a.ipynb"),
                               parameters=run, cwd=str(NOTEBOOKS), progress_bar=False)
    stamp = (tmp_path / "run" / "model.keras").stat().st_mtime_ns
    executed = papermill.execute_notebook(str(NOTEBOOKS / SUITE[2]), str(tmp_path / "03b.ipynb"),
                                          parameters=run, cwd=str(NOTEBOOKS), progress_bar=False)
    assert (tmp_path / "run" / "model.keras").stat().st_mtime_ns == stamp
    outputs = json.dumps([cell.get("outputs", []) for cell in executed.cells])
    assert "no truth masks: nothing to score" in outputs


@pytest.mark.slow
def test_nbval_fails_when_a_checked_output_changes(tmp_path):
    """Copy notebook 01 with its stored outputs, edit one checked output, run nbval."""
    copy_dir = tmp_path / "notebooks"
    copy_dir.mkdir()
    shutil.copy(NOTEBOOKS / "nbval_sanitize.cfg", copy_dir)
    notebook = nbformat.read(NOTEBOOKS / SUITE[0], as_version=4)
    checked = [cell for cell in notebook.cells
               if "nbval-check-output" in cell.metadata.get("tags", []) and cell.get("outputs")]
    assert len(checked) >= 3, "notebook 01 must be committed with checked outputs"
    target = next(cell for cell in checked if "laser1" in json.dumps(cell.outputs))
    target.outputs[0]["text"] = target.outputs[0]["text"].replace("laser1: 30 files",
                                                                  "laser1: 29 files")
    notebook.cells = notebook.cells[:notebook.cells.index(target) + 1]  # the rest adds only time
    nbformat.write(notebook, copy_dir / SUITE[0])
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-current-env", "--nbval-sanitize-with", str(copy_dir / "nbval_sanitize.cfg"),
         "-o", "addopts=", "-o", "filterwarnings=", str(copy_dir / SUITE[0])],
        capture_output=True, text=True, cwd=tmp_path, timeout=900)
    summary = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 1, result.stdout[-3000:]
    assert "1 failed" in summary and " passed" in summary, summary
    assert "laser1: 29 files" in result.stdout
