"""Joint augmentation: one transform for image and mask, binary masks, seeded draws."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from unetlib.core._tensorflow import tf
from unetlib.core.config import AugmentConfig
from unetlib.core.errors import ParameterError
from unetlib.nn.augment import (
    augment_pair,
    augment_preset,
    jitter_intensity,
    random_linear,
    sampling_transform,
    transform_pair,
)

STRONG = AugmentConfig(rotation_degrees=40.0, shift_fraction=0.15, shear_degrees=15.0,
                       zoom_fraction=0.3, horizontal_flip=True, vertical_flip=True,
                       fill_mode="reflect", brightness=0.0, contrast=0.0, gamma=0.0,
                       noise_std=0.0)


def blobs(size=(96, 128)) -> tuple[np.ndarray, np.ndarray]:
    """A smooth image of two off-centre blobs and the mask derived from it (image > 0.5).

    Asymmetric on purpose, so a flip or rotation applied to only one of them shows.
    """
    rows, cols = np.mgrid[:size[0], :size[1]].astype(np.float32)
    image = (np.exp(-((rows - 30) ** 2 + (cols - 40) ** 2) / 300.0)
             + 0.9 * np.exp(-((rows - 65) ** 2 + (cols - 95) ** 2) / 120.0))
    image = image[..., None].astype(np.float32)
    return image, (image > 0.5).astype(np.uint8)


@pytest.mark.parametrize("seed", range(6))
def test_transformed_mask_stays_binary_and_aligned_with_its_image(seed):
    image, mask = blobs()
    out_image, out_mask = augment_pair(image, mask, STRONG, seed=tf.constant([seed, 7]))
    out_image, out_mask = out_image.numpy(), out_mask.numpy()
    assert out_mask.dtype == np.uint8 and out_image.shape == image.shape
    assert set(np.unique(out_mask)) <= {0, 1}
    # The mask moved with its image: thresholding the transformed image gives the
    # transformed mask except along the outline (bilinear vs nearest sampling).
    agreement = np.mean((out_image > 0.5) == (out_mask > 0))
    assert agreement > 0.985
    # ... and the transform was not the identity.
    assert np.mean(out_mask != mask) > 0.01


@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "wrap"])
def test_every_fill_mode_fills_image_and_mask_alike(fill_mode):
    image, mask = blobs()
    config = dataclasses.replace(STRONG, fill_mode=fill_mode, zoom_fraction=0.5)
    for seed in range(3):
        out_image, out_mask = augment_pair(image, mask, config, seed=tf.constant([seed, 11]))
        out_image, out_mask = out_image.numpy(), out_mask.numpy()
        assert set(np.unique(out_mask)) <= {0, 1}
        assert np.mean((out_image > 0.5) == (out_mask > 0)) > 0.985


def test_shift_and_flips_move_image_and_mask_by_whole_pixels():
    """The coordinate conventions: (row, column) shifts, x flips columns, y flips rows."""
    image, mask = blobs((20, 30))
    image = image + np.arange(30, dtype=np.float32)[None, :, None] / 100  # no symmetry
    centre = tf.constant([9.5, 14.5])
    size = (20, 30)
    everything = (slice(None), slice(None))
    cases = [  # (linear, shift, input region, output region it lands on)
        (np.eye(2), [3.0, 5.0], np.s_[3:, 5:], np.s_[:-3, :-5]),
        (np.diag([-1.0, 1.0]), [0.0, 0.0], np.s_[:, ::-1], everything),
        (np.diag([1.0, -1.0]), [0.0, 0.0], np.s_[::-1, :], everything)]
    for linear, shift, source, target in cases:
        transform = sampling_transform(tf.constant(linear, tf.float32), input_centre=centre,
                                       output_size=size, shift=tf.constant(shift))
        out_image, out_mask = transform_pair(tf.constant(image), tf.constant(mask), transform,
                                             output_size=size, fill_mode="constant")
        np.testing.assert_allclose(out_image.numpy()[target], image[source], atol=1e-5)
        np.testing.assert_array_equal(out_mask.numpy()[target], mask[source])


def test_a_flip_only_config_gives_the_crop_or_its_exact_mirror():
    image, mask = blobs()
    config = dataclasses.replace(augment_preset("none"), horizontal_flip=True)
    outcomes = set()
    for seed in range(8):
        out_image, out_mask = augment_pair(image, mask, config, seed=tf.constant([seed, 0]))
        mirrored = np.allclose(out_image.numpy(), image[:, ::-1], atol=1e-5)
        assert mirrored or np.allclose(out_image.numpy(), image, atol=1e-5)
        np.testing.assert_array_equal(out_mask.numpy(), mask[:, ::-1] if mirrored else mask)
        outcomes.add(mirrored)
    assert outcomes == {True, False}


def test_no_augmentation_draws_the_identity():
    linear = random_linear(augment_preset("none"), seed=tf.constant([1, 2], tf.int64))
    np.testing.assert_array_equal(linear.numpy(), np.eye(2))


def test_a_mask_transformed_alone_would_not_align():
    """The alignment check above fails when image and mask get different transforms."""
    image, mask = blobs()
    out_image, _ = augment_pair(image, mask, STRONG, seed=tf.constant([1, 7]))
    _, other_mask = augment_pair(image, mask, STRONG, seed=tf.constant([2, 7]))
    assert np.mean((out_image.numpy() > 0.5) == (other_mask.numpy() > 0)) < 0.985


def test_same_seed_same_result_different_seed_different_result():
    image, mask = blobs()
    config = augment_preset("default")
    first = augment_pair(image, mask, config, seed=tf.constant([3, 4]))
    again = augment_pair(image, mask, config, seed=tf.constant([3, 4]))
    other = augment_pair(image, mask, config, seed=tf.constant([5, 4]))
    np.testing.assert_array_equal(first[0].numpy(), again[0].numpy())
    np.testing.assert_array_equal(first[1].numpy(), again[1].numpy())
    assert not np.array_equal(first[0].numpy(), other[0].numpy())


def test_none_preset_returns_the_crop_unchanged():
    image, mask = blobs()
    out_image, out_mask = augment_pair(image, mask, augment_preset("none"),
                                       seed=tf.constant([0, 0]))
    np.testing.assert_allclose(out_image.numpy(), image, atol=1e-5)
    np.testing.assert_array_equal(out_mask.numpy(), mask)


def test_centre_and_output_size_cut_a_patch_from_the_full_frame():
    image, mask = blobs()
    patch, patch_mask = augment_pair(image, mask, augment_preset("none"),
                                     seed=tf.constant([0, 0]), output_size=(32, 32),
                                     centre=tf.constant([30.0 - 0.5, 40.0 - 0.5]))
    np.testing.assert_allclose(patch.numpy(), image[14:46, 24:56], atol=1e-5)
    np.testing.assert_array_equal(patch_mask.numpy(), mask[14:46, 24:56])


def test_original_preset_moves_pixels_slightly_never_flips_vertically_or_changes_intensity():
    # The Keras 2 recipe: shifts, shears and zooms of 5 %, rotation_range=0.2 (read as
    # degrees), horizontal flips only, no intensity change.
    image, mask = blobs()
    values = np.unique(image)
    mirrored = set()
    for seed in range(12):
        out_image, out_mask = augment_pair(image, mask, augment_preset("original"),
                                           seed=tf.constant([seed, 3]))
        out = out_image.numpy()[..., 0]
        # The brighter blob stays in the top half: no vertical flip, no large rotation.
        rows = np.nonzero(out > 0.8)[0]
        assert rows.size and rows.mean() < image.shape[0] / 2, seed
        # Intensities are resampled, never scaled: nothing brighter or darker than before.
        assert values.min() - 1e-5 <= out.min() and out.max() <= values.max() + 1e-5
        mirrored.add(bool(np.nonzero(out > 0.8)[1].mean() > image.shape[1] / 2))
    assert mirrored == {True, False}  # horizontal flips happen, and not always


def test_runs_in_graph_mode_inside_tf_data():
    image, mask = blobs()
    dataset = tf.data.Dataset.range(4).map(
        lambda index: augment_pair(image, mask, STRONG,
                                   seed=tf.stack([tf.cast(index, tf.int64), tf.constant(1, tf.int64)])))
    results = list(dataset)
    assert len(results) == 4
    eager = augment_pair(image, mask, STRONG, seed=tf.constant([2, 1]))
    np.testing.assert_allclose(results[2][0].numpy(), eager[0].numpy(), atol=1e-5)
    np.testing.assert_array_equal(results[2][1].numpy(), eager[1].numpy())


def test_runs_inside_tf_function():
    image, mask = blobs()

    @tf.function
    def augment(seed):
        return augment_pair(image, mask, STRONG, seed=seed)

    traced = augment(tf.constant([4, 2], tf.int64))
    eager = augment_pair(image, mask, STRONG, seed=tf.constant([4, 2]))
    np.testing.assert_allclose(traced[0].numpy(), eager[0].numpy(), atol=1e-5)
    np.testing.assert_array_equal(traced[1].numpy(), eager[1].numpy())
    assert traced[1].dtype == tf.uint8
    assert not np.array_equal(augment(tf.constant([5, 2], tf.int64))[1].numpy(),
                              traced[1].numpy())


def test_intensity_jitter_changes_the_image_only():
    image, mask = blobs()
    config = dataclasses.replace(augment_preset("none"), brightness=0.2, contrast=0.3,
                                 gamma=0.3, noise_std=0.05)
    out_image, out_mask = augment_pair(image, mask, config, seed=tf.constant([9, 9]))
    np.testing.assert_array_equal(out_mask.numpy(), mask)
    assert np.abs(out_image.numpy() - image).mean() > 0.01
    unchanged = jitter_intensity(tf.constant(image), augment_preset("none"), seed=tf.constant([9, 9]))
    np.testing.assert_array_equal(unchanged.numpy(), image)


@pytest.mark.parametrize("field, value", [("rotation_degrees", -1.0), ("shift_fraction", 1.0),
                                          ("zoom_fraction", 1.5), ("fill_mode", "mirror"),
                                          ("contrast", 2.0), ("noise_std", -0.1)])
def test_out_of_range_settings_are_refused(field, value):
    with pytest.raises(ParameterError, match=field):
        augment_preset("default", **{field: value})


def test_invalid_settings_built_directly_are_refused_by_validate():
    with pytest.raises(ParameterError, match="shear_degrees=75"):
        AugmentConfig(shear_degrees=75.0).validate()
    with pytest.raises(ParameterError, match="gamma=1.0"):
        dataclasses.replace(augment_preset("original"), gamma=1.0).validate()
    assert augment_preset("none").validate() == augment_preset("none")


def test_transform_pair_refuses_an_unknown_fill_mode():
    image, mask = blobs((16, 16))
    transform = sampling_transform(tf.eye(2), input_centre=tf.constant([7.5, 7.5]),
                                   output_size=(16, 16))
    with pytest.raises(ParameterError, match="fill_mode='mirror'"):
        transform_pair(image, mask, transform, output_size=(16, 16), fill_mode="mirror")


def test_unknown_preset_names_the_choices():
    with pytest.raises(ParameterError, match="'default', 'original', 'none'"):
        augment_preset("heavy")


def test_augment_pair_refuses_an_invalid_config_built_directly():
    image, mask = blobs()
    with pytest.raises(ParameterError, match="zoom_fraction"):
        augment_pair(image, mask, AugmentConfig(zoom_fraction=1.5), seed=tf.constant([0, 0]))


@pytest.mark.parametrize("seed", range(4))
def test_label_values_survive_augmentation_intact(seed):
    """Organ classes are resampled nearest-neighbour: no value appears that was not there,
    and every organ keeps roughly its area."""
    image, _ = blobs()
    labels = np.zeros(image.shape[:2] + (1,), np.uint8)
    labels[10:40, 10:50], labels[50:80, 70:120], labels[60:70, 20:30] = 1, 2, 5
    out_image, out_labels = augment_pair(image, labels, STRONG, seed=tf.constant([seed, 3]))
    out_labels = out_labels.numpy()
    assert out_labels.dtype == np.uint8
    assert set(np.unique(out_labels)) <= {0, 1, 2, 5}
    for value in (1, 2, 5):
        area = (labels == value).sum()
        # Zoom (up to 30 % a side), shear and shifts out of the frame change areas; a class
        # that vanished or spread (label values interpolated) would not stay within these.
        assert 0.4 * area < (out_labels == value).sum() < 2.5 * area, value
