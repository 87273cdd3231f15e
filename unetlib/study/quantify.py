"""Organ signal over a whole acquisition: per-cycle masks applied to every laser.

For every laser cycle of a stack, :func:`quantify_stack` builds the model input the run
was trained on (one laser, or the same composite), segments it at full resolution and
measures every laser's frame of the same cycle with that cycle's organ masks, each moved
onto its organ's edge in that frame (:mod:`unetlib.study.motion`: the lasers are imaged
one after the other, and a breathing mouse's organs move between them). The stack
is read memory-mapped and processed a few cycles at a time, so memory stays far below
the stack's size. Into ``<out>/<stack stem>/`` it writes

- ``intensities.csv``: one row per cycle x laser x organ (area, mean, median, 95th
  percentile, integrated intensity, background mean, signal-to-background ratio, QC, and
  how far the organ's mask was moved and scaled to fit that laser's frame);
- ``summary.csv``: one row per organ x laser (peak, time to peak, area under the curve,
  clearance half-life and its fit quality; see :mod:`unetlib.study.kinetics`);
- ``cycles.csv``: one row per cycle: the body's area and the model's uncertainty there
  (mean normalised entropy of its probabilities inside the body, as ``pick-frames
  --method uncertain`` scores frames; without test-time flips unless ``tta``), which a
  study's trust table compares between mice;
- ``labels.tif``: the organ mask of every cycle (organ values of ``organs.csv``; one
  zlib-compressed page per cycle);
- ``curves.png``: one panel per laser, one line per organ; ``organs.csv``;
- ``quantify.json``: what was measured with what, written last: a stack folder without
  it did not finish.

Everything is staged and moved in only when complete; a finished stack is skipped when
asked again with the same run and settings. Intensities are the camera's raw values
(its dark offset included): background and ratios are reported beside them, never
silently subtracted, unless a dark frame and a flat field are given (``dark``, ``flat``:
:mod:`unetlib.data.calibration`), and ``quantify.json`` says which (``counts``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from unetlib.core import interrupts
from unetlib.core.config import QuantifyConfig, to_dict
from unetlib.core.errors import (
    InputError,
    Interrupted,
    OutputError,
    ParameterError,
    UnetlibWarning,
    describe,
)
from unetlib.core.io import (
    file_sha256,
    progress_bar,
    read_csv,
    read_json,
    staged_folder,
    write_csv,
    write_json,
)
from unetlib.core.locking import output_lock
from unetlib.core.records import same_request
from unetlib.data.body import body_mask
from unetlib.data.calibration import Calibration, load_calibration
from unetlib.data.frames import recorded_laser_count, recorded_lasers
from unetlib.data.normalize import fill_non_finite, non_finite_pixels, normalize_image
from unetlib.data.organs import DEFAULT_COLORS, ORGANS_FILE, Organ, OrganTable, write_organ_table
from unetlib.data.stack import LaserStack, load_stack
from unetlib.data.timing import cycle_interval
from unetlib.inference.predict import check_tile
from unetlib.inference.uncertainty import mean_entropy
from unetlib.nn.model import model_classes, model_input_channels
from unetlib.nn.sliding_window import predict_probabilities_batch, segment
from unetlib.runs.run import LoadedRun, load_run
from unetlib.study.kinetics import summarize_curve
from unetlib.study.measure import QC_JUMP, QC_OK, background_mask, flag_area_jumps, measure_cycle
from unetlib.study.motion import align_cycle
from unetlib.study.results_folder import (
    CYCLES_FILE,
    INTENSITIES_FILE,
    LABELS_FILE,
    RECORD_FILE,
    SUMMARY_FILE,
    stack_output_dir,
)
from unetlib.viz.plots import plot_organ_curves

logger = logging.getLogger(__name__)

__all__ = ["CYCLE_FIELDS", "INTENSITY_FIELDS", "SUMMARY_FIELDS", "StackResult", "model_input_lasers",
           "quantify_stack", "read_intensities", "run_organs", "stack_output_dir", "summary_text"]

INTENSITY_FIELDS = ("cycle", "time_s", "laser", "organ", "area_px", "mean", "median", "p95",
                    "integrated", "background_mean", "sbr", "qc", "shift_y", "shift_x",
                    "scale")
SUMMARY_FIELDS = ("stack", "organ", "laser", "cycles", "qc_flagged", "peak", "time_to_peak_s",
                  "auc", "half_life_s", "half_life_r2", "half_life_rel_se", "plateau",
                  "mean_sbr")
CYCLE_FIELDS = ("cycle", "time_s", "body_px", "entropy")
BINARY_ORGAN = "foreground"


@dataclasses.dataclass(frozen=True)
class StackResult:
    """What :func:`quantify_stack` wrote (or found already written) for one stack."""

    stack: Path
    out_dir: Path
    cycles: int
    flagged: int
    skipped: bool

    @property
    def intensities(self) -> Path:
        return self.out_dir / INTENSITIES_FILE

    @property
    def summary(self) -> Path:
        return self.out_dir / SUMMARY_FILE

    @property
    def labels(self) -> Path:
        return self.out_dir / LABELS_FILE

    @property
    def figure(self) -> Path:
        return self.out_dir / "curves.png"


# --- what the run needs -----------------------------------------------------------------

# Smaller frames are not an acquisition (a wrong file, or a wrong series of it).
MIN_FRAME_PIXELS = 16


def run_organs(run: LoadedRun) -> OrganTable:
    """The organs a run segments; a binary run's foreground counts as one organ (value 1)."""
    if run.organs is not None:
        return run.organs
    if model_classes(run.model) > 1:
        raise InputError(describe(run.model_path, f"segments {model_classes(run.model) - 1} "
                                  "organs but comes without its organ table",
                                  "Give the run folder it was trained in."))
    return OrganTable(organs=(Organ(value=1, name=BINARY_ORGAN, color=DEFAULT_COLORS[0]),),
                      explicit_colors=True)


