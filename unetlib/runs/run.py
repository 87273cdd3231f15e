"""The run folder: what training writes and every later stage reads back.

``runs/<name>/`` holds ``model.keras`` (best epoch), ``last.keras`` + ``state.json``
(resume), ``config.json`` (every parameter, the normalisation prediction must reuse, the
organ table, the calibrated threshold, versions, the data fingerprint), ``history.csv``,
``history.png`` and ``metrics.json`` (written last: a run without it did not finish).
This module owns those names and how they are read; :mod:`unetlib.runs.train` writes them.
What a loaded run is lives in :mod:`unetlib.runs.loaded`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from unetlib.core._tensorflow import keras
from unetlib.core.config import DEFAULT_THRESHOLD
from unetlib.core.io import atomic_path, read_json
from unetlib.runs.folder import EMPTY, FINISHED, INTERRUPTED, RESUMABLE, RUN_FILES, RunFolder
from unetlib.runs.loaded import LoadedRun, load_run_model, loaded_run, model_file, organs_of
from unetlib.runs.package import is_package, load_package

__all__ = ["DEFAULT_THRESHOLD", "EMPTY", "FINISHED", "INTERRUPTED", "LoadedRun", "RESUMABLE",
           "RUN_FILES", "RunFolder", "load_run", "load_run_model", "loaded_run", "organs_of",
           "read_run_config", "save_model"]

def load_run(model_path_or_run_dir: str | os.PathLike[str]) -> LoadedRun:
    """Load a model with its normalisation, calibrated threshold and organ table.

    Parameters
    ----------
    model_path_or_run_dir : path-like
        A run folder, its ``model.keras``, or a bioimage.io package exported by unetlib
        (the ``.zip``, its unpacked folder, or that folder's ``rdf.yaml``). A package gives
        the same run as the folder it was exported from (its ``config.json`` is inside).

    Raises
    ------
    InputError
        Missing path, unreadable model, or a package not exported by unetlib.
    """
    path = Path(model_path_or_run_dir)
    if is_package(path):
        return load_package(path)
    path = model_file(path)
    model = load_run_model(path)
    folder = RunFolder(path.parent)
    config = read_json(folder.config) if folder.config.is_file() else {}
    metrics = read_json(folder.metrics) if folder.metrics.is_file() else {}
    return loaded_run(model, path, config, metrics)


def read_run_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """A run folder's ``config.json``."""
    return read_json(RunFolder(run_dir).config)


def save_model(model: keras.Model, path: Path) -> None:
    """Save ``model`` atomically: a crash or a full disk never leaves a broken checkpoint."""
    with atomic_path(path, overwrite=True) as temporary:
        model.save(temporary)
