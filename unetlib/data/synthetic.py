"""A deterministic synthetic multi-laser mouse acquisition with ground truth.

It stands in for the user's data in the demo, the notebooks and the tests: a uint16 stack
whose frames cycle through the lasers (frame ``i`` taken with laser ``i % lasers``), at the
Goldeye camera's frame size (508 x 636 by default), showing a mouse-shaped body with its
organs. The organs' outlines move from frame to frame (breathing), their brightness
differs by laser and changes over time (dye uptake and clearance), and every frame carries
shot (Poisson) and read (Gaussian) noise. The ground truth is an organ label image per
frame (0 background, 1.. organs); the binary organ mask is ``labels > 0``.

Two presets (:mod:`unetlib.data.phantom` draws them): ``"demo"``, three high-contrast organs in
a still mouse, and ``"hard"``, four irregular textured organs (a thin spleen, a small
bladder) in a breathing, drifting mouse under vignetting and low light, whose pose differs
from mouse to mouse (:func:`hard_mouse`): the benchmark recipes are judged on.

Every frame is drawn from its own random generator seeded by ``(seed, frame index)``, so
the same config gives the same stack however it is generated (whole, or streamed to disk).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from unetlib.core.config import SyntheticConfig
from unetlib.core.io import atomic_path, read_csv, read_image, refuse_existing, write_image
from unetlib.core.resources import require_disk, require_memory
from unetlib.data import organs as organ_tables
from unetlib.data.phantom import (
    DEMO_ORGANS,
    DemoScene,
    HardScene,
    Organ,
    dye_level,
    organs_of,
    scene_for,
)

logger = logging.getLogger(__name__)

ORGANS: tuple[Organ, ...] = DEMO_ORGANS  # the demo preset's organs (values 1, 2, 3)
VARYING_CURVE = 0.05  # a true curve whose range is under 5 % of its mean counts as flat
__all__ = ["ORGANS", "Organ", "SyntheticAcquisition", "curve_errors", "dye_level",
           "ensure_demo_stack", "export_truth_masks", "hard_mouse", "make_synthetic_stack",
           "organ_table", "render_frames", "true_organ_means", "write_synthetic_stack"]


@dataclass(frozen=True)
class SyntheticAcquisition:
    """A synthetic stack held in memory, with its ground truth.

    Attributes
    ----------
    frames : ndarray of shape (F, H, W), uint16
        Interleaved frames; frame ``i`` was taken with laser ``i % config.lasers``.
    labels : ndarray of shape (F, H, W), uint8
        Organ label per pixel (0 background, ``k`` the k-th organ of the preset's organs,
        :func:`unetlib.data.phantom.organs_of`).
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


