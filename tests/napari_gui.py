"""The napari plugin in a real viewer (napari's ``make_napari_viewer`` and pytest-qt).

Not collected by the main session (the name does not match ``test_*.py``):
``tests/test_napari.py`` runs this file in its own pytest process on a virtual X display.
A process of its own because the main session's workers have loaded TensorFlow, and
TensorFlow and a napari viewer's OpenGL crash each other in one process; the plugin keeps
TensorFlow in the CLI's child processes, which is what these tests exercise.

The outer test passes a trained organ run, its stack and its data folder in
``UNETLIB_GUI_RUN``, ``UNETLIB_GUI_STACK``, ``UNETLIB_GUI_DATA``; screenshots go to
``UNETLIB_GUI_SHOTS`` (git-ignored ``out/napari/``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import QTimer

from unetlib.core.io import read_csv, read_image
from unetlib.data.masks import read_labels
from unetlib.data.organs import read_organ_table
from unetlib.napari.widgets import AnnotateWidget, QuantifyWidget, TrainWidget, proposal_layers

RUN = Path(os.environ.get("UNETLIB_GUI_RUN", "missing"))
STACK = Path(os.environ.get("UNETLIB_GUI_STACK", "missing"))
DATA = Path(os.environ.get("UNETLIB_GUI_DATA", "missing"))
SHOTS = Path(os.environ.get("UNETLIB_GUI_SHOTS", "out/napari"))
TASK_MS = 600_000

pytestmark = pytest.mark.skipif(not RUN.is_dir(), reason="run by tests/test_napari.py")


def shot(viewer, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    viewer.window.resize(1500, 950)
    viewer.screenshot(str(SHOTS / f"{name}.png"), canvas_only=False, flash=False)


def finish(qtbot, task) -> None:
    qtbot.waitUntil(lambda: not task.running, timeout=TASK_MS)
    assert task.code == 0, task.error


@pytest.fixture()
def unannotated(tmp_path) -> Path:
    """The organ data folder's frames (and organs.csv, frames.csv) without their masks."""
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    shutil.copytree(DATA / "train" / "frames", data / "train" / "frames")
    shutil.copy(DATA / "train" / "frames.csv", data / "train" / "frames.csv")
    shutil.copy(DATA / "organs.csv", data / "organs.csv")
    return data


