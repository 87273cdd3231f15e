"""napari's reader for the project's files (declared in ``napari.yaml``).

A TIFF opens as one image layer per laser; a quantify results folder as its organ labels
over the stack; a data folder as its frames with their masks. Anything else is left to
other readers (``get_reader`` returns None). A file that is one of ours but wrong raises
the library's one-line message, which napari shows as a notification.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from unetlib.napari.layers import (
    LayerData,
    data_folder_layers,
    is_data_folder,
    quantify_layers,
    stack_layers,
)
from unetlib.study.results_folder import is_results_folder

__all__ = ["get_reader", "read_path"]


def read_path(path: str | os.PathLike[str]) -> list[LayerData]:
    """The layers of one of the project's files or folders (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        if is_results_folder(path):
            return quantify_layers(path)
        return data_folder_layers(path)
    layers, stack = stack_layers(path)
    if stack.dropped:
        from napari.utils.notifications import show_warning  # napari is there when it reads

        show_warning(f"{path}: {stack.dropped} frame(s) left out: the frame count is not a "
                     f"multiple of {stack.lasers} lasers. Give the laser count in a "
                     f'{path.with_suffix(".json").name} sidecar ({{"lasers": N}}) if it is wrong.')
    return layers


def get_reader(path: str | list[str]) -> Callable[[str], list[LayerData]] | None:
    """napari's reader hook: :func:`read_path` for a TIFF, a quantify results folder or a
    data folder; None for other paths (and for several at once)."""
    if isinstance(path, list):
        return None
    candidate = Path(path)
    if candidate.is_dir():
        return read_path if is_results_folder(candidate) or is_data_folder(candidate) else None
    return read_path if candidate.suffix.lower() in (".tif", ".tiff") else None
