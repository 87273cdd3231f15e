"""The training input pipeline: annotated frames in, augmented batches out (tf.data).

Frames and masks are decoded, checked and normalised once (:func:`load_pairs`) and kept in
memory: ~15 annotated frames are a few megabytes, so this *is* the cache. The frames are
split into training and validation sets by whole frame (:func:`split_pairs`), never by
augmented copy. Training batches (:func:`make_training_dataset`) are drawn from an
endless ``tf.data`` stream in which sample ``i`` picks a frame, a patch centre and one
geometric transform from a stateless seed derived from ``(seed, i)``; the patch is
resampled straight from the full frame (no resizing, so the aspect ratio is kept), so the
same seed gives the same batches however many parallel calls compute them. Validation
batches (:func:`make_validation_dataset`) are fixed tiles covering every validation frame.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from unetlib.core._tensorflow import tf
from unetlib.core.config import AugmentConfig, NormalizeConfig, PipelineConfig
from unetlib.core.errors import InputError, ParameterError, describe
from unetlib.core.io import read_image, refuse_existing, staged_folder, write_image
from unetlib.data.dataset import check_pairs
from unetlib.data.masks import read_labels, read_mask
from unetlib.data.normalize import normalize_image
from unetlib.nn.augment import augment_pair
from unetlib.nn.sliding_window import pad_to

logger = logging.getLogger(__name__)

# numpy padding that matches each fill mode, so padded pixels look like what the
# projective transform would have filled in.
_PAD_MODES = {"reflect": "symmetric", "constant": "constant", "nearest": "edge", "wrap": "wrap"}


@dataclass(frozen=True)
class Pair:
    """One annotated frame, decoded and normalised.

    Attributes
    ----------
    stem : str
        Shared file stem of frame and mask (``"3"`` for ``3.png``).
    image : ndarray of shape (H, W, C), float32
        The normalised frame.
    mask : ndarray of shape (H, W, 1), uint8
        The mask in {0, 1}, or with ``organs.csv`` the class of every pixel (0
        background, ``k`` the table's ``k``-th organ).
    frame_path, mask_path : Path
        The files they came from.
    """

    stem: str
    image: np.ndarray
    mask: np.ndarray
    frame_path: Path
    mask_path: Path

    @property
    def foreground_fraction(self) -> float:
        """Share of mask pixels that are foreground (any organ)."""
        return float(np.mean(self.mask > 0))


def load_pairs(data_dir: str | os.PathLike[str], *,
               normalize: NormalizeConfig = NormalizeConfig()) -> list[Pair]:
    """Check, decode and normalise every frame/mask pair of a data folder.

    Parameters
    ----------
    data_dir : path-like
        A folder like ``data1d/`` (or its ``train/``) with ``train/frames`` and
        ``train/masks``.
    normalize : NormalizeConfig
        How frames are scaled (the same config is stored with the trained model).

    Returns
    -------
    list of Pair
        In natural order of the stems.

    Raises
    ------
    InputError
        When :func:`unetlib.data.dataset.check_pairs` finds any error (unpaired file, size
        mismatch, unreadable file, empty or non-binary mask, mixed channel counts); the
        message lists every one. Warnings (e.g. an all-foreground mask) are logged.

    Notes
    -----
    With ``organs.csv`` in the data folder, masks are read as class maps
    (:func:`unetlib.data.masks.read_labels`); :func:`unetlib.data.organs.find_organ_table` gives
    the table the classes refer to.
    """
    report = check_pairs(data_dir)
    for warning in report.raise_for_errors():
        logger.warning("%s", warning.message)
    pairs = []
    for row in report.rows:
        image = normalize_image(read_image(row.frame_path), normalize)
        if report.organs is None:
            mask, _ = read_mask(row.mask_path)
        else:
            mask, _ = read_labels(row.mask_path, report.organs)
        pairs.append(Pair(stem=row.stem, image=image, mask=mask.reshape(*mask.shape[:2], 1),
                          frame_path=row.frame_path, mask_path=row.mask_path))
    return pairs


def split_pairs(pairs: Sequence[Pair], *, val_fraction: float, seed: int
                ) -> tuple[list[Pair], list[Pair]]:
    """Split pairs into training and validation sets by whole frame, reproducibly.

    ``round(val_fraction * n)`` frames (at least 1 when ``val_fraction > 0`` and there
    are at least 2 frames) are drawn with ``seed`` for validation; both lists keep the
    input order.
    """
    count = len(pairs)
    if val_fraction <= 0 or count < 2:
        return list(pairs), []
    n_val = min(count - 1, max(1, round(val_fraction * count)))
    chosen = set(np.random.default_rng(seed).permutation(count)[:n_val].tolist())
    train = [pair for index, pair in enumerate(pairs) if index not in chosen]
    val = [pair for index, pair in enumerate(pairs) if index in chosen]
    return train, val


@dataclass(frozen=True)
class _FrameBank:
    """All training frames padded to one shape, with what sampling needs to know."""

    images: np.ndarray        # (N, H, W, C) float32
    masks: np.ndarray         # (N, H, W, 1) uint8 (0/1, or organ classes)
    sizes: np.ndarray         # (N, 2) true (height, width), float32
    foreground: np.ndarray    # (M, 2) (row, column) of every organ pixel, by frame then class
    fg_start: np.ndarray      # (N, K) first row of frame n's class-k pixels in ``foreground``
    fg_count: np.ndarray      # (N, K) number of class-k pixels of frame n (k = 1 .. K)


def _frame_bank(pairs: Sequence[Pair], patch_size: int, fill_mode: str) -> _FrameBank:
    height = max(patch_size, *(pair.image.shape[0] for pair in pairs))
    width = max(patch_size, *(pair.image.shape[1] for pair in pairs))
    mode = _PAD_MODES[fill_mode]
    images = np.stack([pad_to(pair.image, height, width, mode) for pair in pairs])
    masks = np.stack([pad_to(pair.mask, height, width, mode) for pair in pairs])
    organ_classes = max(1, max(int(pair.mask.max()) for pair in pairs))
    coordinates, counts = [], np.zeros((len(pairs), organ_classes), np.int64)
    for index, pair in enumerate(pairs):
        for klass in range(1, organ_classes + 1):
            pixels = np.argwhere(pair.mask[..., 0] == klass).astype(np.float32)
            coordinates.append(pixels)
            counts[index, klass - 1] = len(pixels)
    starts = np.concatenate([[0], np.cumsum(counts.ravel())[:-1]]).astype(np.int64)
    foreground = (np.concatenate(coordinates) if counts.sum() else np.zeros((1, 2), np.float32))
    sizes = np.array([pair.image.shape[:2] for pair in pairs], np.float32)
    return _FrameBank(images.astype(np.float32), masks.astype(np.uint8), sizes, foreground,
                      starts.reshape(counts.shape), counts)


def _sample_fn(bank: _FrameBank, pipeline: PipelineConfig, augment: AugmentConfig, seed: int):
    """A graph function: sample index -> one augmented (image, mask) patch.

    A share ``foreground_share`` of the patches is centred on an organ: one of the organs
    present in the drawn frame, each equally likely (a small spleen as often as a large
    liver), then one of its pixels. With one foreground (binary data) that is a random
    foreground pixel of the frame.
    """
    images = tf.constant(bank.images)
    masks = tf.constant(bank.masks)
    sizes = tf.constant(bank.sizes)
    foreground = tf.constant(bank.foreground)
    fg_start = tf.constant(bank.fg_start)
    fg_count = tf.constant(bank.fg_count)
    frames = len(bank.images)
    patch = float(pipeline.patch_size)
    half = (patch - 1.0) / 2.0
    jitter = pipeline.foreground_jitter * patch

    def sample(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        seeds = tf.random.experimental.stateless_split(
            tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)]), num=5)
        frame = tf.random.stateless_uniform((), seeds[0], 0, frames, dtype=tf.int64)
        size = sizes[frame]
        # Uniform centre: anywhere the patch fits inside the true frame (its middle if not).
        low = tf.minimum(half, (size - 1.0) / 2.0)
        high = tf.maximum(size - 1.0 - half, low)
        uniform = low + tf.random.stateless_uniform((2,), seeds[1]) * (high - low)
        # Organ centre: an organ present in the frame, then one of its pixels, jittered.
        present = tf.where(fg_count[frame] > 0)[:, 0]
        organ_pick = tf.random.stateless_uniform(
            (), tf.random.experimental.stateless_fold_in(seeds[2], 1), 0,
            tf.maximum(tf.size(present, out_type=tf.int64), 1), dtype=tf.int64)
        organ = tf.gather(tf.concat([present, tf.zeros((1,), tf.int64)], 0), organ_pick)
        count = fg_count[frame, organ]
        pick = tf.random.stateless_uniform((), seeds[2], 0, tf.maximum(count, 1), dtype=tf.int64)
        offset = tf.random.stateless_uniform((2,), seeds[3], -jitter, jitter)
        on_organ = foreground[fg_start[frame, organ] + pick] + offset
        use_foreground = tf.logical_and(
            count > 0, tf.random.stateless_uniform((), seeds[4]) < pipeline.foreground_share)
        centre = tf.where(use_foreground, on_organ, uniform)
        image, mask = augment_pair(images[frame], masks[frame], augment, seed=seeds[4] + 1,
                                   output_size=(pipeline.patch_size, pipeline.patch_size),
                                   centre=centre)
        return image, tf.cast(mask, tf.float32)

    return sample


def make_training_dataset(pairs: Sequence[Pair], pipeline: PipelineConfig = PipelineConfig(),
                          augment: AugmentConfig = AugmentConfig(), *,
                          seed: int | None = None) -> tf.data.Dataset:
    """An endless, seeded stream of augmented training batches.

    Parameters
    ----------
    pairs : sequence of Pair
        Training frames (all with the same channel count; sizes may differ).
    pipeline : PipelineConfig
        Patch and batch size, foreground share, seed.
    augment : AugmentConfig
        The joint geometric transform and image-only intensity jitter.
    seed : int, optional
        Overrides ``pipeline.seed`` (training uses it to give a resumed run a new stream).

    Returns
    -------
    tf.data.Dataset
        Elements ``(images, masks)`` of shapes ``(B, P, P, C)`` and ``(B, P, P, 1)``,
        float32; masks are exactly 0 or 1 (or organ classes 0 .. K). The same seed gives
        the same batches.
    """
    pipeline.validate()
    augment.validate()
    if not pairs:
        raise InputError("No training frames: annotate frames first (check-masks lists them).")
    channels = {pair.image.shape[-1] for pair in pairs}
    if len(channels) > 1:
        raise InputError(describe(pairs[0].frame_path.parent, f"frames have different channel "
                                  f"counts {sorted(channels)}", "Use one kind of frame per "
                                  "data folder (data1d: grayscale, data3d: 3 channels)."))
    check_patch_size(pairs, pipeline.patch_size)
    bank = _frame_bank(pairs, pipeline.patch_size, augment.fill_mode)
    sample = _sample_fn(bank, pipeline, augment, pipeline.seed if seed is None else seed)
    options = tf.data.Options()
    options.deterministic = True
    return (tf.data.Dataset.range(2 ** 62)
            .map(sample, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(pipeline.batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE)
            .with_options(options))


def class_frequencies(pairs: Sequence[Pair], pipeline: PipelineConfig, classes: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """How much of the frames, and of the training patches drawn from them, each class fills.

    The patches' share is the expectation under the sampler of :func:`make_training_dataset`,
    computed rather than drawn: a frame uniformly, then a share ``foreground_share`` of the
    patches centred on an organ present in it (each organ equally likely, then one of its
    pixels, jittered), the rest anywhere the patch fits. The class content of a patch centred
    at each pixel is a box filter of the class map (frame borders reflected, as the sampler
    fills them), and the jitter a second box filter; rotation and zoom are left out.

    Parameters
    ----------
    pairs : sequence of Pair
        The training frames; masks hold classes ``0 .. classes - 1``.
    pipeline : PipelineConfig
    classes : int
        Background included.

    Returns
    -------
    frames, patches : ndarray of shape (classes,)
        Each class's share of the frames' pixels (all pixels pooled) and of the patches'.

    Examples
    --------
    >>> labels = np.zeros((64, 64, 1), np.uint8)
    >>> labels[28:36, 28:36] = 1  # one small organ: 1.6 % of the frame
    >>> pair = Pair(stem="0", image=np.zeros((64, 64, 1), np.float32), mask=labels,
    ...             frame_path=Path("0.png"), mask_path=Path("0.png"))
    >>> frames, patches = class_frequencies([pair], PipelineConfig(patch_size=32), classes=2)
    >>> print(frames.round(3), patches.round(3))
    [0.984 0.016] [0.942 0.058]
    """
    frame_counts = np.zeros(classes)
    patch_shares = np.zeros(classes)
    size = pipeline.patch_size
    jitter = 2 * int(pipeline.foreground_jitter * size) + 1
    for pair in pairs:
        labels = pair.mask[..., 0]
        members = [labels == k for k in range(classes)]
        frame_counts += [member.sum() for member in members]
        window = np.stack([ndimage.uniform_filter(member.astype(np.float32), size,
                                                  mode="reflect") for member in members], -1)
        height, width = labels.shape
        low = [min((size - 1) // 2, (n - 1) // 2) for n in (height, width)]
        high = [max(n - 1 - size // 2, lo) for n, lo in zip((height, width), low)]
        uniform = window[low[0]:high[0] + 1, low[1]:high[1] + 1].mean(axis=(0, 1))
        present = [k for k in range(1, classes) if members[k].any()]
        if present and pipeline.foreground_share > 0:
            jittered = np.stack([ndimage.uniform_filter(window[..., k], jitter, mode="reflect")
                                 for k in range(classes)], -1)
            on_organ = np.mean([jittered[members[k]].mean(axis=0) for k in present], axis=0)
            share = pipeline.foreground_share
            patch_shares += share * on_organ + (1.0 - share) * uniform
        else:
            patch_shares += uniform
    return frame_counts / max(frame_counts.sum(), 1.0), patch_shares / max(len(pairs), 1)


def log_prior_shift(pairs: Sequence[Pair], pipeline: PipelineConfig, classes: int, *,
                    strength: float = 1.0) -> list[float]:
    """``strength`` x log(patch share / frame share) per class (:func:`class_frequencies`):
    what :func:`unetlib.nn.model.class_prior_shifted` subtracts from the kept model's class
    scores.

    A class absent from the frames gets 0.
    """
    frames, patches = class_frequencies(pairs, pipeline, classes)
    present = (frames > 0) & (patches > 0)
    shift = np.where(present, np.log(np.where(present, patches, 1.0))
                     - np.log(np.where(present, frames, 1.0)), 0.0)
    return [round(float(strength * value), 4) for value in shift]


def largest_useful_patch(pairs: Sequence[Pair], multiple: int = 16) -> int:
    """The smallest multiple of ``multiple`` that covers the largest frame of ``pairs`` whole.

    A larger patch adds nothing but padding, and memory that grows with its square.
    """
    side = max(max(pair.image.shape[:2]) for pair in pairs)
    return math.ceil(side / multiple) * multiple


def check_patch_size(pairs: Sequence[Pair], patch_size: int) -> None:
    """Refuse a patch larger than the frames can fill, before anything is padded to it.

    Raises
    ------
    ParameterError
        Naming the frames' folder, their largest size and the largest useful patch.
    """
    if not pairs:
        return
    limit = largest_useful_patch(pairs)
    if patch_size > limit:
        largest = max(pairs, key=lambda pair: max(pair.image.shape[:2]))
        height, width = largest.image.shape[:2]
        raise ParameterError(describe(
            largest.frame_path.parent, f"patch_size={patch_size} is invalid: the largest frame "
            f"here ({largest.frame_path.name}) is {height} x {width} pixels (height x width), "
            f"so a patch of {limit} already covers it whole",
            f"Use a patch size of at most {limit}."))


def tile_starts(length: int, tile: int) -> list[int]:
    """Starts of the fewest ``tile``-long windows covering ``length`` (last one flush)."""
    if length <= tile:
        return [0]
    count = math.ceil(length / tile)
    return sorted({round(i * (length - tile) / (count - 1)) for i in range(count)})


def validation_tiles(pairs: Sequence[Pair], patch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut every frame into the fewest patch-sized tiles that cover it.

    Frames smaller than a tile are padded (reflected; mask likewise). Tiles of large
    frames overlap slightly so the last one ends at the frame edge.

    Returns
    -------
    images : ndarray (T, P, P, C), float32
    masks : ndarray (T, P, P, 1), float32
    """
    check_patch_size(pairs, patch_size)
    images, masks = [], []
    for pair in pairs:
        image = pad_to(pair.image, patch_size, patch_size, "symmetric")
        mask = pad_to(pair.mask, patch_size, patch_size, "symmetric")
        for top in tile_starts(image.shape[0], patch_size):
            for left in tile_starts(image.shape[1], patch_size):
                images.append(image[top:top + patch_size, left:left + patch_size])
                masks.append(mask[top:top + patch_size, left:left + patch_size])
    return np.stack(images).astype(np.float32), np.stack(masks).astype(np.float32)


def make_validation_dataset(pairs: Sequence[Pair],
                            pipeline: PipelineConfig = PipelineConfig()) -> tf.data.Dataset:
    """Fixed, un-augmented validation batches: tiles covering every validation frame.

    Returns
    -------
    tf.data.Dataset
        Finite; elements ``(images, masks)`` like :func:`make_training_dataset`'s (the
        last batch may be smaller).
    """
    pipeline.validate()
    if not pairs:
        raise InputError("No validation frames: raise val_fraction or annotate more frames.")
    images, masks = validation_tiles(pairs, pipeline.patch_size)
    return (tf.data.Dataset.from_tensor_slices((images, masks))
            .batch(pipeline.batch_size)
            .prefetch(tf.data.AUTOTUNE))


def take_samples(pairs: Sequence[Pair], pipeline: PipelineConfig = PipelineConfig(),
                 augment: AugmentConfig = AugmentConfig(), *, count: int = 8,
                 seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` training samples as arrays (for previews and tests).

    Returns
    -------
    images : ndarray (count, P, P, C), float32
    masks : ndarray (count, P, P, 1), float32
    """
    single = dataclasses.replace(pipeline, batch_size=1)
    images, masks = [], []
    for image, mask in make_training_dataset(pairs, single, augment, seed=seed).take(count):
        images.append(image.numpy()[0])
        masks.append(mask.numpy()[0])
    return np.stack(images), np.stack(masks)


def to_display(image: np.ndarray) -> np.ndarray:
    """A normalised (H, W, C) image as 8-bit for viewing: [0, 1] -> [0, 255], clipped."""
    display = np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255.0 + 0.5
    display = display.astype(np.uint8)
    return display[..., 0] if display.shape[-1] == 1 else display[..., :3]


def write_augmented_pairs(pairs: Sequence[Pair], out_dir: str | os.PathLike[str],
                          pipeline: PipelineConfig = PipelineConfig(),
                          augment: AugmentConfig = AugmentConfig(), *, count: int = 30,
                          seed: int | None = None, force: bool = False) -> list[Path]:
    """Write augmented pairs to disk for inspection, as the original recipe's ``aug/`` did.

    Images go to ``out_dir/images/<i>.png`` (8-bit display scaling of the normalised
    patch: channels 1 or 3; a fourth channel is dropped) and masks to
    ``out_dir/masks/<i>.png`` (0/255). Training does not read them: it augments on the fly.

    Raises
    ------
    OutputError
        When ``out_dir`` exists and is not empty and ``force`` is false.
    """
    out_dir = Path(out_dir)
    if out_dir.is_dir():
        refuse_existing(list(out_dir.iterdir()), overwrite=force, folder=out_dir,
                        fix="Choose another folder or pass force to replace them.")
    images, masks = take_samples(pairs, pipeline, augment, count=count, seed=seed)
    written = []
    with staged_folder(out_dir) as staging:
        for index, (image, mask) in enumerate(zip(images, masks)):
            write_image(staging / "images" / f"{index}.png", to_display(image))
            write_image(staging / "masks" / f"{index}.png", (mask[..., 0] * 255).astype(np.uint8))
            written.append(out_dir / "images" / f"{index}.png")
    return written
