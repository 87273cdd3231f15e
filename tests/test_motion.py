"""Tests of unetlib.study.motion: organ masks that follow a breathing mouse's organs into
every laser's frame of a cycle.

The hard synthetic preset breathes between the lasers of a cycle, and its renderer gives
every frame's own true organ labels: a mask segmented in laser 1 is right there, and the
same mask should be moved onto each organ in the other lasers' frames.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from unetlib.core.config import MotionConfig
from unetlib.core.errors import ParameterError
from unetlib.data.synthetic import hard_mouse, render_frames, true_organ_means
from unetlib.study.motion import _cross_morphology, _scaled, align_cycle, align_organ

CYCLES = 8
SMALL = {"height": 254, "width": 318, "cycles": CYCLES}  # a quarter of the pixels, same motion


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


@pytest.fixture(scope="module")
def breathing_mouse():
    config = hard_mouse(3, study_seed=1, **SMALL)
    frames, labels = render_frames(config, list(range(CYCLES * config.lasers)))
    return config, frames.reshape(CYCLES, config.lasers, *frames.shape[1:]), \
        labels.reshape(CYCLES, config.lasers, *labels.shape[1:])


def test_a_laser_one_mask_is_moved_onto_the_organ_in_the_other_lasers_frames(breathing_mouse):
    config, frames, labels = breathing_mouse
    before, after = [], []
    for cycle in range(CYCLES):
        aligned = align_cycle(frames[cycle], labels[cycle, 0], [1, 2, 3, 4], (0,))
        for laser in range(1, config.lasers):
            for index, value in enumerate((1, 2, 3, 4)):
                truth = labels[cycle, laser] == value
                before.append(_dice(labels[cycle, 0] == value, truth))
                after.append(_dice(aligned[laser][index].mask, truth))
    # Breathing costs the unmoved masks (the thin spleen most); moved, they fit again.
    assert np.mean(before) < 0.9
    assert np.mean(after) > 0.95
    assert np.mean(after) > np.mean(before) + 0.05


def test_the_segmented_lasers_masks_stay_where_the_model_put_them(breathing_mouse):
    _, frames, labels = breathing_mouse
    aligned = align_cycle(frames[0], labels[0, 0], [1, 2, 3, 4], (0,))
    for index, value in enumerate((1, 2, 3, 4)):
        assert aligned[0][index].shift == (0, 0) and aligned[0][index].scale == 1.0
        np.testing.assert_array_equal(aligned[0][index].mask, labels[0, 0] == value)


@pytest.mark.slow  # the fit of the masks is checked fast above; this is its consequence
def test_moved_masks_measure_the_curves_a_perfect_mask_of_each_frame_would(breathing_mouse):
    config, frames, labels = breathing_mouse
    truth = true_organ_means(config)  # each frame's own true pixels, noise-free
    errors = {"unmoved": [], "moved": []}
    for cycle in range(CYCLES):
        aligned = align_cycle(frames[cycle], labels[cycle, 0], [1, 2, 3, 4], (0,))
        for laser in range(1, config.lasers):
            frame = frames[cycle, laser].astype(np.float64)
            for index, value in enumerate((1, 2, 3, 4)):
                true = truth[cycle, laser, index]
                errors["unmoved"].append(abs(frame[labels[cycle, 0] == value].mean() / true - 1))
                errors["moved"].append(abs(frame[aligned[laser][index].mask].mean() / true - 1))
    assert np.median(errors["moved"]) < 0.01
    assert np.median(errors["moved"]) < np.median(errors["unmoved"]) / 2


def test_an_organ_without_an_edge_in_a_frame_keeps_its_mask():
    rng = np.random.default_rng(0)
    frame = rng.normal(100.0, 10.0, (120, 120))  # noise only: nothing to align to
    mask = np.zeros((120, 120), bool)
    mask[40:80, 30:90] = True
    alignment = align_organ(frame, mask)
    assert alignment.shift == (0, 0) and alignment.scale == 1.0
    np.testing.assert_array_equal(alignment.mask, mask)


def test_a_known_shift_and_growth_are_recovered_at_the_frame_edge():
    frame = np.full((100, 100), 10.0)
    frame[:30, 40:70] = 200.0  # an organ cut by the frame's top edge
    mask = np.zeros((100, 100), bool)
    mask[:36, 43:73] = True  # segmented 6 px lower and 3 px further right
    alignment = align_organ(frame, mask, MotionConfig(max_shift=0.1, max_scale=0.0))
    assert alignment.shift == (-6, -3)
    np.testing.assert_array_equal(alignment.mask, frame > 100)
    grown = np.zeros((100, 100), bool)
    grown[40:80, 40:80] = True
    frame = np.where(grown, 200.0, 10.0)
    smaller = np.zeros((100, 100), bool)
    smaller[41:79, 41:79] = True  # 5 % smaller about the same centre
    assert align_organ(frame, smaller).scale > 1.0
    assert _dice(align_organ(frame, smaller).mask, grown) > _dice(smaller, grown)


def test_disabled_alignment_and_bad_settings():
    frame = np.zeros((50, 50))
    frame[10:30, 10:30] = 1.0
    mask = np.zeros((50, 50), bool)
    mask[14:34, 10:30] = True
    assert align_organ(frame, mask, MotionConfig(enabled=False, max_shift=0.1)).shift == (0, 0)
    assert align_organ(frame, mask, MotionConfig(max_shift=0.1)).shift == (-4, 0)
    assert align_organ(frame, mask, MotionConfig(max_shift=0.04)).shift == (-2, 0)  # 2 px at most
    with pytest.raises(ParameterError, match="align_max_shift"):
        MotionConfig(max_shift=-0.1).validate()
    with pytest.raises(ParameterError, match="align_band"):
        MotionConfig(band_px=0).validate()


def test_the_fast_bands_and_scaling_equal_scipy_s_on_random_masks():
    # The bands are drawn for every size and shift tried, so motion.py grows and shrinks
    # masks with its own shifted operations; they must equal scipy's, edges included.
    rng = np.random.default_rng(0)
    for _ in range(200):
        shape = tuple(int(n) for n in rng.integers(3, 40, 2))
        mask = ndimage.binary_opening(rng.random(shape) > rng.uniform(0.2, 0.7))
        steps = int(rng.integers(1, 5))
        assert np.array_equal(_cross_morphology(mask, steps, np.logical_and),
                              ndimage.binary_erosion(mask, iterations=steps))
        assert np.array_equal(_cross_morphology(mask, steps, np.logical_or),
                              ndimage.binary_dilation(mask, iterations=steps))
    # Scaling works on the organ's box only; the whole-array resampling it replaced:
    yy, xx = np.mgrid[:120, :150]
    mask = ((yy - 50) / 30.0) ** 2 + ((xx - 80) / 45.0) ** 2 < 1
    centre_y, centre_x = ndimage.center_of_mass(mask)
    for scale in (0.92, 0.96, 1.04, 1.08):
        source = np.stack([(yy - centre_y) / scale + centre_y, (xx - centre_x) / scale + centre_x])
        whole = ndimage.map_coordinates(mask.view(np.uint8), source, order=0) > 0
        assert np.array_equal(_scaled(mask, scale), whole), scale
