"""Loading, de-interleaving and exporting multi-laser stacks."""

import csv

import numpy as np
import pytest
import tifffile

from unetlib.core.config import SplitConfig, SyntheticConfig
from unetlib.core.errors import InputError, OutputError, ParameterError, UnetlibWarning
from unetlib.core.io import read_image
from unetlib.data.stack import load_stack, split_stack
from unetlib.data.synthetic import write_synthetic_stack

SMALL = SyntheticConfig(cycles=3, lasers=4, height=40, width=52, seed=1)


@pytest.fixture(scope="module")
def small_stack(tmp_path_factory):
    path, _ = write_synthetic_stack(tmp_path_factory.mktemp("stack") / "stack.tif", SMALL)
    return path


def test_stack_is_memory_mapped_and_deinterleaved(small_stack):
    stack = load_stack(small_stack)
    raw = tifffile.imread(small_stack)
    assert isinstance(stack.data.base, np.memmap) or isinstance(stack.data, np.memmap)
    assert stack.data.shape == (3, 4, 40, 52)
    for cycle in range(3):
        for laser in range(4):
            np.testing.assert_array_equal(stack.data[cycle, laser], raw[cycle * 4 + laser])
    assert stack.frame_numbers[2, 1] == 9


def test_offset_starts_the_cycle_later_and_drops_the_rest(small_stack):
    with pytest.warns(UnetlibWarning, match="last 2 frame"):
        stack = load_stack(small_stack, SplitConfig(lasers=4, offset=2))
    raw = tifffile.imread(small_stack)
    assert stack.cycles == 2
    np.testing.assert_array_equal(stack.laser(1)[1], raw[6])
    assert stack.frame_numbers[0].tolist() == [2, 3, 4, 5]


def test_incomplete_trailing_cycle_is_dropped_with_a_warning(tmp_path):
    frames = np.arange(11 * 4 * 5, dtype=np.uint16).reshape(11, 4, 5)
    tifffile.imwrite(tmp_path / "s.tif", frames, photometric="minisblack")
    with pytest.warns(UnetlibWarning, match="last 3 frame\\(s\\)"):
        stack = load_stack(tmp_path / "s.tif", SplitConfig(lasers=4))
    assert stack.cycles == 2


def test_hyperstack_channels_are_lasers(tmp_path):
    data = np.random.default_rng(0).integers(0, 4000, (5, 3, 8, 9), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "h.tif", data, imagej=True, metadata={"axes": "TCYX"})
    stack = load_stack(tmp_path / "h.tif", SplitConfig(lasers=3))
    np.testing.assert_array_equal(stack.data, data)
    with pytest.raises(ParameterError, match="3 channels; pass --lasers 3"):
        load_stack(tmp_path / "h.tif", SplitConfig(lasers=4))


