"""The plugin's dock widgets: annotate by correcting the model, train, quantify.

Each is a magicgui :class:`~magicgui.widgets.Container` that napari docks (declared in
``napari.yaml``; napari passes the viewer). Every step that needs a model runs as the
CLI's own command (``pick-frames``, ``propose``, ``train``, ``quantify``) in a child
process that the Qt event loop polls (:class:`CliTask`), for three reasons: TensorFlow and
Qt's OpenGL crash each other in one process (PyQt6 6.11 with TensorFlow 2.21 segfaults
on the first import of TensorFlow after a viewer exists), the viewer stays responsive
whatever the step costs, and Cancel is the CLI's tested Ctrl-C (a training leaves a
resumable run). The viewer process itself never loads TensorFlow: it reads and writes
files only (:mod:`unetlib.napari.layers`, :func:`unetlib.data.annotations.save_mask`).
An expected error becomes one napari notification naming the file and the fix, and
nothing is written then.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
from magicgui import widgets
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

from unetlib.core.errors import UnetlibError
from unetlib.core.io import list_images, read_csv
from unetlib.data.annotations import proposals_folder, save_mask
from unetlib.data.dataset import train_folders
from unetlib.data.organs import find_organ_table, read_organ_table
from unetlib.napari.layers import (
    data_folder_layers,
    labels_layer,
    laser_count,
    mask_values,
    quantify_layers,
)
from unetlib.runs.folder import RunFolder
from unetlib.viz.plots import plot_history, plot_organ_curves

__all__ = ["AnnotateWidget", "CliTask", "QuantifyWidget", "TrainWidget", "proposal_layers"]

# Data folders a Train widget of this viewer is training on: Save refuses to write there.
_TRAINING: set[Path] = set()
POLL_MS = 300


def _path(edit: widgets.FileEdit) -> Path | None:
    text = str(edit.value).strip()
    return Path(text) if text and text != "." else None


class CliTask:
    """One ``python -m unetlib -q <args>`` in a child process, polled by a Qt timer.

    Parameters
    ----------
    args : list of str
        The command's arguments after ``python -m unetlib -q``.
    on_done : callable
        Called on the GUI thread when the command succeeds.
    on_poll : callable, optional
        Called on every poll while it runs (e.g. to read a run's history).
    """

    def __init__(self, args: list[str], on_done: Callable[[], None],
                 on_poll: Callable[[], None] | None = None) -> None:
        self.args = [str(arg) for arg in args]
        self.on_done, self.on_poll = on_done, on_poll
        self.code: int | None = None
        self.error = ""
        self._log = tempfile.TemporaryFile(mode="w+")  # stderr: a pipe could fill and stall it
        self.process = subprocess.Popen([sys.executable, "-m", "unetlib", "-q", *self.args],
                                        stdout=subprocess.DEVNULL, stderr=self._log, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.timer = QTimer()
        self.timer.timeout.connect(self.poll)
        self.timer.start(POLL_MS)

    @property
    def running(self) -> bool:
        return self.code is None

    def poll(self) -> int | None:
        """Its exit code once it has finished (then reported), None while it runs."""
        if self.code is not None:
            return self.code
        if self.on_poll is not None:
            self.on_poll()
        code = self.process.poll()
        if code is None:
            return None
        self.timer.stop()
        self._log.seek(0)
        text = self._log.read()
        self._log.close()
        self.code = code
        if code == 0:
            self.on_done()
        elif code == 130:
            show_info(f"{self.args[0]} cancelled")
        else:
            lines = [line for line in text.splitlines() if line.startswith("error:")]
            self.error = lines[-1] if lines else f"{self.args[0]} exited with {code}: {text[-400:]}"
            show_error(self.error)
        return code

    def cancel(self) -> None:
        """Interrupt it as Ctrl-C would (what it finished stays, resumable)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)


def proposal_layers(data_dir: str | Path, stems: list[str]) -> list:
    """The frames ``stems`` of a data folder and their masks, or their proposals where they
    have none yet, as layers: the labels layer is what the annotator corrects."""
    data_dir = Path(data_dir)
    image, masks = data_folder_layers(data_dir, stems)
    organs = find_organ_table(data_dir)
    values = masks[0].copy()
    shown = image[1]["metadata"]["stems"]
    folder = proposals_folder(data_dir)
    for index, stem in enumerate(shown):
        proposal = folder / f"{stem}.png"
        if not values[index].any() and proposal.is_file():
            values[index] = mask_values(proposal, organs)
    labels = labels_layer(values, organs, f"{data_dir.name} proposals",
                          metadata={"unetlib_data": str(data_dir), "stems": shown})
    return [image, labels]


