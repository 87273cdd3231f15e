"""A deterministic synthetic multi-laser mouse acquisition with ground truth.

It stands in for the user's data in the demo, the notebooks and the tests: a uint16 stack
whose frames cycle through the lasers (frame ``i`` taken with laser ``i % lasers``), at the
Goldeye camera's frame size (508 x 636 by default), showing a mouse-shaped body with three
organs. The organs' outlines move a little from frame to frame (breathing), their
brightness differs by laser and changes over time (dye uptake and clearance), and every
frame carries shot (Poisson) and read (Gaussian) noise. The ground truth is an organ label
image per frame (0 background, 1.. organs); the binary organ mask is ``labels > 0``.

Every frame is drawn from its own random generator seeded by ``(seed, frame index)``, so
the same config gives the same stack however it is generated (whole, or streamed to disk).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from unetlib.config import SyntheticConfig
from unetlib.errors import OutputError, describe
from unetlib.io import atomic_path
from unetlib import organs as organ_tables
from unetlib.resources import require_disk, require_memory

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Organ:
    """An elliptical organ: geometry in fractions of the frame, kinetics in laser cycles."""

    name: str
    centre: tuple[float, float]  # (y, x) as fractions of height and width
    radii: tuple[float, float]  # (ry, rx) as fractions of height and width
    angle_degrees: float
    laser_gain: tuple[float, ...]  # relative brightness under each laser (cycled)
    uptake_cycles: float  # time constant of dye uptake
    clearance_cycles: float  # time constant of dye clearance (inf: accumulates)
    baseline: float  # fraction of the peak signal before any dye arrives


ORGANS: tuple[Organ, ...] = (
    Organ("liver", (0.46, 0.40), (0.15, 0.13), -20.0, (1.00, 0.55, 0.80, 0.35), 4.0, 60.0, 0.45),
    Organ("kidney", (0.58, 0.60), (0.07, 0.045), 15.0, (0.80, 1.00, 0.45, 0.60), 2.0, 25.0, 0.50),
    Organ("bladder", (0.62, 0.80), (0.065, 0.06), 0.0, (0.70, 0.50, 1.00, 0.90), 15.0, np.inf, 0.45),
)
BODY_GAIN = (0.22, 0.18, 0.25, 0.15)  # autofluorescence of the body under each laser
BREATHING_PERIOD_FRAMES = 14.0
BREATHING_SCALE = 0.03  # relative change of the organ radii over a breath
BREATHING_SHIFT = 0.006  # vertical displacement over a breath, fraction of the height


@dataclass(frozen=True)
class SyntheticAcquisition:
    """A synthetic stack held in memory, with its ground truth.

    Attributes
    ----------
    frames : ndarray of shape (F, H, W), uint16
        Interleaved frames; frame ``i`` was taken with laser ``i % config.lasers``.
    labels : ndarray of shape (F, H, W), uint8
        Organ label per pixel (0 background, ``k`` the k-th organ of :data:`ORGANS`).
    config : SyntheticConfig
        The parameters that produced it.
    """

    frames: np.ndarray
    labels: np.ndarray
    config: SyntheticConfig

    @property
    def masks(self) -> np.ndarray:
        """Binary organ masks ``(F, H, W)`` in {0, 1}."""
        return (self.labels > 0).astype(np.uint8)


class _Scene:
    """Pixel grids and the static body texture for one config (computed once)."""

    def __init__(self, config: SyntheticConfig) -> None:
        self.config = config
        height, width = config.height, config.width
        self.yy, self.xx = np.mgrid[0:height, 0:width].astype(np.float32)
        body_distance = self._ellipse_distance((0.5, 0.5), (0.33, 0.42), 8.0, 0.0, 0.0)
        self.body = _soft_edge(body_distance, width=3.0)
        texture_rng = np.random.default_rng([config.seed, 2**31 - 1])
        self.texture = 1.0 + 0.15 * _smooth_noise(texture_rng, height, width, cells=(12, 15))

    def _ellipse_distance(self, centre, radii, angle_degrees, scale, shift) -> np.ndarray:
        """Approximate signed distance in pixels to an ellipse (negative inside)."""
        height, width = self.config.height, self.config.width
        cy = (centre[0] + shift) * height
        cx = centre[1] * width
        ry = radii[0] * height * (1.0 + scale)
        rx = radii[1] * width * (1.0 + scale)
        theta = np.deg2rad(angle_degrees)
        dy, dx = self.yy - cy, self.xx - cx
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / rx
        v = (-dx * np.sin(theta) + dy * np.cos(theta)) / ry
        radius = np.sqrt(u * u + v * v)
        return (radius - 1.0) * min(rx, ry)

    def organ_distances(self, frame_index: int) -> list[np.ndarray]:
        phase = 2.0 * np.pi * frame_index / BREATHING_PERIOD_FRAMES
        scale = BREATHING_SCALE * np.sin(phase)
        shift = BREATHING_SHIFT * np.sin(phase)
        dy, dx = self.config.organ_shift
        grow = self.config.organ_scale
        return [self._ellipse_distance((o.centre[0] + dy, o.centre[1] + dx),
                                       (o.radii[0] * grow, o.radii[1] * grow),
                                       o.angle_degrees, scale, shift)
                for o in ORGANS]


def _soft_edge(distance: np.ndarray, width: float) -> np.ndarray:
    """A smooth 1 -> 0 transition across an outline (diffuse light blurs organ edges)."""
    return (0.5 * (1.0 - np.tanh(distance / width))).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, height: int, width: int,
                  cells: tuple[int, int]) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse random grid, bilinearly upsampled."""
    grid = rng.uniform(-1.0, 1.0, size=(cells[0] + 1, cells[1] + 1))
    gy = np.linspace(0, cells[0], height)
    gx = np.linspace(0, cells[1], width)
    y0 = np.minimum(gy.astype(int), cells[0] - 1)
    x0 = np.minimum(gx.astype(int), cells[1] - 1)
    fy = (gy - y0)[:, None]
    fx = (gx - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def dye_level(organ: Organ, cycle: float) -> float:
    """Relative dye signal of ``organ`` at a time in laser cycles: uptake, then clearance."""
    uptake = 1.0 - np.exp(-cycle / organ.uptake_cycles)
    clearance = np.exp(-cycle / organ.clearance_cycles) if np.isfinite(organ.clearance_cycles) else 1.0
    return float(organ.baseline + (1.0 - organ.baseline) * uptake * clearance)


def _expected_counts(scene: _Scene, frame_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free expected counts of one frame (float32, dark offset included) and its labels."""
    config = scene.config
    laser = frame_index % config.lasers
    cycle = frame_index / config.lasers
    signal = scene.body * BODY_GAIN[laser % len(BODY_GAIN)]
    labels = np.zeros((config.height, config.width), dtype=np.uint8)
    for number, (organ, distance) in enumerate(zip(ORGANS, scene.organ_distances(frame_index)), 1):
        level = (config.organ_contrast * organ.laser_gain[laser % len(organ.laser_gain)]
                 * dye_level(organ, cycle))
        signal = np.maximum(signal, level * _soft_edge(distance, width=1.5))
        labels[distance < 0] = number
    return (signal * scene.texture * config.max_count).astype(np.float32), labels


def _render(scene: _Scene, frame_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one frame (uint16, with shot and read noise) and its organ labels (uint8)."""
    config = scene.config
    expected, labels = _expected_counts(scene, frame_index)
    rng = np.random.default_rng([config.seed, frame_index])
    counts = rng.poisson(np.maximum(expected, 0.0)).astype(np.float32)
    counts += rng.normal(0.0, config.read_noise, size=counts.shape).astype(np.float32)
    counts += config.offset_counts
    frame = np.clip(np.rint(counts), 0, np.iinfo(np.uint16).max).astype(np.uint16)
    return frame, labels


def true_organ_means(config: SyntheticConfig = SyntheticConfig()) -> np.ndarray:
    """The known time course of every organ in every laser: what quantification should find.

    Returns
    -------
    ndarray of shape (cycles, lasers, organs), float64
        The noise-free expected intensity (counts, dark offset included) averaged over
        each organ's true pixels in the frame of that cycle and laser -- the mean a
        perfect mask would measure on a noiseless camera. Organ ``k`` is the k-th of
        :data:`ORGANS` (value ``k`` in :func:`organ_table`).
    """
    config.validate()
    scene = _Scene(config)
    means = np.zeros((config.cycles, config.lasers, len(ORGANS)))
    for index in range(config.cycles * config.lasers):
        expected, labels = _expected_counts(scene, index)
        for number in range(1, len(ORGANS) + 1):
            inside = labels == number
            means[index // config.lasers, index % config.lasers, number - 1] = (
                float(expected[inside].mean()) + config.offset_counts if inside.any() else np.nan)
    return means


def curve_errors(rows: list[dict[str, str]],
                 config: SyntheticConfig = SyntheticConfig()) -> dict[str, dict[str, float]]:
    """How far measured organ curves are from the known truth (:func:`true_organ_means`).

    Parameters
    ----------
    rows : list of dict
        Rows of an ``intensities.csv`` of this config's stack, quantified with a run whose
        organs are named as in :data:`ORGANS`.

    Returns
    -------
    dict
        Per organ: ``mean_error`` and ``max_error`` (relative error of the measured mean
        over all cycles and lasers) and ``min_correlation`` (the lowest Pearson correlation
        of a measured curve with the true one, over the lasers: the shape).
    """
    truth = true_organ_means(config)
    names = [organ.name for organ in ORGANS]
    measured = np.full(truth.shape, np.nan)
    for row in rows:
        if row["organ"] in names and row["mean"] != "":
            measured[int(row["cycle"]), int(row["laser"]) - 1, names.index(row["organ"])] = \
                float(row["mean"])
    errors = {}
    for index, name in enumerate(names):
        relative = np.abs(measured[..., index] / truth[..., index] - 1.0)
        correlations = [np.corrcoef(measured[:, laser, index], truth[:, laser, index])[0, 1]
                        for laser in range(truth.shape[1])]
        errors[name] = {"mean_error": float(np.nanmean(relative)),
                        "max_error": float(np.nanmax(relative)),
                        "min_correlation": float(np.min(correlations))}
    return errors


def make_synthetic_stack(config: SyntheticConfig = SyntheticConfig()) -> SyntheticAcquisition:
    """Generate a whole synthetic acquisition in memory.

    For full-size stacks (hundreds of frames) prefer :func:`write_synthetic_stack`,
    which streams frames to disk.
    """
    config.validate()
    count = config.cycles * config.lasers
    require_memory(count * config.height * config.width * 3, "make_synthetic_stack",
                   f"a synthetic stack of {count} frames of {config.height} x {config.width} "
                   "pixels", "Ask for fewer cycles or smaller frames, or stream it to disk "
                   "with write_synthetic_stack.")
    scene = _Scene(config)
    frames = np.empty((count, config.height, config.width), dtype=np.uint16)
    labels = np.empty((count, config.height, config.width), dtype=np.uint8)
    for index in range(count):
        frames[index], labels[index] = _render(scene, index)
    return SyntheticAcquisition(frames=frames, labels=labels, config=config)


def write_synthetic_stack(stack_path: str | os.PathLike[str],
                          config: SyntheticConfig = SyntheticConfig(), *,
                          truth_path: str | os.PathLike[str] | None = None,
                          overwrite: bool = False) -> tuple[Path, Path | None]:
    """Stream a synthetic acquisition to an uncompressed (memory-mappable) TIFF stack.

    Parameters
    ----------
    stack_path : path-like
        Destination of the uint16 interleaved stack.
    config : SyntheticConfig
        Size, laser count, seed and noise.
    truth_path : path-like, optional
        Destination of the uint8 organ labels, one page per frame.
    overwrite : bool
        Replace existing files.

    Returns
    -------
    (Path, Path or None)
        The stack and ground-truth paths.
    """
    config.validate()
    stack_path = Path(stack_path)
    truth = Path(truth_path) if truth_path is not None else None
    for path in (stack_path, truth):
        if path is not None and path.exists() and not overwrite:
            raise OutputError(describe(path, "already exists",
                                       "Choose another output or pass --force to replace it."))
    count = config.cycles * config.lasers
    needed = count * config.height * config.width * (2 + (1 if truth is not None else 0))
    require_disk(needed, stack_path.parent, f"a synthetic stack of {count} frames of "
                 f"{config.height} x {config.width} pixels",
                 "Ask for fewer --cycles or smaller frames, or write it to another disk.")
    scene = _Scene(config)
    with atomic_path(stack_path, overwrite=overwrite) as stack_tmp:
        if truth is None:
            _stream(scene, count, stack_tmp, None)
        else:
            with atomic_path(truth, overwrite=overwrite) as truth_tmp:
                _stream(scene, count, stack_tmp, truth_tmp)
    logger.info("wrote synthetic stack %s (%d frames of %d x %d)", stack_path, count,
                config.height, config.width)
    return stack_path, truth


def _stream(scene: _Scene, count: int, stack_path: Path, truth_path: Path | None) -> None:
    """Write frames (and labels) page by page: memory stays at one frame whatever the size.

    The stack is an uncompressed ImageJ TIFF whose ``finterval`` records the time between
    frames, as camera software does; the truth is a plain multi-page TIFF.
    """
    config = scene.config
    shape = (count, config.height, config.width)
    if truth_path is None:
        frames = (_render(scene, index)[0] for index in range(count))
        tifffile.imwrite(stack_path, frames, shape=shape, dtype=np.uint16, imagej=True,
                         metadata={"axes": "TYX", "finterval": config.frame_interval_s,
                                   "tunit": "s"})
        return
    with tifffile.TiffWriter(truth_path) as truth_writer:
        def frames_writing_truth():
            for index in range(count):
                frame, labels = _render(scene, index)
                truth_writer.write(labels, contiguous=True, photometric="minisblack")
                yield frame

        tifffile.imwrite(stack_path, frames_writing_truth(), shape=shape, dtype=np.uint16,
                         imagej=True, metadata={"axes": "TYX", "finterval": config.frame_interval_s,
                                                "tunit": "s"})


def organ_table() -> organ_tables.OrganTable:
    """The synthetic organs as an organ table: values 1, 2, 3 in the order of :data:`ORGANS`."""
    rows = tuple(organ_tables.Organ(value=index, name=organ.name,
                                    color=organ_tables.DEFAULT_COLORS[index - 1])
                 for index, organ in enumerate(ORGANS, start=1))
    return organ_tables.OrganTable(organs=rows, explicit_colors=True)


def export_truth_masks(truth_path: str | os.PathLike[str], frames_table: str | os.PathLike[str],
                       masks_dir: str | os.PathLike[str], *, organs: bool = False,
                       overwrite: bool = False) -> list[Path]:
    """Write the ground-truth masks of picked frames, standing in for GIMP annotation.

    Reads ``frames.csv`` (written by :func:`unetlib.frames.pick_frames`) and, for each
    picked frame, writes ``<stem>.png`` with the organs of its first stack frame as value
    1 -- exactly what GIMP's "Output levels 1" recipe produces -- or, with ``organs``, as
    each organ's value of :func:`organ_table` (a label mask), so the demo exercises the
    same mask import as real annotations. An existing identical mask is left as it is; a
    different one is only replaced with ``overwrite``.
    """
    from unetlib.io import read_csv, read_image, write_image

    labels = tifffile.memmap(truth_path, mode="r")
    written = []
    for row in read_csv(frames_table):
        frame = int(row["stack_frames"].split()[0])
        mask = np.asarray(labels[frame]).astype(np.uint8)
        if not organs:
            mask = (mask > 0).astype(np.uint8)
        path = Path(masks_dir) / f"{row['stem']}.png"
        if path.is_file() and not overwrite and np.array_equal(read_image(path), mask):
            written.append(path)  # the same mask from an earlier run: nothing to do
            continue
        written.append(write_image(path, mask, overwrite=overwrite))
    return written


def ensure_demo_stack(stack_path: str | os.PathLike[str], demo_dir: str | os.PathLike[str],
                      config: SyntheticConfig = SyntheticConfig()) -> Path:
    """Return ``stack_path``, or when it is empty the demo stack in ``demo_dir`` (written once).

    Lets notebooks and the demo run on a bare checkout: with no user stack given, the
    synthetic acquisition (``stack.tif`` and its ground truth ``truth.tif``) is written
    the first time and reused afterwards.
    """
    if str(stack_path):
        return Path(stack_path)
    demo_dir = Path(demo_dir)
    stack, truth = demo_dir / "stack.tif", demo_dir / "truth.tif"
    if not (stack.is_file() and truth.is_file()):
        write_synthetic_stack(stack, config, truth_path=truth, overwrite=True)
    return stack
