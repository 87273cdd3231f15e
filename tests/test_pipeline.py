"""The tf.data input pipeline: shapes, binary masks, seeds, splits, padding, foreground."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from unetlib.core.config import NormalizeConfig, PipelineConfig, augment_preset
from unetlib.core.errors import InputError, OutputError, ParameterError
from unetlib.core.io import read_image, write_image
from unetlib.nn.pipeline import (
    Pair,
    class_frequencies,
    load_pairs,
    log_prior_shift,
    make_training_dataset,
    make_validation_dataset,
    split_pairs,
    take_samples,
    tile_starts,
    to_display,
    validation_tiles,
    write_augmented_pairs,
)

SMALL = PipelineConfig(patch_size=32, batch_size=4, seed=3)


def make_folder(root, *, channels=1, count=4, size=(60, 80), organ_radius=12, dtype=np.uint16,
                seed=0, suffix=None):
    """Frames with a bright disc (the organ) on noise, and the disc's 0/1 mask.

    ``size`` may be a list of sizes, one per frame.
    """
    rng = np.random.default_rng(seed)
    peak = np.iinfo(dtype).max // 2 if np.issubdtype(dtype, np.integer) else 1.0
    sizes = size if isinstance(size, list) else [size] * count
    for index, size in enumerate(sizes):
        rows, cols = np.mgrid[:size[0], :size[1]]
        centre = rng.integers(organ_radius, np.array(size) - organ_radius)
        disc = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 < organ_radius ** 2
        frame = rng.random(size) * peak * 0.2 + disc * peak * 0.7
        if channels > 1:
            frame = np.stack([frame * (1 - 0.2 * c) for c in range(channels)], axis=-1)
        frame_suffix = suffix or (".png" if channels == 1 else ".tif")
        write_image(root / "train" / "frames" / f"{index}{frame_suffix}", frame.astype(dtype))
        write_image(root / "train" / "masks" / f"{index}.png", disc.astype(np.uint8) * 255)
    return root


@pytest.mark.parametrize("channels, dtype, suffix", [
    (1, np.uint16, ".png"), (1, np.uint8, ".png"), (1, np.uint16, ".tif"),
    (3, np.uint16, ".tif"), (3, np.float32, ".tif"), (4, np.uint16, ".tif"),
    (4, np.float32, ".tif")])
def test_batches_have_the_right_shapes_dtypes_and_binary_masks(tmp_path, channels, dtype, suffix):
    pairs = load_pairs(make_folder(tmp_path / "data", channels=channels, dtype=dtype,
                                   suffix=suffix))
    assert [pair.image.shape for pair in pairs] == [(60, 80, channels)] * 4
    assert all(pair.image.dtype == np.float32 and pair.mask.dtype == np.uint8 for pair in pairs)
    assert all(pair.mask.shape == (60, 80, 1) for pair in pairs)
    assert all(set(np.unique(pair.mask)) == {0, 1} for pair in pairs)
    images, masks = next(iter(make_training_dataset(pairs, SMALL, augment_preset("default"))))
    assert images.shape == (4, 32, 32, channels) and images.dtype.name == "float32"
    assert masks.shape == (4, 32, 32, 1) and masks.dtype.name == "float32"
    assert set(np.unique(masks.numpy())) == {0.0, 1.0}  # exactly: both present, nothing between
    val_images, val_masks = next(iter(make_validation_dataset(pairs, SMALL)))
    assert val_images.shape[1:] == (32, 32, channels) and val_masks.shape[1:] == (32, 32, 1)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return load_pairs(make_folder(tmp_path_factory.mktemp("data")))


def first_batches(pairs, pipeline, count=2, seed=None):
    dataset = make_training_dataset(pairs, pipeline, augment_preset("default"), seed=seed)
    return [(images.numpy(), masks.numpy()) for images, masks in dataset.take(count)]


def test_patches_stay_aligned_with_their_masks_through_the_whole_pipeline(tmp_path):
    """Bright disc = organ: thresholding each augmented patch gives its mask back."""
    sizes = [(60, 80), (90, 50), (40, 40)]
    data = make_folder(tmp_path / "data", size=sizes, organ_radius=10)
    for path in (data / "train" / "frames").iterdir():  # noise-free frames: a clean edge
        mask = read_image(data / "train" / "masks" / path.name)
        write_image(path, (mask > 0).astype(np.uint16) * 30000, overwrite=True)
    pairs = load_pairs(data, normalize=NormalizeConfig(method="dtype"))
    strong = augment_preset("default", rotation_degrees=45.0, shear_degrees=10.0,
                            zoom_fraction=0.3, brightness=0.0, contrast=0.0, gamma=0.0)
    images, masks = take_samples(pairs, dataclasses.replace(SMALL, foreground_share=0.7),
                                 strong, count=24)
    level = 30000 / 65535 / 2
    agreement = np.mean((images > level) == (masks > 0.5), axis=(1, 2, 3))
    assert agreement.min() > 0.97, agreement
    assert masks.reshape(24, -1).max(axis=1).mean() > 0.5  # most patches show the organ


def test_same_seed_same_batches_different_seed_different_batches(pairs):
    first = first_batches(pairs, SMALL)
    again = first_batches(pairs, SMALL)
    other = first_batches(pairs, dataclasses.replace(SMALL, seed=4))
    for (images, masks), (images_again, masks_again) in zip(first, again):
        np.testing.assert_array_equal(images, images_again)
        np.testing.assert_array_equal(masks, masks_again)
    assert not np.array_equal(first[0][0], other[0][0])
    assert not np.array_equal(first[0][0], first[1][0])  # the stream moves on
    np.testing.assert_array_equal(first_batches(pairs, SMALL, seed=4)[0][0], other[0][0])


def test_split_is_by_whole_frame_reproducible_and_complete(pairs):
    train, val = split_pairs(pairs, val_fraction=0.25, seed=0)
    assert len(val) == 1 and len(train) == 3
    assert {p.stem for p in train} | {p.stem for p in val} == {p.stem for p in pairs}
    assert not {p.stem for p in train} & {p.stem for p in val}
    again = split_pairs(pairs, val_fraction=0.25, seed=0)
    assert [p.stem for p in again[1]] == [p.stem for p in val]
    assert {tuple(p.stem for p in split_pairs(pairs, val_fraction=0.25, seed=s)[1])
            for s in range(10)} != {tuple(p.stem for p in val)}
    # At least one frame is held out, and at least one is kept for training.
    assert len(split_pairs(pairs, val_fraction=0.01, seed=0)[1]) == 1
    assert len(split_pairs(pairs, val_fraction=0.99, seed=0)[0]) == 1


def test_split_of_ten_frames_keeps_whole_frames_in_order(pairs):
    ten = [dataclasses.replace(pairs[0], stem=str(index)) for index in range(10)]
    train, val = split_pairs(ten, val_fraction=0.3, seed=5)
    assert len(val) == 3 and len(train) == 7
    assert sorted(train + val, key=lambda p: int(p.stem)) == ten  # covering, each once
    assert all(any(pair is original for original in ten) for pair in train + val)  # whole frames
    assert [int(p.stem) for p in val] == sorted(int(p.stem) for p in val)  # input order kept
    assert split_pairs(ten, val_fraction=0.3, seed=5) == (train, val)
    assert len({tuple(p.stem for p in split_pairs(ten, val_fraction=0.3, seed=s)[1])
                for s in range(6)}) > 1
    assert split_pairs(ten, val_fraction=0.0, seed=5) == (ten, [])


def test_frames_smaller_than_the_patch_are_padded_not_resized(tmp_path):
    pairs = load_pairs(make_folder(tmp_path / "small", size=(40, 50), organ_radius=8))
    pipeline = PipelineConfig(patch_size=64, batch_size=2, seed=0)
    images, masks = next(iter(make_training_dataset(pairs, pipeline, augment_preset("none"))))
    assert images.shape == (2, 64, 64, 1)
    tiles, tile_masks = validation_tiles(pairs[:1], 64)
    assert tiles.shape == (1, 64, 64, 1)
    # The frame sits unscaled in the top-left corner of its padded tile.
    np.testing.assert_array_equal(tiles[0, :40, :50], pairs[0].image)
    np.testing.assert_array_equal(tile_masks[0, :40, :50], pairs[0].mask)


def tiny_organ_folder(root, count=3, size=200, side=6):
    rng = np.random.default_rng(1)
    for index in range(count):
        frame = (rng.random((size, size)) * 3000).astype(np.uint16)
        mask = np.zeros((size, size), np.uint8)
        top, left = rng.integers(0, size - side, 2)
        mask[top:top + side, left:left + side] = 255
        frame[mask > 0] += 30000
        write_image(root / "train" / "frames" / f"{index}.png", frame)
        write_image(root / "train" / "masks" / f"{index}.png", mask)
    return root


@pytest.mark.parametrize("augment", ["none", "default"])
def test_foreground_share_keeps_small_organs_in_the_patches(tmp_path, augment):
    pairs = load_pairs(tiny_organ_folder(tmp_path / "tiny"))
    assert all(pair.mask.sum() == 36 for pair in pairs)
    always = dataclasses.replace(SMALL, foreground_share=1.0)
    never = dataclasses.replace(SMALL, foreground_share=0.0)
    _, masks_on = take_samples(pairs, always, augment_preset(augment), count=24)
    _, masks_off = take_samples(pairs, never, augment_preset(augment), count=24)
    with_organ_on = np.mean(masks_on.reshape(24, -1).max(axis=1) > 0)
    with_organ_off = np.mean(masks_off.reshape(24, -1).max(axis=1) > 0)
    assert with_organ_on == 1.0
    assert with_organ_off < 0.25  # a 32-pixel patch meets a 6x6 organ in ~3 % of 200x200


def test_class_frequencies_of_the_patches_are_those_the_sampler_draws(tmp_path):
    """The computed share of each class in the training patches matches the share in
    patches drawn by the pipeline (no geometric augmentation: the computation leaves rotation
    and zoom out), and exceeds the frames' share when patches are centred on organs."""
    pairs = load_pairs(make_folder(tmp_path / "discs", count=3, size=(90, 120), organ_radius=9))
    pipeline = dataclasses.replace(SMALL, foreground_share=0.5)
    frames, patches = class_frequencies(pairs, pipeline, classes=2)
    whole = np.mean([pair.mask.mean() for pair in pairs])
    assert frames[1] == pytest.approx(whole) and frames.sum() == pytest.approx(1.0)
    _, masks = take_samples(pairs, pipeline, augment_preset("none"), count=600)
    drawn = masks.mean()
    assert patches[1] == pytest.approx(drawn, rel=0.15), (patches, drawn)
    assert patches[1] > 2 * frames[1]
    shift = log_prior_shift(pairs, pipeline, classes=2)
    assert shift[1] == pytest.approx(np.log(patches[1] / frames[1]), abs=1e-3) and shift[0] < 0
    assert log_prior_shift(pairs, pipeline, classes=2, strength=0.5)[1] == pytest.approx(
        shift[1] / 2, abs=1e-3)
    # A class the frames lack is left alone.
    assert log_prior_shift(pairs, pipeline, classes=3)[2] == 0.0