def test_the_reader_opens_a_stack_as_one_layer_per_laser(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open(str(STACK), plugin="unetlib")
    images = [layer for layer in viewer.layers if layer._type_string == "image"]
    assert [layer.name for layer in images] == [f"stack laser {n}" for n in (1, 2, 3, 4)]
    cycles = images[0].data.shape[0]
    assert all(layer.data.shape == images[0].data.shape and layer.data.ndim == 3 for layer in images)
    assert cycles > 1 and [layer.colormap.name for layer in images[:3]] == ["red", "green", "blue"]
    assert all(layer.contrast_limits[0] < layer.contrast_limits[1] for layer in images)
    shot(viewer, "reader_stack")


def test_propose_correct_and_save_a_mask_from_the_annotate_widget(make_napari_viewer, qtbot,
                                                                  unannotated):
    viewer = make_napari_viewer()
    widget = AnnotateWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Annotate")
    widget.data_dir.value, widget.run_dir.value = unannotated, RUN
    finish(qtbot, widget.propose())
    layer = widget._proposals()
    stems = layer.metadata["stems"]
    assert len(stems) == len(list((unannotated / "train" / "frames").iterdir()))
    organs = read_organ_table(unannotated / "organs.csv")
    assert layer.colormap.map(np.array(organs.values)).shape == (len(organs.values), 4)
    assert set(np.unique(layer.data)) <= {0, *organs.values}
    assert not (unannotated / "train" / "masks").exists()  # a proposal is not an annotation
    shot(viewer, "annotate_proposals")

    # The annotator paints a square of the second organ into frame 1 and saves it.
    viewer.dims.set_current_step(0, 1)
    corrected = np.array(layer.data[1])
    corrected[4:14, 4:14] = organs.values[1]
    layer.data[1] = corrected
    layer.refresh()
    written = widget.save()
    assert written == unannotated / "train" / "masks" / f"{stems[1]}.png"
    classes, _ = read_labels(written, organs)
    assert np.array_equal(organs.class_values()[classes], corrected)
    row = {r["stem"]: r for r in read_csv(unannotated / "train" / "frames.csv")}[stems[1]]
    assert row["mask_origin"] == "corrected" and row["proposed_by"] == RUN.name
    assert int(row["changed_px"]) > 0

    # Saving over it asks first; "no" keeps the saved mask as it is.
    before = written.read_bytes()
    layer.data[1] = np.where(corrected > 0, organs.values[0], 0)
    widget.confirm = lambda question: False
    assert widget.save() is None and written.read_bytes() == before
    # A value organs.csv does not list is refused, and nothing is written.
    viewer.dims.set_current_step(0, 2)
    proposed = np.array(layer.data[2])
    strange = proposed.copy()
    strange[0:3, 0:3] = 99
    layer.data[2] = strange
    assert widget.save() is None
    assert not (unannotated / "train" / "masks" / f"{stems[2]}.png").exists()

    # A longer stack open beside the proposals: a frame past their end is refused.
    viewer.add_image(np.zeros((len(stems) + 5, 8, 8), np.uint8), name="longer stack")
    viewer.dims.set_current_step(0, len(stems) + 2)
    masks_before = sorted(path.name for path in (unannotated / "train" / "masks").iterdir())
    assert widget.save() is None
    assert sorted(path.name for path in (unannotated / "train" / "masks").iterdir()) == masks_before

    # The annotator accepts the other proposals as they are: the folder is then complete.
    layer.data[2] = proposed
    for index in [i for i in range(len(stems)) if i != 1]:
        viewer.dims.set_current_step(0, index)
        assert widget.save() is not None
    rows = {r["stem"]: r for r in read_csv(unannotated / "train" / "frames.csv")}
    assert {rows[stem]["changed_px"] for stem in stems if stem != stems[1]} == {"0"}
    check = subprocess.run([sys.executable, "-m", "unetlib", "check-masks", str(unannotated)],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout[-1500:] + check.stderr[-1000:]


def test_training_from_the_widget_leaves_the_event_loop_free(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train")
    annotate = AnnotateWidget(viewer)
    widget.data_dir.value, widget.run_dir.value = DATA, tmp_path / "run"
    widget.epochs.value, widget.steps.value, widget.patch.value = 2, 1, 64
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(50)
    started = time.monotonic()
    task = widget.start()
    # Saving into the folder it trains on is refused while it runs.
    image, labels = proposal_layers(DATA, [p.stem for p in (DATA / "train" / "frames").iterdir()])
    viewer.add_image(image[0], **image[1])
    viewer.add_labels(labels[0], **labels[1])
    assert annotate.save() is None
    finish(qtbot, task)
    elapsed = time.monotonic() - started
    timer.stop()
    assert (tmp_path / "run" / "model.keras").is_file()
    assert len(widget.dice) == 2 and set(widget.dice[-1]) == {"liver", "kidney", "bladder"}
    assert widget.progress.value == 2 and widget.start_button.enabled
    assert "training curves" in viewer.window.dock_widgets and widget.plotted == 2
    # The 50 ms timer kept firing through the training: no gap over 2 s.
    gaps = np.diff([started, *ticks])
    assert elapsed > 2 and gaps.max() < 2.0, (elapsed, gaps.max())
    shot(viewer, "train")


def test_quantify_from_the_widget_shows_labels_curves_and_flagged_cycles(make_napari_viewer, qtbot,
                                                                        tmp_path):
    viewer = make_napari_viewer()
    viewer.open(str(STACK), plugin="unetlib")
    widget = QuantifyWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Quantify")
    widget.run_dir.value, widget.out_dir.value = RUN, tmp_path / "quantify"
    finish(qtbot, widget.quantify())  # the stack open in the viewer
    folder = tmp_path / "quantify" / STACK.stem
    rows = read_csv(folder / "intensities.csv")
    labels = [layer for layer in viewer.layers if layer._type_string == "labels"]
    assert len(labels) == 1 and labels[0].data.shape[0] == int(rows[-1]["cycle"]) + 1
    assert len([layer for layer in viewer.layers if layer._type_string == "image"]) == 4
    assert "organ curves" in viewer.window.dock_widgets
    flagged = sorted({int(row["cycle"]) for row in rows if row["qc"] != "ok"})
    assert widget.flagged.choices == tuple(f"cycle {cycle}" for cycle in flagged)
    widget._jump(["cycle 3"])
    assert viewer.dims.current_step[0] == 3
    shot(viewer, "quantify")
    assert read_image(SHOTS / "quantify.png").shape[-1] in (3, 4)
