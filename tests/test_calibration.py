"""Tests of unetlib.data.calibration: dark frames and flat fields, read, checked, applied."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from unetlib.core.errors import InputError
from unetlib.core.io import write_image
from unetlib.data.calibration import RAW_COUNTS, load_calibration

SHAPE = (6, 8)


def tiff(path, frames):
    tifffile.imwrite(path, np.asarray(frames))
    return path


def test_one_dark_frame_serves_every_laser_and_a_png_reads_too(tmp_path):
    frame = np.arange(48, dtype=np.uint16).reshape(SHAPE)
    for path in (tiff(tmp_path / "dark.tif", frame), tmp_path / "dark.png"):
        if path.suffix == ".png":
            write_image(path, frame)
        calibration = load_calibration(path, None, lasers=3, frame_shape=SHAPE)
        assert calibration.dark.shape == (3, *SHAPE) and calibration.flat is None
        np.testing.assert_array_equal(calibration.dark[2], frame)
        assert calibration.counts == "camera counts, dark-subtracted"
        assert calibration.record["dark"]["frames"] == 1


def test_a_dark_stack_is_averaged_per_laser_when_it_cycles_through_them_and_whole_otherwise(
        tmp_path):
    rng = np.random.default_rng(0)
    stack = rng.integers(90, 110, (8, *SHAPE)).astype(np.uint16)  # 4 cycles of 2 lasers
    calibration = load_calibration(tiff(tmp_path / "darks.tif", stack), None, lasers=2,
                                   frame_shape=SHAPE)
    np.testing.assert_allclose(calibration.dark[0], stack[0::2].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(calibration.dark[1], stack[1::2].mean(axis=0), rtol=1e-6)
    odd = load_calibration(tiff(tmp_path / "odd.tif", stack[:5]), None, lasers=2,
                           frame_shape=SHAPE)
    np.testing.assert_allclose(odd.dark[1], stack[:5].mean(axis=0), rtol=1e-6)


def test_the_flat_field_is_normalised_to_mean_one_after_the_dark_is_taken_off(tmp_path):
    dark = np.full(SHAPE, 100.0, np.float32)
    light = np.tile(np.linspace(1.0, 3.0, SHAPE[1], dtype=np.float32), (SHAPE[0], 1))
    flat = np.stack([100 + 500 * light, 100 + 1000 * light])  # two lasers, one lit twice as much
    calibration = load_calibration(tiff(tmp_path / "dark.tif", dark), tiff(tmp_path / "flat.tif", flat),
                                   lasers=2, frame_shape=SHAPE)
    np.testing.assert_allclose(calibration.flat.mean(axis=(1, 2)), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(calibration.flat[0], light / light.mean(), rtol=1e-5)
    # a uniform object under that light reads uniform once corrected
    seen = np.stack([100 + 2000 * light, 100 + 4000 * light])
    corrected = calibration.apply(seen)
    assert np.ptp(corrected[0]) < 1e-2 and np.ptp(corrected[1]) < 1e-2
    assert calibration.counts == "camera counts, dark-subtracted and flat-field corrected"
    assert load_calibration(None, None, lasers=2, frame_shape=SHAPE).counts == RAW_COUNTS


@pytest.mark.parametrize("dark_frames, flat_frames, message", [
    (np.zeros((1, 5, 8)), None, "has dark frames of 5x8 pixels, the acquisition 6x8"),
    (None, np.ones((3, *SHAPE)), "holds 3 flat frames for 2 lasers"),
    (None, np.zeros((1, *SHAPE)), "has pixels that are not positive"),
    (np.full((1, *SHAPE), 50.0), np.full((1, *SHAPE), 40.0), "has pixels that are not positive"),
    (None, np.full((1, *SHAPE), np.nan), "not finite"),
])
def test_a_calibration_that_does_not_fit_is_one_line_naming_the_file(tmp_path, dark_frames,
                                                                      flat_frames, message):
    dark = tiff(tmp_path / "dark.tif", dark_frames.astype(np.float32)) if dark_frames is not None else None
    flat = tiff(tmp_path / "flat.tif", flat_frames.astype(np.float32)) if flat_frames is not None else None
    with pytest.raises(InputError, match=message) as caught:
        load_calibration(dark, flat, lasers=2, frame_shape=SHAPE)
    assert "\n" not in str(caught.value) and ("dark.tif" in str(caught.value)
                                              or "flat.tif" in str(caught.value))


def test_a_missing_calibration_file_is_named(tmp_path):
    with pytest.raises(InputError, match="missing.tif"):
        load_calibration(tmp_path / "missing.tif", None, lasers=2, frame_shape=SHAPE)
