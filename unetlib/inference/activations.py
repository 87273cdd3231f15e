"""Feature maps: what each level of a U-Net computes for one frame.

A U-Net built by :func:`unetlib.nn.model.build_unet` names its layers by level: ``down{i}_...``
(the encoder, ``i = 0`` at full resolution), ``bottleneck_...`` and ``up{i}_...`` (the
decoder). Each level ends with a conv block whose last ReLU is the level's output: the
features the encoder passes down (and across, as a skip) or the decoder passes up.
Looking at them shows what the network responds to (edges, organs, background) and
whether channels died during training. :func:`unetlib.viz.plots.plot_feature_maps` draws them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from unetlib.core._tensorflow import keras
from unetlib.core.errors import InputError, ParameterError, describe
from unetlib.nn.sliding_window import check_input_channels, pad_to, padded_size, size_multiple

__all__ = ["default_levels", "feature_levels", "feature_maps", "level_layer"]

# The last layer of a level's conv block: its second ReLU (batch norm), or its second
# convolution, which carries the ReLU itself when the model has no batch norm.
_BLOCK_END = re.compile(r"^(down\d+|bottleneck|up\d+)_(relu|conv)2$")


def _level_layers(model: keras.Model) -> dict[str, str]:
    """Level name -> name of the layer whose output is that level's block output."""
    found: dict[str, str] = {}
    for layer in model.layers:
        match = _BLOCK_END.match(layer.name)
        if match is None:
            continue
        level, kind = match.groups()
        if kind == "relu" or level not in found:
            found[level] = layer.name
    return found


def _order(level: str) -> tuple[int, int]:
    """Sort key of a level in data-flow order: encoder going down, bottleneck, decoder up."""
    if level == "bottleneck":
        return (1, 0)
    index = int(level[len("down"):] if level.startswith("down") else level[len("up"):])
    return (0, index) if level.startswith("down") else (2, -index)


def feature_levels(model: keras.Model) -> list[str]:
    """The levels of a U-Net in data-flow order: ``down0 ... bottleneck ... up0``.

    Parameters
    ----------
    model : keras.Model
        A U-Net built by :func:`unetlib.nn.model.build_unet` (as trained and saved by unetlib).

    Returns
    -------
    list of str
        ``["down0", ..., f"down{depth-1}", "bottleneck", f"up{depth-1}", ..., "up0"]``.
        Each names the output of that level's conv block (:func:`level_layer`).

    Raises
    ------
    InputError
        When the model has no layers named like build_unet's.
    """
    levels = sorted(_level_layers(model), key=_order)
    if not levels:
        raise InputError(describe(f"model {model.name!r}", "has no U-Net levels (layers named "
                                  "down0_relu2, bottleneck_relu2 ...)",
                                  "Give a model built by unetlib.nn.model.build_unet, or a run "
                                  "trained by unetlib."))
    return levels


def level_layer(model: keras.Model, level: str) -> str:
    """Name of the layer whose output is ``level``'s feature maps (``down1`` -> ``down1_relu2``).

    Raises
    ------
    ParameterError
        When ``level`` is not one of :func:`feature_levels`.
    """
    return _checked_levels(model, [level])[0][1]


def default_levels(model: keras.Model) -> list[str]:
    """Every encoder level, the bottleneck and the last decoder level (the head's input)."""
    levels = feature_levels(model)
    return [level for level in levels if not level.startswith("up")] + \
        [level for level in levels if level.startswith("up")][-1:]


def _checked_levels(model: keras.Model, levels: Sequence[str]) -> list[tuple[str, str]]:
    """(level, layer name) pairs of ``levels``, without repeats, or ParameterError."""
    layers = _level_layers(model)
    valid = feature_levels(model)
    wanted = [levels] if isinstance(levels, str) else list(levels)
    unknown = [level for level in wanted if level not in layers]
    if not wanted or unknown:
        problem = f"unknown level(s) {', '.join(map(repr, unknown))}" if unknown else "no level"
        raise ParameterError(f"levels={levels!r} is invalid: {problem}; expected names among "
                             f"this model's levels: {', '.join(valid)}.")
    return [(level, layers[level]) for level in dict.fromkeys(wanted)]


def feature_maps(model: keras.Model, image: np.ndarray,
                 levels: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The activations of chosen levels of a U-Net for one frame, in one forward pass.

    The frame is reflect-padded to a multiple of ``2**depth`` exactly as prediction pads it
    (:func:`unetlib.nn.sliding_window.predict_probabilities` on a frame that fits in one tile), so the
    maps are the ones behind its predicted mask; the padding is cropped off again.

    Parameters
    ----------
    model : keras.Model
        A U-Net built by :func:`unetlib.nn.model.build_unet` (``load_run(...).model``).
    image : ndarray of shape (H, W) or (H, W, C)
        One frame, already normalised with the run's normalisation
        (``normalize_image(raw, run.normalize)``), with the model's channel count.
    levels : sequence of str, optional
        Level names from :func:`feature_levels`. Default: every encoder level, the
        bottleneck and the last decoder level (``up0``).

    Returns
    -------
    dict of str to ndarray of shape (h, w, channels), float32
        In the order of ``levels``. A level ``2**i`` times coarser than the frame (``down{i}``
        and ``up{i}``; the bottleneck is ``2**depth``) has ``h = ceil(H / 2**i)`` and
        ``w = ceil(W / 2**i)``: every position that sees part of the frame is kept.
        ``channels`` is the level's filter count (``base_filters * 2**i``).

    Raises
    ------
    ParameterError
        When a level is not one of the model's (the message lists the valid ones).
    InputError
        When the model is not a unetlib U-Net, or the frame's shape or channel count does
        not fit it.
    """
    chosen = _checked_levels(model, default_levels(model) if levels is None else levels)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., np.newaxis]
    if image.ndim != 3:
        raise InputError(f"image must have shape (H, W) or (H, W, C), got {image.shape}")
    check_input_channels(model, image.shape[-1])
    height, width = image.shape[:2]
    multiple = size_multiple(model)
    padded_h, padded_w = padded_size(height, multiple), padded_size(width, multiple)
    batch = pad_to(image, padded_h, padded_w)[np.newaxis]
    probe = keras.Model(model.inputs[0], [model.get_layer(name).output for _, name in chosen])
    outputs = probe(batch, training=False)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    maps: dict[str, np.ndarray] = {}
    for (level, _), output in zip(chosen, outputs):
        values = np.asarray(keras.ops.convert_to_numpy(output), dtype=np.float32)[0]
        # ceil(H * h_padded / H_padded): the level's scale times the frame's extent.
        keep_h = -(-height * values.shape[0] // padded_h)
        keep_w = -(-width * values.shape[1] // padded_w)
        maps[level] = np.ascontiguousarray(values[:keep_h, :keep_w])
    return maps