def test_8_and_16_bit_frames_of_one_scene_look_the_same_to_the_network(tmp_path):
    scene = make_folder(tmp_path / "sixteen", dtype=np.uint16)
    eight = tmp_path / "eight"
    for path in sorted((scene / "train" / "frames").iterdir()):
        frame = read_image(path)
        write_image(eight / "train" / "frames" / path.name, (frame / 257).astype(np.uint8))
    for path in sorted((scene / "train" / "masks").iterdir()):
        write_image(eight / "train" / "masks" / path.name, read_image(path))
    for a, b in zip(load_pairs(scene), load_pairs(eight)):
        assert np.abs(a.image - b.image).max() < 0.02
    # The "dtype" method keeps absolute intensity instead: 8-bit and 16-bit then agree too.
    dtype = NormalizeConfig(method="dtype")
    assert np.abs(load_pairs(scene, normalize=dtype)[0].image
                  - load_pairs(eight, normalize=dtype)[0].image).max() < 0.01


def test_a_folder_with_an_empty_mask_is_refused(tmp_path):
    data = make_folder(tmp_path / "data")
    write_image(data / "train" / "masks" / "2.png", np.zeros((60, 80), np.uint8), overwrite=True)
    with pytest.raises(InputError, match=r"2\.png: mask is all background"):
        load_pairs(data)