class AnnotateWidget(widgets.Container):
    """Pick frames, propose masks from a run, correct them with napari's label tools, and
    save each into ``train/masks/`` (frames.csv records it as corrected, by which model).

    Save writes the frame shown (the first axis of the proposals layer) and asks before
    replacing a saved mask. An unsaved proposal is never an annotation.
    """

    def __init__(self, napari_viewer: Any) -> None:
        self.viewer = napari_viewer
        self.data_dir = widgets.FileEdit(label="data folder", mode="d")
        self.stack = widgets.FileEdit(label="stack", mode="r", filter="*.tif *.tiff")
        self.count = widgets.SpinBox(label="frames", value=8, min=1, max=500)
        self.method = widgets.ComboBox(label="pick", choices=["spread", "uncertain"], value="spread")
        self.laser = widgets.SpinBox(label="laser", value=1, min=1, max=64)
        self.run_dir = widgets.FileEdit(label="run", mode="d")
        buttons = {"Pick frames": self.pick, "Propose masks": self.propose,
                   "Save this frame's mask": self.save}
        pushes = []
        for text, action in buttons.items():
            push = widgets.PushButton(text=text)
            push.changed.connect(lambda *_, act=action: act())
            pushes.append(push)
        self.confirm: Callable[[str], bool] = _ask
        self.task: CliTask | None = None
        super().__init__(widgets=[self.data_dir, self.stack, self.count, self.method, self.laser,
                                  pushes[0], self.run_dir, pushes[1], pushes[2]])

    def pick(self) -> CliTask | None:
        """Pick frames of the stack into the data folder (spread, or uncertain with the run)."""
        data, stack, run = _path(self.data_dir), _path(self.stack), _path(self.run_dir)
        if data is None or stack is None:
            show_error("Choose a stack and a data folder first.")
            return None
        args = ["pick-frames", stack, "--out", data, "--count", int(self.count.value),
                "--method", self.method.value, "--laser", int(self.laser.value),
                "--lasers", laser_count(stack)]
        if self.method.value == "uncertain":
            if run is None:
                show_error("Choose the run whose uncertainty picks the frames.")
                return None
            args += ["--run", run]
        self.task = CliTask(args, lambda: show_info(f"picked frames into {data}"))
        return self.task

    def propose(self) -> CliTask | None:
        """Propose masks for the frames without one (the CLI's ``propose``); then show them."""
        data, run = _path(self.data_dir), _path(self.run_dir)
        if data is None or run is None:
            show_error("Choose a data folder and a run first.")
            return None
        self.task = CliTask(["propose", run, data], lambda: self.show(data))
        return self.task

    def show(self, data: Path) -> None:
        """Show the frames of ``data`` without a mask, with their proposals, to correct."""
        frames_dir, masks_dir = train_folders(data)
        saved = {path.stem for path in list_images(masks_dir)} if masks_dir.is_dir() else set()
        stems = [path.stem for path in list_images(frames_dir) if path.stem not in saved]
        if not stems:
            show_info(f"{data}: every frame has a mask; nothing to correct")
            return
        try:
            layers = proposal_layers(data, stems)
        except UnetlibError as error:
            show_error(str(error))
            return
        for values, kwargs, kind in layers:
            getattr(self.viewer, f"add_{kind}")(values, **kwargs)
        self.viewer.dims.set_current_step(0, 0)

    def _proposals(self) -> Any:
        for layer in reversed(self.viewer.layers):
            if layer.metadata.get("unetlib_data") and layer.name.endswith(" proposals"):
                return layer
        return None

    def save(self) -> Path | None:
        """Save the shown frame's labels as its mask; returns the file written."""
        layer = self._proposals()
        if layer is None:
            show_error("No proposals layer to save: propose masks first.")
            return None
        data = Path(layer.metadata["unetlib_data"])
        if data.resolve() in _TRAINING:
            show_error(f"{data}: a training started from this viewer reads this folder; "
                       "save when it has finished (or cancel it).")
            return None
        index = int(self.viewer.dims.current_step[0])
        stems = layer.metadata["stems"]
        if not 0 <= index < len(stems):
            show_error(f"The viewer shows frame {index}, but {layer.name!r} holds frames "
                       f"0-{len(stems) - 1}: move the slider onto one of them, then save.")
            return None
        stem = stems[index]
        target = train_folders(data)[1] / f"{stem}.png"
        overwrite = target.is_file()
        if overwrite and not self.confirm(f"{target} exists. Replace it with this frame's labels?"):
            return None
        try:
            written = save_mask(data, stem, np.asarray(layer.data[index]), overwrite=overwrite)
        except (UnetlibError, OSError) as error:
            show_error(str(error))
            return None
        show_info(f"saved {written}")
        return written


