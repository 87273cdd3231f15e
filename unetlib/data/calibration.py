"""Camera corrections applied before measuring: a dark frame subtracted, a flat field
divided out.

A dark frame holds the counts the camera gives without light (its offset and dark
current); a flat field the illumination's and the optics' unevenness (vignetting). Both are
given as image files:

- **dark**: one frame (every laser), ``lasers`` frames (one per laser, in laser order), a
  multiple of ``lasers`` frames (an interleaved dark acquisition, averaged per laser), or
  any other number of frames (averaged);
- **flat**: one frame or one per laser, each normalised to mean 1 (after the dark is
  subtracted from it when both are given), so counts keep their scale.

Only the measurement is corrected; the model segments the frames as they were acquired,
as it was trained.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from unetlib.core.errors import InputError, describe
from unetlib.core.io import (
    TIFF_SUFFIXES,
    damaged_tiff_error,
    file_sha256,
    missing_file_error,
    read_image,
)

__all__ = ["Calibration", "load_calibration"]

RAW_COUNTS = "raw camera counts (dark offset included, no flat-field correction)"


@dataclass(frozen=True)
class Calibration:
    """The corrections of one acquisition (None: not applied).

    Attributes
    ----------
    dark : ndarray of shape (lasers, H, W), float32, or None
    flat : ndarray of shape (lasers, H, W), float32, mean 1 per laser, or None
    record : dict
        Files and their SHA-256, for the results' record and request.
    """

    dark: np.ndarray | None = None
    flat: np.ndarray | None = None
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> str:
        """What the measured intensities are, in words."""
        if self.dark is None and self.flat is None:
            return RAW_COUNTS
        done = [part for part, present in (("dark-subtracted", self.dark is not None),
                                           ("flat-field corrected", self.flat is not None))
                if present]
        return "camera counts, " + " and ".join(done)

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """One cycle's frames, shape (lasers, H, W), corrected (float32; as given without
        corrections).

        Examples
        --------
        >>> import numpy as np
        >>> calibration = Calibration(dark=np.full((1, 2, 2), 100, np.float32),
        ...                           flat=np.array([[[0.5, 1.5], [1.0, 1.0]]], np.float32))
        >>> calibration.apply(np.full((1, 2, 2), 400, np.uint16)).tolist()
        [[[600.0, 200.0], [300.0, 300.0]]]
        """
        if self.dark is None and self.flat is None:
            return frames
        corrected = np.asarray(frames, dtype=np.float32)
        if self.dark is not None:
            corrected = corrected - self.dark
        if self.flat is not None:
            corrected = corrected / self.flat
        return corrected


def _read_frames(path: Path) -> np.ndarray:
    """The file's frames as (N, H, W) float32."""
    if not path.is_file():
        raise missing_file_error(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        try:
            frames = tifffile.imread(path)
        except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError) as error:
            raise damaged_tiff_error(path, str(error)) from None
    else:
        frames = read_image(path)
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[np.newaxis]
    if frames.ndim != 3:
        raise InputError(describe(path, f"holds an array of shape {frames.shape}, not frames",
                                  "Give one grayscale frame, or a stack of them."))
    return frames.astype(np.float32)


def _per_laser(path: Path, frames: np.ndarray, lasers: int, what: str,
               averaged: bool) -> np.ndarray:
    count = frames.shape[0]
    if count == 1:
        return np.repeat(frames, lasers, axis=0)
    if count == lasers:
        return frames
    if averaged and count % lasers == 0:
        return frames.reshape(count // lasers, lasers, *frames.shape[1:]).mean(axis=0)
    if averaged:
        return np.repeat(frames.mean(axis=0, keepdims=True), lasers, axis=0)
    raise InputError(describe(path, f"holds {count} {what} frames for {lasers} lasers",
                              f"Give one frame, or one per laser ({lasers})."))


def load_calibration(dark: str | os.PathLike[str] | None, flat: str | os.PathLike[str] | None,
                     *, lasers: int, frame_shape: tuple[int, int] | None) -> Calibration:
    """Read and check the dark frame and flat field for an acquisition's frames.

    ``frame_shape`` None checks the files alone (before the stacks of a study are read).

    Raises
    ------
    InputError
        A missing or unreadable file, frames of another size than the acquisition's, a
        frame count that fits no laser layout (flat), a flat field with pixels <= 0 or not
        finite, or a dark frame as bright as the flat field.
    """
    record: dict[str, Any] = {}
    dark_frames = flat_frames = None
    for name, given in (("dark", dark), ("flat", flat)):
        if given is None:
            continue
        path = Path(given)
        frames = _read_frames(path)
        if frame_shape is not None and tuple(frames.shape[1:]) != tuple(frame_shape):
            raise InputError(describe(path, f"has {name} frames of {frames.shape[1]}x"
                                      f"{frames.shape[2]} pixels, the acquisition "
                                      f"{frame_shape[0]}x{frame_shape[1]}",
                                      f"Give a {name} frame taken with the same camera settings."))
        per_laser = _per_laser(path, frames, lasers, name, averaged=name == "dark")
        record[name] = {"file": str(path.resolve()), "sha256": file_sha256(path),
                        "frames": int(frames.shape[0])}
        if name == "dark":
            dark_frames = per_laser
        else:
            flat_frames = per_laser
    if flat_frames is not None:
        path = Path(flat)
        if dark_frames is not None:
            flat_frames = flat_frames - dark_frames
        if not np.isfinite(flat_frames).all() or (flat_frames <= 0).any():
            raise InputError(describe(path, "has pixels that are not positive (after the dark "
                                      "frame is subtracted) or not finite",
                                      "Give a flat field of an evenly lit target, brighter "
                                      "than the dark frame everywhere."))
        flat_frames = flat_frames / flat_frames.mean(axis=(1, 2), keepdims=True)
    return Calibration(dark=dark_frames, flat=flat_frames, record=record)
