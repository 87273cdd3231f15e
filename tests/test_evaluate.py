"""Evaluation of organ runs: per-organ scores by name, the mean over organs, confusions."""

from __future__ import annotations

import numpy as np
import pytest

from unetlib.core.io import write_image
from unetlib.data.organs import read_organ_table, write_organ_table
from unetlib.inference.evaluate import evaluate_folders


@pytest.fixture
def organ_folders(tmp_path):
    """Two frames: predictions (palette-free value PNGs) and truths, organs 1 and 4."""
    (tmp_path / "pred").mkdir()
    (tmp_path / "organs.csv").write_text("value,name\n1,liver\n4,spleen\n")
    write_organ_table(tmp_path / "pred" / "organs.csv", read_organ_table(tmp_path / "organs.csv"))
    truth_a = np.zeros((10, 10), np.uint8)
    truth_a[0:4, 0:5] = 1          # liver: 20 px
    truth_a[6:8, 6:8] = 4          # spleen: 4 px
    pred_a = np.zeros_like(truth_a)
    pred_a[0:4, 0:4] = 1           # liver: 16 px, all right
    pred_a[6:8, 6:7] = 4           # spleen: 2 of 4
    pred_a[6:8, 7:8] = 1           # the other 2 spleen pixels taken for liver
    truth_b = np.zeros((10, 10), np.uint8)
    truth_b[2:6, 2:6] = 1          # liver only: 16 px; spleen absent from both
    pred_b = truth_b.copy()
    for stem, prediction, truth in (("a", pred_a, truth_a), ("b", pred_b, truth_b)):
        write_image(tmp_path / "pred" / f"{stem}_predict.png", prediction)
        write_image(tmp_path / "truth" / f"{stem}.png", truth)
    return tmp_path


def test_each_organ_is_scored_by_name_against_hand_computed_values(organ_folders):
    report = evaluate_folders(organ_folders / "pred", organ_folders / "truth")
    rows = {(row["stem"], row["organ"]): row for row in report.frames}
    # Frame a, liver: tp 16, fp 2 (spleen pixels taken for liver), fn 4.
    assert rows["a", "liver"]["dice"] == pytest.approx(2 * 16 / (2 * 16 + 2 + 4))
    assert rows["a", "liver"]["precision"] == pytest.approx(16 / 18)
    assert rows["a", "liver"]["recall"] == pytest.approx(16 / 20)
    # Frame a, spleen: tp 2, fp 0, fn 2.
    assert rows["a", "spleen"]["dice"] == pytest.approx(4 / 6)
    assert rows["a", "spleen"]["iou"] == pytest.approx(2 / 4)
    # Frame b: liver perfect; spleen absent from both -> 1.0 by convention.
    assert rows["b", "liver"]["dice"] == 1.0 and rows["b", "spleen"]["dice"] == 1.0
    liver = (32 / 38 + 1.0) / 2
    spleen = (4 / 6 + 1.0) / 2
    assert report.per_organ["liver"]["dice"] == pytest.approx(liver)
    assert report.per_organ["spleen"]["dice"] == pytest.approx(spleen)
    assert report.mean["dice"] == pytest.approx((liver + spleen) / 2)


def test_the_confusion_table_counts_which_organ_was_taken_for_which(organ_folders):
    report = evaluate_folders(organ_folders / "pred", organ_folders / "truth")
    # rows: truth background, liver, spleen; columns: prediction.
    np.testing.assert_array_equal(report.confusion, [[(100 - 24) + (100 - 16), 0, 0],
                                                     [4, 32, 0],
                                                     [0, 2, 2]])
    text = report.to_text()
    assert "spleen" in text and "all organs" in text and "truth (rows)" in text
    data = report.to_dict()
    assert data["confusion"]["rows_truth_columns_prediction"] == ["background", "liver", "spleen"]
    assert set(data["per_organ"]) == {"liver", "spleen"}


def test_the_error_map_shows_the_worst_frame_with_its_missed_and_extra_pixels(organ_folders):
    from unetlib.inference.evaluate import error_map, worst_frame

    report = evaluate_folders(organ_folders / "pred", organ_folders / "truth")
    assert worst_frame(report) == "a"  # frame b is perfect
    for stem in ("a", "b"):
        write_image(organ_folders / "frames" / f"{stem}.png", np.full((10, 10), 500, np.uint16))
    title = error_map(report, organ_folders / "frames").axes[0].get_title()
    # Frame a: liver misses 4 px (column 4), spleen misses 2 px taken for liver (extra).
    # Dice: liver 2*16/(18+20), spleen 2*2/(2+4); their mean 0.754.
    assert title == "frame a, Dice 0.754: 4 px missed (blue), 2 px extra (red)"
    assert "0 px missed" in error_map(report, organ_folders / "frames", "b").axes[0].get_title()
