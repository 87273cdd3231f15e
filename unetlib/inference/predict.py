"""Full-resolution prediction of frames, folders and stacks with a run.

Frames are never resized. Each frame is normalised exactly as the training frames were
(the run's stored :class:`~unetlib.core.config.NormalizeConfig`) and segmented by
:mod:`unetlib.nn.sliding_window` (padded, tiled, blended without seams); this module
finds the frames, checks them against the run, and writes masks, probabilities and
overlays.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from unetlib.core import interrupts
from unetlib.core._tensorflow import keras
from unetlib.core.config import DEFAULT_THRESHOLD, NormalizeConfig, PredictConfig
from unetlib.core.errors import (
    InputError,
    Interrupted,
    OutputError,
    ParameterError,
    UnetlibWarning,
    describe,
)
from unetlib.core.io import (
    TIFF_SUFFIXES,
    atomic_path,
    list_images,
    missing_file_error,
    progress_bar,
    read_image,
    refuse_existing,
    write_image,
)
from unetlib.core.locking import output_lock
from unetlib.data.normalize import fill_non_finite, non_finite_pixels, normalize_image
from unetlib.data.organs import ORGANS_FILE, OrganTable, read_organ_table, write_organ_table
from unetlib.data.stack import open_tiff_series
from unetlib.nn.model import model_classes, model_input_channels
from unetlib.nn.sliding_window import predict_probabilities, segment, size_multiple
from unetlib.runs.run import LoadedRun, load_run
from unetlib.viz.overlays import overlay_image, overlay_organs

logger = logging.getLogger(__name__)

__all__ = ["check_tile", "is_prediction_output", "predict_folder", "validate_threshold"]

# Stems of what predict_folder writes; a folder predicted into itself must not feed them
# back as frames on the next run (0_predict_predict.png).
OUTPUT_ENDINGS = ("_predict", "_prob", "_overlay")


def validate_threshold(threshold: float) -> float:
    """Return ``threshold`` as float, or raise ParameterError unless ``0 < threshold < 1``."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ParameterError(f"threshold={threshold!r} is invalid: expected a number strictly "
                             "between 0 and 1.") from None
    if not 0.0 < value < 1.0:
        raise ParameterError(f"threshold={threshold!r} is invalid: expected a number strictly "
                             "between 0 and 1.")
    return value


def check_tile(run: LoadedRun, tile: int) -> None:
    """Refuse tiles smaller than the patches the run was trained on (for a bare model:
    4 pixels of its deepest level): they show the network less context than it learnt
    with, and the masks degrade.

    Raises
    ------
    ParameterError
    """
    patch = ((run.config or {}).get("pipeline") or {}).get("patch_size")
    needed = int(patch) if patch else 4 * size_multiple(run.model)
    if tile < needed:
        what = (f"was trained on {needed}-pixel patches" if patch else
                f"needs tiles of at least {needed} pixels")
        raise ParameterError(f"tile={tile} is invalid: {run.model_path} {what}; smaller tiles "
                             "give the network less context than it learnt with. Use at least "
                             f"{needed} (default {PredictConfig.tile}).")


# --- folders and stacks -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Frame:
    stem: str
    source: Path
    index: int | None  # page index within a stack, None for a frame file


def _stack_frames(path: Path) -> np.ndarray:
    """Every frame of a TIFF as ``(N, H, W)`` or ``(N, H, W, C)``, memory-mapped.

    Read through :func:`unetlib.data.stack.open_tiff_series`, the one stack reader, so a
    truncated or damaged stack is refused the same way everywhere.
    """
    array, axes = open_tiff_series(path)
    height, width = array.shape[axes.index("Y")], array.shape[axes.index("X")]
    if axes.endswith("S"):
        return array.reshape(-1, height, width, array.shape[-1])
    if "C" in axes and axes.index("C") == len(axes) - 3:
        # ImageJ hyperstack ...CYX: one frame per time point holds every channel.
        array = np.moveaxis(array, -3, -1)
        return array.reshape(-1, height, width, array.shape[-1])
    return array.reshape(-1, height, width)


def is_prediction_output(path: Path) -> bool:
    """True for files prediction writes (``<stem>_predict.png`` ...): never inputs."""
    return path.stem.endswith(OUTPUT_ENDINGS)


def _resolve_run(model_or_run: Any) -> LoadedRun:
    if isinstance(model_or_run, LoadedRun):
        return model_or_run
    if isinstance(model_or_run, keras.Model):
        return LoadedRun(model=model_or_run, normalize=NormalizeConfig(),
                         threshold=DEFAULT_THRESHOLD, model_path=Path(""), config={})
    return load_run(model_or_run)


