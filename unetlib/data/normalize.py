"""Intensity normalisation shared by training and prediction.

The original recipe divided every frame by 255, which turns 16-bit SWIR frames into
values in the hundreds. Here the default is a robust per-image, per-channel percentile
scaling that gives comparable inputs for 8- and 16-bit data and for dim and bright frames.
"""

from __future__ import annotations

import numpy as np

from unetlib.core.config import NormalizeConfig


def non_finite_pixels(image: np.ndarray) -> np.ndarray | None:
    """Boolean ``(H, W)`` map of pixels that are NaN or infinite in any channel, or None.

    Integer frames cannot hold such values, so they are never scanned.
    """
    image = np.asarray(image)
    if not np.issubdtype(image.dtype, np.floating):
        return None
    bad = ~np.isfinite(image)
    if bad.ndim == 3:
        bad = bad.any(axis=-1)
    return bad if bad.any() else None


def fill_non_finite(image: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """A copy of ``image`` whose ``bad`` pixels hold each channel's median of the rest.

    Percentiles, the network's convolutions and every mean would otherwise turn a single
    NaN (a dead pixel, a failed flat-field division) into NaN everywhere.
    """
    filled = np.array(image, dtype=np.float32)
    if filled.ndim == 2:
        filled[bad] = np.median(filled[~bad])
        return filled
    for channel in range(filled.shape[-1]):
        values = filled[..., channel]
        values[bad] = np.median(values[~bad])
    return filled


def normalize_image(image: np.ndarray, config: NormalizeConfig = NormalizeConfig()) -> np.ndarray:
    """Scale one image to float32 with a channel axis.

    Parameters
    ----------
    image : ndarray of shape (H, W) or (H, W, C)
        Raw frame, any integer or float dtype.
    config : NormalizeConfig
        Scaling method and percentiles.

    Returns
    -------
    ndarray of shape (H, W, C), float32
        Roughly in [0, 1] for ``percentile``, ``minmax`` and ``dtype``; values beyond the
        percentiles are kept (not clipped), so bright organs stay brighter than the rest.

    Examples
    --------
    >>> import numpy as np
    >>> scaled = normalize_image(np.array([[0, 1000], [2000, 4000]], np.uint16))
    >>> scaled.shape, scaled.dtype
    ((2, 2, 1), dtype('float32'))
    """
    config.validate()
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., np.newaxis]
    if image.ndim != 3:
        raise ValueError(f"image must have shape (H, W) or (H, W, C), got {image.shape}")
    source_dtype = image.dtype
    values = image.astype(np.float32)
    if config.method == "none":
        return values
    if config.method == "dtype":
        scale = float(np.iinfo(source_dtype).max) if np.issubdtype(source_dtype, np.integer) else 1.0
        return values / np.float32(scale)
    if config.method == "minmax":
        low = values.min(axis=(0, 1), keepdims=True)
        high = values.max(axis=(0, 1), keepdims=True)
    else:
        low, high = np.percentile(values, [config.low, config.high], axis=(0, 1), keepdims=True)
    span = np.maximum(high - low, np.float32(1e-6))
    return ((values - low) / span).astype(np.float32)