def _render(scene: DemoScene | HardScene, frame_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one frame (uint16, with shot and read noise) and its organ labels (uint8)."""
    expected, labels = scene.expected_counts(frame_index)
    return _noisy(scene.config, frame_index, expected), labels


def _noisy(config: SyntheticConfig, frame_index: int, expected: np.ndarray) -> np.ndarray:
    """The camera's uint16 frame of noise-free ``expected`` counts: shot and read noise, offset."""
    rng = np.random.default_rng([config.seed, frame_index])
    counts = rng.poisson(np.maximum(expected, 0.0)).astype(np.float32)
    counts += rng.normal(0.0, config.read_noise, size=counts.shape).astype(np.float32)
    counts += config.offset_counts
    return np.clip(np.rint(counts), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def _organ_means(config: SyntheticConfig, expected: np.ndarray, labels: np.ndarray,
                 organs: int) -> np.ndarray:
    """Each organ's mean expected counts in one frame, dark offset included (NaN if absent)."""
    means = np.full(organs, np.nan)
    for number in range(1, organs + 1):
        inside = labels == number
        if inside.any():
            means[number - 1] = float(expected[inside].mean()) + config.offset_counts
    return means


def hard_mouse(mouse: int, *, study_seed: int = 0, **changes: object) -> SyntheticConfig:
    """The hard preset for one mouse of a synthetic study: its own pose, textures and noise.

    Mice of the same ``study_seed`` share the anatomy and kinetics and differ in how they
    lie (an offset of up to 4 % of the frame, an angle of up to 12 degrees, a size from
    0.9 to 1.1) and in their textures, outline details and noise.

    Parameters
    ----------
    mouse : int
        Index of the mouse in the study (0, 1, ...).
    study_seed : int
        Seed of the whole study.
    **changes
        Other :class:`SyntheticConfig` fields (``cycles``, ``height``, ...).

    Examples
    --------
    >>> from unetlib.data.synthetic import hard_mouse
    >>> first, second = hard_mouse(0), hard_mouse(1)
    >>> first.preset, first.pose_angle_degrees != second.pose_angle_degrees
    ('hard', True)
    """
    if not (isinstance(mouse, int) and mouse >= 0):
        raise ValueError(f"mouse={mouse!r} is invalid: expected a whole number >= 0.")
    rng = np.random.default_rng([study_seed, mouse, 4242])
    pose = {"pose_shift": tuple(float(v) for v in rng.uniform(-0.04, 0.04, 2)),
            "pose_angle_degrees": float(rng.uniform(-12.0, 12.0)),
            "pose_scale": float(rng.uniform(0.9, 1.1))}
    settings = {"preset": "hard", "seed": study_seed * 1000 + mouse, "max_count": 1500,
                "read_noise": 20.0, **pose, **changes}
    return SyntheticConfig(**settings).validate()


def true_organ_means(config: SyntheticConfig = SyntheticConfig()) -> np.ndarray:
    """The known time course of every organ in every laser: what quantification should find.

    Returns
    -------
    ndarray of shape (cycles, lasers, organs), float64
        The noise-free expected intensity (counts, dark offset included) averaged over
        each organ's true pixels in the frame of that cycle and laser -- the mean a
        perfect mask would measure on a noiseless camera. Organ ``k`` is the k-th of
        preset's organs (value ``k`` in :func:`organ_table`).
    """
    config.validate()
    scene = scene_for(config)
    organs = organs_of(config)
    means = np.zeros((config.cycles, config.lasers, len(organs)))
    for index in range(config.cycles * config.lasers):
        expected, labels = scene.expected_counts(index)
        means[divmod(index, config.lasers)] = _organ_means(config, expected, labels, len(organs))
    return means


def curve_errors(rows: list[dict[str, str]],
                 config: SyntheticConfig = SyntheticConfig()) -> dict[str, dict[str, float]]:
    """How far measured organ curves are from the known truth (:func:`true_organ_means`).

    Parameters
    ----------
    rows : list of dict
        Rows of an ``intensities.csv`` of this config's stack, quantified with a run whose
        organs are named as the config's preset names them.

    Returns
    -------
    dict
        Per organ: ``mean_error``, ``median_error`` and ``max_error`` (relative error of
        the measured mean over all cycles and lasers), ``min_correlation`` (the lowest
        Pearson correlation of a measured curve with the true one, over the lasers: the
        shape) and ``varying_min_correlation``, the same over the lasers whose true curve
        varies by more than :data:`VARYING_CURVE` of its mean above the dark offset (NaN
        when none does): a flat curve's correlation measures only noise.
    """
    truth = true_organ_means(config)
    names = [organ.name for organ in organs_of(config)]
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
        curve = truth[..., index] - config.offset_counts
        varying = [correlation for laser, correlation in enumerate(correlations)
                   if np.ptp(curve[:, laser]) > VARYING_CURVE * np.mean(curve[:, laser])]
        errors[name] = {"mean_error": float(np.nanmean(relative)),
                        "median_error": float(np.nanmedian(relative)),
                        "max_error": float(np.nanmax(relative)),
                        "min_correlation": float(np.min(correlations)),
                        "varying_min_correlation": float(np.min(varying)) if varying else
                        float("nan")}
    return errors


def render_frames(config: SyntheticConfig, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Render chosen frames of an acquisition (the same pixels the whole stack would hold).

    Returns
    -------
    frames : ndarray of shape (N, H, W), uint16
    labels : ndarray of shape (N, H, W), uint8
    """
    config.validate()
    count = config.cycles * config.lasers
    if any(not 0 <= index < count for index in indices):
        raise ValueError(f"frame indices {list(indices)} are invalid: expected 0 to {count - 1}.")
    scene = scene_for(config)
    rendered = [_render(scene, index) for index in indices]
    shape = (len(indices), config.height, config.width)
    frames = np.array([frame for frame, _ in rendered], dtype=np.uint16).reshape(shape)
    labels = np.array([label for _, label in rendered], dtype=np.uint8).reshape(shape)
    return frames, labels


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
    scene = scene_for(config)
    frames = np.empty((count, config.height, config.width), dtype=np.uint16)
    labels = np.empty((count, config.height, config.width), dtype=np.uint8)
    for index in range(count):
        frames[index], labels[index] = _render(scene, index)
    return SyntheticAcquisition(frames=frames, labels=labels, config=config)


def write_synthetic_stack(stack_path: str | os.PathLike[str],
                          config: SyntheticConfig = SyntheticConfig(), *,
                          truth_path: str | os.PathLike[str] | None = None,
                          overwrite: bool = False,
                          means_out: np.ndarray | None = None) -> tuple[Path, Path | None]:
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
    means_out : ndarray of shape (cycles, lasers, organs), optional
        Filled with :func:`true_organ_means` of the acquisition as its frames are written,
        which spares rendering every frame a second time for the truth.

    Returns
    -------
    (Path, Path or None)
        The stack and ground-truth paths.

    Examples
    --------
    >>> from unetlib.core.config import SyntheticConfig
    >>> folder = getfixture("tmp_path")
    >>> stack, truth = write_synthetic_stack(folder / "mouse.tif",
    ...                                      SyntheticConfig(cycles=3, height=64, width=80),
    ...                                      truth_path=folder / "truth.tif")
    >>> import tifffile
    >>> tifffile.imread(stack).shape  # 3 cycles x 4 lasers, interleaved
    (12, 64, 80)
    """
    config.validate()
    stack_path = Path(stack_path)
    truth = Path(truth_path) if truth_path is not None else None
    refuse_existing([path for path in (stack_path, truth) if path is not None], overwrite=overwrite)
    count = config.cycles * config.lasers
    means_shape = (config.cycles, config.lasers, len(organs_of(config)))
    if means_out is not None and means_out.shape != means_shape:
        raise ValueError(f"means_out has shape {means_out.shape}; this acquisition's organ "
                         f"means need {means_shape} (cycles, lasers, organs).")
    needed = count * config.height * config.width * (2 + (1 if truth is not None else 0))
    require_disk(needed, stack_path.parent, f"a synthetic stack of {count} frames of "
                 f"{config.height} x {config.width} pixels",
                 "Ask for fewer --cycles or smaller frames, or write it to another disk.")
    scene = scene_for(config)
    with atomic_path(stack_path, overwrite=overwrite) as stack_tmp:
        if truth is None:
            _stream(scene, count, stack_tmp, None, means_out)
        else:
            with atomic_path(truth, overwrite=overwrite) as truth_tmp:
                _stream(scene, count, stack_tmp, truth_tmp, means_out)
    logger.info("wrote synthetic stack %s (%d frames of %d x %d)", stack_path, count,
                config.height, config.width)
    return stack_path, truth


def _stream(scene: DemoScene | HardScene, count: int, stack_path: Path, truth_path: Path | None,
            means_out: np.ndarray | None) -> None:
    """Write frames (and labels) page by page: memory stays at one frame whatever the size.

    The stack is an uncompressed ImageJ TIFF whose ``finterval`` records the time between
    frames, as camera software does; the truth is a plain multi-page TIFF.
    """
    config = scene.config
    shape = (count, config.height, config.width)
    metadata = {"axes": "TYX", "finterval": config.frame_interval_s, "tunit": "s"}
    if truth_path is None:
        frames = (frame for frame, _ in _frames(scene, count, means_out))
        tifffile.imwrite(stack_path, frames, shape=shape, dtype=np.uint16, imagej=True,
                         metadata=metadata)
        return
    with tifffile.TiffWriter(truth_path) as truth_writer:
        def frames_writing_truth():
            for frame, labels in _frames(scene, count, means_out):
                truth_writer.write(labels, contiguous=True, photometric="minisblack")
                yield frame

        tifffile.imwrite(stack_path, frames_writing_truth(), shape=shape, dtype=np.uint16,
                         imagej=True, metadata=metadata)


def _frames(scene: DemoScene | HardScene, count: int,
            means_out: np.ndarray | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Render frames ``0 .. count - 1`` in order, filling ``means_out`` on the way."""
    config = scene.config
    for index in range(count):
        expected, labels = scene.expected_counts(index)
        if means_out is not None:
            means_out[divmod(index, config.lasers)] = _organ_means(config, expected, labels,
                                                                   means_out.shape[2])
        yield _noisy(config, index, expected), labels


def organ_table(config: SyntheticConfig = SyntheticConfig()) -> organ_tables.OrganTable:
    """The preset's organs as an organ table: values 1, 2, ... in label order."""
    rows = tuple(organ_tables.Organ(value=index, name=organ.name,
                                    color=organ_tables.DEFAULT_COLORS[index - 1])
                 for index, organ in enumerate(organs_of(config), start=1))
    return organ_tables.OrganTable(organs=rows, explicit_colors=True)


def export_truth_masks(truth_path: str | os.PathLike[str], frames_table: str | os.PathLike[str],
                       masks_dir: str | os.PathLike[str], *, organs: bool = False,
                       overwrite: bool = False) -> list[Path]:
    """Write the ground-truth masks of picked frames, standing in for GIMP annotation.

    Reads ``frames.csv`` (written by :func:`unetlib.data.frames.pick_frames`) and, for each
    picked frame, writes ``<stem>.png`` with the organs of its first stack frame as value
    1 -- exactly what GIMP's "Output levels 1" recipe produces -- or, with ``organs``, as
    each organ's value of :func:`organ_table` (a label mask), so the demo exercises the
    same mask import as real annotations. An existing identical mask is left as it is; a
    different one is only replaced with ``overwrite``.
    """
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
