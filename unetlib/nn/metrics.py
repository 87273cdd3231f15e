"""Segmentation metrics of training, in Keras (the losses: :mod:`unetlib.nn.losses`).

Pixel accuracy reads 0.99 for a model that predicts nothing when the organ covers 1% of
the frame, so training logs Dice and IoU of the foreground beside the loss. Probabilities
are thresholded at 0.5; the conventions for empty masks are those of the numpy scores of
evaluation, :mod:`unetlib.nn.frame_scores`, re-exported here for older imports.
"""

from __future__ import annotations

from unetlib.core._tensorflow import keras
from unetlib.data.organs import column_key
from unetlib.nn.frame_scores import (  # noqa: F401  (re-exported for older imports)
    METRIC_NAMES,
    confusion_counts,
    confusion_matrix,
    dice,
    frame_metrics,
    iou,
    organ_frame_metrics,
    pixel_accuracy,
    precision,
    recall,
)
from unetlib.nn.losses import (  # noqa: F401  (re-exported for older imports)
    bce_dice_loss,
    ce_dice_loss,
    edge_ce_dice_loss,
    get_loss,
    organ_dice_loss,
    outline_band,
    soft_dice_loss,
)

# Keras through unetlib's loader only: it sets TensorFlow's environment before loading it.
ops = keras.ops

__all__ = ["DiceMetric", "IoUMetric", "METRIC_NAMES", "OrganDiceMetric", "OrganOverlapMetric",
           "confusion_counts", "confusion_matrix", "dice", "frame_metrics", "iou", "metric_name",
           "organ_frame_metrics", "organ_training_metrics", "pixel_accuracy", "precision",
           "recall", "training_metrics"]

# --- Keras metrics for training ---------------------------------------------------------

class _ConfusionMetric(keras.metrics.Metric):
    """Accumulates thresholded true/false positive and false negative counts over an epoch.

    The score is computed from the totals (not averaged per batch), so small organs in
    some patches and none in others do not distort it; 1.0 when all counts are zero.
    """

    def __init__(self, name: str, *, threshold: float = 0.5, **kwargs):
        super().__init__(name=name, **kwargs)
        self.threshold = float(threshold)
        self.true_positives = self.add_variable(shape=(), initializer="zeros",
                                                name="true_positives")
        self.false_positives = self.add_variable(shape=(), initializer="zeros",
                                                 name="false_positives")
        self.false_negatives = self.add_variable(shape=(), initializer="zeros",
                                                 name="false_negatives")

    def update_state(self, y_true, y_pred, sample_weight=None):
        predicted = ops.cast(ops.greater_equal(ops.cast(y_pred, "float32"), self.threshold),
                             "float32")
        actual = ops.cast(ops.greater_equal(ops.cast(y_true, "float32"), 0.5), "float32")
        self.true_positives.assign_add(ops.sum(predicted * actual))
        self.false_positives.assign_add(ops.sum(predicted * (1.0 - actual)))
        self.false_negatives.assign_add(ops.sum((1.0 - predicted) * actual))

    def reset_state(self):
        for variable in (self.true_positives, self.false_positives, self.false_negatives):
            variable.assign(0.0)

    def _score(self, numerator, denominator):
        return ops.where(denominator > 0, numerator / ops.maximum(denominator, 1.0), 1.0)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@keras.saving.register_keras_serializable(package="unetlib")
class DiceMetric(_ConfusionMetric):
    """Dice of the foreground at ``threshold`` (default 0.5), over all pixels of an epoch."""

    def __init__(self, name: str = "dice", *, threshold: float = 0.5, **kwargs):
        super().__init__(name=name, threshold=threshold, **kwargs)

    def result(self):
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        return self._score(2.0 * tp, 2.0 * tp + fp + fn)


@keras.saving.register_keras_serializable(package="unetlib")
class IoUMetric(_ConfusionMetric):
    """Intersection over union of the foreground at ``threshold`` (default 0.5)."""

    def __init__(self, name: str = "iou", *, threshold: float = 0.5, **kwargs):
        super().__init__(name=name, threshold=threshold, **kwargs)

    def result(self):
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        return self._score(tp, tp + fp + fn)


def training_metrics() -> list[keras.metrics.Metric]:
    """Fresh metrics logged every epoch beside the loss: dice, iou, pixel_accuracy."""
    return [DiceMetric(), IoUMetric(),
            keras.metrics.BinaryAccuracy(name="pixel_accuracy", threshold=0.5)]


# --- several organs: class maps, softmax outputs -----------------------------------------

@keras.saving.register_keras_serializable(package="unetlib")
class OrganOverlapMetric(keras.metrics.Metric):
    """Dice (``kind="dice"``) or IoU (``kind="iou"``) of organ classes from a softmax
    output and a class map, over an epoch.

    Counts true/false positives and false negatives of every class after ``argmax``;
    ``result`` is the score of ``organ`` (1-based class) or, when ``organ`` is None, the
    mean over the organs (classes 1 ..), so a small organ weighs as much as a large
    one. An organ absent from both truth and prediction scores 1.0.
    """

    def __init__(self, classes: int, organ: int | None = None, name: str = "dice",
                 kind: str = "dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.classes = int(classes)
        self.organ = organ
        self.kind = kind
        self.counts = self.add_variable(shape=(3, self.classes), initializer="zeros",
                                        name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        predicted = ops.reshape(ops.argmax(y_pred, axis=-1), (-1,))
        truth_onehot = ops.one_hot(truth, self.classes)
        predicted_onehot = ops.one_hot(predicted, self.classes)
        tp = ops.sum(truth_onehot * predicted_onehot, axis=0)
        fp = ops.sum(predicted_onehot, axis=0) - tp
        fn = ops.sum(truth_onehot, axis=0) - tp
        self.counts.assign_add(ops.stack([tp, fp, fn]))

    def reset_state(self):
        self.counts.assign(ops.zeros((3, self.classes)))

    def result(self):
        tp, fp, fn = self.counts[0], self.counts[1], self.counts[2]
        if self.kind == "iou":
            numerator, denominator = tp, tp + fp + fn
        else:
            numerator, denominator = 2.0 * tp, 2.0 * tp + fp + fn
        scores = ops.where(denominator > 0, numerator / ops.maximum(denominator, 1.0), 1.0)
        if self.organ is not None:
            return scores[self.organ]
        return ops.mean(scores[1:])

    def get_config(self):
        return {**super().get_config(), "classes": self.classes, "organ": self.organ,
                "kind": self.kind}


@keras.saving.register_keras_serializable(package="unetlib")
class OrganDiceMetric(OrganOverlapMetric):
    """The name checkpoints saved by earlier versions give :class:`OrganOverlapMetric`
    (also for IoU); kept so that they load and resume."""


def metric_name(organ_name: str) -> str:
    """A Keras/CSV-safe column name for an organ (``"left kidney"`` -> ``"left_kidney"``)."""
    return column_key(organ_name)


def organ_training_metrics(organ_names: list[str]) -> list[keras.metrics.Metric]:
    """Mean organ Dice (``dice``) and IoU (``iou``), pixel accuracy, and ``dice_<organ>`` per organ."""
    classes = len(organ_names) + 1
    return [OrganOverlapMetric(classes, name="dice"), OrganOverlapMetric(classes, name="iou", kind="iou"),
            keras.metrics.SparseCategoricalAccuracy(name="pixel_accuracy"),
            *(OrganOverlapMetric(classes, organ=index, name=f"dice_{metric_name(name)}")
              for index, name in enumerate(organ_names, start=1))]
