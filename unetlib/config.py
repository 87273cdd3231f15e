"""Every stage's parameters and their defaults, in one place.

Each stage of the data flow takes one frozen, keyword-only dataclass. Notebooks and the
CLI only set fields; nothing else in unetlib hard-codes a default. ``validate()`` on each
config raises :class:`~unetlib.errors.ParameterError` naming the field and the value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from unetlib.errors import ParameterError


def _require(condition: bool, name: str, value: Any, expected: str) -> None:
    """Raise ParameterError for field ``name`` when ``condition`` is false."""
    if not condition:
        raise ParameterError(f"{name}={value!r} is invalid: expected {expected}.")


def to_dict(config: Any) -> dict[str, Any]:
    """Return a JSON-friendly dict of a config dataclass (tuples become lists)."""
    return dataclasses.asdict(config)


@dataclass(frozen=True, kw_only=True)
class SplitConfig:
    """How a multi-laser stack is de-interleaved and exported (notebook 01, ``split-stack``).

    Attributes
    ----------
    lasers : int
        Number of lasers the acquisition cycles through; frame ``i`` belongs to laser
        ``(i - offset) % lasers``.
    offset : int
        Index of the first frame that was taken with laser 1 (frames before it are
        dropped), for acquisitions that start on another laser.
    composite3 : tuple of int
        The three lasers (1-based) combined into ``channels3/`` composites, as R, G, B.
    composite4 : tuple of int
        The four lasers (1-based) combined into ``channels4/`` composites.
    frame_format : {"png", "tif"}
        File format of the per-laser frames; both keep 16-bit data exactly.
    display_percentiles : tuple of float
        Low/high percentiles of each channel mapped to 0/255 in the 8-bit display PNGs.
    force : bool
        Replace existing output folders instead of refusing.
    """

    lasers: int = 4
    offset: int = 0
    composite3: tuple[int, ...] = (1, 2, 3)
    composite4: tuple[int, ...] = (1, 2, 3, 4)
    frame_format: str = "png"
    display_percentiles: tuple[float, float] = (0.5, 99.8)
    force: bool = False

    def validate(self) -> "SplitConfig":
        _require(isinstance(self.lasers, int) and self.lasers >= 1, "lasers", self.lasers,
                 "a whole number of lasers >= 1")
        _require(isinstance(self.offset, int) and 0 <= self.offset, "offset", self.offset,
                 "a frame index >= 0")
        for name, lasers, size in (("composite3", self.composite3, 3),
                                   ("composite4", self.composite4, 4)):
            _require(len(lasers) == size and len(set(lasers)) == size, name, lasers,
                     f"{size} different laser numbers")
        _require(self.frame_format in ("png", "tif"), "frame_format", self.frame_format,
                 "'png' or 'tif'")
        low, high = self.display_percentiles
        _require(0 <= low < high <= 100, "display_percentiles", self.display_percentiles,
                 "0 <= low < high <= 100")
        return self


@dataclass(frozen=True, kw_only=True)
class PickConfig:
    """How frames are chosen for annotation and exported (``pick-frames``).

    Attributes
    ----------
    count : int
        Number of frames to annotate (the original recipe used ~15).
    method : {"spread", "diverse"}
        ``spread`` takes cycles evenly spaced over the acquisition; ``diverse`` takes
        cycles that differ most from each other (greedy farthest-point sampling).
    channels : int
        1 (one laser, grayscale, for ``data1d``), 3 or 4 (a composite, for ``data3d``).
    laser : int
        The laser (1-based) used when ``channels == 1``.
    subset : {"train", "test"}
        ``train`` writes to ``train/frames`` (to be annotated), ``test`` to ``test/``.
    exclude : tuple of int
        Cycles never picked (for example, the ones already picked for training).
    force : bool
        Overwrite frames that already exist in the destination.
    """

    count: int = 15
    method: str = "spread"
    channels: int = 1
    laser: int = 1
    subset: str = "train"
    exclude: tuple[int, ...] = ()
    force: bool = False

    def validate(self) -> "PickConfig":
        _require(isinstance(self.count, int) and self.count >= 1, "count", self.count,
                 "a whole number of frames >= 1")
        _require(self.method in ("spread", "diverse"), "method", self.method,
                 "'spread' or 'diverse'")
        _require(self.channels in (1, 3, 4), "channels", self.channels, "1, 3 or 4")
        _require(isinstance(self.laser, int) and self.laser >= 1, "laser", self.laser,
                 "a laser number >= 1")
        _require(self.subset in ("train", "test"), "subset", self.subset, "'train' or 'test'")
        return self


@dataclass(frozen=True, kw_only=True)
class SyntheticConfig:
    """The deterministic synthetic acquisition used by the demo, notebooks and tests.

    Attributes
    ----------
    cycles : int
        Number of laser cycles; the stack has ``cycles * lasers`` frames.
    lasers : int
        Number of interleaved lasers.
    height, width : int
        Frame size in pixels; the Goldeye camera gives 508 x 636.
    seed : int
        Seed of every random draw; the same config always gives the same stack.
    max_count : int
        Expected peak signal in photo-electron counts (sets the shot-noise level).
    read_noise : float
        Standard deviation of the camera read noise, in counts.
    offset_counts : int
        Camera dark offset added to every pixel.
    """

    cycles: int = 30
    lasers: int = 4
    height: int = 508
    width: int = 636
    seed: int = 0
    max_count: int = 3000
    read_noise: float = 12.0
    offset_counts: int = 200

    def validate(self) -> "SyntheticConfig":
        _require(self.cycles >= 1, "cycles", self.cycles, ">= 1")
        _require(self.lasers >= 1, "lasers", self.lasers, ">= 1")
        _require(self.height >= 32 and self.width >= 32, "height/width",
                 (self.height, self.width), "at least 32 x 32 pixels")
        return self


# ---------------------------------------------------------------------------------------
# Later stages (masks, augmentation, pipeline, model, training, prediction) add their
# configs below, keeping the same conventions.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class NormalizeConfig:
    """How raw frames (8- or 16-bit) become the float32 values the network sees.

    The same config is stored with every trained model and reused for prediction, so a
    frame is always scaled the way the model was trained.

    Attributes
    ----------
    method : {"percentile", "minmax", "dtype", "none"}
        ``percentile`` (default): per image and channel, map the ``low``/``high``
        percentiles to 0/1 -- robust to hot pixels and independent of bit depth and
        exposure. ``minmax``: the same with the extremes. ``dtype``: divide by the dtype's
        maximum (255 or 65535), which keeps absolute intensity. ``none``: cast only.
    low, high : float
        Percentiles used by ``percentile``.
    """

    method: str = "percentile"
    low: float = 1.0
    high: float = 99.8

    def validate(self) -> "NormalizeConfig":
        _require(self.method in ("percentile", "minmax", "dtype", "none"), "method",
                 self.method, "'percentile', 'minmax', 'dtype' or 'none'")
        _require(0 <= self.low < self.high <= 100, "low/high", (self.low, self.high),
                 "0 <= low < high <= 100")
        return self


# === Masks, augmentation and input pipeline (issue 3) ===================================


# === Model, training, prediction and evaluation (issue 4) ===============================
