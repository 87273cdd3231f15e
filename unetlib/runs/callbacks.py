"""The Keras callbacks of a training run: whole-frame validation and the run's records.

:class:`FrameValidation` scores the validation frames at every epoch end the way
prediction will see them (whole frames, the sliding window with overlap and blending),
which is what chooses the best checkpoint. :class:`RunRecorder` keeps the best and last
checkpoints, ``history.csv`` and ``state.json`` up to date.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import numpy as np

from unetlib.core import interrupts
from unetlib.core._tensorflow import keras
from unetlib.core.io import atomic_path, write_csv, write_json
from unetlib.data.organs import OrganTable
from unetlib.nn.frame_scores import frame_metrics, organ_frame_metrics
from unetlib.nn.metrics import metric_name
from unetlib.nn.model import class_prior_shifted
from unetlib.nn.sliding_window import organ_classes, predict_probabilities
from unetlib.runs.run import RunFolder, save_model

__all__ = ["CRITERION", "FrameValidation", "RunRecorder", "history_fields", "logged_fields"]

# The log the best checkpoint is chosen by: mean Dice over whole validation frames (organ
# runs: the mean over organs of each organ's mean over frames).
CRITERION = "val_frame_dice"


class FrameValidation(keras.callbacks.Callback):
    """Add whole-frame validation Dice to the epoch's logs (``val_frame_dice``, and
    ``val_frame_dice_<organ>`` for organ runs).

    Keras's own validation scores fixed patch-sized tiles, whose edges lack the context a
    whole frame gives: on the hard synthetic benchmark that score said 0.77 where the
    held-out frames measured 0.95, and chose worse checkpoints than the last one. A few
    whole frames per epoch cost a fraction of a second.

    Parameters
    ----------
    images : list of ndarray (H, W, C), float32
        The normalised validation frames.
    masks : list of ndarray (H, W)
        Their masks: 0/1, or organ classes 0 .. N.
    organs : OrganTable or None
        The run's organs; None for one foreground (scored at threshold 0.5).
    log_prior_shift : list of float or None
        Organ runs: the shift the kept checkpoint is saved with
        (:func:`unetlib.nn.model.class_prior_shifted`), so frames are scored as it predicts.
    """

    def __init__(self, images: list[np.ndarray], masks: list[np.ndarray],
                 organs: OrganTable | None, log_prior_shift: list[float] | None = None) -> None:
        super().__init__()
        self.images = images
        self.masks = masks
        self.organs = organs
        self.log_prior_shift = log_prior_shift

    def scores(self) -> dict[str, float]:
        """The whole-frame validation scores of the model as it is now (as the kept
        checkpoint would be saved)."""
        with class_prior_shifted(self.model, self.log_prior_shift):
            return self._scores()

    def _scores(self) -> dict[str, float]:
        if self.organs is None:
            dice = [frame_metrics(predict_probabilities(self.model, image) >= 0.5, mask)["dice"]
                    for image, mask in zip(self.images, self.masks)]
            return {CRITERION: float(np.mean(dice))}
        per_organ = np.array([[score["dice"] for score in organ_frame_metrics(
            organ_classes(predict_probabilities(self.model, image)), mask,
            self.organs.classes)] for image, mask in zip(self.images, self.masks)])
        organ_means = per_organ.mean(axis=0)
        scores = {CRITERION: float(organ_means.mean())}
        for name, value in zip(self.organs.names, organ_means):
            scores[f"{CRITERION}_{metric_name(name)}"] = float(value)
        return scores

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.scores())


class RunRecorder(keras.callbacks.Callback):
    """Keeps the best and last checkpoints, history.csv and state.json up to date.

    Written here rather than with Keras's ModelCheckpoint and CSVLogger because every
    file must be replaced atomically (a full disk or a kill during a save must leave the
    previous checkpoint loadable) and the state needed by ``--resume`` must change in the
    same step as the checkpoint it describes. The kept checkpoint (``model.keras``) is the
    one with the highest :data:`CRITERION`, which :class:`FrameValidation` (listed before
    this callback) adds to the logs, or with ``keep_last`` the last epoch. With
    ``log_prior_shift`` (organ runs), ``model.keras`` is saved with the frames' class
    frequencies (:func:`unetlib.nn.model.class_prior_shifted`); ``last.keras``, where a
    resumed run continues, stays as trained.
    """

    def __init__(self, run_dir: Path, history: list[dict[str, float]], state: dict,
                 fields: tuple[str, ...], started: float, elapsed_before: float,
                 deadline: float | None, epoch_seconds: float | None = None, *,
                 keep_last: bool = False, log_prior_shift: list[float] | None = None):
        super().__init__()
        self.run_dir = run_dir
        self.folder = RunFolder(run_dir)
        self.history = history
        self.state = state
        self.fields = fields
        self.started = started
        self.elapsed_before = elapsed_before
        self.deadline = deadline
        self.epoch_seconds = epoch_seconds
        self.keep_last = keep_last
        self.log_prior_shift = log_prior_shift
        self.stopped_by_time_budget = False
        self.ended_epoch_early = False
        self.epoch_started = started
        self.epoch_steps = 0
        self.epoch = 0
        # (epoch, step, loss) where the loss stopped being finite: nothing after is kept.
        self.non_finite_loss: tuple[int, int, float] | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.monotonic()
        self.epoch_steps = 0
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        interrupts.raise_if_received()  # a Ctrl-C that TensorFlow's compiled code swallowed
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            self.non_finite_loss = (self.epoch + 1, batch + 1, loss)
            self.model.stop_training = True
            return
        # Either stop ends this epoch's steps; Keras still validates it and calls
        # on_epoch_end, then leaves fit (which training calls again after an early end).
        self.epoch_steps = batch + 1
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            self.stopped_by_time_budget = True
            self.model.stop_training = True
        elif (self.epoch_seconds and now - self.epoch_started >= self.epoch_seconds
              and self.epoch_steps < self.params.get("steps", float("inf"))):
            self.ended_epoch_early = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.non_finite_loss is not None:
            return  # weights that gave a NaN loss are not worth a checkpoint
        logs = dict(logs or {})
        now = time.monotonic()
        row: dict[str, float] = {"epoch": epoch + 1}
        for name in self.fields:
            if name in logs:
                row[name] = float(logs[name])
        row["learning_rate"] = float(keras.ops.convert_to_numpy(
            self.model.optimizer.learning_rate))
        row["steps"] = self.epoch_steps
        row["epoch_seconds"] = now - self.epoch_started
        row["elapsed_seconds"] = self.elapsed_before + now - self.started
        self.history.append(row)
        score = row.get(CRITERION, float("nan"))
        # Serialised once (0.2-0.4 s for the organ network); the kept checkpoint is a copy.
        save_model(self.model, self.folder.last)
        if self.keep_last or (not math.isnan(score) and score > self.state["best_val_dice"]):
            self.state.update(best_val_dice=score, best_epoch=epoch + 1)
            self._keep()
        elif not (self.folder.model).exists():
            self._keep()
            self.state.update(best_epoch=epoch + 1)
        write_csv(self.folder.history, self.history, history_fields(self.fields),
                  overwrite=True)
        if self.ended_epoch_early:
            # Part of an epoch: the next fit call trains its remaining steps first, so
            # --epochs still means epochs x steps_per_epoch steps on any machine.
            self.state["epoch_steps_done"] = self.state.get("epoch_steps_done", 0) + self.epoch_steps
        else:
            self.state.update(epochs_completed=epoch + 1, epoch_steps_done=0)
        self.state["elapsed_seconds"] = row["elapsed_seconds"]
        write_json(self.folder.state, self.state, overwrite=True)

    def _keep(self) -> None:
        """This epoch becomes ``model.keras``: a copy of ``last.keras``, or the model saved
        with its class prior shifted."""
        if self.log_prior_shift is None:
            _copy_checkpoint(self.folder.last, self.folder.model)
            return
        with class_prior_shifted(self.model, self.log_prior_shift):
            save_model(self.model, self.folder.model)


def _copy_checkpoint(source: Path, destination: Path) -> None:
    """Replace ``destination`` with a copy of ``source`` atomically (never half-written)."""
    with atomic_path(destination, overwrite=True) as temporary:
        shutil.copyfile(source, temporary)


def logged_fields(organs: OrganTable | None) -> tuple[str, ...]:
    """The logs kept per epoch: loss and metrics, training then validation (tiles, then
    whole frames)."""
    names = ["loss", "dice", "iou", "pixel_accuracy"]
    frame_names = [CRITERION]
    if organs is not None:
        names += [f"dice_{metric_name(name)}" for name in organs.names]
        frame_names += [f"{CRITERION}_{metric_name(name)}" for name in organs.names]
    return (*names, *(f"val_{name}" for name in names), *frame_names)


def history_fields(logged: tuple[str, ...]) -> tuple[str, ...]:
    """The columns of ``history.csv``."""
    return ("epoch", *logged, "learning_rate", "steps", "epoch_seconds", "elapsed_seconds")
