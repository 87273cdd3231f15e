"""Choosing frames to annotate and exporting them safely."""

import csv
from dataclasses import replace

import numpy as np
import pytest
import tifffile

from unetlib.core.config import PickConfig, SplitConfig, SyntheticConfig
from unetlib.core.errors import OutputError, ParameterError
from unetlib.core.io import read_csv, read_image
from unetlib.data.frames import pick_cycles, pick_frames
from unetlib.data.stack import load_stack
from unetlib.data.synthetic import export_truth_masks, write_synthetic_stack

SMALL = SyntheticConfig(cycles=20, lasers=4, height=40, width=52, seed=2)


@pytest.fixture(scope="module")
def acquisition(tmp_path_factory):
    folder = tmp_path_factory.mktemp("acq")
    return write_synthetic_stack(folder / "stack.tif", SMALL, truth_path=folder / "truth.tif")


def test_spread_picks_evenly_over_the_acquisition(acquisition):
    stack = load_stack(acquisition[0])
    assert pick_cycles(stack, PickConfig(count=5)) == [0, 5, 10, 14, 19]


def test_excluded_cycles_are_never_picked(acquisition):
    stack = load_stack(acquisition[0])
    picked = pick_cycles(stack, PickConfig(count=4, exclude=(0, 5, 10, 14, 19)))
    # Spread evenly over the 15 cycles left (positions 0, 5, 9, 14 of them), not over all 20.
    left = [cycle for cycle in range(stack.cycles) if cycle not in {0, 5, 10, 14, 19}]
    assert stack.cycles == 20 and picked == [left[0], left[5], left[9], left[14]] == [1, 7, 12, 18]


def test_diverse_picks_distinct_cycles_that_differ_most(acquisition):
    stack = load_stack(acquisition[0])
    picked = pick_cycles(stack, PickConfig(count=4, method="diverse"))
    assert len(set(picked)) == 4
    assert picked == pick_cycles(stack, PickConfig(count=4, method="diverse"))
    # The greedy choice maximises the smallest pairwise distance better than a random set.
    frames = np.asarray(stack.laser(1), dtype=float).reshape(stack.cycles, -1)

    def spread(cycles):
        return min(np.linalg.norm(frames[a] - frames[b]) for a in cycles for b in cycles if a < b)

    rng = np.random.default_rng(0)
    random_sets = [rng.choice(stack.cycles, 4, replace=False) for _ in range(20)]
    assert spread(picked) >= np.median([spread(s) for s in random_sets])


def test_asking_for_more_frames_than_cycles_is_an_error(acquisition):
    stack = load_stack(acquisition[0])
    with pytest.raises(ParameterError, match="only 20 cycles"):
        pick_cycles(stack, PickConfig(count=21))


def test_grayscale_frames_are_exported_with_a_table(acquisition, tmp_path):
    result = pick_frames(acquisition[0], tmp_path / "data1d", PickConfig(count=3, laser=2))
    raw = tifffile.imread(acquisition[0])
    frames_dir = tmp_path / "data1d" / "train" / "frames"
    assert sorted(p.name for p in frames_dir.iterdir()) == ["0.png", "1.png", "2.png"]
    with open(result.table) as handle:
        rows = list(csv.DictReader(handle))
    assert [row["cycle"] for row in rows] == ["0", "10", "19"]
    for row in rows:
        frame = read_image(frames_dir / row["file"])
        assert frame.dtype == np.uint16
        np.testing.assert_array_equal(frame, raw[int(row["stack_frames"])])
    assert rows[1]["stack_frames"] == str(10 * 4 + 1)
    assert read_image(tmp_path / "data1d" / "train" / "annotate" / "0.png").dtype == np.uint8


def test_composite_frames_are_lossless_tiffs(acquisition, tmp_path):
    pick_frames(acquisition[0], tmp_path / "data3d", PickConfig(count=2, channels=3))
    raw = tifffile.imread(acquisition[0])
    image = read_image(tmp_path / "data3d" / "train" / "frames" / "1.tif")
    np.testing.assert_array_equal(image, np.moveaxis(raw[76:79], 0, -1))


def test_test_subset_goes_to_the_test_folder(acquisition, tmp_path):
    pick_frames(acquisition[0], tmp_path / "d", PickConfig(count=2, subset="test"))
    assert sorted(p.name for p in (tmp_path / "d" / "test").iterdir()) == ["0.png", "1.png", "frames.csv"]