def model_input_lasers(run: LoadedRun, override: tuple[int, ...] | None = None
                       ) -> tuple[int, ...]:
    """The lasers (1-based, in channel order) whose frames make the run's input.

    ``override`` (``--model-input``) wins; otherwise the lasers the run's training frames
    were picked with, from its ``config.json`` or the ``frames.csv`` of its data folder.

    Raises
    ------
    ParameterError
        ``override`` gives another channel count than the model takes.
    InputError
        Nothing records the lasers and no override is given.
    """
    channels = model_input_channels(run.model)
    where = run.model_path.parent if run.config else run.model_path
    if override is not None:
        if len(override) != channels:
            raise ParameterError(
                f"model_input={','.join(map(str, override))} is invalid: {where} takes "
                f"{channels}-channel frames; give {channels} laser number(s), e.g. "
                f"{','.join(str(n) for n in range(1, channels + 1))}.")
        return tuple(override)
    data = run.config.get("data") or {}
    recorded = data.get("lasers")
    if recorded is None and data.get("data_dir"):
        recorded = recorded_lasers(data["data_dir"])
    if recorded is None or len(recorded) != channels:
        raise InputError(describe(where, "does not record which lasers its training frames "
                                  "were made of", f"Pass --model-input with {channels} laser "
                                  "number(s) in channel order, e.g. "
                                  f"{','.join(str(n) for n in range(1, channels + 1))}."))
    return tuple(int(n) for n in recorded)


# --- one stack --------------------------------------------------------------------------

def _request(run: LoadedRun, stack: LaserStack, lasers: tuple[int, ...], interval: float,
             config: QuantifyConfig, calibration: Calibration) -> dict[str, Any]:
    """What determines one stack's results: equal requests give equal results."""
    # How many cycles or tiles share a forward pass changes speed, not results.
    settings = to_dict(dataclasses.replace(config, force=False, batch_cycles=1,
                                           predict=dataclasses.replace(config.predict,
                                                                       batch_size=1)))
    settings["model_input"] = list(lasers)
    settings["interval_s"] = interval
    settings["calibration"] = calibration.record  # the files' contents, not only their names
    return {"stack": stack.path.name, "stack_bytes": stack.path.stat().st_size,
            "stack_modified_ns": stack.path.stat().st_mtime_ns,
            "model_sha256": file_sha256(run.model_path), "config": settings}


