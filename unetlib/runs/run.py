"""The run folder: what training writes and every later stage reads back.

``runs/<name>/`` holds ``model.keras`` (best epoch), ``last.keras`` + ``state.json``
(resume), ``config.json`` (every parameter, the normalisation prediction must reuse, the
organ table, the calibrated threshold, versions, the data fingerprint), ``history.csv``,
``history.png`` and ``metrics.json`` (written last: a run without it did not finish).
This module owns those names and how they are read; :mod:`unetlib.runs.train` writes them.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path
from typing import Any

from unetlib.core._tensorflow import keras

from unetlib.core.config import NormalizeConfig
from unetlib.core.errors import InputError, describe
from unetlib.core.io import atomic_path, read_json
from unetlib.data.organs import Organ, OrganTable

# Importing the metrics registers unetlib's custom losses and metrics with Keras, so a
# compiled run model (``last.keras``) loads too.
import unetlib.nn.metrics  # noqa: F401  (registration side effect)

__all__ = ["DEFAULT_THRESHOLD", "LoadedRun", "RUN_FILES", "load_run", "load_run_model",
           "loaded_run", "organs_of", "read_run_config", "same_finished_run", "save_model"]

RUN_FILES = ("model.keras", "last.keras", "state.json", "config.json", "history.csv",
             "metrics.json", "history.png")
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
DEFAULT_THRESHOLD = 0.5


@dataclasses.dataclass(frozen=True)
class LoadedRun:
    """A trained model with what prediction needs from its run folder.

    Attributes
    ----------
    model : keras.Model
    normalize : NormalizeConfig
        How the training frames were scaled (default config when the run stored none).
    threshold : float
        Decision threshold calibrated on the validation frames (0.5 when none stored).
    model_path : Path
    config : dict
        The run's ``config.json`` (empty for a bare model file).
    calibrated : bool
        Whether ``threshold`` was calibrated by a finished training run.
    organs : OrganTable or None
        The organs a multi-organ run segments (None for a binary run).
    """

    model: keras.Model
    normalize: NormalizeConfig
    threshold: float
    model_path: Path
    config: dict
    calibrated: bool = False
    organs: OrganTable | None = None


def _model_path(path: Path) -> Path:
    if path.is_dir():
        candidate = path / "model.keras"
        if not candidate.is_file():
            raise InputError(describe(path, "holds no model.keras",
                                      "Give a run folder written by training, or a .keras file."))
        return candidate
    if not path.is_file():
        raise InputError(describe(path, "model file or run folder not found", "Check the path."))
    return path


def load_run_model(model_path_or_run_dir: str | os.PathLike[str]) -> keras.Model:
    """Load a Keras model from a ``.keras`` file or a run folder (its ``model.keras``).

    The model is loaded without its optimiser state (inference only).

    Raises
    ------
    InputError
        When the path is missing or the file is not a Keras model.
    """
    path = _model_path(Path(model_path_or_run_dir))
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise InputError(describe(path, f"is not a Keras model file (suffix {path.suffix!r})",
                                  "Give a .keras file saved by training, or its run folder."))
    try:
        model = keras.saving.load_model(path, compile=False)
    except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as error:
        raise InputError(describe(path, f"is not a readable Keras model ({type(error).__name__}: "
                                  f"{str(error)[:200]})",
                                  "Give a .keras file saved by training, or its run folder.")
                         ) from None
    if not isinstance(model, keras.Model) or len(model.inputs) != 1:
        raise InputError(describe(path, "is not a single-input Keras model"))
    return model


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
    from unetlib.runs.package import is_package, load_package  # noqa: PLC0415  (it imports this module)

    path = Path(model_path_or_run_dir)
    if is_package(path):
        return load_package(path)
    path = _model_path(path)
    model = load_run_model(path)
    config: dict = {}
    config_path = path.parent / "config.json"
    if config_path.is_file():
        config = read_json(config_path)
    metrics_path = path.parent / "metrics.json"
    metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    return loaded_run(model, path, config, metrics)


def loaded_run(model: keras.Model, model_path: Path, config: dict[str, Any],
               metrics: dict[str, Any]) -> LoadedRun:
    """A :class:`LoadedRun` from a model and its run's ``config.json`` and ``metrics.json``."""
    normalize = NormalizeConfig(**config["normalize"]) if "normalize" in config else NormalizeConfig()
    threshold = config.get("threshold")
    if threshold is None:
        threshold = metrics.get("threshold")
    calibrated = threshold is not None
    threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    return LoadedRun(model=model, normalize=normalize, threshold=threshold, model_path=model_path,
                     config=config, calibrated=calibrated, organs=organs_of(config))


def organs_of(config: dict[str, Any]) -> OrganTable | None:
    """The organ table a run's ``config.json`` records (None for a binary run)."""
    rows = config.get("organs")
    if not rows:
        return None
    organs = tuple(Organ(value=int(row["value"]), name=str(row["name"]), color=str(row["color"]))
                   for row in rows)
    return OrganTable(organs=organs, explicit_colors=True)


def read_run_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """A run folder's ``config.json``."""
    return read_json(Path(run_dir) / "config.json")


def same_finished_run(run_dir: Path, request: dict[str, Any]) -> bool:
    """True when ``run_dir`` holds a finished run made from exactly ``request``.

    Settings added to unetlib after a run was made are missing from its stored request,
    and settings since removed were unset (None) in it; both are left out of the
    comparison, so a finished run stays reusable across upgrades.
    """
    if not (run_dir / "metrics.json").is_file() or not (run_dir / "config.json").is_file():
        return False
    try:
        stored = read_run_config(run_dir).get("request")
    except InputError:
        return False
    return stored is not None and _same_settings(request, stored)


def _same_settings(current: Any, stored: Any) -> bool:
    if isinstance(current, dict) and isinstance(stored, dict):
        removed = [key for key in stored if key not in current]
        return (all(stored[key] is None for key in removed)
                and all(_same_settings(value, stored[key]) for key, value in current.items()
                        if key in stored))
    return current == stored


def save_model(model: keras.Model, path: Path) -> None:
    """Save ``model`` atomically: a crash or a full disk never leaves a broken checkpoint."""
    with atomic_path(path, overwrite=True) as temporary:
        model.save(temporary)
