"""Pictures of a frame with its mask: the overlays ``predict --overlay`` writes and the
bioimage.io cover images show."""

from __future__ import annotations

import numpy as np

from unetlib.data.organs import OrganTable
from unetlib.data.stack import contrast_stretch

__all__ = ["overlay_image", "overlay_organs"]


def overlay_image(image: np.ndarray, mask: np.ndarray, *, alpha: float = 0.4,
                  percentiles: tuple[float, float] = (0.5, 99.8)) -> np.ndarray:
    """RGB uint8 picture of a raw frame with the mask tinted red.

    Parameters
    ----------
    image : ndarray of shape (H, W) or (H, W, C)
        Raw or normalised frame; each channel is contrast-stretched to its percentiles
        (:func:`~unetlib.data.stack.contrast_stretch`).
        One channel shows as gray, three or more as RGB (the first three).
    mask : ndarray of shape (H, W)
        Foreground where > 0.

    Examples
    --------
    >>> import numpy as np
    >>> picture = overlay_image(np.arange(16.0).reshape(4, 4), np.eye(4))
    >>> picture.shape, picture.dtype, picture[0, 0].tolist()  # the darkest pixel, tinted red
    ((4, 4, 3), dtype('uint8'), [102, 0, 0])
    """
    scaled = contrast_stretch(image, percentiles)
    if scaled.ndim == 2:
        scaled = scaled[..., np.newaxis]
    rgb = np.repeat(scaled, 3, axis=-1) if scaled.shape[-1] < 3 else scaled[..., :3]
    foreground = np.asarray(mask) > 0
    if foreground.ndim == 3:
        foreground = foreground[..., 0]
    red = np.array([1.0, 0.0, 0.0], np.float32)
    rgb[foreground] = (1.0 - alpha) * rgb[foreground] + alpha * red
    return np.round(rgb * 255.0).astype(np.uint8)


def overlay_organs(image: np.ndarray, values: np.ndarray, organs: OrganTable, *,
                   alpha: float = 0.45,
                   percentiles: tuple[float, float] = (0.5, 99.8)) -> np.ndarray:
    """RGB uint8 picture of a frame with each organ tinted in its colour and a legend.

    Parameters
    ----------
    image : ndarray of shape (H, W) or (H, W, C)
        Raw or normalised frame (contrast-stretched like :func:`overlay_image`).
    values : ndarray of shape (H, W)
        Organ values (``organs.csv``), 0 for background.
    organs : OrganTable
    """
    from PIL import Image, ImageDraw

    picture = overlay_image(image, np.zeros(np.shape(values), np.uint8), alpha=0.0,
                            percentiles=percentiles).astype(np.float32)
    for organ in organs.organs:
        where = values == organ.value
        picture[where] = (1.0 - alpha) * picture[where] + alpha * np.array(organ.rgb, np.float32)
    canvas = Image.fromarray(np.round(picture).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for row, organ in enumerate(organs.organs):
        top = 4 + 14 * row
        if top + 10 > canvas.height:
            break
        draw.rectangle([4, top, 14, top + 10], fill=organ.rgb, outline=(255, 255, 255))
        draw.text((18, top - 1), organ.name, fill=(255, 255, 255))
    return np.asarray(canvas)
