"""Image I/O keeps dtypes, writes atomically and refuses to overwrite."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from unetlib.core.errors import InputError, OutputError
from unetlib.core.io import list_images, read_image, staged_folder, write_image


@pytest.mark.parametrize("name, image", [
    ("gray8.png", np.arange(12, dtype=np.uint8).reshape(3, 4)),
    ("gray16.png", np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)),
    ("rgb8.png", np.arange(24, dtype=np.uint8).reshape(2, 4, 3)),
    ("gray16.tif", np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)),
    ("rgb16.tif", np.arange(24, dtype=np.uint16).reshape(2, 4, 3) * 2000),
    ("four16.tif", np.arange(32, dtype=np.uint16).reshape(2, 4, 4) * 1000),
    ("float.tif", np.linspace(0, 1, 8, dtype=np.float32).reshape(2, 4)),
])
def test_round_trip_keeps_values_and_dtype(tmp_path, name, image):
    path = write_image(tmp_path / name, image)
    back = read_image(path)
    assert back.dtype == image.dtype
    np.testing.assert_array_equal(back, image)


def test_png_refuses_data_it_would_lose(tmp_path):
    with pytest.raises(ValueError, match="write a .tif"):
        write_image(tmp_path / "x.png", np.zeros((2, 2, 3), np.uint16))


def test_existing_file_is_kept_unless_overwrite(tmp_path):
    path = write_image(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(OutputError, match="already exists"):
        write_image(path, np.ones((2, 2), np.uint8))
    assert read_image(path).max() == 0
    write_image(path, np.ones((2, 2), np.uint8), overwrite=True)
    assert read_image(path).max() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary left behind


def test_unreadable_and_missing_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="bad.png: not a readable image"):
        read_image(bad)
    with pytest.raises(InputError, match="missing.png: file not found"):
        read_image(tmp_path / "missing.png")


def test_a_stack_is_not_a_single_image(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((6, 8, 8), np.uint16), photometric="minisblack")
    with pytest.raises(InputError, match="holds 6 images"):
        read_image(tmp_path / "stack.tif")


def test_palette_png_is_expanded_to_rgb(tmp_path):
    image = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.save(tmp_path / "p.png")
    back = read_image(tmp_path / "p.png")
    assert back.shape == (2, 2, 3)
    np.testing.assert_array_equal(back[0, 1], [255, 0, 0])


def test_list_images_is_natural_order_and_skips_hidden_and_other_files(tmp_path):
    for name in ("10.png", "2.png", "1.tif", ".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["1.tif", "2.png", "10.png"]


def test_staged_folder_leaves_nothing_when_the_block_fails(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="^disk full$"):  # the block's own error
        with staged_folder(out) as staging:
            (staging / "half.txt").write_text("x")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_staged_folder_moves_entries_into_an_existing_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("user file")
    with staged_folder(out) as staging:
        (staging / "laser1").mkdir()
    assert sorted(p.name for p in out.iterdir()) == ["laser1", "mine.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
