"""A stack's quantify results folder: its file names, and its record read once.

``quantify`` writes the folder; the ``--ome-zarr`` export and the napari reader read it.
Without TensorFlow, so a viewer can open results without loading a model's stack.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from unetlib.core.errors import InputError, describe

__all__ = ["CYCLES_FILE", "INTENSITIES_FILE", "LABELS_FILE", "RECORD_FILE", "SUMMARY_FILE",
           "is_results_folder", "read_results_record", "stack_output_dir"]

RECORD_FILE = "quantify.json"  # written last: a folder without it is unfinished
LABELS_FILE = "labels.tif"
INTENSITIES_FILE = "intensities.csv"
SUMMARY_FILE = "summary.csv"
CYCLES_FILE = "cycles.csv"


def stack_output_dir(out_dir: str | os.PathLike[str], stack_path: str | os.PathLike[str]) -> Path:
    """``<out>/<stack stem>``: where one stack's results go."""
    return Path(out_dir) / Path(stack_path).stem


def is_results_folder(path: str | os.PathLike[str]) -> bool:
    """True for a finished results folder (its record and its labels are there)."""
    path = Path(path)
    return (path / RECORD_FILE).is_file() and (path / LABELS_FILE).is_file()


def read_results_record(results_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``quantify.json`` of a stack's results folder.

    Raises
    ------
    InputError
        The record is missing or unreadable: the message names it and says to quantify
        the stack (again).

    Examples
    --------
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / RECORD_FILE).write_text(json.dumps({"lasers": 4}))
    >>> read_results_record(folder)["lasers"]
    4
    """
    path = Path(results_dir) / RECORD_FILE
    fix = "Quantify the stack first (or again, with --force)."
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(describe(path, f"cannot be read ({error})", fix)) from None
    if not isinstance(record, dict):
        raise InputError(describe(path, "is not a quantify record", fix))
    return record