def test_compressed_stack_is_read_without_memory_mapping_the_file(tmp_path):
    data = np.arange(8 * 6 * 7, dtype=np.uint16).reshape(8, 6, 7)
    tifffile.imwrite(tmp_path / "c.tif", data, compression="zlib", photometric="minisblack")
    stack = load_stack(tmp_path / "c.tif")
    np.testing.assert_array_equal(stack.data.reshape(8, 6, 7), data)


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "file not found"),
    (lambda p: p.write_text("plain text"), "is not a TIFF file"),
    (lambda p: tifffile.imwrite(p, np.zeros((8, 8), np.uint16)), "single 2-D image"),
    (lambda p: tifffile.imwrite(p, np.zeros((3, 8, 8), np.uint16), photometric="minisblack"),
     "has 3 frames, fewer than the 4 lasers"),
])
def test_bad_stacks_get_one_line_naming_the_file(tmp_path, make, message):
    path = tmp_path / "input.tif"
    make(path)
    with pytest.raises(InputError, match=message) as caught:
        load_stack(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_laser_count_below_one_is_refused(small_stack):
    with pytest.raises(ParameterError, match="lasers=0 is invalid"):
        load_stack(small_stack, SplitConfig(lasers=0))


def test_split_writes_every_laser_with_bit_depth_and_values_kept(small_stack, tmp_path):
    result = split_stack(small_stack, tmp_path / "out")
    raw = tifffile.imread(small_stack)
    assert result.counts == {"laser1": 3, "laser2": 3, "laser3": 3, "laser4": 3,
                             "channels3": 6, "channels4": 3}
    for laser in range(1, 5):
        files = sorted((tmp_path / "out" / f"laser{laser}").iterdir())
        assert [f.name for f in files] == ["0000.png", "0001.png", "0002.png"]
        for cycle, file in enumerate(files):
            frame = read_image(file)
            assert frame.dtype == np.uint16
            np.testing.assert_array_equal(frame, raw[cycle * 4 + laser - 1])


def test_composites_are_lossless_tiff_plus_an_8bit_display_png(small_stack, tmp_path):
    split_stack(small_stack, tmp_path / "out", SplitConfig(composite3=(3, 1, 2)))
    raw = tifffile.imread(small_stack)
    rgb = read_image(tmp_path / "out" / "channels3" / "0001.tif")
    np.testing.assert_array_equal(rgb, np.stack([raw[6], raw[4], raw[5]], axis=-1))
    display = read_image(tmp_path / "out" / "channels3" / "0001.png")
    assert display.dtype == np.uint8 and display.shape == (40, 52, 3)
    assert display.max() == 255 and display.min() == 0
    four = read_image(tmp_path / "out" / "channels4" / "0002.tif")
    np.testing.assert_array_equal(four, np.moveaxis(raw[8:12], 0, -1))


def test_manifest_maps_every_file_to_its_stack_frames(small_stack, tmp_path):
    result = split_stack(small_stack, tmp_path / "out")
    with open(result.manifest) as handle:
        rows = list(csv.DictReader(handle))
    files = {p.relative_to(tmp_path / "out").as_posix()
             for p in (tmp_path / "out").rglob("*.*") if p.name not in ("manifest.csv", "split.json")}
    assert {row["file"] for row in rows} == files
    row = next(r for r in rows if r["file"] == "laser3/0002.png")
    assert (row["cycle"], row["lasers"], row["stack_frames"]) == ("2", "3", "10")
    row = next(r for r in rows if r["file"] == "channels4/0001.tif")
    assert row["stack_frames"] == "4 5 6 7"


def test_tif_frame_format(small_stack, tmp_path):
    split_stack(small_stack, tmp_path / "out", SplitConfig(frame_format="tif"))
    assert read_image(tmp_path / "out" / "laser2" / "0001.tif").dtype == np.uint16


def test_existing_outputs_are_kept_unless_forced(small_stack, tmp_path):
    out = tmp_path / "out"
    (out / "laser1").mkdir(parents=True)
    (out / "laser1" / "precious.png").write_bytes(b"x")
    with pytest.raises(OutputError, match="already holds laser1"):
        split_stack(small_stack, out)
    assert sorted(p.name for p in out.iterdir()) == ["laser1"]
    split_stack(small_stack, out, SplitConfig(force=True))
    assert not (out / "laser1" / "precious.png").exists()


def test_unwritable_output_leaves_nothing_behind(small_stack, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        split_stack(small_stack, blocker / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_failed_split_leaves_no_half_written_folder(small_stack, tmp_path, monkeypatch):
    import unetlib.data.stack as stack_module

    def fail(*args, **kwargs):
        raise OSError("simulated full disk")

    monkeypatch.setattr(stack_module, "_write_composite", fail)
    with pytest.raises(OSError, match="simulated"):
        split_stack(small_stack, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_repeating_the_same_split_is_a_no_op_but_another_stack_is_refused(small_stack, tmp_path):
    out = tmp_path / "out"
    split_stack(small_stack, out)
    stamp = (out / "laser1" / "0000.png").stat().st_mtime_ns
    split_stack(small_stack, out)
    assert (out / "laser1" / "0000.png").stat().st_mtime_ns == stamp
    other, _ = write_synthetic_stack(tmp_path / "other.tif", SyntheticConfig(
        cycles=3, lasers=4, height=40, width=52, seed=9))
    with pytest.raises(OutputError, match="already holds"):
        split_stack(other, out)