def test_existing_frames_and_masks_are_never_overwritten(acquisition, tmp_path):
    data = tmp_path / "data1d"
    result = pick_frames(acquisition[0], data, PickConfig(count=3))
    export_truth_masks(acquisition[1], result.table, data / "train" / "masks")
    before = {p: p.read_bytes() for p in (data / "train").rglob("*.*")}
    with pytest.raises(OutputError, match="pass --force"):
        pick_frames(acquisition[0], data, PickConfig(count=3, laser=2))
    assert {p: p.read_bytes() for p in (data / "train").rglob("*.*")} == before
    (data / "train" / "frames" / "0.png").unlink()
    with pytest.raises(OutputError, match="masks/0.png"):
        pick_frames(acquisition[0], data, PickConfig(count=1))


def test_truth_masks_look_like_gimp_output_levels_1(acquisition, tmp_path):
    result = pick_frames(acquisition[0], tmp_path / "d", PickConfig(count=2))
    masks = export_truth_masks(acquisition[1], result.table, tmp_path / "d" / "train" / "masks")
    labels = tifffile.imread(acquisition[1])
    mask = read_image(masks[1])
    assert set(np.unique(mask)) == {0, 1}
    np.testing.assert_array_equal(mask, labels[19 * 4] > 0)


def test_laser_beyond_the_stack_is_refused(acquisition, tmp_path):
    with pytest.raises(ParameterError, match="lasers 1 to 4"):
        pick_frames(acquisition[0], tmp_path / "d", PickConfig(laser=5), SplitConfig(lasers=4))
    assert not (tmp_path / "d").exists()


def test_repeating_the_same_pick_is_a_no_op(acquisition, tmp_path):
    first = pick_frames(acquisition[0], tmp_path / "d", PickConfig(count=3))
    stamp = first.frames[0].stat().st_mtime_ns
    again = pick_frames(acquisition[0], tmp_path / "d", PickConfig(count=3))
    assert again.cycles == first.cycles
    assert first.frames[0].stat().st_mtime_ns == stamp


@pytest.fixture(scope="module")
def two_mice(tmp_path_factory):
    """Two mice's acquisitions under one file name, in folders of their own."""
    folder = tmp_path_factory.mktemp("mice")
    return [write_synthetic_stack(folder / name / "acq.tif", replace(SMALL, seed=seed))[0]
            for name, seed in (("m1", 3), ("m2", 4))]


def test_frames_are_shared_out_over_several_stacks_and_name_their_stack(two_mice, tmp_path):
    data = tmp_path / "data1d"
    result = pick_frames(two_mice, data, PickConfig(count=5))
    rows = read_csv(result.table)
    assert [row["stack"] for row in rows] == ["m1/acq.tif"] * 3 + ["m2/acq.tif"] * 2
    # each stack's share spread over its own cycles
    assert [int(row["cycle"]) for row in rows] == [0, 10, 19, 0, 19] == result.cycles
    for row, stack in zip(rows, [two_mice[0]] * 3 + [two_mice[1]] * 2):
        np.testing.assert_array_equal(read_image(data / "train" / "frames" / row["file"]),
                                      tifffile.imread(stack, key=int(row["stack_frames"])))
    stamp = result.frames[4].stat().st_mtime_ns
    assert pick_frames(two_mice, data, PickConfig(count=5)).stacks == result.stacks
    assert result.frames[4].stat().st_mtime_ns == stamp  # the same pick again: nothing written

    # Test frames of each mouse leave out that mouse's training cycles, not the other's.
    test = pick_frames(two_mice, data, PickConfig(count=4, subset="test"))
    training = {(row["stack"], int(row["cycle"])) for row in rows}
    assert not training & set(zip(test.stacks, test.cycles))
    assert test.stacks == ["m1/acq.tif"] * 2 + ["m2/acq.tif"] * 2


def test_several_stacks_are_refused_when_given_twice_or_with_fewer_frames_than_stacks(
        two_mice, tmp_path):
    with pytest.raises(ParameterError, match="given twice"):
        pick_frames([two_mice[0], two_mice[0]], tmp_path / "d", PickConfig(count=4))
    with pytest.raises(ParameterError, match="count=1 is invalid for 2 stacks"):
        pick_frames(two_mice, tmp_path / "d", PickConfig(count=1))
    assert not (tmp_path / "d").exists()