def _write_stack(path: Path, masks: np.ndarray, *, overwrite: bool) -> Path:
    with atomic_path(path, overwrite=overwrite) as temporary:
        tifffile.imwrite(temporary, masks, photometric="minisblack", metadata={"axes": "QYX"})
    return path


def predict_folder(model_or_run: Any, input_path: str | os.PathLike[str],
                   out_dir: str | os.PathLike[str], *, threshold: float | None = None,
                   write_probabilities: bool = False, write_overlay: bool = False,
                   tta: bool = False, overwrite: bool = False,
                   predict: PredictConfig = PredictConfig(), progress: bool = True) -> list[Path]:
    """Segment every frame of a folder, or every page of a TIFF stack.

    Parameters
    ----------
    model_or_run : keras.Model, LoadedRun or path
        A run folder or ``.keras`` file (its stored normalisation and calibrated threshold
        are used), a :class:`LoadedRun`, or a bare model (default normalisation, 0.5).
    input_path : path-like
        A folder of frames (PNG/TIFF/...), a multi-page TIFF stack, or one frame.
    out_dir : path-like
        Output folder (created when missing).
    threshold : float, optional
        Decision threshold in (0, 1); default: the run's calibrated threshold.
    write_probabilities : bool
        Also write ``<stem>_prob.tif`` (float32 probabilities).
    write_overlay : bool
        Also write ``<stem>_overlay.png`` (frame with the mask tinted red).
    tta : bool
        Test-time flip averaging (4x slower).
    overwrite : bool
        Replace existing outputs; otherwise an existing output is an OutputError raised
        before anything is written.
    predict : PredictConfig
        Tile size, overlap and batch size of the sliding window.
    progress : bool
        Show a progress bar.

    Returns
    -------
    list of Path
        Every file written: ``<stem>_predict.png`` per frame -- uint8 0/255 for a binary
        run; for an organ run the organ values of ``organs.csv`` as a palette PNG (shown
        in the organs' colours, values exact), with ``organs.csv`` written beside -- then
        the optional outputs; for a stack also ``<stack stem>_predict.tif`` (all masks,
        one page per frame).

    Raises
    ------
    InputError
        Missing or empty input, unreadable frame, or a channel count that differs from the
        model's (the message names the file and both counts).
    ParameterError
        Threshold not strictly between 0 and 1.
    OutputError
        An output exists and ``overwrite`` is false.
    """
    run = _resolve_run(model_or_run)
    if model_classes(run.model) > 1 and run.organs is None:
        raise InputError(describe(run.model_path, f"segments {model_classes(run.model) - 1} "
                                  "organs but comes without its organ table",
                                  "Give the run folder it was trained in (its config.json "
                                  "names the organs)."))
    if run.organs is not None:
        if threshold is not None:
            raise ParameterError(f"threshold={threshold} is invalid: {run.model_path.parent} "
                                 "segments organs (each pixel gets its most probable organ); "
                                 "a threshold applies to binary runs only.")
    elif threshold is None and run.config and not run.calibrated:
        warnings.warn(f"{run.model_path.parent}: this run did not finish (no metrics.json), so its "
                      f"threshold was never calibrated; using {DEFAULT_THRESHOLD}. Finish it "
                      "with train --resume, or pass --threshold.", UnetlibWarning, stacklevel=2)
    threshold = validate_threshold(run.threshold if threshold is None else threshold)
    predict = dataclasses.replace(predict, tta=tta or predict.tta).validate()
    check_tile(run, predict.tile)
    input_path = Path(input_path)
    out_dir = Path(out_dir)
    channels = model_input_channels(run.model)

    stack: np.ndarray | None = None
    if input_path.is_dir():
        listed = list_images(input_path)
        files = [file for file in listed if not is_prediction_output(file)]
        if len(files) < len(listed):
            logger.info("%s: left out %d earlier prediction output(s) (*_predict, *_prob, "
                        "*_overlay)", input_path, len(listed) - len(files))
        stems = {file.stem for file in files}
        # Named like an output but with no frame it could have come from: say so.
        lonely = [file.name for file in listed if is_prediction_output(file)
                  and file.stem.rsplit("_", 1)[0] not in stems]
        if lonely:
            warnings.warn(f"{input_path}: left out {len(lonely)} file(s) named like prediction "
                          f"outputs ({', '.join(lonely[:3])}{' ...' if len(lonely) > 3 else ''})"
                          " without the frame they would come from; rename them to predict "
                          "them.", UnetlibWarning, stacklevel=2)
        if not files:
            raise InputError(describe(input_path, "holds no image files" + (
                " other than prediction outputs" if listed else ""),
                "Put the frames (PNG or TIFF) to segment in it."))
        _refuse_shared_stems(files)
        frames = [_Frame(stem=file.stem, source=file, index=None) for file in files]
    elif input_path.is_file() and input_path.suffix.lower() in TIFF_SUFFIXES \
            and len(pages := _stack_frames(input_path)) > 1:
        stack = pages
        digits = max(4, len(str(len(stack) - 1)))
        frames = [_Frame(stem=f"{input_path.stem}_{index:0{digits}d}", source=input_path,
                         index=index) for index in range(len(stack))]
    elif input_path.is_file():
        frames = [_Frame(stem=input_path.stem, source=input_path, index=None)]
    else:
        raise missing_file_error(input_path) if input_path.is_symlink() else InputError(
            describe(input_path, "not found", "Give a folder of frames or a TIFF stack."))

    planned = _planned_outputs(frames, out_dir, write_probabilities, write_overlay)
    stack_path = out_dir / f"{input_path.stem}_predict.tif" if stack is not None else None
    # Every frame is read once before the first is predicted (decoding costs ~1 % of
    # predicting), so a bad file half-way through a folder leaves no partial results.
    for frame in frames if stack is None else frames[:1]:
        raw = read_image(frame.source) if stack is None else np.asarray(stack[0])
        _check_channels(raw, channels, frame)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(describe(out_dir, "exists and is not a folder",
                                   "Give an output folder for --out."))

    with output_lock(out_dir):
        if not overwrite:
            outputs = planned + ([stack_path] if stack_path else [])
            existing = [path for path in outputs if path.exists()]
            if existing and len(existing) == len(outputs) and _same_outputs(
                    run, frames, stack, out_dir, outputs, threshold, predict,
                    write_probabilities=write_probabilities, write_overlay=write_overlay):
                logger.info("%s already holds these predictions of %s; nothing to do",
                            out_dir, input_path)
                organ_table = [out_dir / ORGANS_FILE] if run.organs is not None else []
                return organ_table + outputs
            refuse_existing(existing, fix="Choose another output folder or pass --force to "
                            "replace them.")
        written: list[Path] = []
        if run.organs is not None:
            written += _write_organ_table_beside(out_dir, run.organs, overwrite=overwrite)
        try:
            _predict_frames(run, frames, stack, stack_path, out_dir, threshold, predict,
                            write_probabilities=write_probabilities, write_overlay=write_overlay,
                            overwrite=overwrite, progress=progress,
                            description=f"predict {input_path.name}", written=written)
        except KeyboardInterrupt:
            done = sum(path.name.endswith("_predict.png") for path in written)
            raise Interrupted(describe(out_dir, f"prediction interrupted after {done} of "
                                       f"{len(frames)} frame(s); their masks are kept",
                                       "Run the same command with --force to predict every "
                                       "frame again, or give another --out.")) from None
    logger.info("predicted %d frame(s) from %s into %s (%s)", len(frames), input_path, out_dir,
                f"threshold {threshold:.2f}" if run.organs is None
                else f"organs {', '.join(run.organs.names)}")
    return written