def _finished(folder: Path, request: dict[str, Any]) -> bool | None:
    """True: ``folder`` holds these results; False: other results; None: none finished."""
    record = folder / RECORD_FILE
    if not record.is_file():
        return None
    try:
        stored = read_json(record).get("request")
    except (InputError, AttributeError):
        return False
    return same_request(request, stored)


def quantify_stack(run_or_path: LoadedRun | str | os.PathLike[str],
                   stack_path: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                   config: QuantifyConfig = QuantifyConfig(), *,
                   progress: bool = False) -> StackResult:
    """Organ time--intensity curves of one acquisition.

    Parameters
    ----------
    run_or_path : LoadedRun or path
        A run folder (or its ``model.keras``) written by training.
    stack_path : path-like
        The acquisition TIFF (interleaved lasers, or a hyperstack).
    out_dir : path-like
        Results go to ``<out_dir>/<stack stem>/`` (see the module docstring).
    config : QuantifyConfig
    progress : bool
        A progress bar over cycles.

    Returns
    -------
    StackResult
        ``skipped`` when the folder already held these results.

    Raises
    ------
    InputError
        Unreadable stack, frame count that does not fit ``lasers``, a stack without the
        lasers the model input needs, no timing (and no ``interval_s``).
    ParameterError
        Invalid settings, a ``model_input`` of the wrong length, an unknown background
        organ.
    OutputError
        Results of another run or other settings exist and ``force`` is off; the folder
        cannot be written.
    """
    config.validate()
    run = run_or_path if isinstance(run_or_path, LoadedRun) else load_run(run_or_path)
    organs = run_organs(run)
    lasers = model_input_lasers(run, config.model_input)
    check_tile(run, config.predict.tile)
    stack = _load_whole_cycles(stack_path, config)
    if min(stack.frame_shape) < MIN_FRAME_PIXELS:
        height, width = stack.frame_shape
        raise InputError(describe(stack.path, f"has frames of {height}x{width} pixels (height x "
                                  "width), too small to segment", "Check that this is the "
                                  f"acquisition (frames of at least {MIN_FRAME_PIXELS} pixels a "
                                  "side)."))
    _check_layout(run, stack, config)
    missing = [n for n in lasers if n > stack.lasers]
    if missing:
        raise InputError(describe(stack.path, f"has lasers 1 to {stack.lasers}, but the model "
                                  f"input needs laser(s) {','.join(map(str, lasers))}",
                                  "Check --lasers, or pass --model-input with lasers it has."))
    if config.background is not None and config.background not in organs.names:
        raise ParameterError(f"background={config.background!r} is invalid: the run's organs "
                             f"are {', '.join(organs.names)}.")
    interval = cycle_interval(stack.path, lasers=stack.lasers,
                              hyperstack=stack.hyperstack, interval_s=config.interval_s)
    calibration = load_calibration(config.dark, config.flat, lasers=stack.lasers,
                                   frame_shape=stack.frame_shape)
    folder = stack_output_dir(out_dir, stack.path)
    request = _request(run, stack, lasers, interval, config, calibration)
    if folder.exists() and not folder.is_dir():
        raise OutputError(describe(folder, "exists and is not a folder",
                                   "Choose another --out."))
    with output_lock(folder):
        state = _finished(folder, request)
        if state and not config.force:
            logger.info("%s already holds these results of %s; skipped", folder, stack.path)
            flagged = _count_flagged(folder / INTENSITIES_FILE)
            return StackResult(stack=stack.path, out_dir=folder, cycles=stack.cycles,
                               flagged=flagged, skipped=True)
        if state is False and not config.force:
            raise OutputError(describe(folder, "holds results of another run, stack or settings",
                                       "Choose another --out or pass --force to redo them."))
        try:
            with staged_folder(folder, last=(RECORD_FILE,)) as staging:
                flagged = _quantify_into(staging, run, stack, organs, lasers, interval, config,
                                         calibration, progress=progress)
                interrupts.raise_if_received()  # a Ctrl-C swallowed while writing
                write_json(staging / RECORD_FILE, {
                    "request": request, "run": str(run.model_path.parent.resolve()),
                    "stack": str(stack.path.resolve()), "cycles": stack.cycles,
                    "lasers": stack.lasers, "organs": organs.to_rows(),
                    "counts": calibration.counts, "calibration": calibration.record,
                    "qc_flagged": flagged})
                # Earlier results stay whole until these are complete; only while the new
                # files move in is the folder without a record (then it counts as unfinished).
                (folder / RECORD_FILE).unlink(missing_ok=True)
        except Exception:
            if not interrupts.received():
                raise
            # Ctrl-C that reached Python inside TensorFlow's compiled code, which turned it
            # into another error: still an interruption.
            raise _interrupted(stack) from None
        except KeyboardInterrupt:
            raise _interrupted(stack) from None
    logger.info("quantified %d cycles of %s into %s (%d organ-cycles flagged)", stack.cycles,
                stack.path, folder, flagged)
    return StackResult(stack=stack.path, out_dir=folder, cycles=stack.cycles, flagged=flagged,
                       skipped=False)


