"""The synthetic acquisition: deterministic, realistic enough to stand in for user data."""

import numpy as np
import pytest
import tifffile

from unetlib.config import SyntheticConfig
from unetlib.errors import OutputError
from unetlib.synthetic import ORGANS, make_synthetic_stack, write_synthetic_stack

SMALL = SyntheticConfig(cycles=6, lasers=4, height=64, width=80, seed=3)


def test_stack_has_interleaved_uint16_frames_and_labels_per_frame():
    acquisition = make_synthetic_stack(SMALL)
    assert acquisition.frames.shape == (24, 64, 80)
    assert acquisition.frames.dtype == np.uint16
    assert acquisition.labels.shape == (24, 64, 80)
    assert set(np.unique(acquisition.labels)) == set(range(len(ORGANS) + 1))
    assert set(np.unique(acquisition.masks)) == {0, 1}


def test_default_frame_size_is_the_cameras():
    config = SyntheticConfig(cycles=1)
    acquisition = make_synthetic_stack(config)
    assert acquisition.frames.shape == acquisition.labels.shape == (4, 508, 636)
    # At the camera's size every organ is in view, in every laser's frame.
    for labels in acquisition.labels:
        assert set(np.unique(labels)) == set(range(len(ORGANS) + 1))


def test_same_config_gives_the_same_stack_and_another_seed_another():
    first = make_synthetic_stack(SMALL)
    second = make_synthetic_stack(SMALL)
    other = make_synthetic_stack(SyntheticConfig(cycles=6, lasers=4, height=64, width=80, seed=4))
    np.testing.assert_array_equal(first.frames, second.frames)
    assert not np.array_equal(first.frames, other.frames)


def test_outlines_move_between_frames():
    acquisition = make_synthetic_stack(SyntheticConfig(cycles=4, height=254, width=318))
    masks = acquisition.masks
    assert any(not np.array_equal(masks[0], masks[i]) for i in range(1, 8))


def test_organ_brightness_differs_by_laser_and_changes_over_time():
    config = SyntheticConfig(cycles=40, height=127, width=159, read_noise=0.0)
    acquisition = make_synthetic_stack(config)
    liver = acquisition.labels == 1
    mean = np.array([acquisition.frames[i][liver[i]].mean() for i in range(len(liver))])
    by_laser = mean[:4]
    assert by_laser.max() / by_laser.min() > 1.5
    laser1 = mean[0::4]
    assert laser1.max() / laser1[0] > 1.3  # dye uptake


def test_frames_carry_noise():
    acquisition = make_synthetic_stack(SMALL)
    background = acquisition.frames[0][:5, :5].astype(float)
    assert background.std() > 3


def test_streamed_stack_equals_the_in_memory_one(tmp_path):
    stack, truth = write_synthetic_stack(tmp_path / "stack.tif", SMALL, truth_path=tmp_path / "truth.tif")
    acquisition = make_synthetic_stack(SMALL)
    np.testing.assert_array_equal(tifffile.memmap(stack), acquisition.frames)
    np.testing.assert_array_equal(tifffile.imread(truth), acquisition.labels)


def test_existing_stack_is_not_overwritten(tmp_path):
    path = tmp_path / "stack.tif"
    path.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="already exists"):
        write_synthetic_stack(path, SMALL)
    assert path.read_bytes() == b"keep me"
