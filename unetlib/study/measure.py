"""Pixel statistics of organs in one cycle: the body, its background, and quality control.

Pure numpy/scipy on arrays, no model: :func:`~unetlib.data.body.body_mask` finds the
mouse, :func:`background_mask`
the pixels a signal-to-background ratio divides by, :func:`measure_cycle` every organ's
statistics in every laser's frame, and :func:`flag_area_jumps` the cycles whose masks
cannot be trusted. :mod:`unetlib.study.quantify` runs them over whole acquisitions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from unetlib.data.organs import OrganTable

__all__ = ["QC_ABSENT", "QC_JUMP", "QC_OK", "background_mask", "flag_area_jumps",
           "measure_cycle"]

QC_OK, QC_JUMP, QC_ABSENT = "ok", "area_jump", "absent"


def measure_cycle(frames: np.ndarray, labels: np.ndarray, organs: OrganTable,
                  background: np.ndarray, *,
                  laser_masks: Sequence[Sequence[np.ndarray]] | None = None) -> np.ndarray:
    """Statistics of every organ in every laser's frame of one cycle.

    One boolean mask per organ: with about ten organs this is 2-6x faster than
    :mod:`scipy.ndimage`'s label statistics, which sort every pixel of the frame once per
    statistic (measured on 512 and 1024 px frames).

    Parameters
    ----------
    frames : ndarray of shape (lasers, H, W)
        The raw frames of the cycle.
    labels : ndarray of shape (H, W)
        Organ values (``organs.csv``), 0 elsewhere.
    organs : OrganTable
    background : ndarray of shape (H, W) or (lasers, H, W), bool
        The background pixels of the signal-to-background ratio, in every laser's frame
        or in each.
    laser_masks : sequence of sequences of ndarray, optional
        ``[laser][organ]`` masks that replace ``labels`` in each laser's frame: the
        organs followed into the frames a moving mouse left them elsewhere in
        (:func:`unetlib.study.motion.align_cycle`).

    Returns
    -------
    ndarray of shape (lasers, organs, 6), float64
        ``area_px, mean, median, p95, integrated, background_mean``; NaN for an organ
        absent from the cycle. Non-finite pixels (float stacks) are left out.
    """
    lasers = frames.shape[0]
    result = np.full((lasers, len(organs.organs), 6), np.nan)
    cycle_masks = [labels == organ.value for organ in organs.organs]
    for laser in range(lasers):
        masks = cycle_masks if laser_masks is None else laser_masks[laser]
        frame = np.asarray(frames[laser])
        finite = np.isfinite(frame) if np.issubdtype(frame.dtype, np.floating) else None
        back = background if background.ndim == 2 else background[laser]
        back = back if finite is None else back & finite
        back_mean = float(frame[back].mean(dtype=np.float64)) if back.any() else math.nan
        for index, mask in enumerate(masks):
            inside = mask if finite is None else mask & finite
            values = frame[inside].astype(np.float64)
            result[laser, index, 0] = values.size
            result[laser, index, 5] = back_mean
            if values.size:
                median, p95 = np.percentile(values, [50.0, 95.0])
                result[laser, index, 1:5] = (values.mean(), median, p95, values.sum())
    return result


def flag_area_jumps(areas: np.ndarray, *, window: int, tolerance: float) -> np.ndarray:
    """QC label of every cycle x organ from the organs' areas.

    ``absent`` where an organ has no pixels; ``area_jump`` where its area differs from the
    running median over ``window`` cycles by more than ``tolerance`` of that median (a
    failed mask, or the mouse moved); ``ok`` otherwise.

    Parameters
    ----------
    areas : ndarray of shape (cycles, organs)
    window : int
        The running median spans ``window // 2`` cycles either side, fewer at the ends of
        the acquisition, and only the cycles where the organ is present; a cycle with no
        present neighbour has no reference and is not a jump.
    tolerance : float
        The largest accepted difference, a fraction of the median (of at least 1 pixel).

    Returns
    -------
    ndarray of shape (cycles, organs), object
        ``"ok"``, ``"area_jump"`` or ``"absent"``.

    Examples
    --------
    >>> import numpy as np
    >>> areas = np.array([[100], [102], [40], [101], [99]])  # one organ over 5 cycles
    >>> flag_area_jumps(areas, window=5, tolerance=0.3)[:, 0].tolist()
    ['ok', 'ok', 'area_jump', 'ok', 'ok']
    >>> flag_area_jumps(np.array([[100, 0]]), window=5, tolerance=0.3).tolist()  # 2 organs
    [['ok', 'absent']]
    >>> areas = np.array([[100], [101], [99], [0], [0], [0]])  # absent cycles stay out
    >>> flag_area_jumps(areas, window=7, tolerance=0.3)[:, 0].tolist()
    ['ok', 'ok', 'ok', 'absent', 'absent', 'absent']
    """
    areas = np.asarray(areas, dtype=np.float64)
    half = window // 2
    flags = np.full(areas.shape, QC_OK, dtype=object)
    if len(areas) and half >= 0:
        # The running median of the cycles where the organ is there: an absent cycle is
        # flagged as such, and must not pull its neighbours' reference down.
        present = np.where(areas > 0, areas, np.nan)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)  # no reference: not a jump
            median = ndimage.generic_filter(present, np.nanmedian, size=(2 * half + 1, 1),
                                            mode="constant", cval=np.nan)
        flags[np.abs(areas - median) > tolerance * np.maximum(median, 1.0)] = QC_JUMP
    flags[areas <= 0] = QC_ABSENT
    return flags


def background_mask(labels: np.ndarray, body: np.ndarray, organs: OrganTable, *,
                    organ: str | None = None, margin: int = 3) -> np.ndarray:
    """The pixels whose mean is an organ's background.

    The named ``organ`` (a region the user annotated as background) when given; else the
    body outside every organ and a ``margin`` of pixels around them, where organ light
    still spills over and mask edges are least certain.
    """
    if organ is not None:
        value = next(o.value for o in organs.organs if o.name == organ)
        return labels == value
    near_organs = labels > 0
    if margin:
        near_organs = ndimage.binary_dilation(near_organs, iterations=margin)
    return body & ~near_organs
