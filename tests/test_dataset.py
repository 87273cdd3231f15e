"""Data folders: frames paired with masks by stem, and every problem check-masks reports."""

from __future__ import annotations

import numpy as np
import pytest
from test_masks import organ, three_organs

from unetlib.core.errors import InputError
from unetlib.core.io import write_image
from unetlib.data.dataset import check_pairs, find_pairs

H, W = 24, 32


def write_pair(data, stem, frame, mask, *, frame_suffix=".png", mask_suffix=".png"):
    write_image(data / "train" / "frames" / f"{stem}{frame_suffix}", frame)
    if mask is not None:
        write_image(data / "train" / "masks" / f"{stem}{mask_suffix}", mask)


def square(side: int) -> np.ndarray:
    """A {0, 1} mask with a ``side`` x ``side`` organ: foreground share side**2 / (H * W)."""
    mask = np.zeros((H, W), np.uint8)
    mask[3:3 + side, 5:5 + side] = 1
    return mask


# One organ size per stem, each encoded differently, so each row's share is its own.
GOOD_MASKS = {"0": square(4), "1": organ(), "2": square(10) * 255}


@pytest.fixture
def good_folder(tmp_path):
    data = tmp_path / "data1d"
    frame = (np.random.default_rng(0).random((H, W)) * 4000).astype(np.uint16)
    for stem, mask in GOOD_MASKS.items():
        write_pair(data, stem, frame, mask)
    return data


def test_a_good_folder_has_a_row_per_pair_with_its_foreground_share(good_folder):
    report = check_pairs(good_folder)
    assert report.ok and not report.findings
    assert [row.stem for row in report.rows] == ["0", "1", "2"]
    shares = [16 / (H * W), float(organ().mean()), 100 / (H * W)]
    assert [row.foreground_fraction for row in report.rows] == pytest.approx(shares)
    assert [(row.height, row.width, row.channels, row.status) for row in report.rows] == [
        (H, W, 1, "ok")] * 3
    assert [row.mask_rule for row in report.rows] == [
        "grey; two values: 1 is foreground", "grey; two values: 1 is foreground",
        "grey; two values: 255 is foreground"]
    expected = [round(100 * share, 2) for share in shares]
    assert [row["foreground_percent"] for row in report.to_dicts()] == expected
    table = report.format_table()
    assert "3 stems, 3 usable pairs, 0 errors, 0 warnings" in table
    lines = {line.split()[0]: line for line in table.splitlines()[2:5]}
    for stem, percent in zip(("0", "1", "2"), expected):
        assert f" {percent:.2f} " in lines[stem]
    assert find_pairs(good_folder) == [
        (good_folder / "train" / "frames" / f"{stem}.png",
         good_folder / "train" / "masks" / f"{stem}.png") for stem in ("0", "1", "2")]


def corrupt(case, data):
    """Damage a good folder in one way; return (file named in the error, problem text)."""
    frames, masks = data / "train" / "frames", data / "train" / "masks"
    if case == "frame-without-mask":
        (masks / "1.png").unlink()
        return frames / "1.png", "has no mask in"
    if case == "mask-without-frame":
        (frames / "2.png").unlink()
        return masks / "2.png", "has no frame in"
    if case == "size-mismatch":
        write_image(masks / "1.png", np.ones((H + 2, W), np.uint8), overwrite=True)
        return masks / "1.png", f"is {H + 2}x{W} (height x width) but its frame 1.png is {H}x{W}"
    if case == "not-an-image":
        (masks / "1.png").write_text("this is not a PNG")
        return masks / "1.png", "not a readable image"
    if case == "unknown-file-type":
        (masks / "notes.docx").write_text("x")
        return masks / "notes.docx", "is not an image unetlib reads (.docx)"
    if case == "all-background":
        write_image(masks / "1.png", np.zeros((H, W), np.uint8), overwrite=True)
        return masks / "1.png", "mask is all background after normalisation"
    if case == "label-image":
        write_image(masks / "1.png", three_organs(), overwrite=True)
        return masks / "1.png", "has 4 distinct levels {0, 1, 2, 3}, but the task is binary"
    if case == "no-masks-folder":
        for path in masks.iterdir():
            path.unlink()
        masks.rmdir()
        return masks, "folder not found"
    if case == "no-frames-folder":
        for path in frames.iterdir():
            path.unlink()
        frames.rmdir()
        return frames, "folder not found"
    raise AssertionError(case)


ERROR_CASES = ["frame-without-mask", "mask-without-frame", "size-mismatch", "not-an-image",
               "unknown-file-type", "all-background", "label-image", "no-masks-folder",
               "no-frames-folder"]


@pytest.mark.parametrize("case", ERROR_CASES)
def test_each_problem_is_an_error_naming_the_file(good_folder, case):
    path, problem = corrupt(case, good_folder)
    report = check_pairs(good_folder)
    assert not report.ok
    messages = [finding.message for finding in report.errors]
    assert len(messages) == 1, messages  # one problem, one error: nothing reported twice
    assert messages[0].startswith(f"{path}: ") and problem in messages[0], messages
    if report.errors[0].stem:
        assert {row.stem: row.status for row in report.rows}[report.errors[0].stem] == "error"
    with pytest.raises(InputError) as raised:
        report.raise_for_errors()
    assert str(path) in str(raised.value) and problem in str(raised.value)


