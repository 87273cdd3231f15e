"""Where a trained model is on disk, found from a user's path without loading anything.

A run folder (its ``model.keras``), a ``.keras`` file, or a bioimage.io package exported
by unetlib (the ``.zip``, its unpacked folder, or that folder's ``rdf.yaml``). Kept free of
TensorFlow so the command line can refuse a mistyped path in a second, before the 5-8 s
TensorFlow takes to load.
"""

from __future__ import annotations

import os
from pathlib import Path

from unetlib.core.errors import InputError, describe
from unetlib.runs.folder import RunFolder

__all__ = ["MODEL_SUFFIXES", "PACKAGE_DESCRIPTIONS", "find_model", "finished_run_folder",
           "is_package", "model_file"]

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")

# The description file of a bioimage.io model package (unetlib.runs.export writes rdf.yaml).
PACKAGE_DESCRIPTIONS = ("rdf.yaml", "bioimageio.yaml")


def is_package(path: str | os.PathLike[str]) -> bool:
    """True for a bioimage.io package: a ``.zip``, or a folder holding ``rdf.yaml``."""
    path = Path(path)
    if path.is_dir():
        return any((path / name).is_file() for name in PACKAGE_DESCRIPTIONS)
    return path.is_file() and (path.name in PACKAGE_DESCRIPTIONS or path.suffix.lower() == ".zip")


def model_file(path: Path) -> Path:
    """The model file of a run folder (its ``model.keras``) or the file itself."""
    if path.is_dir():
        candidate = RunFolder(path).model
        if not candidate.is_file():
            raise InputError(describe(path, "holds no model.keras",
                                      "Give a run folder written by training, or a .keras file."))
        return candidate
    if not path.is_file():
        raise InputError(describe(path, "model file or run folder not found", "Check the path."))
    return path


def find_model(path: str | os.PathLike[str]) -> Path:
    """The file a model path names: a package as given, else the run's ``.keras`` file.

    Raises
    ------
    InputError
        The path is missing, or a folder that is neither a run nor a package.

    Examples
    --------
    >>> find_model(getfixture("tmp_path") / "no-run")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    unetlib.core.errors.InputError: .../no-run: model file or run folder not found. Check the path.
    """
    path = Path(path)
    return path if is_package(path) else model_file(path)


def finished_run_folder(path: str | os.PathLike[str]) -> Path:
    """The folder of a finished run: ``path`` itself, or the folder of its ``.keras`` file.

    Finished means the model, its ``config.json`` and its ``metrics.json`` are there (training
    writes ``metrics.json`` last).

    Raises
    ------
    InputError
        The folder is missing, or a run that has not finished.

    Examples
    --------
    >>> run = getfixture("tmp_path") / "run"
    >>> run.mkdir()
    >>> finished_run_folder(run)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    unetlib.core.errors.InputError: .../run: holds no model.keras. Export a finished run folder written by train.
    """
    path = Path(path)
    folder = path.parent if path.is_file() and path.suffix == ".keras" else path
    if not folder.is_dir():
        raise InputError(describe(path, "run folder not found", "Give a run folder written by train."))
    run = RunFolder(folder)
    for required in (run.model, run.config, run.metrics):
        if not required.is_file():
            raise InputError(describe(folder, f"holds no {required.name}",
                                      "Export a finished run folder written by train."))
    return folder
