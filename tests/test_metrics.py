"""Tests of unetlib.nn.frame_scores (numpy), unetlib.nn.metrics (Keras) and
unetlib.inference.evaluate."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from unetlib.core.errors import InputError
from unetlib.core.io import write_image
from unetlib.inference.evaluate import evaluate_folders
from unetlib.nn.frame_scores import (
    confusion_counts,
    dice,
    frame_metrics,
    iou,
    pixel_accuracy,
    precision,
    recall,
)
from unetlib.nn.losses import (
    bce_dice_loss,
    ce_dice_loss,
    edge_ce_dice_loss,
    get_loss,
    outline_band,
    soft_dice_loss,
)
from unetlib.nn.metrics import DiceMetric, IoUMetric, training_metrics

# 4x4 example: truth has 4 foreground pixels, prediction 3, overlapping in 2.
TRUTH = np.array([[1, 1, 0, 0],
                  [1, 1, 0, 0],
                  [0, 0, 0, 0],
                  [0, 0, 0, 0]], np.uint8)
PRED = np.array([[1, 1, 1, 0],
                 [0, 0, 0, 0],
                 [0, 0, 0, 0],
                 [0, 0, 0, 0]], np.uint8)
# tp = 2, fp = 1, fn = 2, tn = 11.


def test_hand_computed_values():
    assert confusion_counts(PRED, TRUTH) == (2, 1, 2, 11)
    assert dice(PRED, TRUTH) == pytest.approx(4 / 7)
    assert iou(PRED, TRUTH) == pytest.approx(2 / 5)
    assert precision(PRED, TRUTH) == pytest.approx(2 / 3)
    assert recall(PRED, TRUTH) == pytest.approx(2 / 4)
    assert pixel_accuracy(PRED, TRUTH) == pytest.approx(13 / 16)
    assert frame_metrics(PRED * 255, TRUTH[..., np.newaxis]) == pytest.approx(
        {"dice": 4 / 7, "iou": 2 / 5, "precision": 2 / 3, "recall": 1 / 2,
         "pixel_accuracy": 13 / 16})


def test_empty_conventions():
    empty = np.zeros((4, 4), np.uint8)
    assert frame_metrics(empty, empty) == {"dice": 1.0, "iou": 1.0, "precision": 1.0,
                                           "recall": 1.0, "pixel_accuracy": 1.0}
    # Predicting nothing where there is an organ: everything but accuracy is 0.
    nothing = frame_metrics(empty, TRUTH)
    assert (nothing["dice"], nothing["iou"], nothing["precision"], nothing["recall"]) == (0, 0, 0, 0)
    assert nothing["pixel_accuracy"] == pytest.approx(12 / 16)
    # False alarms on an empty truth.
    alarms = frame_metrics(PRED, empty)
    assert (alarms["dice"], alarms["precision"], alarms["recall"]) == (0, 0, 0)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        dice(np.zeros((4, 4)), np.zeros((4, 5)))


def test_keras_metrics_match_numpy_over_batches():
    rng = np.random.default_rng(1)
    truths = (rng.random((3, 2, 8, 8, 1)) > 0.6).astype(np.float32)
    probabilities = rng.random((3, 2, 8, 8, 1)).astype(np.float32)
    dice_metric, iou_metric = DiceMetric(), IoUMetric()
    for truth, probability in zip(truths, probabilities):
        dice_metric.update_state(truth, probability)
        iou_metric.update_state(truth, probability)
    # The Keras metrics accumulate over all batches, like numpy over all pixels at once.
    assert float(dice_metric.result()) == pytest.approx(dice(probabilities >= 0.5, truths),
                                                        rel=1e-6)
    assert float(iou_metric.result()) == pytest.approx(iou(probabilities >= 0.5, truths),
                                                       rel=1e-6)
    dice_metric.reset_state()
    assert float(dice_metric.result()) == 1.0  # nothing seen: empty vs empty
    assert [metric.name for metric in training_metrics()] == ["dice", "iou", "pixel_accuracy"]


def test_losses():
    truth = np.zeros((2, 8, 8, 1), np.float32)
    truth[:, 2:6, 2:6] = 1
    perfect = np.clip(truth, 1e-4, 1 - 1e-4)
    # Per sample: 16 foreground and 48 background pixels; soft Dice with smooth = 1.
    # Near-perfect: intersection 16 (1 - e), sum of probabilities 16 (1 - e) + 48 e.
    e = 1e-4
    dice_loss = 1 - (2 * 16 * (1 - e) + 1) / (16 + 16 * (1 - e) + 48 * e + 1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(soft_dice_loss(truth, perfect)),
                               [dice_loss] * 2, rtol=1e-3)
    # Everything wrong: every pixel's cross-entropy is -ln(1e-4); intersection 16 e.
    wrong = 1.0 - perfect
    combined = keras.ops.convert_to_numpy(bce_dice_loss(truth, wrong))
    expected = -np.log(e) + 1 - (2 * 16 * e + 1) / (16 + 16 * e + 48 * (1 - e) + 1)
    assert combined.shape == (2,)
    np.testing.assert_allclose(combined, [expected] * 2, rtol=1e-4)
    assert get_loss("bce+dice") is bce_dice_loss
    assert isinstance(get_loss("bce"), keras.losses.BinaryCrossentropy)
    with pytest.raises(ValueError, match="loss"):
        get_loss("focal")


def test_outline_band_marks_both_sides_of_every_outline_and_not_the_patch_border():
    labels = np.zeros((2, 7, 7, 1), np.float32)
    labels[0, 2:5, 2:4] = 1  # a 3 x 2 organ
    labels[0, 2:5, 4:5] = 2  # touching a 3 x 1 one
    band = keras.ops.convert_to_numpy(outline_band(labels, classes=3))
    expected = np.zeros((7, 7))
    expected[1:6, 1:6] = 1  # the organs and the background ring around them; the organs'
    assert band.shape == (2, 7, 7)  # shared outline lies inside that block
    np.testing.assert_array_equal(band[0], expected)
    np.testing.assert_array_equal(band[1], 0)  # all background: no outline, border or not


def test_edge_loss_weighs_errors_on_an_outline_more_than_errors_away_from_it():
    truth = np.zeros((1, 12, 12, 1), np.float32)
    truth[0, 3:9, 3:9] = 1
    right = np.full((1, 12, 12, 2), 0.02, np.float32)
    right[..., 0] = np.where(truth[..., 0] == 0, 0.98, 0.02)
    right[..., 1] = 1.0 - right[..., 0]
    on_outline, far = right.copy(), right.copy()
    on_outline[0, 2, 3:9] = [0.4, 0.6]  # the background row along the organ's top: 6 pixels
    far[0, 11, 3:9] = [0.4, 0.6]  # 6 background pixels at the patch's bottom
    loss = {name: {case: float(keras.ops.convert_to_numpy(function(truth, prediction))[0])
                   for case, prediction in (("outline", on_outline), ("far", far))}
            for name, function in (("plain", ce_dice_loss), ("edge", edge_ce_dice_loss))}
    # The same errors cost the same in plain cross-entropy; weighted, the outline's cost more.
    assert loss["plain"]["outline"] == pytest.approx(loss["plain"]["far"], rel=1e-5)
    assert loss["edge"]["outline"] > loss["edge"]["far"] * 1.5
    # With weight 1 it is ce+dice.
    assert float(keras.ops.convert_to_numpy(edge_ce_dice_loss(truth, far, edge_weight=1.0))[0]) \
        == pytest.approx(loss["plain"]["far"], rel=1e-5)
    assert get_loss("edge-ce+dice") is edge_ce_dice_loss


def test_evaluate_folders(tmp_path):
    pred_dir, truth_dir = tmp_path / "results", tmp_path / "truth"
    write_image(pred_dir / "0_predict.png", PRED * 255)
    write_image(pred_dir / "1_predict.png", TRUTH * 255)
    write_image(pred_dir / "2_predict.png", TRUTH * 255)      # no truth
    write_image(truth_dir / "0.png", TRUTH)                    # GIMP value-1 mask
    write_image(truth_dir / "1.tif", TRUTH.astype(np.uint16) * 65535)
    write_image(truth_dir / "3.png", TRUTH * 255)              # no prediction
    report = evaluate_folders(pred_dir, truth_dir)
    assert [row["stem"] for row in report.frames] == ["0", "1"]
    assert report.frames[0]["dice"] == pytest.approx(4 / 7)
    assert report.frames[1]["dice"] == 1.0
    assert report.mean["dice"] == pytest.approx((4 / 7 + 1) / 2)
    assert [path.name for path in report.unpaired_predictions] == ["2_predict.png"]
    assert [path.name for path in report.unpaired_truths] == ["3.png"]
    text = report.to_text()
    assert "mean (2)" in text and "2_predict.png" in text and "3.png" in text
    data = json.loads(json.dumps(report.to_dict()))  # JSON-ready, and holds the scores
    assert [row["stem"] for row in data["frames"]] == ["0", "1"]
    assert data["mean"]["dice"] == pytest.approx((4 / 7 + 1) / 2)


def test_evaluate_folders_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    write_image(tmp_path / "truth" / "0.png", TRUTH * 255)
    with pytest.raises(InputError, match="no <stem>_predict"):
        evaluate_folders(tmp_path / "empty", tmp_path / "truth")
    write_image(tmp_path / "pred" / "5_predict.png", TRUTH * 255)
    with pytest.raises(InputError, match="none of its 1 predictions"):
        evaluate_folders(tmp_path / "pred", tmp_path / "truth")
    write_image(tmp_path / "pred" / "0_predict.png", np.zeros((5, 4), np.uint8))
    with pytest.raises(InputError, match=r"is 5x4 \(height x width\)"):
        evaluate_folders(tmp_path / "pred", tmp_path / "truth")
