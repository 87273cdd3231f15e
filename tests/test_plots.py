"""Figures: built without pyplot, small, and showing the data they are given."""

import numpy as np
import pytest
from matplotlib.colors import to_hex

from unetlib.data.stack import display_scale
from unetlib.viz.plots import DPI, plot_frame_scores, plot_history, plot_pairs, plot_predictions


def test_history_plot_uses_the_epoch_numbers_of_history_csv():
    rows = [{"epoch": "1", "loss": "0.5", "val_loss": "0.6", "dice": "0.7", "val_dice": "0.6"},
            {"epoch": "2", "loss": "0.3", "val_loss": "0.4", "dice": "0.8", "val_dice": "0.7"},
            {"epoch": "3", "loss": "0.2", "val_loss": "0.3", "dice": "0.9", "val_dice": "0.8"}]
    figure = plot_history(rows)
    loss_axes, dice_axes = figure.axes[:2]
    lines = {line.get_label(): line for line in loss_axes.lines + dice_axes.lines}
    assert list(lines["loss"].get_xdata()) == [1, 2, 3]
    assert list(lines["val dice (tiles)"].get_ydata()) == [0.6, 0.7, 0.8]
    assert dice_axes.get_ylim() == (0.0, 1.0)


def test_history_plot_places_the_rows_of_a_paused_epoch_by_their_steps():
    # A time-budgeted run validates part-way through an epoch: two rows of epoch 2 (20 and
    # 30 of its 50 steps) used to be drawn on top of each other at x = 2.
    rows = [{"epoch": "1", "steps": "50", "loss": "0.5", "val_frame_dice": "0.6"},
            {"epoch": "2", "steps": "20", "loss": "0.4", "val_frame_dice": "0.7"},
            {"epoch": "2", "steps": "30", "loss": "0.3"},
            {"epoch": "3", "steps": "50", "loss": "0.2", "val_frame_dice": "0.9"}]
    loss_axes, dice_axes = plot_history(rows).axes[:2]
    assert list(loss_axes.lines[0].get_xdata()) == [1.0, 1.4, 2.0, 3.0]
    # A curve missing a row keeps every other value at its own row's place.
    whole = next(line for line in dice_axes.lines if line.get_label() == "val dice (whole frames)")
    assert list(whole.get_xdata()) == [1.0, 1.4, 3.0]


def test_history_plot_shows_the_whole_frame_validation_that_chose_the_checkpoint():
    rows = [{"epoch": "1", "loss": "0.5", "val_dice": "0.6", "val_dice_liver": "0.5",
             "val_frame_dice": "0.8", "val_frame_dice_liver": "0.9"},
            {"epoch": "2", "loss": "0.3", "val_dice": "0.7", "val_dice_liver": "0.6",
             "val_frame_dice": "0.85", "val_frame_dice_liver": "0.95"}]
    dice_axes = plot_history(rows).axes[1]
    lines = {line.get_label(): line for line in dice_axes.lines}
    assert list(lines["val dice (whole frames)"].get_ydata()) == [0.8, 0.85]
    # Each organ's dotted curve is its whole-frame score, not the tiles'.
    assert list(lines["liver"].get_ydata()) == [0.9, 0.95]


def outline_extent(collection):
    """(x min, x max, y min, y max) of a contour's vertices, in pixel coordinates."""
    vertices = np.concatenate([path.vertices for path in collection.get_paths()])
    return (vertices[:, 0].min(), vertices[:, 0].max(), vertices[:, 1].min(),
            vertices[:, 1].max())


def test_pairs_and_predictions_outline_masks_at_modest_size():
    images = [np.random.default_rng(i).random((40, 50)) for i in range(3)]
    masks = [np.zeros((40, 50), np.uint8) for _ in range(3)]
    for mask in masks:
        mask[10:20, 10:30] = 1
    # The 0.5 contour of rows 10-19, columns 10-29 runs half a pixel outside them.
    box = (9.5, 29.5, 9.5, 19.5)
    figure = plot_pairs(images, masks, ["a", "b", "c"], columns=2)
    assert [ax.get_title() for ax in figure.axes[:3]] == ["a", "b", "c"]
    for ax, image in zip(figure.axes[:3], images):
        np.testing.assert_array_equal(ax.images[0].get_array(), display_scale(image))
        (outline,) = ax.collections
        assert to_hex(outline.get_edgecolor()[0]) == to_hex("yellow")
        assert outline_extent(outline) == pytest.approx(box, abs=0.01)
    assert not figure.axes[3].images  # the spare fourth panel stays blank
    width, height = figure.get_size_inches() * DPI
    assert width <= 800 and height <= 800
    predictions = plot_predictions(images, [m * 255 for m in masks], masks, ["a", "b", "c"])
    assert predictions.get_suptitle() == "red: prediction, green: truth"
    truth, prediction = predictions.axes[0].collections  # truth and prediction outlines
    assert (to_hex(truth.get_edgecolor()[0]), to_hex(prediction.get_edgecolor()[0])) == (
        to_hex("lime"), to_hex("red"))
    assert outline_extent(truth) == pytest.approx(box, abs=0.01)
    assert outline_extent(prediction) == pytest.approx(box, abs=0.01)


