"""Scores of predicted masks against truth masks, in numpy: what evaluation reports.

Pixel accuracy reads 0.99 for a model that predicts nothing when the organ covers 1% of
the frame, so evaluation reports Dice, IoU, precision and recall per frame beside it.
Without TensorFlow: ``evaluate`` scores folders of masks without loading it. The Keras
metrics and losses of training are :mod:`unetlib.nn.metrics`.

Conventions
-----------
Masks are binary (anything > 0 is foreground). When a ratio's denominator is zero -- the
prediction and the truth are both empty, or (for precision/recall) there is nothing to
count -- the value is **1.0 when both masks are empty** (a perfect "nothing here") and
**0.0 otherwise** (for example precision when nothing is predicted but the truth has
foreground).
"""

from __future__ import annotations

import numpy as np

__all__ = ["METRIC_NAMES", "confusion_counts", "confusion_matrix", "dice", "frame_metrics",
           "iou", "organ_frame_metrics", "pixel_accuracy", "precision", "recall"]

METRIC_NAMES = ("dice", "iou", "precision", "recall", "pixel_accuracy")


def confusion_counts(prediction: np.ndarray, truth: np.ndarray) -> tuple[int, int, int, int]:
    """Return ``(tp, fp, fn, tn)`` pixel counts of two masks of the same shape (> 0 = fg)."""
    prediction = np.asarray(prediction)
    truth = np.asarray(truth)
    if prediction.shape != truth.shape:
        # A trailing channel axis of size 1 is harmless; anything else is a real mismatch.
        prediction, truth = np.squeeze(prediction), np.squeeze(truth)
        if prediction.shape != truth.shape:
            raise ValueError(f"prediction shape {prediction.shape} differs from truth shape "
                             f"{truth.shape}")
    predicted = prediction > 0
    actual = truth > 0
    tp = int(np.count_nonzero(predicted & actual))
    fp = int(np.count_nonzero(predicted & ~actual))
    fn = int(np.count_nonzero(~predicted & actual))
    tn = int(predicted.size - tp - fp - fn)
    return tp, fp, fn, tn


def _ratio(numerator: int, denominator: int, both_empty: bool) -> float:
    if denominator == 0:
        return 1.0 if both_empty else 0.0
    return numerator / denominator


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient ``2|P∩T| / (|P|+|T|)``; 1.0 when both masks are empty.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[1, 1, 0, 0]])
    >>> round(dice(np.array([[1, 0, 0, 0]]), truth), 3), dice(truth * 0, truth * 0)
    (0.667, 1.0)
    """
    tp, fp, fn, _ = confusion_counts(prediction, truth)
    return _ratio(2 * tp, 2 * tp + fp + fn, tp + fp + fn == 0)


def iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union (Jaccard) ``|P∩T| / |P∪T|``; 1.0 when both are empty."""
    tp, fp, fn, _ = confusion_counts(prediction, truth)
    return _ratio(tp, tp + fp + fn, tp + fp + fn == 0)


def precision(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of predicted foreground that is true; 1.0 when both masks are empty."""
    tp, fp, fn, _ = confusion_counts(prediction, truth)
    return _ratio(tp, tp + fp, tp + fp + fn == 0)


def recall(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of true foreground that is predicted; 1.0 when both masks are empty."""
    tp, fp, fn, _ = confusion_counts(prediction, truth)
    return _ratio(tp, tp + fn, tp + fp + fn == 0)


def pixel_accuracy(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of pixels classified correctly (misleading for small organs)."""
    tp, fp, fn, tn = confusion_counts(prediction, truth)
    total = tp + fp + fn + tn
    return (tp + tn) / total if total else 1.0


def frame_metrics(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """All of :data:`METRIC_NAMES` for one frame, from a single pass over the pixels.

    Examples
    --------
    >>> import numpy as np
    >>> scores = frame_metrics(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 0, 0]]))
    >>> scores["precision"], scores["recall"]
    (0.5, 1.0)
    """
    tp, fp, fn, tn = confusion_counts(prediction, truth)
    both_empty = tp + fp + fn == 0
    total = tp + fp + fn + tn
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, both_empty),
        "iou": _ratio(tp, tp + fp + fn, both_empty),
        "precision": _ratio(tp, tp + fp, both_empty),
        "recall": _ratio(tp, tp + fn, both_empty),
        "pixel_accuracy": (tp + tn) / total if total else 1.0,
    }


def organ_frame_metrics(prediction: np.ndarray, truth: np.ndarray,
                        classes: int) -> list[dict[str, float]]:
    """:data:`METRIC_NAMES` of every organ class (1 .. classes-1) of two class maps.

    Each organ is scored as its own binary mask (this organ vs everything else), with the
    conventions above: an organ absent from both scores 1.0.
    """
    prediction, truth = np.asarray(prediction), np.asarray(truth)
    return [frame_metrics(prediction == klass, truth == klass) for klass in range(1, classes)]


def confusion_matrix(prediction: np.ndarray, truth: np.ndarray, classes: int) -> np.ndarray:
    """Pixel counts ``[truth class, predicted class]`` of two class maps."""
    index = np.asarray(truth).astype(np.int64).ravel() * classes + np.asarray(
        prediction).astype(np.int64).ravel()
    return np.bincount(index, minlength=classes * classes).reshape(classes, classes)
