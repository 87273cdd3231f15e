"""The synthetic acquisition: deterministic, realistic enough to stand in for user data."""

import numpy as np
import pytest
import tifffile

from unetlib.core.config import SyntheticConfig
from unetlib.core.errors import OutputError
from unetlib.data.synthetic import (
    ORGANS,
    make_synthetic_stack,
    true_organ_means,
    write_synthetic_stack,
)

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


@pytest.mark.parametrize("preset", ["demo", "hard"])
def test_organ_means_filled_while_streaming_are_the_true_organ_means(tmp_path, preset):
    config = SMALL if preset == "demo" else _hard(cycles=3, height=96, width=120)
    means = np.full((config.cycles, config.lasers, 3 if preset == "demo" else 4), -1.0)
    stack, _ = write_synthetic_stack(tmp_path / "stack.tif", config, means_out=means)
    np.testing.assert_array_equal(means, true_organ_means(config))
    # and the frames written with them are the same as without
    np.testing.assert_array_equal(tifffile.imread(stack), make_synthetic_stack(config).frames)


def test_organ_means_of_the_wrong_shape_are_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match=r"\(2, 4, 3\) \(cycles, lasers, organs\)"):
        write_synthetic_stack(tmp_path / "stack.tif", SyntheticConfig(cycles=2, height=48, width=64),
                              means_out=np.zeros((2, 4, 4)))
    assert not (tmp_path / "stack.tif").exists()


def test_existing_stack_is_not_overwritten(tmp_path):
    path = tmp_path / "stack.tif"
    path.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="already exists"):
        write_synthetic_stack(path, SMALL)
    assert path.read_bytes() == b"keep me"


# --- the hard preset: what makes it as hard as a real acquisition ----------------------

def _hard(mouse=0, **changes):
    from unetlib.data.synthetic import hard_mouse
    return hard_mouse(mouse, **{"cycles": 2, **changes})


def test_hard_preset_has_four_organs_among_them_a_thin_one_and_a_small_one():
    from scipy import ndimage

    from unetlib.data.phantom import HARD_ORGANS
    from unetlib.data.synthetic import render_frames

    _, labels = render_frames(_hard(), [0])
    names = [organ.name for organ in HARD_ORGANS]
    assert set(np.unique(labels[0])) == set(range(len(names) + 1))
    areas = {name: int((labels[0] == value).sum()) for value, name in enumerate(names, 1)}
    # The bladder is the smallest organ, under 1 % of the frame.
    assert min(areas, key=areas.get) == "bladder"
    assert areas["bladder"] < 0.01 * labels[0].size
    # The spleen is thin: erosion by 10 pixels leaves nothing of it, but much of the kidney.
    spleen = ndimage.binary_erosion(labels[0] == names.index("spleen") + 1, iterations=10)
    kidney = ndimage.binary_erosion(labels[0] == names.index("kidney") + 1, iterations=10)
    assert not spleen.any() and kidney.sum() > 100


def test_hard_preset_mice_lie_differently_and_each_is_reproducible():
    from unetlib.data.synthetic import render_frames

    first, second = _hard(0), _hard(1)
    assert (first.pose_shift, first.pose_angle_degrees, first.pose_scale) != (
        second.pose_shift, second.pose_angle_degrees, second.pose_scale)
    frames_a, labels_a = render_frames(first, [0])
    frames_b, labels_b = render_frames(second, [0])
    overlap = np.logical_and(labels_a[0] > 0, labels_b[0] > 0).sum()
    assert overlap < 0.9 * min((labels_a[0] > 0).sum(), (labels_b[0] > 0).sum())
    again, _ = render_frames(_hard(0), [0])
    np.testing.assert_array_equal(frames_a, again)


def test_hard_preset_organs_breathe_and_the_mouse_drifts():
    from unetlib.data.synthetic import render_frames

    config = _hard(cycles=30)
    _, labels = render_frames(config, [0, 1, 2, 119])
    liver = [np.argwhere(frame == 1).mean(axis=0) for frame in labels]
    # Breathing: consecutive frames differ; drift: the first and last frame differ more.
    assert any(np.abs(liver[0] - other).max() > 1.0 for other in liver[1:3])
    assert np.abs(liver[0] - liver[3]).max() > 4.0


def test_hard_preset_organs_nearly_vanish_in_laser_2_and_show_in_laser_1():
    from scipy import ndimage

    from unetlib.data.synthetic import render_frames, true_organ_means

    config = _hard(read_noise=0.0)
    means = true_organ_means(config)[0]  # cycle 0: (lasers, organs)
    frames, labels = render_frames(config, [0, 1])
    for laser in (0, 1):
        around = ndimage.binary_dilation(labels[laser] == 3, iterations=15) & (labels[laser] == 0)
        body = frames[laser][around].mean() - config.offset_counts
        spleen = means[laser, 2] - config.offset_counts
        ratio = spleen / body
        if laser == 0:
            assert ratio > 1.3  # the spleen shows in laser 1
        else:
            assert 0.8 < ratio < 1.25  # and is about as bright as the body in laser 2


def test_hard_preset_rejects_poses_out_of_view_and_poses_with_the_demo_preset():
    from unetlib.core.errors import ParameterError

    with pytest.raises(ParameterError, match="pose_shift"):
        SyntheticConfig(preset="hard", pose_shift=(0.5, 0.0)).validate()
    with pytest.raises(ParameterError, match="pose"):
        SyntheticConfig(pose_angle_degrees=10.0).validate()
    with pytest.raises(ParameterError, match="preset"):
        SyntheticConfig(preset="harder").validate()


DEMO_SMALL_FRAME0_SUM = 2694933  # SMALL's first frame before the hard preset existed


def test_demo_preset_is_unchanged_by_the_hard_one():
    acquisition = make_synthetic_stack(SMALL)
    assert int(acquisition.frames[0].astype(np.int64).sum()) == DEMO_SMALL_FRAME0_SUM


@pytest.mark.parametrize("config", [SyntheticConfig(), SyntheticConfig(
    height=200, width=160, organ_shift=(0.3, 0.3), organ_scale=1.5)], ids=["demo", "edge"])
def test_organs_drawn_in_their_box_are_the_whole_frames_drawing(config):
    """The demo scene computes each organ only in the box where its soft edge is not 0:
    inside, the values the whole frame has; outside, the whole frame's edge is exactly 0
    and no pixel is inside the organ (the 'edge' case pushes organs over the border)."""
    from unetlib.data.phantom import EDGE_REACH, ORGAN_EDGE, DemoScene, _soft_edge

    scene = DemoScene(config)
    for frame in (0, 5, 13):
        whole = scene.organ_distances(frame)
        boxed = scene.organ_distances(frame, EDGE_REACH)
        for (full, _), (part, box) in zip(whole, boxed):
            assert part.size < full.size or config.height < 300
            np.testing.assert_array_equal(part, full[box])
            outside = np.ones(full.shape, bool)
            outside[box] = False
            assert (full[outside] > 0).all()
            assert (_soft_edge(full[outside], ORGAN_EDGE) == 0).all()
