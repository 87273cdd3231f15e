"""Start training from a trained model: fine-tuning on a new acquisition.

A model trained on one mouse or one acquisition is a far better start for the next than
random weights: a few annotated frames of the new data then suffice. :func:`starting_point`
loads the trained model and checks that it fits the new data (the same channels, the
same organs, matched by name: a data folder listing them in another order or with other
values gets the model's output classes reordered to match); training keeps
its architecture and its normalisation, so the pretrained features see inputs scaled as
they were learnt. :func:`set_encoder_trainable` freezes the encoder (the ``down*``
levels) for the first epochs, so the decoder adapts before the pretrained features move.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from unetlib.core._tensorflow import keras
from unetlib.core.config import ModelConfig, NormalizeConfig
from unetlib.core.errors import InputError, describe
from unetlib.core.io import file_sha256
from unetlib.data.organs import OrganTable
from unetlib.nn.model import model_classes, model_input_channels
from unetlib.runs.run import LoadedRun, load_run

__all__ = ["StartingPoint", "set_encoder_trainable", "starting_point"]

logger = logging.getLogger(__name__)

ENCODER_PREFIX = "down"


@dataclasses.dataclass(frozen=True)
class StartingPoint:
    """A trained model to start from, with what the new run must keep of it."""

    model: keras.Model
    model_config: ModelConfig
    normalize: NormalizeConfig
    source: Path
    sha256: str


def starting_point(init_from: str | os.PathLike[str], *, channels: int,
                   organs: OrganTable | None, data_dir: Path,
                   requested: ModelConfig) -> StartingPoint:
    """Load the model to fine-tune and check it fits the data of ``data_dir``.

    Parameters
    ----------
    init_from : path-like
        A run folder (or its ``model.keras``) written by training.
    channels : int
        Channels of the new data's frames.
    organs : OrganTable or None
        The new data's organs (None: binary masks).
    data_dir : Path
        The new data folder (named in errors).
    requested : ModelConfig
        The preset asked for; used only when the start is a bare ``.keras`` file whose
        architecture no ``config.json`` records.

    Raises
    ------
    InputError
        The model is missing or unreadable, takes another channel count, or segments
        other organs (or binary where the data has organs, or the reverse).
    """
    run = load_run(init_from)
    where = run.model_path.parent if run.config else run.model_path
    found = model_input_channels(run.model)
    if found != channels:
        raise InputError(describe(where, f"takes {found}-channel frames but {data_dir} holds "
                                  f"{channels}-channel frames", "Start from a model trained on "
                                  "frames like these (data1d: 1 channel, data3d: 3)."))
    if _check_organs(run, where, organs, data_dir):
        _reorder_organs(run.model, run.organs.names, organs.names)
    stored = run.config.get("model")
    model_config = (ModelConfig(**{"classes": 1, **stored}) if stored else
                    dataclasses.replace(requested, input_channels=channels,
                                        classes=model_classes(run.model)))
    return StartingPoint(model=run.model, model_config=model_config, normalize=run.normalize,
                         source=run.model_path, sha256=file_sha256(run.model_path))


def _check_organs(run: LoadedRun, where: Path, organs: OrganTable | None,
                  data_dir: Path) -> bool:
    """Refuse organs that differ; True when they are the same names in another order."""
    theirs = None if run.organs is None else run.organs.names
    ours = None if organs is None else organs.names
    if model_classes(run.model) > 1 and theirs is None:
        raise InputError(describe(where, "segments organs but records no organ table",
                                  "Start from the run folder it was trained in."))
    if theirs == ours:
        return False
    if theirs is not None and ours is not None and sorted(theirs) == sorted(ours):
        return True
    def describe_side(names: list[str] | None) -> str:
        return "one foreground (binary masks)" if names is None else "organs " + ", ".join(names)

    raise InputError(describe(where, f"segments {describe_side(theirs)}, but {data_dir} has "
                              f"{describe_side(ours)}", "Fine-tune on data with the same "
                              "organs (organs are matched by name: rename the rows of its "
                              "organs.csv to the model's names), or train from scratch."))


def _reorder_organs(model: keras.Model, theirs: list[str], ours: list[str]) -> None:
    """Permute the output layer's classes from the model's organ order to the data's.

    Organs are matched by name: the new data's ``organs.csv`` may list them in another
    order (or with other pixel values); class ``k`` of the new run is then the organ the
    data lists ``k``-th, starting from what the model learnt for that organ.
    """
    layer = model.get_layer("class_probabilities")
    order = [0] + [theirs.index(name) + 1 for name in ours]
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel[..., order], bias[order]])
    logger.info("organs mapped by name from the model's order %s to the data's %s", theirs, ours)


def encoder_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers of the contracting path (``down0`` ... ``down<depth-1>``)."""
    return [layer for layer in model.layers if layer.name.startswith(ENCODER_PREFIX)]


def set_encoder_trainable(model: keras.Model, trainable: bool) -> int:
    """Freeze or unfreeze the encoder; returns how many layers changed.

    Frozen batch-normalisation layers also stop updating their statistics (Keras runs
    them in inference mode). The model must be compiled again for fitting to see it.
    """
    layers = encoder_layers(model)
    for layer in layers:
        layer.trainable = trainable
    return len(layers)