def _ask(question: str) -> bool:
    from qtpy.QtWidgets import QMessageBox  # only when a person must be asked

    answer = QMessageBox.question(None, "unet-mice", question)
    return answer == QMessageBox.StandardButton.Yes


class TrainWidget(widgets.Container):
    """Train a run on a data folder, or fine-tune one (``--init-from``), with the epochs
    done and every organ's validation Dice as they come (a line, and the run's curves in a
    dock); Cancel leaves a resumable run."""

    def __init__(self, napari_viewer: Any) -> None:
        self.viewer = napari_viewer
        self.data_dir = widgets.FileEdit(label="data folder", mode="d")
        self.run_dir = widgets.FileEdit(label="new run", mode="d")
        self.init_from = widgets.FileEdit(label="fine-tune from", mode="d")
        self.epochs = widgets.SpinBox(label="epochs", value=20, min=1, max=10000)
        self.steps = widgets.SpinBox(label="steps per epoch", value=50, min=1, max=100000)
        self.patch = widgets.SpinBox(label="patch size", value=256, min=16, max=4096, step=16)
        self.resume = widgets.CheckBox(label="resume", value=False)
        self.start_button = widgets.PushButton(text="Train")
        self.cancel_button = widgets.PushButton(text="Cancel", enabled=False)
        self.progress = widgets.ProgressBar(label="epochs", value=0, min=0, max=1)
        self.status = widgets.Label(value="")
        self.start_button.changed.connect(lambda *_: self.start())
        self.cancel_button.changed.connect(lambda *_: self.cancel())
        self.task: CliTask | None = None
        self.dice: list[dict[str, float]] = []
        self.plotted = 0
        self.canvas = None
        self._data: Path | None = None
        super().__init__(widgets=[self.data_dir, self.run_dir, self.init_from, self.epochs,
                                  self.steps, self.patch, self.resume, self.start_button, self.cancel_button,
                                  self.progress, self.status])

    def arguments(self) -> list[str]:
        """The ``train`` command's arguments."""
        data, run = _path(self.data_dir), _path(self.run_dir)
        if data is None or run is None:
            raise UnetlibError("Choose a data folder and a folder for the new run first.")
        args = ["train", str(data), "--out", str(run), "--epochs", str(int(self.epochs.value)),
                "--steps-per-epoch", str(int(self.steps.value)),
                "--patch-size", str(int(self.patch.value))]
        if _path(self.init_from) is not None:
            args += ["--init-from", str(_path(self.init_from))]
        return args + (["--resume"] if self.resume.value else [])

    def start(self) -> CliTask | None:
        """Start training in a child process."""
        try:
            args = self.arguments()
        except UnetlibError as error:
            show_error(str(error))
            return None
        self._data = Path(args[1]).resolve()
        _TRAINING.add(self._data)
        self.progress.max, self.progress.value = int(self.epochs.value), 0
        self.start_button.enabled, self.cancel_button.enabled = False, True
        self.status.value = "training..."
        self.task = CliTask(args, self._finished, on_poll=self.read_history)
        self.task.timer.timeout.connect(self._after)
        return self.task

    def read_history(self) -> None:
        """Show the epochs done and the last validation Dice per organ (``history.csv``)."""
        run = _path(self.run_dir)
        table = RunFolder(run).history if run else None
        rows = read_csv(table) if table is not None and table.is_file() else []
        self.dice = [{key[len("val_frame_dice_"):]: float(value) for key, value in row.items()
                      if key.startswith("val_frame_dice_") and value} for row in rows]
        if rows:
            self.progress.value = min(int(float(rows[-1]["epoch"])), self.progress.max)
            self.status.value = "validation Dice: " + ", ".join(
                f"{organ} {value:.3f}" for organ, value in self.dice[-1].items())
        if len(rows) > self.plotted:
            self.plotted = len(rows)
            self._plot(rows)

    def _plot(self, rows: list[dict[str, str]]) -> None:
        """The run's curves so far (loss; Dice per organ on the validation frames) in a dock."""
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg  # needs Qt running

        figure = plot_history(rows, title=str(_path(self.run_dir).name))
        if self.canvas is None:
            self.canvas = FigureCanvasQTAgg(figure)
            self.canvas.setMinimumHeight(260)
            self.viewer.window.add_dock_widget(self.canvas, name="training curves", area="bottom")
        else:
            figure.set_canvas(self.canvas)
            self.canvas.figure = figure
            self.canvas.draw_idle()

    def _finished(self) -> None:
        self.read_history()
        show_info(f"trained {_path(self.run_dir)}")

    def _after(self) -> None:
        if self.task is not None and not self.task.running:
            _TRAINING.discard(self._data)
            self.start_button.enabled, self.cancel_button.enabled = True, False
            if self.task.code == 130:
                self.status.value += " (cancelled: tick resume to continue it)"

    def cancel(self) -> None:
        """Interrupt the training as Ctrl-C would: its last epoch stays, resumable."""
        if self.task is not None:
            self.task.cancel()


