"""The project's files as napari layer data, without Qt: what the reader and widgets show.

Each function returns napari's ``LayerData`` tuples ``(data, keyword arguments, layer
type)``, so it runs (and is tested) without a display:

- :func:`stack_layers`: an acquisition, one image layer per laser (cycles as the first
  axis, memory-mapped), each shown in its own percentile range; the first three lasers in
  red, green and blue, added, as the composite a ``[1, 2, 3]`` run takes.
- :func:`quantify_layers`: a quantify results folder, its organ labels over the stack.
- :func:`data_folder_layers`: a data folder's frames with their masks.
- :func:`labels_layer`: organ values as a labels layer with the organs' names and colours.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from unetlib.core.config import SplitConfig
from unetlib.core.errors import InputError, describe
from unetlib.core.io import list_images, read_image
from unetlib.data.dataset import train_folders
from unetlib.data.masks import read_labels, read_mask
from unetlib.data.organs import OrganTable, find_organ_table, read_organ_table
from unetlib.data.stack import LaserStack, contrast_limits, load_stack
from unetlib.study.results_folder import LABELS_FILE, read_results_record

__all__ = ["DEFAULT_LASERS", "LayerData", "data_folder_layers", "is_data_folder",
           "labels_layer", "laser_count", "mask_values", "organ_colors",
           "quantify_layers", "stack_layers"]

LayerData = tuple[Any, dict[str, Any], str]
DEFAULT_LASERS = 4
# The composite a [1, 2, 3] run takes, as the eye sees it: lasers 1-3 in red, green, blue.
LASER_COLORMAPS = ("red", "green", "blue", "gray")


def laser_count(path: str | os.PathLike[str]) -> int:
    """How many lasers a stack cycles through: its own channel axis (an ImageJ/OME
    hyperstack, which :func:`~unetlib.data.stack.load_stack` reads as it is), else
    ``{"lasers": N}`` in a ``<stem>.json`` sidecar beside it, else :data:`DEFAULT_LASERS`.
    """
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            axes = tif.series[0].axes if tif.series else ""
            if "C" in axes:
                return int(tif.series[0].shape[axes.index("C")])
    except (OSError, ValueError, tifffile.TiffFileError):
        pass  # load_stack reports an unreadable file with the fix
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            lasers = json.loads(sidecar.read_text(encoding="utf-8")).get("lasers")
        except (OSError, ValueError, AttributeError):
            lasers = None
        if not isinstance(lasers, int) or lasers < 1:
            raise InputError(describe(sidecar, "has no whole number 'lasers' >= 1",
                                      'Write e.g. {"lasers": 4} into it, or remove it.'))
        return lasers
    return DEFAULT_LASERS


def _display_range(image: np.ndarray) -> list[float]:
    """The percentile range a grey frame is shown in (the library's one rule), never empty."""
    low, high = (float(value) for value in contrast_limits(image))
    return [low, high if high > low else low + 1.0]


def stack_layers(path: str | os.PathLike[str], lasers: int | None = None) -> tuple[list[LayerData], LaserStack]:
    """One image layer per laser of an acquisition, and the stack it came from.

    Parameters
    ----------
    path : path-like
        The acquisition TIFF.
    lasers : int, optional
        Lasers it cycles through; default :func:`laser_count`.
    """
    stack = load_stack(path, SplitConfig(lasers=lasers or laser_count(path)))
    layers = []
    for number in range(1, stack.lasers + 1):
        frames = stack.laser(number)
        limits = _display_range(np.asarray(frames[frames.shape[0] // 2]))
        colormap = LASER_COLORMAPS[number - 1] if stack.lasers >= 3 else "gray"
        layers.append((frames, {"name": f"{stack.path.stem} laser {number}",
                                "contrast_limits": limits, "colormap": colormap,
                                "blending": "additive" if number > 1 else "translucent",
                                "visible": number <= 3,
                                "metadata": {"unetlib_stack": str(stack.path), "laser": number}},
                       "image"))
    return layers, stack


def organ_colors(organs: OrganTable | None) -> dict[int | None, str]:
    """Label value -> colour for napari (organs.csv's colours; a binary foreground white)."""
    colors: dict[int | None, str] = {None: "magenta", 0: "transparent"}
    if organs is None:
        colors[1] = "white"
        colors[255] = "white"
    else:
        colors.update({organ.value: organ.color for organ in organs.organs})
    return colors


def labels_layer(values: np.ndarray, organs: OrganTable | None, name: str, **extra: Any) -> LayerData:
    """Organ values as a labels layer: each organ in its organs.csv colour, its name in the
    layer's features (napari shows it under the cursor), the table in the metadata."""
    table = organs.organs if organs is not None else ()
    features = {"index": [0, *[organ.value for organ in table]] if organs else [0, 1],
                "organ": ["background", *[organ.name for organ in table]] if organs else
                ["background", "foreground"]}
    metadata = {"organs": None if organs is None else organs.to_rows(), **extra.pop("metadata", {})}
    return values, {"name": name, "colormap": organ_colors(organs), "features": features,
                    "opacity": 0.5, "metadata": metadata, **extra}, "labels"


def quantify_layers(folder: str | os.PathLike[str]) -> list[LayerData]:
    """A quantify results folder: the stack's lasers (when the stack is still where it was
    quantified) under the organ labels of every cycle."""
    folder = Path(folder)
    record = read_results_record(folder)
    organs = read_organ_table(folder / "organs.csv") if (folder / "organs.csv").is_file() else None
    labels = tifffile.imread(folder / LABELS_FILE)
    layers: list[LayerData] = []
    stack_path = Path(str(record.get("stack", "")))
    if stack_path.is_file():
        layers, _ = stack_layers(stack_path, int(record.get("lasers") or 0) or None)
    layers.append(labels_layer(labels, organs, f"{folder.name} organs",
                               metadata={"unetlib_quantify": str(folder)}))
    return layers


def is_data_folder(path: str | os.PathLike[str]) -> bool:
    """A data folder (``train/frames/`` inside, or the ``train/`` folder itself)."""
    return train_folders(path)[0].is_dir()


def mask_values(path: str | os.PathLike[str], organs: OrganTable | None) -> np.ndarray:
    """A mask or proposal file as organ values (a binary one as 0/1)."""
    if organs is None:
        return read_mask(path)[0].astype(np.uint8)
    classes, _ = read_labels(path, organs)
    return organs.class_values()[classes]


def data_folder_layers(data_dir: str | os.PathLike[str], stems: list[str] | None = None
                       ) -> list[LayerData]:
    """A data folder's frames (one image layer, a frame per step of the first axis) and
    their masks (a labels layer; frames without a mask show none).

    Frames of different sizes cannot share a layer: the error names the folder.
    """
    frames_dir, masks_dir = train_folders(data_dir)
    organs = find_organ_table(data_dir)
    paths = [path for path in list_images(frames_dir) if stems is None or path.stem in stems]
    if not paths:
        raise InputError(describe(frames_dir, "holds no frames", "Pick frames first (pick-frames)."))
    images = [read_image(path) for path in paths]
    if len({image.shape for image in images}) > 1:
        raise InputError(describe(frames_dir, "holds frames of different sizes",
                                  "Open them one by one, or pick frames of one acquisition."))
    frames = np.stack(images)
    masks = np.zeros(frames.shape[:3], dtype=np.uint16 if organs and max(organs.values) > 255
                     else np.uint8)
    for index, path in enumerate(paths):
        mask = masks_dir / f"{path.stem}.png"
        if mask.is_file():
            masks[index] = mask_values(mask, organs)
    rgb = frames.ndim == 4 and frames.shape[-1] in (3, 4)
    image = (frames, {"name": f"{Path(data_dir).name} frames", "rgb": rgb,
                      "metadata": {"unetlib_data": str(data_dir), "stems": [p.stem for p in paths]},
                      **({} if rgb else {"contrast_limits": _display_range(frames[0])})},
             "image")
    return [image, labels_layer(masks, organs, f"{Path(data_dir).name} masks",
                                metadata={"unetlib_data": str(data_dir),
                                          "stems": [p.stem for p in paths]})]
