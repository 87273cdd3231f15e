"""The U-Net: a fully convolutional Keras functional model, with presets.

``build_unet(model_preset("classic"))`` is the network of the recipe this project replaces
(zhixuhao/unet); ``build_unet(ModelConfig())`` is the faster default. Every model takes
inputs of shape ``(None, None, C)``: it trains on patches and predicts whole frames whose
sides are multiples of ``2**depth`` (:mod:`unetlib.nn.sliding_window` pads them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np

from unetlib.core._tensorflow import keras
from unetlib.core.config import MODEL_PRESETS, ModelConfig, model_preset

# Keras through unetlib's loader only: it sets TensorFlow's environment before loading it.
layers = keras.layers

__all__ = ["MODEL_PRESETS", "ModelConfig", "build_unet", "make_optimizer",
           "model_classes", "model_depth", "model_input_channels", "model_preset"]


def _conv_block(x, filters: int, config: ModelConfig, name: str):
    """Two 3x3 convolutions, each followed by (batch norm and) ReLU."""
    for index in (1, 2):
        conv_name = f"{name}_conv{index}"
        if config.batch_norm:
            # The bias is redundant before batch normalisation's own shift.
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False,
                              kernel_initializer=config.kernel_initializer, name=conv_name)(x)
            x = layers.BatchNormalization(momentum=config.batch_norm_momentum,
                                          name=f"{name}_bn{index}")(x)
            x = layers.Activation("relu", name=f"{name}_relu{index}")(x)
        else:
            x = layers.Conv2D(filters, 3, padding="same", activation="relu",
                              kernel_initializer=config.kernel_initializer, name=conv_name)(x)
    return x


def _upsample(x, filters: int, config: ModelConfig, name: str):
    if config.upsampling == "transpose":
        return layers.Conv2DTranspose(filters, 2, strides=2, padding="same",
                                      kernel_initializer=config.kernel_initializer,
                                      name=f"{name}_upconv")(x)
    x = layers.UpSampling2D(size=2, name=f"{name}_upsample")(x)
    return layers.Conv2D(filters, 2, padding="same", activation="relu",
                         kernel_initializer=config.kernel_initializer, name=f"{name}_upconv")(x)


def build_unet(config: ModelConfig = ModelConfig()) -> keras.Model:
    """Build an (uncompiled) U-Net from ``config``.

    Parameters
    ----------
    config : ModelConfig
        Architecture; ``model_preset(name)`` gives the presets.

    Returns
    -------
    keras.Model
        Input ``(None, None, None, input_channels)`` float32, output
        ``(None, None, None, 1)`` sigmoid probabilities of the foreground, or for
        ``classes >= 2`` ``(None, None, None, classes)`` softmax probabilities of the
        background and each organ. Input sides must be multiples of ``2**depth``.

    Notes
    -----
    Level ``i`` (0 = full resolution) has ``base_filters * 2**i`` filters; the bottleneck
    is level ``depth``. Dropout (when ``dropout > 0``) follows the conv block of the
    ``dropout_levels`` deepest levels, as in the original recipe (levels 3 and 4).

    Examples
    --------
    >>> from unetlib.core.config import ModelConfig
    >>> model = build_unet(ModelConfig(depth=2, base_filters=4))
    >>> model.input_shape, model.output_shape  # any size that is a multiple of 2**depth
    ((None, None, None, 1), (None, None, None, 1))
    """
    config.validate()
    inputs = keras.Input(shape=(None, None, config.input_channels), name="image")
    x = inputs
    skips = []
    first_dropout_level = config.depth + 1 - config.dropout_levels
    for level in range(config.depth):
        x = _conv_block(x, config.base_filters * 2 ** level, config, name=f"down{level}")
        if config.dropout > 0 and level >= first_dropout_level:
            x = layers.Dropout(config.dropout, name=f"down{level}_dropout")(x)
        skips.append(x)
        x = layers.MaxPooling2D(pool_size=2, name=f"down{level}_pool")(x)
    x = _conv_block(x, config.base_filters * 2 ** config.depth, config, name="bottleneck")
    if config.dropout > 0 and config.depth >= first_dropout_level:
        x = layers.Dropout(config.dropout, name="bottleneck_dropout")(x)
    for level in reversed(range(config.depth)):
        filters = config.base_filters * 2 ** level
        x = _upsample(x, filters, config, name=f"up{level}")
        x = layers.Concatenate(axis=-1, name=f"up{level}_concat")([skips[level], x])
        x = _conv_block(x, filters, config, name=f"up{level}")
    if config.head_filters:
        x = layers.Conv2D(config.head_filters, 3, padding="same", activation="relu",
                          kernel_initializer=config.kernel_initializer, name="head")(x)
    # The output layer stays float32 even under a mixed-precision policy, so probabilities
    # and the loss are computed at full precision.
    if config.classes == 1:
        outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32",
                                name="probability")(x)
    else:
        outputs = layers.Conv2D(config.classes, 1, activation="softmax", dtype="float32",
                                name="class_probabilities")(x)
    return keras.Model(inputs, outputs, name=f"unet_d{config.depth}_f{config.base_filters}")


COSINE_FINAL_FRACTION = 0.05  # a cosine schedule ends at this share of the peak rate


def make_optimizer(config: ModelConfig, *, total_steps: int = 1) -> keras.optimizers.Optimizer:
    """Return a fresh optimiser of the kind and learning rate (schedule) in ``config``.

    Parameters
    ----------
    config : ModelConfig
    total_steps : int
        Steps of the whole run: the length of a ``cosine`` schedule.
    """
    config.validate()
    kinds = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
             "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
    rate = config.learning_rate
    if config.learning_rate_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate, decay_steps=max(1, int(total_steps)),
            alpha=COSINE_FINAL_FRACTION)
    return kinds[config.optimizer](learning_rate=rate)


def model_depth(model: keras.Model) -> int:
    """Number of 2x2 poolings of ``model`` (its inputs must be multiples of ``2**depth``)."""
    return sum(isinstance(layer, layers.MaxPooling2D) for layer in _all_layers(model))


def model_classes(model: keras.Model) -> int:
    """Outputs of the model's head: 1 (binary, sigmoid) or background + organs (softmax)."""
    return int(model.output_shape[-1])


