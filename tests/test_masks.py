"""Mask import: every encoding GIMP and other editors write, and every folder problem."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetlib.errors import InputError
from unetlib.io import write_image
from unetlib.masks import check_pairs, find_pairs, normalize_mask, read_mask

H, W = 24, 32


def organ() -> np.ndarray:
    """The true {0, 1} mask every variant below encodes: an ellipse."""
    rows, cols = np.mgrid[:H, :W]
    return (((rows - 12) / 8.0) ** 2 + ((cols - 15) / 11.0) ** 2 < 1).astype(np.uint8)


def save_png(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def gimp_levels_1(path):
    return save_png(path, organ())


def zero_255(path):
    return save_png(path, organ() * 255)


def anti_aliased(path):
    mask = organ().astype(np.float32) * 255
    # Soft edge: pixels next to the outline get intermediate grey values.
    edge = (np.abs(np.diff(organ().astype(int), axis=1, prepend=0)) > 0)
    mask[edge] = np.where(organ()[edge] > 0, 200, 60)
    return save_png(path, mask.astype(np.uint8))


def rgb_strokes(path):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[organ() > 0] = (255, 0, 0)
    return save_png(path, rgb)


def rgba_transparent_layer(path):
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[organ() > 0, 3] = 255  # black strokes, visible only through alpha
    return save_png(path, rgba)


def palette(path):
    image = Image.fromarray(organ(), mode="L").convert("P")
    image.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    image.save(path)
    return path


def png_16bit(path):
    write_image(path, organ().astype(np.uint16) * 65535)
    return path


def tiff_16bit(path):
    tifffile.imwrite(path, organ().astype(np.uint16) * 1000)
    return path


VARIANTS = {
    "gimp_levels_1.png": (gimp_levels_1, "grey", "two values: 1 is foreground"),
    "zero_255.png": (zero_255, "grey", "two values: 255 is foreground"),
    "anti_aliased.png": (anti_aliased, "grey", "anti-aliased"),
    "rgb.png": (rgb_strokes, "colour", "two values: 255 is foreground"),
    "rgba.png": (rgba_transparent_layer, "alpha", "two values: 255 is foreground"),
    "palette.png": (palette, "colour", "two values: 255 is foreground"),
    "png16.png": (png_16bit, "grey", "two values: 65535 is foreground"),
    "tiff16.tif": (tiff_16bit, "grey", "two values: 1000 is foreground"),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_mask_encoding_normalises_to_the_organ(tmp_path, name):
    make, channels, rule = VARIANTS[name]
    mask, info = read_mask(make(tmp_path / name))
    assert mask.dtype == np.uint8 and mask.shape == (H, W)
    assert set(np.unique(mask)) == {0, 1}
    np.testing.assert_array_equal(mask, organ())
    assert info.channels == channels
    assert rule in info.rule
    assert info.foreground_fraction == pytest.approx(organ().mean())


def test_rgba_with_coloured_strokes_uses_colour_where_visible():
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[organ() > 0] = (0, 200, 0, 255)
    rgba[:2, :2] = (90, 10, 10, 255)  # a second, darker colour: colour carries information
    mask, info = normalize_mask(rgba)
    assert info.channels == "colour-where-opaque"
    assert mask[organ() > 0].all()


def test_label_image_is_reported_as_more_than_two_levels():
    labels = organ() * 1
    labels[:, :5] = 2  # a second organ with another value
    mask, info = normalize_mask(labels)
    assert info.is_label_image and len(info.levels) == 3
    assert mask[:, :5].all() and mask[organ() > 0].all()


def write_pair(data, stem, frame, mask, *, frame_suffix=".png", mask_suffix=".png"):
    write_image(data / "train" / "frames" / f"{stem}{frame_suffix}", frame)
    if mask is not None:
        write_image(data / "train" / "masks" / f"{stem}{mask_suffix}", mask)


@pytest.fixture
def good_folder(tmp_path):
    data = tmp_path / "data1d"
    frame = (np.random.default_rng(0).random((H, W)) * 4000).astype(np.uint16)
    for stem in ("0", "1", "2"):
        write_pair(data, stem, frame, organ())
    return data


def test_a_good_folder_has_a_row_per_pair_with_its_foreground_share(good_folder):
    report = check_pairs(good_folder)
    assert report.ok and not report.findings
    assert [row.stem for row in report.rows] == ["0", "1", "2"]
    expected = round(100 * organ().mean(), 2)
    assert [row["foreground_percent"] for row in report.to_dicts()] == [expected] * 3
    table = report.format_table()
    assert "3 stems, 3 usable pairs, 0 errors, 0 warnings" in table
    assert f"{expected:.2f}" in table
    assert len(find_pairs(good_folder)) == 3


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
        labels = organ() * 1
        labels[:, :6] = 2
        write_image(masks / "1.png", labels.astype(np.uint8), overwrite=True)
        return masks / "1.png", "has 3 distinct levels {0, 1, 2}, but the task is binary"
    if case == "no-masks-folder":
        for path in masks.iterdir():
            path.unlink()
        masks.rmdir()
        return masks, "folder not found"
    raise AssertionError(case)


ERROR_CASES = ["frame-without-mask", "mask-without-frame", "size-mismatch", "not-an-image",
               "unknown-file-type", "all-background", "label-image", "no-masks-folder"]


@pytest.mark.parametrize("case", ERROR_CASES)
def test_each_problem_is_an_error_naming_the_file(good_folder, case):
    path, problem = corrupt(case, good_folder)
    report = check_pairs(good_folder)
    assert not report.ok
    messages = [finding.message for finding in report.errors]
    assert any(message.startswith(f"{path}: ") and problem in message for message in messages), messages
    with pytest.raises(InputError) as raised:
        report.raise_for_errors()
    assert str(path) in str(raised.value) and problem in str(raised.value)


def test_all_errors_are_listed_at_once(good_folder):
    corrupt("frame-without-mask", good_folder)
    corrupt("all-background", good_folder)  # 1.png is recreated as an empty mask...
    (good_folder / "train" / "frames" / "0.png").rename(good_folder / "train" / "frames" / "9.png")
    report = check_pairs(good_folder)
    with pytest.raises(InputError) as raised:
        report.raise_for_errors()
    text = str(raised.value)
    assert f"{len(report.errors)} problem(s)" in text.splitlines()[0]
    assert len(report.errors) >= 3
    assert "9.png: has no mask" in text and "0.png: has no frame" in text
    assert "mask is all background" in text


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


def test_read_mask_refuses_an_empty_mask(tmp_path):
    path = save_png(tmp_path / "empty.png", np.zeros((H, W), np.uint8))
    with pytest.raises(InputError, match="all background"):
        read_mask(path)
