"""Where the mouse is in a frame: the body, told apart from the air around it.

Used to measure organs against the body's background (:mod:`unetlib.study.measure`) and
to score the model's uncertainty inside the body only (:mod:`unetlib.inference.uncertainty`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

__all__ = ["body_mask"]


def body_mask(image: np.ndarray, organs: np.ndarray | None = None) -> np.ndarray:
    """The mouse's body in one frame: Otsu's threshold of the smoothed image, holes filled,
    the largest connected region.

    Parameters
    ----------
    image : ndarray of shape (H, W) or (H, W, C)
        A frame (channels are averaged); NaN pixels count as dark.
    organs : ndarray of shape (H, W), bool, optional
        Organ pixels. They are part of the body but left out of the threshold, which then
        separates body from air rather than bright organs from the rest.

    Examples
    --------
    >>> import numpy as np
    >>> frame = np.zeros((40, 60), np.float32)
    >>> frame[10:30, 15:45] = 100.0  # the mouse, on dark air
    >>> body = body_mask(frame)
    >>> int(body.sum()), bool(body[20, 30]), bool(body[2, 2])
    (596, True, False)
    """
    values = np.asarray(image, dtype=np.float32)
    if values.ndim == 3:
        values = values.mean(axis=-1)
    finite = np.isfinite(values)
    values = np.where(finite, values, np.min(values[finite]) if finite.any() else 0.0)
    smooth = ndimage.uniform_filter(values, size=5)
    sample = smooth if organs is None or organs.all() else smooth[~organs]
    body = smooth > threshold_otsu(sample, nbins=256)
    if organs is not None:
        body |= organs
    regions, count = ndimage.label(body)
    if count > 1:
        sizes = np.bincount(regions.ravel())
        sizes[0] = 0
        body = regions == int(np.argmax(sizes))
    return ndimage.binary_fill_holes(body)
