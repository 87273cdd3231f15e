"""Mask encodings: turn a hand-drawn mask, whatever its encoding, into {0, 1} labels.

Masks come out of GIMP and other editors in many encodings: GIMP's "Output levels 1"
recipe writes foreground = 1 (a nearly black image), others write 0/255, grey with
anti-aliased edges, coloured strokes (RGB), strokes on a transparent layer (RGBA),
palette or 16-bit PNG/TIFF. :func:`normalize_mask` turns each into ``uint8`` {0, 1} by
one documented rule and says which rule decided.

Foreground rule
---------------
1. Channels are reduced to one intensity per pixel:

   - ``grey``: a single channel (or RGB with equal channels) is used as is;
   - ``colour``: RGB with coloured strokes takes the brightest channel, so any colour
     drawn on black counts;
   - ``alpha``: RGBA whose visible pixels all have one colour (the colour carries no
     drawing, e.g. black strokes on a transparent layer) uses the alpha channel;
   - ``colour-where-opaque``: RGBA whose visible colour varies uses the brightest
     channel where the pixel is visible and 0 where it is transparent.

   Fully opaque RGBA ignores alpha. Palette images arrive here as RGB/RGBA.
2. Brighter is foreground. A *level* is a value that fills at least one 3x3 block
   (a flat region, not an anti-aliased edge).

   - one value: foreground when it is above 0 (all-background or all-foreground);
   - two values: the higher one is foreground (GIMP's 1, 255, 65535 alike);
   - more values but at most two levels (anti-aliased edges): foreground is above the
     midpoint between the two levels;
   - three or more levels (a label image, one value per organ): foreground is every
     value above the lowest level. :func:`unetlib.data.dataset.check_pairs` reports such
     masks as errors for a binary task.

Pairing masks with their frames in a data folder, and the findings report, live in
:mod:`unetlib.data.dataset`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from unetlib.core.errors import InputError, describe
from unetlib.core.io import read_image

if TYPE_CHECKING:
    from unetlib.data.organs import OrganTable


ALL_BACKGROUND_FIX = "Draw the organ with value 1 or 255 (or another colour than the background)."


@dataclass(frozen=True)
class MaskInfo:
    """How one mask was normalised.

    Attributes
    ----------
    source : str
        The file (or ``"<array>"``) the mask came from.
    channels : str
        How channels were reduced: ``grey``, ``colour``, ``alpha`` or
        ``colour-where-opaque`` (see the module docstring).
    rule : str
        The rule that decided foreground, in words (e.g. ``"two values: 1 is foreground"``).
    threshold : float
        Foreground is every reduced value strictly above this.
    values : tuple of numbers
        Distinct values of the reduced intensity (may be long for anti-aliased masks).
    levels : tuple of numbers
        Values that fill at least one 3x3 block; more than two means a label image.
    foreground_fraction : float
        Share of pixels that are foreground after normalisation.
    """

    source: str
    channels: str
    rule: str
    threshold: float
    values: tuple[Any, ...] = field(repr=False)
    levels: tuple[Any, ...]
    foreground_fraction: float

    @property
    def is_all_background(self) -> bool:
        """True when no pixel is foreground."""
        return self.foreground_fraction == 0.0

    @property
    def is_all_foreground(self) -> bool:
        """True when every pixel is foreground."""
        return self.foreground_fraction == 1.0

    @property
    def is_label_image(self) -> bool:
        """True when the mask has more than two flat levels (several classes)."""
        return len(self.levels) > 2

    def describe(self) -> str:
        """One line for tables and logs: ``"grey; two values: 255 is foreground"``."""
        return f"{self.channels}; {self.rule}"


def format_values(values: Sequence[Any], *, limit: int = 6) -> str:
    """Format distinct values as ``{0, 1}`` or ``{0, 1, 2, ..., 255} (256 values)``."""
    items = [str(value) for value in values]
    if len(items) <= limit:
        return "{" + ", ".join(items) + "}"
    return "{" + ", ".join(items[:limit - 1]) + f", ..., {items[-1]}}} ({len(items)} values)"


def normalize_mask(mask: np.ndarray, *, source: str | os.PathLike[str] = "<array>"
                   ) -> tuple[np.ndarray, MaskInfo]:
    """Turn a mask in any common encoding into ``uint8`` {0, 1} by the documented rule.

    Parameters
    ----------
    mask : ndarray of shape (H, W) or (H, W, C) with C in 1..4
        As read by :func:`unetlib.core.io.read_image`: grey, grey+alpha, RGB or RGBA, of any
        integer, boolean or float dtype.
    source : str or path-like
        Named in error messages and in the returned info.

    Returns
    -------
    mask : ndarray of shape (H, W), uint8
        1 for foreground, 0 for background.
    info : MaskInfo
        Which rule decided foreground, the distinct values and the foreground fraction.
        An all-background mask is returned, not raised: callers decide (see
        :func:`read_mask` and :func:`check_pairs`).

    Raises
    ------
    InputError
        When the array is not a 2-D image with 1 to 4 channels.
    """
    array = np.asarray(mask)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] > 4) or array.size == 0:
        raise InputError(describe(source, f"has shape {array.shape}, not a 2-D mask",
                                  "Save the mask as a single grey, RGB or RGBA image."))
    intensity, channels = _reduce_channels(array)
    values = np.unique(intensity)
    levels = _flat_levels(intensity) if values.size > 2 else values
    threshold, rule = _threshold(values, levels)
    binary = (intensity > threshold).astype(np.uint8)
    info = MaskInfo(source=str(source), channels=channels, rule=rule, threshold=threshold,
                    values=tuple(value.item() for value in values),
                    levels=tuple(value.item() for value in levels),
                    foreground_fraction=float(binary.mean()))
    return binary, info


def _reduce_channels(array: np.ndarray) -> tuple[np.ndarray, str]:
    """Return one intensity per pixel and the name of the channel rule used."""
    if array.ndim == 2:
        return array, "grey"
    if array.shape[-1] == 2:
        # Grey + alpha (TIFF); treat like RGBA with equal colour channels.
        array = np.concatenate([np.repeat(array[..., :1], 3, axis=-1), array[..., 1:]], axis=-1)
    colour = array[..., :3]
    has_alpha = array.shape[-1] == 4
    alpha = array[..., 3] if has_alpha else None
    if alpha is not None and alpha.min() != alpha.max():
        visible = alpha > alpha.min()
        brightest = colour.max(axis=-1)
        if brightest[visible].min() == brightest[visible].max():
            return alpha, "alpha"
        return np.where(visible, brightest, np.zeros_like(brightest)), "colour-where-opaque"
    if (colour[..., 0] == colour[..., 1]).all() and (colour[..., 1] == colour[..., 2]).all():
        return colour[..., 0], "grey"
    return colour.max(axis=-1), "colour"


def _flat_levels(intensity: np.ndarray) -> np.ndarray:
    """Values that fill at least one 3x3 block (flat regions, not anti-aliased edges)."""
    if min(intensity.shape) < 3:
        return np.unique(intensity)
    centre = intensity[1:-1, 1:-1]
    flat = np.ones(centre.shape, dtype=bool)
    height, width = intensity.shape
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy == 1 and dx == 1:
                continue
            flat &= intensity[dy:dy + height - 2, dx:dx + width - 2] == centre
    return np.unique(centre[flat])


def _threshold(values: np.ndarray, levels: np.ndarray) -> tuple[float, str]:
    """Pick the foreground threshold (foreground is strictly above it) and say why."""
    if values.size == 1:
        return 0.0, f"one value {values[0].item()}: foreground when above 0"
    if values.size == 2:
        return float(values[0]), f"two values: {values[1].item()} is foreground"
    if levels.size > 2:
        return float(levels[0]), (f"{levels.size} levels {format_values(levels.tolist())}: "
                                  f"foreground is every value above {levels[0].item()}")
    low, high = (levels[0], levels[-1]) if levels.size == 2 else (values[0], values[-1])
    midpoint = (float(low) + float(high)) / 2
    return midpoint, (f"anti-aliased, {values.size} values: foreground above {midpoint:g} "
                      f"(midway between {low.item()} and {high.item()})")


def read_mask(path: str | os.PathLike[str]) -> tuple[np.ndarray, MaskInfo]:
    """Read a mask file and normalise it to {0, 1}.

    Returns
    -------
    mask : ndarray of shape (H, W), uint8
    info : MaskInfo

    Raises
    ------
    InputError
        When the file is missing or unreadable, or the mask is all background after
        normalisation (training on it would teach the network to predict nothing).
    """
    path = Path(path)
    mask, info = normalize_mask(read_image(path), source=path)
    if info.is_all_background:
        raise InputError(_all_background_message(path, info))
    return mask, info


def _all_background_message(path: Path, info: MaskInfo) -> str:
    return describe(path, "mask is all background after normalisation "
                          f"(values {format_values(info.values)})", ALL_BACKGROUND_FIX)


# ---------------------------------------------------------------------------------------
# Label masks: several organs, named in organs.csv
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelInfo:
    """How a label mask was read, and how many pixels each class has.

    Attributes
    ----------
    encoding : {"values", "palette index", "colour"}
        Pixel values are organ values; a palette PNG's index is the value; or RGB
        colours are matched to the ``color`` column of ``organs.csv``.
    counts : tuple of int
        Pixels per class, background first (class ``k`` is the table's ``k``-th organ).
    """

    encoding: str
    counts: tuple[int, ...]

    @property
    def organ_classes(self) -> list[int]:
        """Classes (1-based) of the organs present in the mask."""
        return [index for index, count in enumerate(self.counts) if index and count]


def read_labels(path: str | os.PathLike[str], table: "OrganTable") -> tuple[np.ndarray, LabelInfo]:
    """Read a label mask as a class map: 0 background, ``k`` the table's ``k``-th organ.

    Accepts single-channel integer masks (8/16-bit PNG or TIFF) whose values are organ
    values, GIMP indexed (palette) PNGs whose palette index is the value, grey RGB, and
    RGB/RGBA colour masks whose colours are the table's ``color`` column (black, or
    transparent, is background).

    Returns
    -------
    classes : ndarray of shape (H, W), uint8
    info : LabelInfo

    Raises
    ------
    InputError
        Naming the file, the values or colours that ``organs.csv`` does not list, and
        the fix.
    """
    path = Path(path)
    indices = _palette_indices(path)
    if indices is not None:
        return _classes_from_values(indices, table, path, "palette index")
    array = read_image(path)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        rgb = array[..., :3]
        grey = bool(np.all(rgb == rgb[..., :1]))
        opaque = array.shape[-1] == 3 or bool(np.all(array[..., 3] == array[..., 3].flat[0]))
        if grey and opaque:
            return _classes_from_values(rgb[..., 0], table, path, "values")
        return _classes_from_colours(array, table, path)
    if array.ndim != 2:
        raise InputError(describe(path, f"has shape {array.shape}, not a 2-D label mask",
                                  "Export one single-channel (or RGB colour) mask per frame."))
    return _classes_from_values(array, table, path, "values")


def _palette_indices(path: Path) -> np.ndarray | None:
    """The index image of a palette PNG (GIMP "Indexed" mode), else None."""
    from PIL import Image

    if path.suffix.lower() != ".png" or not path.is_file():
        return None
    try:
        with Image.open(path) as image:
            if image.mode != "P":
                return None
            return np.array(image)
    except (OSError, ValueError, SyntaxError):
        return None  # read_image reports the problem with its own message


def _classes_from_values(values: np.ndarray, table: "OrganTable", path: Path,
                         encoding: str) -> tuple[np.ndarray, LabelInfo]:
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise InputError(describe(path, "holds fractional or NaN values, not organ values",
                                      "Export the mask with whole organ values (0, 1, 2, ...)."))
    if values.size and values.min() < 0:
        raise InputError(describe(path, "holds negative values", "Organ values are 0 or more."))
    values = values.astype(np.int64)
    lookup = table.value_lookup()
    size = max(max(lookup) + 1, int(values.max(initial=0)) + 1)
    lut = np.full(size, -1, np.int32)
    for value, klass in lookup.items():
        lut[value] = klass
    classes = lut[values]
    unknown = classes < 0
    if unknown.any():
        found, counts = np.unique(values[unknown], return_counts=True)
        listed = ", ".join(f"{value} ({count} px)" for value, count in zip(found[:5], counts[:5]))
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        raise InputError(describe(path, f"has value(s) {listed}{more} that organs.csv does not list "
                                  f"(it lists {', '.join(map(str, table.values))})",
                                  "Add those organs to organs.csv, or repaint those pixels "
                                  "with a listed value (anti-aliasing off)."))
    return _with_counts(classes.astype(np.uint8), table, encoding)


def _classes_from_colours(array: np.ndarray, table: "OrganTable",
                          path: Path) -> tuple[np.ndarray, LabelInfo]:
    if array.dtype != np.uint8:
        raise InputError(describe(path, f"is a {array.dtype} colour mask",
                                  "Export colour masks as 8-bit RGB PNG."))
    if not table.explicit_colors:
        raise InputError(describe(path, "is a colour mask but organs.csv gives no colours",
                                  "Add a color column (#rrggbb per organ) to organs.csv, or "
                                  "export the mask with organ values."))
    rgb = array[..., :3].astype(np.int64)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    if array.shape[-1] == 4:
        codes = np.where(array[..., 3] == 0, 0, codes)
    lookup = {0: 0, **{(r << 16) | (g << 8) | b: index + 1
                       for index, (r, g, b) in enumerate(organ.rgb for organ in table.organs)}}
    found, inverse = np.unique(codes, return_inverse=True)
    mapped = np.array([lookup.get(int(code), -1) for code in found], np.int32)
    unknown = [(int(code), int(np.sum(inverse == index))) for index, code in enumerate(found)
               if mapped[index] < 0]
    if unknown:
        listed = ", ".join(f"#{code:06x} ({count} px)" for code, count in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise InputError(describe(path, f"has colour(s) {listed}{more} that organs.csv does not "
                                  "list", "Paint organs only with their organs.csv colours "
                                  "(anti-aliasing off), or add the colours to organs.csv."))
    classes = mapped[inverse.reshape(codes.shape)].astype(np.uint8)
    return _with_counts(classes, table, "colour")


def _with_counts(classes: np.ndarray, table: "OrganTable",
                 encoding: str) -> tuple[np.ndarray, LabelInfo]:
    counts = np.bincount(classes.ravel(), minlength=table.classes)
    return classes, LabelInfo(encoding=encoding, counts=tuple(int(c) for c in counts))