def test_all_errors_are_listed_at_once(good_folder):
    frames, masks = good_folder / "train" / "frames", good_folder / "train" / "masks"
    (frames / "0.png").rename(frames / "9.png")
    corrupt("all-background", good_folder)
    wrong_size = np.zeros((H + 2, W), np.uint8)
    wrong_size[5:10, 5:10] = 255
    write_image(masks / "2.png", wrong_size, overwrite=True)
    corrupt("unknown-file-type", good_folder)
    report = check_pairs(good_folder)
    expected = [(frames / "9.png", "has no mask in"), (masks / "0.png", "has no frame in"),
                (masks / "1.png", "mask is all background"),
                (masks / "2.png", f"is {H + 2}x{W} (height x width)"),
                (masks / "notes.docx", "is not an image unetlib reads")]
    assert len(report.errors) == len(expected)
    for path, problem in expected:
        assert any(f.path == path and f.problem.startswith(problem) for f in report.errors), path
    assert not report.warnings
    with pytest.raises(InputError) as raised:
        report.raise_for_errors()
    text = str(raised.value)
    assert text.splitlines()[0].startswith(f"{good_folder}: 5 problem(s)")
    assert len(text.splitlines()) == 6
    for path, problem in expected:
        assert any(line.startswith(f"  - {path}: {problem}") for line in text.splitlines()), path
    table = report.format_table()
    assert "4 stems, 0 usable pairs, 5 errors, 0 warnings" in table
    assert [row.status for row in report.rows] == ["error"] * 4


def test_label_image_is_accepted_when_not_binary(good_folder):
    corrupt("label-image", good_folder)
    assert check_pairs(good_folder, binary=False).ok


def test_all_foreground_mask_is_a_warning_not_an_error(good_folder):
    write_image(good_folder / "train" / "masks" / "1.png", np.full((H, W), 255, np.uint8),
                overwrite=True)
    report = check_pairs(good_folder)
    assert report.ok
    assert [finding.path.name for finding in report.warnings] == ["1.png"]
    assert "all foreground" in report.warnings[0].problem
    assert report.raise_for_errors() == report.warnings
    assert [row.status for row in report.rows] == ["ok", "warning", "ok"]


def test_frames_with_different_channel_counts_are_an_error(good_folder):
    write_image(good_folder / "train" / "frames" / "3.tif", np.zeros((H, W, 3), np.uint16))
    write_image(good_folder / "train" / "masks" / "3.png", organ())
    report = check_pairs(good_folder)
    assert any("has 3 channels but most frames have 1" in f.problem for f in report.errors)


# --- several organs (organs.csv) ------------------------------------------------------------

def organ_folder(tmp_path, masks):
    """A data folder with organs.csv and one frame per mask of ``masks`` (stem -> values)."""
    data = tmp_path / "data"
    (data).mkdir()
    (data / "organs.csv").write_text("value,name\n1,liver\n2,kidney\n3,spleen\n")
    for stem, values in masks.items():
        write_pair(data, stem, np.full((H, W), 500, np.uint16), values)
    return data


def organs_at(*present) -> np.ndarray:
    values = np.zeros((H, W), np.uint8)
    boxes = {1: (slice(2, 10), slice(2, 12)), 2: (slice(12, 20), slice(2, 8)),
             3: (slice(4, 6), slice(20, 22))}
    for value in present:
        values[boxes[value]] = value
    return values


def test_check_reports_each_organs_frames_share_and_absences(tmp_path):
    data = organ_folder(tmp_path, {"0": organs_at(1, 2, 3), "1": organs_at(1, 2),
                                   "2": organs_at(1, 2, 3)})
    report = check_pairs(data)
    assert report.ok
    summary = {row["organ"]: row for row in report.organ_summary()}
    assert [summary[name]["frames"] for name in ("liver", "kidney", "spleen")] == [3, 3, 2]
    assert summary["liver"]["pixel_percent"] == pytest.approx(100 * 3 * 80 / (3 * H * W), abs=1e-3)
    assert summary["spleen"]["missing_in"] == ["1"]
    assert [finding.message for finding in report.warnings] == [
        f"{data / 'organs.csv'}: spleen is missing from frame(s) 1. Fine if it is out of view "
        "there; otherwise draw it."]
    table = report.format_table()
    assert "labels (values): liver, kidney, spleen" in table and "spleen  3  2" in table


def test_an_organ_in_fewer_than_two_frames_is_flagged(tmp_path):
    report = check_pairs(organ_folder(tmp_path, {"0": organs_at(1, 3), "1": organs_at(1)}))
    assert report.ok  # a warning: training can go on
    assert any("spleen (value 3) appears in 1 mask(s), too few" in finding.message
               for finding in report.warnings)
    assert any("kidney (value 2) appears in 0 mask(s)" in finding.message
               for finding in report.warnings)


def test_unknown_values_and_empty_label_masks_are_errors_naming_the_mask(tmp_path):
    wrong = organs_at(1)
    wrong[0, 0] = 9
    data = organ_folder(tmp_path, {"0": organs_at(1, 2), "1": wrong,
                                   "2": np.zeros((H, W), np.uint8)})
    report = check_pairs(data)
    messages = {finding.path.name: finding.message for finding in report.errors}
    assert "has value(s) 9 (1 px) that organs.csv does not list" in messages["1.png"]
    assert "has no organ of organs.csv (all background)" in messages["2.png"]
    assert {row.stem: row.status for row in report.rows} == {"0": "ok", "1": "error",
                                                             "2": "error"}


def test_a_broken_organ_table_is_one_error_naming_it(tmp_path):
    data = organ_folder(tmp_path, {"0": organs_at(1)})
    (data / "organs.csv").write_text("value,name\n1,liver\n1,kidney\n")
    report = check_pairs(data)
    assert [finding.message for finding in report.errors] == [
        f"{data / 'organs.csv'}: line 3: value 1 is listed twice. Give each organ its own value "
        "and name."]