class QuantifyWidget(widgets.Container):
    """Quantify the open stack with a run: the organ labels as a layer, the curves in a
    dock, the cycles QC flagged in a list (choosing one shows that cycle)."""

    def __init__(self, napari_viewer: Any) -> None:
        self.viewer = napari_viewer
        self.run_dir = widgets.FileEdit(label="run", mode="d")
        self.stack = widgets.FileEdit(label="stack", mode="r", filter="*.tif *.tiff")
        self.out_dir = widgets.FileEdit(label="results", mode="d")
        self.flagged = widgets.Select(label="flagged cycles", choices=[])
        button = widgets.PushButton(text="Quantify")
        button.changed.connect(lambda *_: self.quantify())
        self.flagged.changed.connect(self._jump)
        self.task: CliTask | None = None
        super().__init__(widgets=[self.run_dir, self.stack, self.out_dir, button, self.flagged])

    def _open_stack(self) -> Path | None:
        chosen = _path(self.stack)
        if chosen is not None:
            return chosen
        for layer in self.viewer.layers:
            if layer.metadata.get("unetlib_stack"):
                return Path(layer.metadata["unetlib_stack"])
        return None

    def quantify(self) -> CliTask | None:
        """Quantify (the CLI's ``quantify``); then show the labels, curves and flagged cycles."""
        run, stack, out = _path(self.run_dir), self._open_stack(), _path(self.out_dir)
        if run is None or stack is None or out is None:
            show_error("Choose a run, a stack (or open one) and a results folder first.")
            return None
        self.task = CliTask(["quantify", run, stack, "--out", out, "--lasers", laser_count(stack)],
                            lambda: self.show(out / stack.stem))
        return self.task

    def show(self, folder: Path) -> None:
        """Show a stack's quantify results folder."""
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg  # needs Qt running

        layers = quantify_layers(folder)
        shown = {layer.metadata.get("unetlib_stack") for layer in self.viewer.layers}
        for values, kwargs, kind in layers:
            if kind == "labels" or kwargs["metadata"]["unetlib_stack"] not in shown:
                getattr(self.viewer, f"add_{kind}")(values, **kwargs)
        rows = read_csv(folder / "intensities.csv")
        figure = plot_organ_curves(rows, read_organ_table(folder / "organs.csv"), title=folder.name)
        canvas = FigureCanvasQTAgg(figure)
        canvas.setMinimumHeight(260)  # a bottom dock otherwise opens a few pixels high
        self.viewer.window.add_dock_widget(canvas, name="organ curves", area="bottom")
        cycles = sorted({int(row["cycle"]) for row in rows if row["qc"] != "ok"})
        self.flagged.choices = [f"cycle {cycle}" for cycle in cycles]
        show_info(f"quantified into {folder}: {len(cycles)} cycle(s) flagged by QC")

    def _jump(self, chosen: list[str]) -> None:
        if chosen:
            self.viewer.dims.set_current_step(0, int(chosen[0].split()[-1]))