def _interrupted(stack: LaserStack) -> Interrupted:
    return Interrupted(describe(stack.path, "quantification interrupted; nothing of it was kept "
                                "and earlier results are unchanged", "Run the same command again."))


def _check_layout(run: LoadedRun, stack: LaserStack, config: QuantifyConfig) -> None:
    """Refuse a stack read with another number of lasers per cycle than the run's training
    frames were picked with (unless ``--model-input`` says which lasers to use)."""
    if config.model_input is not None:
        return
    data = run.config.get("data") or {}
    expected = data.get("stack_lasers")
    if expected is None and data.get("data_dir"):
        expected = recorded_laser_count(data["data_dir"])
    if expected is not None and int(expected) != stack.lasers:
        raise InputError(describe(stack.path, f"is read as cycles of {stack.lasers} lasers "
                                  f"(--lasers {config.split.lasers}), but the training frames "
                                  f"of {run.model_path.parent} came from cycles of {expected}",
                                  f"Pass --lasers {expected}, or --model-input to use these "
                                  "lasers anyway."))


def _load_whole_cycles(stack_path: str | os.PathLike[str], config: QuantifyConfig) -> LaserStack:
    """The stack, refused when its frames do not make whole cycles (unless allowed)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnetlibWarning)
        stack = load_stack(stack_path, config.split)
    left_over = stack.dropped - config.split.offset
    if left_over > 0 and not config.drop_incomplete:
        lasers = config.split.lasers
        raise InputError(describe(
            stack.path, f"has {stack.cycles * lasers + left_over} frames after offset "
                        f"{config.split.offset}, not a whole number of {lasers}-laser cycles "
                        f"({left_over} left over)",
            "Check --lasers and --offset; if the acquisition stopped mid-cycle, pass "
            "--drop-incomplete."))
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename,
                               warning.lineno)
    return stack


def _count_flagged(intensities: Path) -> int:
    rows = read_csv(intensities)
    return len({(row["cycle"], row["organ"]) for row in rows if row["qc"] != QC_OK})


def _input_image(stack: LaserStack, cycle: int, lasers: tuple[int, ...]) -> np.ndarray:
    image = stack.composite(cycle, lasers)
    return image[..., 0] if image.shape[-1] == 1 else image


def _segment_cycles(run: LoadedRun, stack: LaserStack, cycles: range, lasers: tuple[int, ...],
                    organs: OrganTable, config: QuantifyConfig
                    ) -> tuple[list[np.ndarray], list[np.ndarray], list[float]]:
    """Organ-value masks, body masks and the model's uncertainty in the body of a batch of
    cycles."""
    inputs, bads = [], []
    for cycle in cycles:
        raw = _input_image(stack, cycle, lasers)
        bad = non_finite_pixels(raw)
        if bad is not None:
            if bad.all():
                raise InputError(describe(stack.path, f"cycle {cycle} has no finite pixels in "
                                          "the model input", "Check the stack's export."))
            raw = fill_non_finite(raw, bad)
        inputs.append(normalize_image(raw, run.normalize))
        bads.append(bad)
    probabilities = predict_probabilities_batch(
        run.model, np.stack(inputs), tile=config.predict.tile, overlap=config.predict.overlap,
        tta=config.predict.tta, batch_size=config.predict.batch_size)
    masks = []
    for probability, bad in zip(probabilities, bads):
        mask = segment(probability, threshold=run.threshold, organs=run.organs,
                       fill_holes=config.predict.fill_holes)
        if run.organs is None:
            mask = (mask > 0).astype(np.uint8)  # the binary foreground is organ value 1
        if bad is not None:
            mask[bad] = 0
        masks.append(mask)
    bodies = [body_mask(image, mask > 0) for image, mask in zip(inputs, masks)]
    entropies = [mean_entropy(probability, body) for probability, body in zip(probabilities, bodies)]
    return masks, bodies, entropies


def _quantify_into(folder: Path, run: LoadedRun, stack: LaserStack, organs: OrganTable,
                   lasers: tuple[int, ...], interval: float, config: QuantifyConfig,
                   calibration: Calibration, *, progress: bool) -> int:
    """Segment and measure every cycle; write the results into ``folder``. Returns the
    number of flagged organ-cycles."""


    measured = np.full((stack.cycles, stack.lasers, len(organs.organs), 6), np.nan)
    motion = np.zeros((stack.cycles, stack.lasers, len(organs.organs), 3))
    motion[..., 2] = 1.0
    values = [organ.value for organ in organs.organs]
    reference = tuple(laser - 1 for laser in lasers)
    body_px = np.zeros(stack.cycles, dtype=np.int64)
    entropy = np.full(stack.cycles, np.nan)
    dtype = np.uint8 if max(organs.values) <= 255 else np.uint16

    def label_pages():
        """Segment and measure batch by batch, handing each cycle's labels to the writer."""
        with progress_bar(total=stack.cycles, description=f"quantify {stack.path.name}",
                          unit="cycle", enabled=progress) as bar:
            for first in range(0, stack.cycles, config.batch_cycles):
                cycles = range(first, min(first + config.batch_cycles, stack.cycles))
                masks, bodies, entropies = _segment_cycles(run, stack, cycles, lasers, organs,
                                                           config)
                interrupts.raise_if_received()
                for cycle, labels, body, score in zip(cycles, masks, bodies, entropies):
                    body_px[cycle], entropy[cycle] = int(body.sum()), score
                    labels = labels.astype(dtype)
                    background = background_mask(labels, body, organs,
                                                 organ=config.background,
                                                 margin=config.organ_margin)
                    frames = calibration.apply(np.asarray(stack.data[cycle]))
                    aligned = align_cycle(frames, labels, values, reference, config.motion)
                    motion[cycle] = [[(*a.shift, a.scale) for a in row] for row in aligned]
                    masks = [[a.mask for a in row] for row in aligned]
                    if config.background is not None:  # the background organ moves too
                        where = organs.names.index(config.background)
                        background = np.stack([row[where] for row in masks])
                    measured[cycle] = measure_cycle(frames, labels, organs, background,
                                                    laser_masks=masks)
                    yield labels
                bar.update(len(cycles))

    # Label pages compress ~100x (a 198-cycle stack's masks: 64 MB raw, under 1 MB).
    tifffile.imwrite(folder / LABELS_FILE, label_pages(), shape=(stack.cycles, *stack.frame_shape),
                     dtype=dtype, compression="zlib", photometric="minisblack",
                     metadata={"axes": "TYX"})
    areas = measured[:, 0, :, 0]
    flags = flag_area_jumps(areas, window=config.qc_window, tolerance=config.qc_tolerance)
    times = np.arange(stack.cycles) * interval
    rows = _intensity_rows(measured, flags, times, organs, motion)
    write_csv(folder / INTENSITIES_FILE, rows, INTENSITY_FIELDS)
    write_csv(folder / CYCLES_FILE, [
        {"cycle": cycle, "time_s": _number(times[cycle]), "body_px": int(body_px[cycle]),
         "entropy": _number(entropy[cycle])} for cycle in range(stack.cycles)], CYCLE_FIELDS)
    write_csv(folder / SUMMARY_FILE, _summary_rows(stack.path.stem, measured, flags, times, organs),
              SUMMARY_FIELDS)
    write_organ_table(folder / ORGANS_FILE, organs)
    figure = plot_organ_curves(rows, organs, title=stack.path.name)
    figure.savefig(folder / "curves.png", dpi=100)
    return int(np.count_nonzero(flags != QC_OK))