def model_input_channels(model: keras.Model) -> int:
    """Channel count the model expects (last axis of its input)."""
    return int(model.input_shape[-1])


def _all_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


@contextlib.contextmanager
def class_prior_shifted(model: keras.Model, log_shift: Sequence[float] | None
                        ) -> Iterator[keras.Model]:
    """The organ model with ``log_shift`` subtracted from its class scores while the block
    runs (exactly restored after): what it would answer for frames whose classes are
    ``exp(log_shift)`` times rarer than in the patches it learnt from.

    Organ-centred training patches show every organ several times more often than whole
    frames do, and a network learns those frequencies: where an outline is uncertain it
    answers "organ", so on whole frames each organ comes out about a pixel too wide all
    round. Subtracting log(patch share / frame share) from the scores before the softmax
    is Bayes' rule for the frames' frequencies (logit adjustment, Menon et al., ICLR 2021).
    Training saves the kept checkpoint so (:class:`unetlib.runs.callbacks.RunRecorder`),
    so every later stage predicts with it and needs nothing more. None: the model as it is.

    Examples
    --------
    >>> from unetlib.core.config import model_preset
    >>> model = build_unet(model_preset("small", classes=2, input_channels=1))
    >>> frame = np.ones((1, 16, 16, 1), np.float32)
    >>> before = model.predict_on_batch(frame)[0, 0, 0]
    >>> with class_prior_shifted(model, [0.0, np.log(4.0)]):
    ...     after = model.predict_on_batch(frame)[0, 0, 0]
    >>> ratio = (after[1] / after[0]) / (before[1] / before[0])  # the organ's odds, / 4
    >>> print(round(float(ratio), 3), np.allclose(model.predict_on_batch(frame)[0, 0, 0], before))
    0.25 True
    """
    if log_shift is None:
        yield model
        return
    bias = model.get_layer("class_probabilities").bias
    original = keras.ops.convert_to_numpy(bias)
    bias.assign(original - np.asarray(log_shift, dtype=original.dtype))
    try:
        yield model
    finally:
        bias.assign(original)
