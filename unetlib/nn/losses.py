"""The losses training minimises, in Keras: one foreground (sigmoid) and several organs
(softmax).

Every loss here is registered with Keras (package ``unetlib``), so a checkpoint saved with
its compiled loss loads and resumes.
"""

from __future__ import annotations

from unetlib.core._tensorflow import keras
from unetlib.core.errors import ParameterError

# Keras through unetlib's loader only: it sets TensorFlow's environment before loading it.
ops = keras.ops

__all__ = ["bce_dice_loss", "ce_dice_loss", "edge_ce_dice_loss", "get_loss",
           "organ_dice_loss", "outline_band", "soft_dice_loss"]

# --- one foreground: sigmoid outputs ------------------------------------------------------

@keras.saving.register_keras_serializable(package="unetlib")
def soft_dice_loss(y_true, y_pred, smooth: float = 1.0):
    """``1 - soft Dice`` per sample, from probabilities (differentiable)."""
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    axes = tuple(range(1, len(y_pred.shape)))
    intersection = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    return 1.0 - (2.0 * intersection + smooth) / (total + smooth)


@keras.saving.register_keras_serializable(package="unetlib")
def bce_dice_loss(y_true, y_pred):
    """Binary cross-entropy (mean over pixels) plus the soft Dice loss, per sample."""
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred),
                   axis=tuple(range(1, len(y_pred.shape) - 1)))
    return bce + soft_dice_loss(y_true, y_pred)


# --- several organs: class maps, softmax outputs -----------------------------------------

@keras.saving.register_keras_serializable(package="unetlib")
def organ_dice_loss(y_true, y_pred, smooth: float = 1.0):
    """``1 - soft Dice`` averaged over the organ classes (not the background), per batch.

    Summed over the whole batch before the ratio, so an organ missing from one patch does
    not count as a perfect (or a failed) score there; averaged over organs, so the spleen
    weighs as much as the liver.
    """
    y_pred = ops.cast(y_pred, "float32")
    classes = y_pred.shape[-1]
    truth = ops.one_hot(ops.cast(ops.squeeze(y_true, axis=-1), "int32"), classes)
    axes = tuple(range(len(y_pred.shape) - 1))
    intersection = ops.sum(truth * y_pred, axis=axes)
    total = ops.sum(truth, axis=axes) + ops.sum(y_pred, axis=axes)
    dice_per_class = (2.0 * intersection + smooth) / (total + smooth)
    return 1.0 - ops.mean(dice_per_class[1:])


@keras.saving.register_keras_serializable(package="unetlib")
def ce_dice_loss(y_true, y_pred):
    """Categorical cross-entropy (mean over pixels) plus :func:`organ_dice_loss`, per sample."""
    cross_entropy = ops.mean(keras.losses.sparse_categorical_crossentropy(y_true, y_pred),
                             axis=tuple(range(1, len(y_pred.shape) - 1)))
    return cross_entropy + organ_dice_loss(y_true, y_pred)


def outline_band(y_true, classes: int, radius: int = 1):
    """1 on the pixels within ``radius`` of a change of class (both sides of every outline,
    between organs too), 0 elsewhere: shape ``(batch, height, width)``.

    A patch's border is no outline: the pooling ignores what lies beyond it.
    """
    truth = ops.one_hot(ops.cast(ops.squeeze(y_true, axis=-1), "int32"), classes)
    size = 2 * radius + 1
    grown = ops.max_pool(truth, size, strides=1, padding="same")
    shrunk = -ops.max_pool(-truth, size, strides=1, padding="same")
    return ops.max(grown - shrunk, axis=-1)


@keras.saving.register_keras_serializable(package="unetlib")
def edge_ce_dice_loss(y_true, y_pred, edge_weight: float = 5.0):
    """Cross-entropy with the pixels along every organ outline weighted ``edge_weight``
    times (a weighted mean over pixels), plus :func:`organ_dice_loss`, per sample.

    Where an outline runs is what an organ's mean intensity depends on, and what plain
    cross-entropy learns last: on the hard benchmark the thin spleen (12 px wide) came out
    about half a pixel too wide on each side, 5-13 % too large, with ``ce+dice``. The
    weights are those of the U-Net paper's border term, on the one-pixel band each side of
    an outline (:func:`outline_band`).
    """
    y_pred = ops.cast(y_pred, "float32")
    weights = 1.0 + (edge_weight - 1.0) * outline_band(y_true, y_pred.shape[-1])
    cross_entropy = keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
    axes = tuple(range(1, len(y_pred.shape) - 1))
    weighted = ops.sum(cross_entropy * weights, axis=axes) / ops.sum(weights, axis=axes)
    return weighted + organ_dice_loss(y_true, y_pred)


def get_loss(name: str):
    """Return the Keras loss called ``name``: ``bce``, ``bce+dice`` (binary), ``ce``,
    ``ce+dice``, ``edge-ce+dice`` (several organs)."""
    if name == "bce":
        return keras.losses.BinaryCrossentropy(name="bce")
    if name == "bce+dice":
        return bce_dice_loss
    if name == "ce":
        return keras.losses.SparseCategoricalCrossentropy(name="ce")
    if name == "ce+dice":
        return ce_dice_loss
    if name == "edge-ce+dice":
        return edge_ce_dice_loss

    raise ParameterError(f"loss={name!r} is invalid: expected 'bce' or 'bce+dice' (binary), "
                         "'ce', 'ce+dice' or 'edge-ce+dice' (organs).")