def test_validation_tiles_cover_every_frame():
    assert tile_starts(100, 32) == [0, 23, 45, 68]
    assert tile_starts(32, 32) == [0] and tile_starts(20, 32) == [0]
    for length in range(33, 300, 7):
        starts = tile_starts(length, 32)
        assert starts[0] == 0 and starts[-1] == length - 32
        assert all(b - a <= 32 for a, b in zip(starts, starts[1:]))


def test_validation_tiles_reassemble_every_frame(tmp_path):
    sizes = [(60, 80), (32, 100), (75, 40)]
    pairs = load_pairs(make_folder(tmp_path / "data", size=sizes, organ_radius=10))
    tiles, masks = validation_tiles(pairs, 32)
    assert tiles.dtype == np.float32 and masks.dtype == np.float32
    index = 0
    for pair, (height, width) in zip(pairs, sizes):
        image = np.full((height, width, 1), np.nan, np.float32)
        mask = np.full((height, width, 1), -1.0, np.float32)
        for top in tile_starts(height, 32):
            for left in tile_starts(width, 32):
                image[top:top + 32, left:left + 32] = tiles[index]
                mask[top:top + 32, left:left + 32] = masks[index]
                index += 1
        np.testing.assert_array_equal(image, pair.image)  # every pixel covered, unchanged
        np.testing.assert_array_equal(mask, pair.mask)
    assert index == len(tiles)


