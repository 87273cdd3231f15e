"""A trained model as later stages use it: the network with its normalisation, decision
threshold and organ table (:class:`LoadedRun`), read from a run folder's files or from a
bioimage.io package (:mod:`unetlib.runs.package`)."""

from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path
from typing import Any

# Importing the metrics registers unetlib's custom losses and metrics with Keras, so a
# compiled run model (``last.keras``) loads too.
import unetlib.nn.metrics  # noqa: F401  (registration side effect)
from unetlib.core._tensorflow import keras
from unetlib.core.config import DEFAULT_THRESHOLD, NormalizeConfig
from unetlib.core.errors import InputError, describe
from unetlib.data.organs import Organ, OrganTable
from unetlib.runs.locate import MODEL_SUFFIXES, model_file

__all__ = ["LoadedRun", "MODEL_SUFFIXES", "load_run_model", "loaded_run", "model_file",
           "organs_of"]

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


def load_run_model(model_path_or_run_dir: str | os.PathLike[str]) -> keras.Model:
    """Load a Keras model from a ``.keras`` file or a run folder (its ``model.keras``).

    The model is loaded without its optimiser state (inference only).

    Raises
    ------
    InputError
        When the path is missing or the file is not a Keras model.
    """
    path = model_file(Path(model_path_or_run_dir))
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