def test_frame_scores_dots_match_the_rows():
    rows = [{"stem": "0", "dice": 0.9, "iou": 0.8}, {"stem": "1", "dice": 0.5, "iou": 0.4}]
    figure = plot_frame_scores(rows)
    dice_dots, iou_dots = figure.axes[0].lines
    assert list(dice_dots.get_ydata()) == [0.9, 0.5] and list(iou_dots.get_ydata()) == [0.8, 0.4]
    assert [label.get_text() for label in figure.axes[0].get_xticklabels()] == ["0", "1"]
    assert [text.get_text() for text in figure.axes[0].get_legend().get_texts()] == ["dice", "iou"]


def test_organ_scores_are_dots_in_the_organs_colours_on_an_axis_showing_their_spread():
    from unetlib.data.organs import Organ, OrganTable
    from unetlib.viz.plots import plot_organ_scores

    organs = OrganTable((Organ(1, "liver", "#ff0000"), Organ(2, "kidney", "#00ff00")), True)
    per_organ = {"liver": {"dice": 0.9, "iou": 0.8, "precision": 0.95, "recall": 0.85},
                 "kidney": {"dice": 0.6, "iou": 0.4, "precision": 0.7, "recall": 0.5}}
    figure = plot_organ_scores(per_organ, organs)
    liver, kidney = figure.axes[0].lines
    assert list(liver.get_ydata()) == [0.9, 0.8, 0.95, 0.85]
    assert to_hex(kidney.get_color()) == "#00ff00"
    assert figure.axes[0].get_ylim() == (0.0, 1.005)  # 0.4 is far from 1: the whole axis
    close = {"liver": {"dice": 0.985, "iou": 0.97}, "kidney": {"dice": 0.975, "iou": 0.952}}
    low, high = plot_organ_scores(close, organs, keys=("dice", "iou")).axes[0].get_ylim()
    # Scores of 0.95-0.99 spread over the axis instead of sitting at its top.
    assert 0.9 < low < 0.952 and high == 1.005


def test_threshold_curve_marks_the_calibrated_threshold():
    from unetlib.viz.plots import plot_threshold_curve

    figure = plot_threshold_curve({"0.30": 0.90, "0.50": 0.95, "0.70": 0.93}, 0.5)
    curve, marker = figure.axes[0].lines
    assert list(curve.get_xdata()) == [0.3, 0.5, 0.7]
    assert list(marker.get_xdata()) == [0.5, 0.5]
    assert figure.axes[0].get_ylim()[0] > 0.8  # the differences are visible


def test_error_map_colours_missed_and_extra_pixels_and_counts_them():
    from unetlib.viz.plots import ERROR_COLORS, plot_error_map

    image = np.full((10, 10), 100.0)
    truth = np.zeros((10, 10), np.uint8)
    truth[2:6, 2:6] = 1
    prediction = np.zeros_like(truth)
    prediction[2:6, 3:7] = 1  # 4 px missed on the left, 4 px extra on the right
    figure = plot_error_map(image, prediction, truth)
    picture = figure.axes[0].images[0].get_array()
    assert "4 px missed" in figure.axes[0].get_title() and "4 px extra" in figure.axes[0].get_title()
    blue, red = np.array(ERROR_COLORS["missed"]), np.array(ERROR_COLORS["extra"])
    assert picture[3, 2, 2] > picture[3, 2, 0]  # missed: blue dominates
    assert picture[3, 6, 0] > picture[3, 6, 2]  # extra: red dominates
    assert blue[2] > blue[0] and red[0] > red[2]
    assert np.allclose(picture[8, 8], picture[0, 0])  # background untouched


def test_confusion_heatmap_shows_each_truth_row_as_fractions():
    from unetlib.viz.plots import plot_confusion

    confusion = np.array([[900, 100], [5, 15]])
    figure = plot_confusion(confusion, ["background", "kidney"])
    shown = figure.axes[0].images[0].get_array()
    np.testing.assert_allclose(shown, [[0.9, 0.1], [0.25, 0.75]])
    assert [text.get_text() for text in figure.axes[0].texts] == ["0.90", "0.10", "0.25", "0.75"]
