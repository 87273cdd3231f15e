"""Mask encodings: every encoding GIMP and other editors write becomes the same {0, 1} mask."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetlib.core.errors import InputError
from unetlib.core.io import write_image
from unetlib.data.masks import normalize_mask, read_mask

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
    tifffile.imwrite(path, organ().astype(np.uint16) * 65535)
    return path


def tiff_16bit_dim(path):
    tifffile.imwrite(path, organ().astype(np.uint16) * 1000)
    return path


def palette_transparent(path):
    """GIMP indexed export of strokes on a transparent layer: index 0 is transparent."""
    image = Image.fromarray(organ(), mode="L").convert("P")
    image.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    image.save(path, transparency=0)
    return path


VARIANTS = {
    "gimp_levels_1.png": (gimp_levels_1, "grey", "two values: 1 is foreground"),
    "zero_255.png": (zero_255, "grey", "two values: 255 is foreground"),
    "anti_aliased.png": (anti_aliased, "grey", "anti-aliased"),
    "rgb.png": (rgb_strokes, "colour", "two values: 255 is foreground"),
    "rgba.png": (rgba_transparent_layer, "alpha", "two values: 255 is foreground"),
    "palette.png": (palette, "colour", "two values: 255 is foreground"),
    "png16.png": (png_16bit, "grey", "two values: 65535 is foreground"),
    "tiff16.tif": (tiff_16bit, "grey", "two values: 65535 is foreground"),
    "tiff16_dim.tif": (tiff_16bit_dim, "grey", "two values: 1000 is foreground"),
    "palette_transparent.png": (palette_transparent, "alpha", "two values: 255 is foreground"),
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


def test_anti_aliased_edges_are_not_levels_and_split_at_the_midpoint(tmp_path):
    mask, info = read_mask(anti_aliased(tmp_path / "soft.png"))
    assert info.values == (0, 60, 200, 255)
    assert info.levels == (0, 255) and not info.is_label_image
    assert info.threshold == 127.5
    assert info.describe() == ("grey; anti-aliased, 4 values: foreground above 127.5 "
                               "(midway between 0 and 255)")
    np.testing.assert_array_equal(mask, organ())


def test_rgba_with_anti_aliased_alpha_uses_the_alpha_midpoint():
    rows, cols = np.mgrid[:H, :W]
    distance = np.sqrt(((rows - 12) / 8.0) ** 2 + ((cols - 15) / 11.0) ** 2)
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 3] = (np.clip((1.0 - distance) * 8 + 0.5, 0, 1) * 255).astype(np.uint8)
    mask, info = normalize_mask(rgba)
    assert info.channels == "alpha" and info.threshold == 127.5
    assert len(info.values) > 3 and info.levels == (0, 255)
    np.testing.assert_array_equal(mask, organ())


def test_fully_opaque_rgba_ignores_alpha_and_grey_rgb_is_grey():
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[organ() > 0, :3] = 255
    mask, info = normalize_mask(rgba)
    assert info.channels == "grey"
    np.testing.assert_array_equal(mask, organ())
    mask, info = normalize_mask(np.repeat(organ()[..., None] * 255, 3, axis=-1))
    assert info.channels == "grey"
    np.testing.assert_array_equal(mask, organ())


@pytest.mark.parametrize("array", [organ().astype(bool), organ().astype(np.float32) * 0.7,
                                   organ()[..., None] * 255])
def test_bool_float_and_single_channel_arrays(array):
    mask, info = normalize_mask(array)
    assert mask.dtype == np.uint8 and mask.shape == (H, W)
    np.testing.assert_array_equal(mask, organ())
    assert info.source == "<array>"


def test_one_value_masks_are_all_background_or_all_foreground():
    _, empty = normalize_mask(np.zeros((H, W), np.uint8))
    assert empty.is_all_background and not empty.is_all_foreground
    assert empty.rule == "one value 0: foreground when above 0"
    full, info = normalize_mask(np.full((H, W), 255, np.uint8))
    assert info.is_all_foreground and full.all()


def test_not_a_2d_mask_is_an_input_error():
    with pytest.raises(InputError, match=r"<array>: has shape \(2, 3, 4, 5\), not a 2-D mask"):
        normalize_mask(np.zeros((2, 3, 4, 5), np.uint8))


def test_rgba_with_coloured_strokes_uses_colour_where_visible():
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[organ() > 0] = (0, 200, 0, 255)
    rgba[:2, :2] = (90, 10, 10, 255)  # a second, darker colour: colour carries information
    mask, info = normalize_mask(rgba)
    assert info.channels == "colour-where-opaque"
    # The dark stroke is opaque but dark: by colour it is background, as alpha would not say.
    np.testing.assert_array_equal(mask, organ())


def three_organs() -> np.ndarray:
    """A label image: three organs with the values 1, 2 and 3 on background 0."""
    labels = np.zeros((H, W), np.uint8)
    labels[2:8, 2:9] = 1
    labels[10:18, 4:12] = 2
    labels[12:21, 18:29] = 3
    return labels


def test_label_image_is_reported_as_more_than_two_levels():
    mask, info = normalize_mask(three_organs())
    assert info.is_label_image and info.levels == (0, 1, 2, 3)
    assert info.rule == "4 levels {0, 1, 2, 3}: foreground is every value above 0"
    np.testing.assert_array_equal(mask, three_organs() > 0)


def test_read_mask_refuses_an_empty_mask(tmp_path):
    path = save_png(tmp_path / "empty.png", np.zeros((H, W), np.uint8))
    with pytest.raises(InputError, match="all background"):
        read_mask(path)


# --- label masks (several organs, organs.csv) ------------------------------------------

from unetlib.data.masks import read_labels  # noqa: E402
from unetlib.data.organs import read_organ_table  # noqa: E402

ORGAN_TABLE = "value,name,color\n1,liver,#ff0000\n2,kidney,#00ff00\n7,spleen,#0000ff\n"


@pytest.fixture
def organ_table(tmp_path):
    (tmp_path / "organs.csv").write_text(ORGAN_TABLE)
    return read_organ_table(tmp_path / "organs.csv")


def organ_values() -> np.ndarray:
    """Three organs with values 1, 2 and 7 on background 0."""
    values = np.zeros((H, W), np.uint8)
    values[2:8, 2:10], values[12:20, 4:12], values[5:15, 20:28] = 1, 2, 7
    return values


def expected_classes() -> np.ndarray:
    return np.choose(np.searchsorted([0, 1, 2, 7], organ_values()), [0, 1, 2, 3]).astype(np.uint8)


def label_variants(tmp_path):
    values = organ_values()
    colours = {0: (0, 0, 0), 1: (255, 0, 0), 2: (0, 255, 0), 7: (0, 0, 255)}
    rgb = np.zeros((H, W, 3), np.uint8)
    for value, colour in colours.items():
        rgb[values == value] = colour
    rgba = np.concatenate([rgb, np.where(values[..., None] > 0, 255, 0).astype(np.uint8)], -1)
    rgba[values == 0, :3] = (12, 34, 56)  # colour under transparent pixels is ignored
    palette = Image.fromarray(values, mode="P")
    palette.putpalette([40, 40, 40, 200, 10, 10, 10, 200, 10] + [90] * 759)  # any colours
    variants = {"8-bit values": values, "16-bit values": values.astype(np.uint16),
                "grey RGB": np.repeat(values[..., None], 3, axis=-1), "RGB colours": rgb,
                "RGBA colours": rgba}
    paths = {}
    for name, array in variants.items():
        paths[name] = tmp_path / f"{name}.png"
        save_png(paths[name], array)
    paths["16-bit TIFF"] = tmp_path / "values.tif"
    tifffile.imwrite(paths["16-bit TIFF"], values.astype(np.uint16))
    paths["GIMP palette"] = tmp_path / "palette.png"
    palette.save(paths["GIMP palette"])
    return paths


@pytest.mark.parametrize("name", ["8-bit values", "16-bit values", "grey RGB", "RGB colours",
                                  "RGBA colours", "16-bit TIFF", "GIMP palette"])
def test_every_label_encoding_gives_the_same_classes(tmp_path, organ_table, name):
    path = label_variants(tmp_path)[name]
    classes, info = read_labels(path, organ_table)
    assert classes.dtype == np.uint8
    np.testing.assert_array_equal(classes, expected_classes())
    assert info.organ_classes == [1, 2, 3]
    assert info.counts == tuple(int((expected_classes() == k).sum()) for k in range(4))
    assert info.encoding == {"RGB colours": "colour", "RGBA colours": "colour",
                             "GIMP palette": "palette index"}.get(name, "values")


def test_a_value_not_in_the_table_is_refused_naming_file_and_value(tmp_path, organ_table):
    values = organ_values()
    values[0, 0:3] = 5
    path = tmp_path / "mask.png"
    save_png(path, values)
    with pytest.raises(InputError) as raised:
        read_labels(path, organ_table)
    message = str(raised.value)
    assert message.startswith(f"{path}: has value(s) 5 (3 px) that organs.csv does not list")
    assert "it lists 1, 2, 7" in message and "Add those organs" in message


def test_a_colour_not_in_the_table_is_refused_naming_it(tmp_path, organ_table):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[3:6, 3:6] = (255, 0, 0)
    rgb[10, 10] = (128, 0, 0)  # an anti-aliased edge pixel
    path = tmp_path / "mask.png"
    save_png(path, rgb)
    with pytest.raises(InputError, match=r"has colour\(s\) #800000 \(1 px\)"):
        read_labels(path, organ_table)


def test_a_colour_mask_needs_colours_in_the_table(tmp_path):
    (tmp_path / "organs.csv").write_text("value,name\n1,liver\n")
    table = read_organ_table(tmp_path / "organs.csv")
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[3:6, 3:6] = (255, 0, 0)
    save_png(tmp_path / "mask.png", rgb)
    with pytest.raises(InputError, match="colour mask but organs.csv gives no colours"):
        read_labels(tmp_path / "mask.png", table)
