"""Pixel statistics of organs in one cycle: the body, its background, and quality control.

Pure numpy/scipy on arrays, no model: :func:`~unetlib.data.body.body_mask` finds the
mouse, :func:`background_mask`
the pixels a signal-to-background ratio divides by, :func:`measure_cycle` every organ's
statistics in every laser's frame, and :func:`flag_area_jumps` the cycles whose masks
cannot be trusted. :mod:`unetlib.study.quantify` runs them over whole acquisitions.
"""

from __future__ import annotations

import math

import numpy as np

from unetlib.data.organs import OrganTable

__all__ = ["QC_ABSENT", "QC_JUMP", "QC_OK", "background_mask", "flag_area_jumps",
           "measure_cycle"]

QC_OK, QC_JUMP, QC_ABSENT = "ok", "area_jump", "absent"


def measure_cycle(frames: np.ndarray, labels: np.ndarray, organs: OrganTable,
                  background: np.ndarray) -> np.ndarray:
    """Statistics of every organ in every laser's frame of one cycle.

    Parameters
    ----------
    frames : ndarray of shape (lasers, H, W)
        The raw frames of the cycle.
    labels : ndarray of shape (H, W)
        Organ values (``organs.csv``), 0 elsewhere.
    organs : OrganTable
    background : ndarray of shape (H, W), bool
        The background pixels of the signal-to-background ratio.

    Returns
    -------
    ndarray of shape (lasers, organs, 6), float64
        ``area_px, mean, median, p95, integrated, background_mean``; NaN for an organ
        absent from the cycle. Non-finite pixels (float stacks) are left out.
    """
    lasers = frames.shape[0]
    result = np.full((lasers, len(organs.organs), 6), np.nan)
    masks = [labels == organ.value for organ in organs.organs]
    for laser in range(lasers):
        frame = np.asarray(frames[laser])
        finite = np.isfinite(frame) if np.issubdtype(frame.dtype, np.floating) else None
        back = background if finite is None else background & finite
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
    cycles = areas.shape[0]
    half = window // 2
    flags = np.full(areas.shape, QC_OK, dtype=object)
    for cycle in range(cycles):
        around = areas[max(0, cycle - half):cycle + half + 1]
        for organ in range(areas.shape[1]):
            # The running median of the cycles where the organ is there: an absent cycle
            # is flagged as such, and must not pull its neighbours' reference down.
            present = around[:, organ][around[:, organ] > 0]
            if present.size:
                median = float(np.median(present))
                if abs(areas[cycle, organ] - median) > tolerance * max(median, 1.0):
                    flags[cycle, organ] = QC_JUMP
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
    from scipy import ndimage

    near_organs = labels > 0
    if margin:
        near_organs = ndimage.binary_dilation(near_organs, iterations=margin)
    return body & ~near_organs