def _same_outputs(run: LoadedRun, frames: list[_Frame], stack: np.ndarray | None,
                  out_dir: Path, outputs: list[Path], threshold: float, predict: PredictConfig,
                  **extras: bool) -> bool:
    """True when predicting again would write exactly ``outputs`` as they are (a repeated
    command): the frames are predicted into a hidden staging folder and compared."""
    import filecmp  # noqa: PLC0415
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    # A hidden staging folder: the next writer here removes it if this process dies.
    scratch = Path(tempfile.mkdtemp(prefix=".", suffix=".staging", dir=out_dir))
    try:
        stack_path = scratch / outputs[-1].name if stack is not None else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnetlibWarning)  # said on the first run
            _predict_frames(run, frames, stack, stack_path, scratch, threshold, predict,
                            overwrite=False, progress=False, description="", written=[],
                            **extras)
        return all(filecmp.cmp(path, scratch / path.name, shallow=False) for path in outputs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _refuse_shared_stems(files: list[Path]) -> None:
    """Refuse two frames whose masks would have one name (``0.png`` and ``0.tif``)."""
    seen: dict[str, Path] = {}
    for file in files:
        if file.stem in seen:
            raise InputError(describe(seen[file.stem], f"and {file.name} would both give "
                                      f"{file.stem}_predict.png", "Rename or move one of them."))
        seen[file.stem] = file


def _predict_frames(run: LoadedRun, frames: list[_Frame], stack: np.ndarray | None,
                    stack_path: Path | None, out_dir: Path, threshold: float,
                    predict: PredictConfig, *, write_probabilities: bool, write_overlay: bool,
                    overwrite: bool, progress: bool, description: str,
                    written: list[Path]) -> None:
    """Segment each frame and write its outputs as soon as it is done, appending each file
    to ``written`` (so an interruption knows what was finished)."""
    channels = model_input_channels(run.model)
    stack_masks = []
    for frame in progress_bar(frames, description=description, unit="frame", enabled=progress):
        interrupts.raise_if_received()
        raw = read_image(frame.source) if stack is None else np.asarray(stack[frame.index])
        _check_channels(raw, channels, frame)
        raw, bad = _finite(raw, frame)
        normalised = normalize_image(raw, run.normalize)
        probability = predict_probabilities(run.model, normalised, tile=predict.tile,
                                            overlap=predict.overlap, tta=predict.tta,
                                            batch_size=predict.batch_size)
        mask = segment(probability, threshold=threshold, organs=run.organs,
                       fill_holes=predict.fill_holes)
        if bad is not None:
            mask[bad] = 0
        written.append(_write_mask(out_dir / f"{frame.stem}_predict.png", mask, run.organs,
                                   overwrite=overwrite))
        if write_probabilities:
            written.append(write_image(out_dir / f"{frame.stem}_prob.tif", probability,
                                       overwrite=overwrite))
        if write_overlay:
            picture = (overlay_image(raw, mask) if run.organs is None
                       else overlay_organs(raw, mask, run.organs))
            written.append(write_image(out_dir / f"{frame.stem}_overlay.png", picture,
                                       overwrite=overwrite))
        if stack is not None:
            stack_masks.append(mask)
    if stack_path is not None:
        written.append(_write_stack(stack_path, np.stack(stack_masks), overwrite=overwrite))


def _write_mask(path: Path, mask: np.ndarray, organs: OrganTable | None, *,
                overwrite: bool) -> Path:
    """0/255 PNG (binary), or a palette PNG of organ values shown in the organs' colours."""
    if organs is None or mask.dtype != np.uint8:
        return write_image(path, mask, overwrite=overwrite)
    return write_image(path, mask, overwrite=overwrite, palette=organs.palette())


def _write_organ_table_beside(out_dir: Path, organs: OrganTable, *,
                              overwrite: bool) -> list[Path]:
    """``organs.csv`` beside the predicted masks, so evaluation and viewers know the names."""
    path = out_dir / ORGANS_FILE
    if path.is_file():
        try:
            if read_organ_table(path).organs == organs.organs:
                return [path]  # already there, as this run would write it
        except InputError:
            pass
    return [write_organ_table(path, organs, overwrite=overwrite)]


def _finite(raw: np.ndarray, frame: _Frame) -> tuple[np.ndarray, np.ndarray | None]:
    """The frame with NaN/infinite pixels filled for the network, and where they were.

    Those pixels are background in the mask, and a warning names the frame: one dead
    pixel must neither blank the whole mask nor pass unnoticed.
    """
    bad = non_finite_pixels(raw)
    if bad is None:
        return raw, None
    where = frame.source if frame.index is None else f"{frame.source} (page {frame.index})"
    if bad.all():
        raise InputError(describe(where, "has no finite pixels (all NaN or infinite)",
                                  "Check the frame's export; there is nothing to segment."))
    warnings.warn(f"{where}: {int(bad.sum())} pixel(s) are NaN or infinite; they were filled "
                  "with the frame's median for the network and are background in the mask.",
                  UnetlibWarning, stacklevel=3)
    return fill_non_finite(raw, bad), bad


def _check_channels(raw: np.ndarray, channels: int, frame: _Frame) -> None:
    """Raise InputError naming the frame when its channel count is not the model's."""
    found = 1 if raw.ndim == 2 else raw.shape[-1]
    if found != channels:
        where = frame.source if frame.index is None else f"{frame.source} (page {frame.index})"
        raise InputError(describe(where, f"has {found} channel(s) but the model expects "
                                  f"{channels}", "Give frames like the ones the model was "
                                  "trained on (data1d: 1 channel, data3d: 3)."))


def _planned_outputs(frames: list[_Frame], out_dir: Path, probabilities: bool,
                     overlay: bool) -> list[Path]:
    planned = []
    for frame in frames:
        planned.append(out_dir / f"{frame.stem}_predict.png")
        if probabilities:
            planned.append(out_dir / f"{frame.stem}_prob.tif")
        if overlay:
            planned.append(out_dir / f"{frame.stem}_overlay.png")
    return planned