def _number(value: float, digits: int = 6) -> str:
    """A CSV cell: empty for NaN, else the value to ``digits`` significant figures."""
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.{digits}g}"


def _intensity_rows(measured: np.ndarray, flags: np.ndarray, times: np.ndarray,
                    organs: OrganTable, motion: np.ndarray) -> list[dict[str, str]]:
    rows = []
    cycles, lasers = measured.shape[:2]
    for cycle in range(cycles):
        for laser in range(lasers):
            for index, organ in enumerate(organs.organs):
                area, mean, median, p95, integrated, back = measured[cycle, laser, index]
                sbr = mean / back if math.isfinite(mean) and back and math.isfinite(back) else math.nan
                rows.append({"cycle": str(cycle), "time_s": _number(times[cycle], 10),
                             "laser": str(laser + 1), "organ": organ.name,
                             "area_px": str(int(area)), "mean": _number(mean),
                             "median": _number(median), "p95": _number(p95),
                             "integrated": _number(integrated, 10),
                             "background_mean": _number(back), "sbr": _number(sbr),
                             "qc": str(flags[cycle, index]),
                             "shift_y": str(int(motion[cycle, laser, index, 0])),
                             "shift_x": str(int(motion[cycle, laser, index, 1])),
                             "scale": _number(motion[cycle, laser, index, 2], 4)})
    return rows