def test_validation_dataset_is_fixed(pairs):
    first = [images.numpy() for images, _ in make_validation_dataset(pairs, SMALL)]
    again = [images.numpy() for images, _ in make_validation_dataset(pairs, SMALL)]
    assert sum(len(batch) for batch in first) == 4 * len(tile_starts(60, 32)) * len(tile_starts(80, 32))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_write_augmented_pairs_and_refuse_to_overwrite(pairs, tmp_path):
    out = tmp_path / "aug"
    written = write_augmented_pairs(pairs, out, SMALL, augment_preset("default"), count=3)
    assert written == [out / "images" / f"{index}.png" for index in range(3)]
    assert sorted(path.name for path in (out / "images").iterdir()) == ["0.png", "1.png", "2.png"]
    assert sorted(path.name for path in (out / "masks").iterdir()) == ["0.png", "1.png", "2.png"]
    for index in range(3):
        image = read_image(out / "images" / f"{index}.png")
        mask = read_image(out / "masks" / f"{index}.png")
        assert image.shape == mask.shape == (32, 32) and image.dtype == mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
    # The files are the first samples of the same stream, as 8-bit pictures.
    images, masks = take_samples(pairs, SMALL, augment_preset("default"), count=3)
    np.testing.assert_array_equal(read_image(out / "images" / "1.png"), to_display(images[1]))
    np.testing.assert_array_equal(read_image(out / "masks" / "1.png"), masks[1, ..., 0] * 255)
    with pytest.raises(OutputError, match="aug: already holds images, masks"):
        write_augmented_pairs(pairs, out, SMALL, augment_preset("default"), count=3)
    assert len(list((out / "masks").iterdir())) == 3  # the refused call changed nothing
    write_augmented_pairs(pairs, out, SMALL, augment_preset("default"), count=2, force=True)
    assert len(list((out / "masks").iterdir())) == 2
    assert len(list((out / "images").iterdir())) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(write_augmented_pairs(pairs, empty, SMALL, augment_preset("none"), count=1)) == 1


def test_bad_settings_and_mixed_channels_are_refused(pairs):
    with pytest.raises(ParameterError, match="patch_size=30"):
        make_training_dataset(pairs, dataclasses.replace(SMALL, patch_size=30))
    with pytest.raises(ParameterError, match="zoom_fraction=1.2"):
        make_training_dataset(pairs, SMALL, dataclasses.replace(augment_preset("none"),
                                                                 zoom_fraction=1.2))
    with pytest.raises(InputError, match="No training frames"):
        make_training_dataset([], SMALL)
    rgb = Pair(stem="x", image=np.zeros((60, 80, 3), np.float32), mask=pairs[0].mask,
               frame_path=pairs[0].frame_path, mask_path=pairs[0].mask_path)
    with pytest.raises(InputError, match=r"different channel counts \[1, 3\]"):
        make_training_dataset([*pairs, rgb], SMALL)
