"""When each cycle of an acquisition was taken: the time axis of organ curves.

Camera and microscope software record the frame interval in the TIFF itself: ImageJ
stores ``finterval`` (with ``tunit``), OME-TIFF stores ``TimeIncrement`` (with
``TimeIncrementUnit``). :func:`cycle_interval` reads either; the user's ``--interval``
always wins, and a stack that records neither must be given one, since a curve whose
time axis is invented would give wrong half-lives without any sign of it.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import tifffile

from unetlib.core.errors import InputError, ParameterError, describe
from unetlib.core.io import tifffile_problems

logger = logging.getLogger(__name__)

SECONDS_PER_UNIT = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3,
                    "msec": 1e-3, "millisecond": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6,
                    "min": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hour": 3600.0}


def recorded_frame_interval(path: str | os.PathLike[str]) -> float | None:
    """Seconds between successive frames (or time points) recorded in a TIFF, or None.

    Returns None when the file records no timing, or a unit this function does not know.
    """
    path = Path(path)
    try:
        with tifffile_problems(), tifffile.TiffFile(path) as tif:
            imagej = tif.imagej_metadata or {}
            ome = tif.ome_metadata if tif.is_ome else None
    except (tifffile.TiffFileError, ValueError, OSError):
        return None
    if imagej.get("finterval"):
        return _seconds(imagej["finterval"], imagej.get("tunit", "s"))
    if ome:
        match = re.search(r'TimeIncrement="([0-9.eE+-]+)"', ome)
        unit = re.search(r'TimeIncrementUnit="([^"]+)"', ome)
        if match:
            return _seconds(match.group(1), unit.group(1) if unit else "s")
    return None


def _seconds(value: object, unit: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    scale = SECONDS_PER_UNIT.get(str(unit).strip().lower())
    if scale is None or not number > 0:
        return None
    return number * scale


def cycle_interval(path: str | os.PathLike[str], *, lasers: int, hyperstack: bool,
                   interval_s: float | None = None) -> float:
    """Seconds from one laser cycle to the next.

    Parameters
    ----------
    path : path-like
        The stack.
    lasers : int
        Lasers per cycle: an interleaved stack's recorded interval is per frame, so a cycle
        lasts ``lasers`` of them. A hyperstack (channel axis) records it per time point.
    hyperstack : bool
        Whether the lasers are a channel axis of the file rather than interleaved frames.
    interval_s : float, optional
        The user's interval per cycle; it overrides the file's.

    Raises
    ------
    ParameterError
        ``interval_s`` not a positive number.
    InputError
        Neither given nor recorded in the file.
    """
    if interval_s is not None:
        if not isinstance(interval_s, (int, float)) or not interval_s > 0:
            raise ParameterError(f"interval={interval_s!r} is invalid: expected the seconds "
                                 "between laser cycles, a positive number.")
        return float(interval_s)
    frame = recorded_frame_interval(path)
    if frame is None:
        raise InputError(describe(path, "records no frame interval (no ImageJ finterval or OME "
                                  "TimeIncrement)", "Pass --interval SECONDS, the time from "
                                  "one laser cycle to the next."))
    interval = frame if hyperstack else frame * lasers
    logger.info("%s: %.4g s per cycle, from the file's timing metadata", path, interval)
    return interval
