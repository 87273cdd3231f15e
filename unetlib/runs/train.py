"""Train a U-Net on a data folder into a self-describing run folder.

The run folder's files are described in :mod:`unetlib.runs.run`. :func:`train` goes through
named steps: resolve the request and decide on the run folder from it (reuse the same
finished run, refuse another: :mod:`unetlib.runs.request`, free of TensorFlow so the
command line decides before loading it), resume or replace it, load and
split the pairs, build or resume the model, fit (checkpoints every epoch), calibrate on
whole validation frames (binary runs choose their threshold; organ runs are scored per
organ), finish (``metrics.json`` last). A data folder with ``organs.csv`` trains one
softmax class per organ, with a loss and patch sampling that do not let a small organ
drown; without it, one sigmoid foreground as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from unetlib import __version__
from unetlib.core._tensorflow import keras, tf
from unetlib.core.config import (
    ModelConfig,
    PipelineConfig,
    TrainConfig,
    to_dict,
)
from unetlib.core.errors import InputError, Interrupted, OutputError, ParameterError, describe
from unetlib.core.io import atomic_path, read_image, read_json, write_json
from unetlib.core.locking import output_lock
from unetlib.core.resources import require_memory, training_memory_bytes
from unetlib.core.runtime_report import runtime_record
from unetlib.data.frames import recorded_laser_count, recorded_lasers
from unetlib.data.organs import OrganTable
from unetlib.nn.frame_scores import frame_metrics, organ_frame_metrics
from unetlib.nn.losses import get_loss
from unetlib.nn.metrics import organ_training_metrics, training_metrics
from unetlib.nn.model import build_unet, make_optimizer
from unetlib.nn.pipeline import (
    check_patch_size,
    load_pairs,
    log_prior_shift,
    make_training_dataset,
    make_validation_dataset,
    split_pairs,
)
from unetlib.nn.sliding_window import organ_classes, predict_probabilities
from unetlib.runs.callbacks import FrameValidation, RunRecorder, logged_fields
from unetlib.runs.finetune import StartingPoint, set_encoder_trainable, starting_point
from unetlib.runs.request import (
    TrainingRequest,
    TrainResult,
    data_fingerprint,
    existing_run_error,
    load_history,
    load_result,
    reusable_run,
    training_request,
)
from unetlib.runs.run import FINISHED, RunFolder, read_run_config
from unetlib.viz.plots import plot_history

logger = logging.getLogger(__name__)

__all__ = ["TrainResult", "calibrate_threshold", "data_fingerprint", "load_result", "train"]


# --- run-folder helpers -----------------------------------------------------------------

def _versions() -> dict[str, str]:
    import PIL
    import tifffile

    return {"unetlib": __version__, "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
            "tifffile": tifffile.__version__, "pillow": PIL.__version__,
            "platform": platform.platform()}


def _check_run_folder(run_dir: Path, config: TrainConfig, *, resume: bool,
                      force: bool) -> tuple[dict | None, list[str]]:
    """Refuse to overwrite a run unless forced; return (saved state when resuming, files
    that will be replaced). Nothing is deleted here.

    A folder whose run never completed an epoch (killed during the first one) holds
    nothing worth keeping: it is started again without ``--force``.
    """
    folder = RunFolder(run_dir)
    present = folder.present
    finished = folder.status == FINISHED
    # A finished run keeps its last checkpoint too: --force with more --epochs resumes it.
    resumable = folder.last.is_file() and folder.state.is_file()
    if resume:
        if not resumable:
            if present:
                logger.warning("%s: the previous run stopped before its first epoch ended; "
                               "nothing to resume, starting it again", run_dir)
                return None, present
            raise InputError(describe(run_dir, "has no interrupted run to resume (last.keras "
                                      "and state.json are missing)",
                                      "Start a new run without --resume."))
        state = read_json(RunFolder(run_dir).state)
        _refuse_other_sizes(run_dir, config)
        if finished and not force:
            raise OutputError(describe(run_dir, "holds a finished run; resuming it would "
                                       "replace its model.keras",
                                       "Train into another --out, or add --force (with more "
                                       "--epochs) to train this run further."))
        if not finished and state["epochs_completed"] >= config.epochs:
            # Stopped after its last epoch, before metrics.json: only the finishing steps
            # (calibration, metrics.json) are left, and resuming does just those.
            logger.info("%s: every epoch is done; finishing the run", run_dir)
            return state, []
        if state["epochs_completed"] >= config.epochs:
            raise OutputError(describe(run_dir, f"already completed {state['epochs_completed']} "
                                       f"of {config.epochs} epochs",
                                       "Raise --epochs to train further, or use --force "
                                       "without --resume to start again."))
        return state, []
    if present and not force and not (resumable or finished):
        logger.warning("%s: the previous run stopped before its first epoch ended; starting "
                       "it again", run_dir)
        return None, present
    if present and not force:
        raise existing_run_error(run_dir)
    return None, present


def _refuse_other_sizes(run_dir: Path, config: TrainConfig) -> None:
    """Refuse to resume a run with other patch or batch sizes than it was started with:
    its config.json would then describe neither."""
    stored = read_run_config(run_dir).get("pipeline") or {}
    for name, flag in (("patch_size", "--patch-size"), ("batch_size", "--batch-size")):
        asked = getattr(config.pipeline, name)
        if name in stored and stored[name] != asked:
            raise ParameterError(describe(run_dir, f"was started with {flag} {stored[name]}; "
                                          f"resuming it with {flag} {asked} would mix them",
                                          f"Resume with {flag} {stored[name]}, or start again "
                                          "with --force and no --resume."))


def calibrate_threshold(probabilities: list[np.ndarray], masks: list[np.ndarray],
                        grid: tuple[float, ...]) -> tuple[float, dict[float, float]]:
    """Return the threshold of ``grid`` maximising the mean per-frame Dice, and all means.

    Ties keep the threshold closest to 0.5.
    """
    means = {}
    for threshold in grid:
        scores = [frame_metrics(probability >= threshold, mask)["dice"]
                  for probability, mask in zip(probabilities, masks)]
        means[float(threshold)] = float(np.mean(scores))
    best = max(means, key=lambda t: (round(means[t], 12), -abs(t - 0.5)))
    return best, means


# --- training ---------------------------------------------------------------------------

def train(data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
          config: TrainConfig | None = None, *, resume: bool = False, force: bool = False,
          verbose: int = 1) -> TrainResult:
    """Train a U-Net on ``data_dir``'s ``train/frames`` + ``train/masks`` into ``out_dir``.

    Parameters
    ----------
    data_dir : path-like
        A data folder like ``data1d/`` (or its ``train/``). The channel count of the
        frames sets the model's input channels; ``organs.csv`` in it makes the run
        segment each listed organ (a softmax head), otherwise one foreground (sigmoid).
    out_dir : path-like
        The run folder (created). A folder holding a run is never replaced unless
        ``force``; ``resume`` continues an interrupted one.
    config : TrainConfig
        Every parameter of the run (default: ``TrainConfig()``).
    resume : bool
        Continue the interrupted run in ``out_dir`` from its last checkpoint.
    force : bool
        Replace the run in ``out_dir`` (with ``resume``: train a finished run further).
    verbose : {0, 1, 2}
        Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch.

    Returns
    -------
    TrainResult

    Raises
    ------
    InputError
        Unreadable data, fewer than 2 frame/mask pairs, or (resume) data that changed.
    OutputError
        ``out_dir`` holds a run and neither resume nor force was given; another process
        writes into it; it cannot be written.
    ParameterError
        A config field is out of range, or a size the data or memory cannot hold.
    Interrupted
        Ctrl-C; the message says what the run kept and how to continue it.

    Notes
    -----
    The steps: prepare the run folder, load the pairs, build or resume the model, fit,
    calibrate, finish. A folder that already holds a finished run of the same request (the
    config, the data fingerprint and the organ table) is returned as it is, without
    training: re-running a notebook is cheap and never replaces a run.

    Same seed and data give the same weights on the same machine with
    ``deterministic=True`` (this enables TensorFlow op determinism for the whole process).
    A resumed run continues from the last completed epoch with a new stream of training
    patches; it is not bit-identical to an uninterrupted run.

    Only one process trains into a run folder at a time (:func:`unetlib.core.locking.output_lock`).
    """
    started = time.monotonic()
    config = (config or TrainConfig()).validate()
    if verbose not in (0, 1, 2):
        raise ParameterError(f"verbose={verbose!r} is invalid: use 0, 1 or 2.")
    data_dir = Path(data_dir)
    run_dir = Path(out_dir)
    deadline = started + 60.0 * config.max_minutes if config.max_minutes else None
    request = training_request(data_dir, config)
    start = None
    if config.init_from is not None:
        pairs = request.pair_paths
        channels = _channels_of(pairs[0][0]) if pairs else request.asked.model.input_channels
        start = starting_point(config.init_from, channels=channels, organs=request.organs,
                               data_dir=data_dir, requested=request.asked.model)
        request = request.starting_from(start)
    reused = reusable_run(run_dir, request, resume=resume, force=force)
    if reused is not None:
        return reused
    with output_lock(run_dir):
        try:
            return _train_locked(run_dir, request, started, deadline, start, resume=resume,
                                 force=force, verbose=verbose)
        except KeyboardInterrupt:
            raise _interrupted(run_dir) from None


def _interrupted(run_dir: Path) -> Interrupted:
    """Say what an interrupted training kept, and how to go on from there."""
    state_path = RunFolder(run_dir).state
    done = 0
    if state_path.is_file():
        with contextlib.suppress(InputError, KeyError, TypeError, ValueError):
            done = int(read_json(state_path)["epochs_completed"])
    if done:
        return Interrupted(describe(run_dir, f"training interrupted after {done} complete "
                                    "epoch(s); the run is kept (model.keras holds its best "
                                    "epoch so far)", "Continue it with the same command plus "
                                    "--resume."))
    return Interrupted(describe(run_dir, "training interrupted during its first epoch; nothing "
                                "was worth keeping", "Run the same command again to start "
                                "over."))


@dataclasses.dataclass
class _Data:
    """The loaded pairs of a run and how they were split."""

    pairs: list
    train: list
    val: list
    channels: int
    log_prior_shift: list[float] | None = None


def _channels_of(frame: Path) -> int:
    image = read_image(frame)
    return 1 if image.ndim == 2 else int(image.shape[-1])


def _train_locked(run_dir: Path, request: TrainingRequest, started: float,
                  deadline: float | None, start: StartingPoint | None, *,
                  resume: bool, force: bool, verbose: int) -> TrainResult:
    """The steps of :func:`train` that run while holding the run folder's lock."""
    data_dir, config, organs = request.data_dir, request.config, request.organs
    fingerprint = request.fingerprint
    saved_state, replaced = _check_run_folder(run_dir, config, resume=resume, force=force)
    data = _load_data(data_dir, config)
    if organs is not None and config.prior_correction:
        # Organ-centred patches show organs more often than frames do: model.keras is saved
        # with the frames' class frequencies (class_prior_shifted).
        data.log_prior_shift = log_prior_shift(data.train, config.pipeline, organs.classes,
                                               strength=config.prior_correction)
    model_config = _model_config(config, data, organs, run_dir, resuming=saved_state is not None)
    config = dataclasses.replace(config, model=model_config)
    if replaced:
        # Only now that the data is known to be usable: force replaces the old run.
        logger.warning("replacing the run in %s", run_dir)
        for name in replaced:
            (run_dir / name).unlink()

    keras.utils.set_random_seed(config.pipeline.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    model, state, history, elapsed_before = _build_or_resume(run_dir, config, organs,
                                                             saved_state, fingerprint, data_dir,
                                                             start)
    run_config = _run_config(run_dir, data_dir, config, organs, data, fingerprint,
                             request.record, model, resumed=saved_state is not None)
    if start is not None:
        run_config["init_from"] = {"model": str(start.source.resolve()), "sha256": start.sha256,
                                   "freeze_encoder_epochs": config.freeze_encoder_epochs}
    write_json(RunFolder(run_dir).config, run_config, overwrite=True)

    recorder = _fit(model, run_dir, config, organs, data, state, history, started,
                    elapsed_before, deadline, verbose=verbose)
    metrics = _calibrate(run_dir, config, organs, data)
    return _finish(run_dir, config, run_config, metrics, state, history, recorder, started)


def _load_data(data_dir: Path, config: TrainConfig) -> _Data:
    """Load and split the pairs; refuse sizes the data or the memory cannot hold."""
    pipeline = config.pipeline
    pairs = load_pairs(data_dir, normalize=config.normalize)
    if config.holdout:
        unknown = sorted(set(config.holdout) - {pair.stem for pair in pairs})
        if unknown:
            raise ParameterError(describe(data_dir, f"has no annotated frame(s) {unknown} to "
                                          "hold out", "Hold out stems of train/frames."))
        pairs = [pair for pair in pairs if pair.stem not in set(config.holdout)]
    if len(pairs) < 2:
        held = f" besides the {len(config.holdout)} held out" if config.holdout else ""
        raise InputError(describe(data_dir, f"has {len(pairs)} frame/mask pair(s){held}",
                                  "Training needs at least 2 (one is kept for validation); "
                                  "annotate more frames."))
    # Sizes a typo can make absurd are refused here, before anything is allocated or written.
    patch, batch = pipeline.patch_size, pipeline.batch_size
    check_patch_size(pairs, patch)
    require_memory(training_memory_bytes(config.model, patch_size=patch, batch_size=batch),
                   data_dir, f"training on batches of {batch} patches of {patch} x {patch} pixels",
                   "Use a smaller --patch-size or --batch-size (defaults: "
                   f"{PipelineConfig().patch_size} and {PipelineConfig().batch_size}).")
    train_pairs, val_pairs = split_pairs(pairs, val_fraction=pipeline.val_fraction,
                                         seed=pipeline.seed)
    if not train_pairs or not val_pairs:
        raise InputError(describe(data_dir, f"{len(pairs)} pairs split into {len(train_pairs)} "
                                  f"training and {len(val_pairs)} validation frames",
                                  "Annotate more frames or change --val-fraction."))
    return _Data(pairs, train_pairs, val_pairs, int(pairs[0].image.shape[-1]))


def _model_config(config: TrainConfig, data: _Data, organs: OrganTable | None, run_dir: Path,
                  *, resuming: bool) -> ModelConfig:
    """The architecture: the preset with the data's channels and classes (a resumed run
    keeps the one its checkpoint has)."""
    classes = 1 if organs is None else organs.classes
    model_config = dataclasses.replace(config.model, input_channels=data.channels,
                                       classes=classes).validate()
    if not resuming:
        return model_config
    stored = read_run_config(run_dir)["model"]
    stored_model = ModelConfig(**{"classes": 1, **stored})
    if stored_model != model_config:
        logger.warning("resume: keeping the run's model %s, not %s", stored_model, model_config)
    return stored_model


def _compile(model: keras.Model, config: TrainConfig, organs: OrganTable | None) -> None:
    """Compile with a fresh optimiser, the run's loss and its Dice/IoU metrics."""
    metrics = training_metrics() if organs is None else organ_training_metrics(organs.names)
    total_steps = config.epochs * config.steps_per_epoch
    model.compile(optimizer=make_optimizer(config.model, total_steps=total_steps), loss=get_loss(config.loss),
                  metrics=metrics)
    # Without a distribution strategy Keras creates the optimiser's slots while tracing the
    # first step, and TensorFlow then traces the step a second time (2-4 s per fit on a CPU).
    model.optimizer.build(model.trainable_variables)


def _build_or_resume(run_dir: Path, config: TrainConfig, organs: OrganTable | None,
                     saved_state: dict | None, fingerprint: str, data_dir: Path,
                     start: StartingPoint | None = None):
    """A compiled new model (random, or the starting point's weights), or the interrupted
    run's last checkpoint with its state."""
    if saved_state is None:
        if start is None:
            model = build_unet(config.model)
        else:
            model = start.model
            logger.info("starting from the weights of %s", start.source)
        _compile(model, config, organs)
        state = {"epochs_completed": 0, "best_val_dice": -1.0, "best_epoch": 0,
                 "elapsed_seconds": 0.0, "finished": False}
        return model, state, [], 0.0
    stored = read_run_config(run_dir)
    if stored.get("data", {}).get("fingerprint") != fingerprint:
        raise InputError(describe(data_dir, "changed since the run in "
                                  f"{run_dir} started (fingerprint differs)",
                                  "Start a new run, or pass --force to replace this one."))
    model = keras.saving.load_model(RunFolder(run_dir).last)
    initial_epoch = int(saved_state["epochs_completed"])
    history = load_history(RunFolder(run_dir).history)[:initial_epoch]
    logger.info("resuming %s at epoch %d", run_dir, initial_epoch + 1)
    return (model, {**saved_state, "finished": False}, history,
            float(saved_state.get("elapsed_seconds", 0.0)))


def _run_config(run_dir: Path, data_dir: Path, config: TrainConfig, organs: OrganTable | None,
                data: _Data, fingerprint: str, request: dict[str, Any], model: keras.Model, *,
                resumed: bool) -> dict[str, Any]:
    """Everything ``config.json`` records; prediction and later stages need nothing else."""
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if resumed:
        created = read_run_config(run_dir).get("created", created)
    return {
        "train": to_dict(config),
        "model": to_dict(config.model),
        "normalize": to_dict(config.normalize),
        "pipeline": to_dict(config.pipeline),
        "augment": to_dict(config.augment),
        "organs": None if organs is None else organs.to_rows(),
        "data": {"data_dir": str(data_dir.resolve()), "fingerprint": fingerprint,
                 "pairs": len(data.pairs), "channels": data.channels,
                 "lasers": recorded_lasers(data_dir),
                 "stack_lasers": recorded_laser_count(data_dir),
                 "train_stems": [pair.stem for pair in data.train],
                 "val_stems": [pair.stem for pair in data.val],
                 "holdout_stems": list(config.holdout)},
        "versions": _versions(),
        "devices": [device.name for device in tf.config.list_physical_devices()],
        "runtime": runtime_record(),
        "created": created,
        "parameters": int(model.count_params()),
        "threshold": None,
        "log_prior_shift": data.log_prior_shift,
        "request": request,
    }


def _fit(model: keras.Model, run_dir: Path, config: TrainConfig, organs: OrganTable | None,
         data: _Data, state: dict, history: list, started: float, elapsed_before: float,
         deadline: float | None, *, verbose: int) -> RunRecorder:
    """Fit epoch by epoch, keeping the checkpoints, history and state on disk."""
    initial_epoch = int(state["epochs_completed"])

    def patch_stream():
        # A resumed run, and fit called again after an epoch ended early, draw a fresh
        # patch stream (one seed per history row), not one the steps before already saw.
        return make_training_dataset(data.train, config.pipeline, config.augment,
                                     seed=config.pipeline.seed + len(history))

    val_dataset = make_validation_dataset(data.val, config.pipeline)
    epoch_seconds = (60.0 * config.checkpoint_minutes
                     if deadline is not None and config.checkpoint_minutes else None)
    frame_validation = FrameValidation([pair.image for pair in data.val],
                                       [pair.mask[..., 0] for pair in data.val], organs,
                                       data.log_prior_shift)
    recorder = RunRecorder(run_dir, history, state, logged_fields(organs), started,
                           elapsed_before, deadline, epoch_seconds,
                           keep_last=config.checkpoint == "last",
                           log_prior_shift=data.log_prior_shift)
    logger.info("training %s (%d parameters%s) on %d frames, validating on %d", model.name,
                model.count_params(), "" if organs is None else f", organs {organs.names}",
                len(data.train), len(data.val))
    frozen_until = config.freeze_encoder_epochs
    # Phases of (last epoch, encoder trainable): frozen first when fine-tuning asks for it.
    phases = ([(frozen_until, False)] if initial_epoch < frozen_until else []) + [
        (config.epochs, True)]
    try:
        for last_epoch, encoder_trainable in phases:
            if not encoder_trainable or frozen_until:
                # Changing what trains takes a recompile (and a fresh optimiser state).
                changed = set_encoder_trainable(model, encoder_trainable)
                _compile(model, config, organs)
                logger.info("encoder (%d layers) %s", changed,
                            "trainable" if encoder_trainable else
                            f"frozen for epochs 1 to {frozen_until}")
            while initial_epoch < last_epoch and not recorder.stopped_by_time_budget:
                recorder.ended_epoch_early = False
                remaining = config.steps_per_epoch - int(state.get("epoch_steps_done", 0))
                # An epoch ended early by checkpoint_minutes is finished on its own first.
                model.fit(patch_stream(), initial_epoch=initial_epoch,
                          epochs=initial_epoch + 1 if remaining < config.steps_per_epoch
                          else last_epoch,
                          steps_per_epoch=remaining, validation_data=val_dataset,
                          callbacks=[frame_validation, recorder], verbose=verbose, shuffle=False)
                initial_epoch = int(state["epochs_completed"])
                if recorder.non_finite_loss is not None:
                    raise _diverged(run_dir, config, recorder.non_finite_loss, initial_epoch)
                if not recorder.ended_epoch_early and remaining == config.steps_per_epoch:
                    break
            if recorder.stopped_by_time_budget:
                break
    except OutputError as error:
        # Checkpoints are written atomically: the last complete epoch is still intact.
        what_failed = str(error).split(". ", 1)[0]
        raise OutputError(f"{what_failed}. The run in {run_dir} keeps its last complete epoch "
                          f"({state['epochs_completed']}): free disk space (or fix the "
                          "permission), then continue it with --resume.") from None
    return recorder


def _diverged(run_dir: Path, config: TrainConfig, where: tuple[int, int, float],
              kept: int) -> ParameterError:
    """The one-line error of a training whose loss became NaN or infinite."""
    epoch, step, loss = where
    what = (f"the run keeps its last complete epoch ({kept})" if kept else
            "nothing of it was kept")
    return ParameterError(describe(run_dir, f"training stopped: the loss became {loss} at step "
                                   f"{step} of epoch {epoch}; {what}", "Lower --lr (it is "
                                   f"{config.model.learning_rate:g}) or check the frames and "
                                   "masks, then train again with --force."))


def _calibrate(run_dir: Path, config: TrainConfig, organs: OrganTable | None,
               data: _Data) -> dict[str, Any]:
    """Score the best checkpoint on whole validation frames (binary: choose the threshold)."""
    best_model = keras.saving.load_model(RunFolder(run_dir).model, compile=False)
    probabilities = [predict_probabilities(best_model, pair.image) for pair in data.val]
    masks = [pair.mask[..., 0] for pair in data.val]
    if organs is not None:
        return _score_organs(probabilities, masks, organs, data)
    threshold, dice_by_threshold = calibrate_threshold(probabilities, masks,
                                                       config.threshold_grid)
    per_frame = [{"stem": pair.stem, **frame_metrics(probability >= threshold, mask)}
                 for pair, probability, mask in zip(data.val, probabilities, masks)]
    mean = {name: float(np.mean([row[name] for row in per_frame]))
            for name in ("dice", "iou", "precision", "recall", "pixel_accuracy")}
    return {"threshold": threshold, "val_dice_at_threshold": mean["dice"],
            "val_dice_at_0.5": dice_by_threshold.get(0.5), "val_mean": mean,
            "val_frames": per_frame,
            "dice_by_threshold": {f"{t:.2f}": value for t, value in dice_by_threshold.items()}}


def _score_organs(probabilities: list[np.ndarray], masks: list[np.ndarray], organs: OrganTable,
                  data: _Data) -> dict[str, Any]:
    """Per-organ scores of the most probable class on whole validation frames."""
    per_frame = []
    for pair, probability, mask in zip(data.val, probabilities, masks):
        scores = organ_frame_metrics(organ_classes(probability), mask, organs.classes)
        per_frame += [{"stem": pair.stem, "organ": name, **score}
                      for name, score in zip(organs.names, scores)]
    by_organ = {name: {metric: float(np.mean([row[metric] for row in per_frame
                                              if row["organ"] == name]))
                       for metric in ("dice", "iou", "precision", "recall")}
                for name in organs.names}
    mean = {metric: float(np.mean([scores[metric] for scores in by_organ.values()]))
            for metric in ("dice", "iou", "precision", "recall")}
    return {"threshold": None, "val_dice_at_threshold": mean["dice"], "val_mean": mean,
            "val_organs": by_organ, "val_frames": per_frame}


def _finish(run_dir: Path, config: TrainConfig, run_config: dict[str, Any],
            scores: dict[str, Any], state: dict, history: list, recorder: RunRecorder,
            started: float) -> TrainResult:
    """Write the threshold, history plot and metrics.json (last: the run is then finished)."""
    seconds = time.monotonic() - started
    stopped = recorder.stopped_by_time_budget and state["epochs_completed"] < config.epochs
    # best_val_dice: the whole-frame validation Dice that chose the best epoch.
    # best_epoch: the epoch model.keras holds (the last one with checkpoint="last").
    metrics = {"best_epoch": state["best_epoch"], "best_val_dice": state["best_val_dice"],
               "checkpoint": config.checkpoint,
               **scores, "epochs_completed": state["epochs_completed"],
               "stopped_by_time_budget": stopped, "train_seconds": state["elapsed_seconds"],
               "seconds_this_call": seconds,
               "samples_per_second": _samples_per_second(history, config)}
    run_config["threshold"] = scores["threshold"]
    write_json(RunFolder(run_dir).config, run_config, overwrite=True)
    state["finished"] = True
    write_json(RunFolder(run_dir).state, state, overwrite=True)
    _write_history_plot(RunFolder(run_dir).history_plot, history)
    write_json(RunFolder(run_dir).metrics, metrics, overwrite=True)
    threshold = scores["threshold"]
    logger.info("run %s: best epoch %d, validation Dice %.4f%s", run_dir, state["best_epoch"],
                scores["val_dice_at_threshold"],
                "" if threshold is None else f" at threshold {threshold:.2f}")
    return TrainResult(run_dir=run_dir, model_path=RunFolder(run_dir).model, history=history,
                       best_epoch=state["best_epoch"], best_val_dice=state["best_val_dice"],
                       threshold=threshold, val_dice=scores["val_dice_at_threshold"],
                       epochs_completed=state["epochs_completed"],
                       stopped_by_time_budget=stopped, seconds=seconds, metrics=metrics)


def _samples_per_second(history: list[dict[str, float]], config: TrainConfig) -> float | None:
    # The first epoch includes graph tracing; use the later ones when there are any.
    rows = history[1:] or history
    seconds = sum(row.get("epoch_seconds", 0.0) for row in rows)
    if not seconds:
        return None
    # Epochs ended early by time (or by the budget) record their steps; older runs do not.
    steps = sum(row.get("steps", config.steps_per_epoch) for row in rows)
    return steps * config.pipeline.batch_size / seconds


def _write_history_plot(path: Path, history: list[dict[str, float]]) -> None:
    """Draw history.png with :func:`unetlib.viz.plots.plot_history`."""
    figure = plot_history(history)
    with atomic_path(path, overwrite=True) as temporary:
        figure.savefig(temporary, format="png")