def _summary_rows(stem: str, measured: np.ndarray, flags: np.ndarray, times: np.ndarray,
                  organs: OrganTable) -> list[dict[str, str]]:
    rows = []
    for index, organ in enumerate(organs.organs):
        ok = flags[:, index] == QC_OK
        for laser in range(measured.shape[1]):
            means = np.where(ok, measured[:, laser, index, 1], np.nan)
            back = measured[:, laser, index, 5]
            with np.errstate(divide="ignore", invalid="ignore"):
                sbr = means / back
            curve = summarize_curve(times, means)
            rows.append({"stack": stem, "organ": organ.name, "laser": str(laser + 1),
                         "cycles": str(curve.points),
                         "qc_flagged": str(int(np.count_nonzero(flags[:, index] == QC_JUMP))),
                         "peak": _number(curve.peak), "time_to_peak_s": _number(curve.time_to_peak_s),
                         "auc": _number(curve.auc, 8), "half_life_s": _number(curve.half_life_s, 4),
                         "half_life_r2": _number(curve.half_life_r2, 4),
                         "half_life_rel_se": _number(curve.half_life_rel_se, 3),
                         "plateau": _number(curve.plateau),
                         "mean_sbr": _number(float(np.nanmean(sbr)) if np.isfinite(sbr).any()
                                             else math.nan, 4)})
    return rows


def read_intensities(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of an ``intensities.csv`` (or of a stack's results folder)."""
    path = Path(path)
    return read_csv(path / INTENSITIES_FILE if path.is_dir() else path)


def summary_text(path: str | os.PathLike[str],
                 columns: tuple[str, ...] = ("stack", "organ", "laser", "peak", "time_to_peak_s",
                                             "auc", "half_life_s", "half_life_r2", "mean_sbr",
                                             "qc_flagged")) -> str:
    """A fixed-width text table of a ``summary.csv`` (a stack's, or a study's), for notebooks
    and logs; empty cells (no half-life) show as ``-``."""
    path = Path(path)
    rows = read_csv(path / SUMMARY_FILE if path.is_dir() else path)
    cells = [list(columns)] + [[row.get(name) or "-" for name in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(width) if i > 1 else cell.ljust(width)
                       for i, (cell, width) in enumerate(zip(line, widths))) for line in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
