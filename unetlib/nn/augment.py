"""One random geometric transform applied to an image and its mask together; intensity jitter.

Keras 3 has no ``ImageDataGenerator``, so augmentation is built from TensorFlow ops that
run inside ``tf.data`` in graph mode. Per sample, one 3x3 affine matrix (rotation, shear,
zoom, flips, shift, and the crop position) maps each output pixel to a point of the full
frame; ``ImageProjectiveTransformV3`` samples the image there bilinearly and the mask
with nearest neighbour, so the mask stays binary and aligned with its image. Sampling the
patch straight from the full frame means rotated corners show real tissue, not fill.

Every random draw is stateless (``tf.random.stateless_*``) and takes an explicit seed of
shape ``(2,)``: the same seed always gives the same transform, whatever ran before.
Coordinates are pixel indices ``(row, column)``; parameters are in degrees and fractions
of the patch size (see :class:`~unetlib.core.config.AugmentConfig`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from unetlib.core._tensorflow import tf
from unetlib.core.config import AUGMENT_PRESETS, AugmentConfig, augment_preset, preset_names
from unetlib.core.errors import ParameterError

__all__ = ["AUGMENT_PRESETS", "augment_pair", "augment_preset", "jitter_intensity",
           "preset_names", "random_linear", "sampling_transform", "transform_pair"]

# ImageProjectiveTransformV3 spells the fill modes in capitals.
_FILL_MODES = {"reflect": "REFLECT", "constant": "CONSTANT", "nearest": "NEAREST", "wrap": "WRAP"}

def random_linear(config: AugmentConfig, *, seed: tf.Tensor) -> tf.Tensor:
    """Draw the linear part (rotation, shear, zoom, flips) of one transform.

    Returns
    -------
    tf.Tensor of shape (2, 2), float32
        Maps an output offset ``(x, y)`` from the patch centre to an input offset.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=5)
    angle = _symmetric(seeds[0], math.radians(config.rotation_degrees))
    shear = _symmetric(seeds[1], math.radians(config.shear_degrees))
    if config.zoom_isotropic:
        zoom_x = zoom_y = 1.0 + _symmetric(seeds[2], config.zoom_fraction)
    else:
        zoom_x, zoom_y = tf.unstack(1.0 + _symmetric(seeds[2], config.zoom_fraction, shape=(2,)))
    flip_x = _random_sign(seeds[3]) if config.horizontal_flip else tf.constant(1.0)
    flip_y = _random_sign(seeds[4]) if config.vertical_flip else tf.constant(1.0)
    cos, sin = tf.cos(angle), tf.sin(angle)
    rotation = tf.reshape(tf.stack([cos, -sin, sin, cos]), (2, 2))
    shearing = tf.reshape(tf.stack([1.0, tf.tan(shear), 0.0, 1.0]), (2, 2))
    # A zoom above 1 magnifies: the output covers a smaller part of the input.
    scaling = tf.linalg.diag(tf.stack([flip_x / zoom_x, flip_y / zoom_y]))
    return rotation @ shearing @ scaling


def _symmetric(seed: tf.Tensor, limit: float, *, shape: Sequence[int] = ()) -> tf.Tensor:
    """Uniform draw in ``[-limit, limit]`` (exactly 0 when ``limit`` is 0)."""
    return tf.random.stateless_uniform(shape, seed, minval=-limit, maxval=limit) if limit \
        else tf.zeros(shape)


def _random_sign(seed: tf.Tensor) -> tf.Tensor:
    return tf.where(tf.random.stateless_uniform((), seed) < 0.5, -1.0, 1.0)


def sampling_transform(linear: tf.Tensor, *, input_centre: tf.Tensor,
                       output_size: Sequence[int], shift: tf.Tensor | None = None) -> tf.Tensor:
    """Build the 8-vector that ``ImageProjectiveTransformV3`` expects.

    Output pixel ``(x, y)`` is read from input point
    ``input_centre + linear @ ((x, y) - output_centre) + shift``.

    Parameters
    ----------
    linear : tf.Tensor of shape (2, 2)
        From :func:`random_linear` (or the identity).
    input_centre : tf.Tensor of shape (2,)
        ``(row, column)`` of the input point that lands on the output centre.
    output_size : (height, width)
    shift : tf.Tensor of shape (2,), optional
        Extra ``(row, column)`` offset in input pixels.
    """
    out_height, out_width = output_size
    out_centre = tf.constant([(out_width - 1) / 2, (out_height - 1) / 2], tf.float32)
    centre_xy = tf.cast(tf.reverse(input_centre, [0]), tf.float32)
    if shift is not None:
        centre_xy += tf.cast(tf.reverse(shift, [0]), tf.float32)
    offset = centre_xy - tf.linalg.matvec(linear, out_centre)
    return tf.stack([linear[0, 0], linear[0, 1], offset[0],
                     linear[1, 0], linear[1, 1], offset[1], 0.0, 0.0])


def transform_pair(image: tf.Tensor, mask: tf.Tensor, transform: tf.Tensor, *,
                   output_size: Sequence[int], fill_mode: str = "reflect"
                   ) -> tuple[tf.Tensor, tf.Tensor]:
    """Resample an image (bilinear) and its mask (nearest) with the same transform.

    Parameters
    ----------
    image : tf.Tensor of shape (H, W, C), float32
    mask : tf.Tensor of shape (H, W, 1)
        Any dtype (``uint8`` {0, 1} in the pipeline); values are never mixed.
    transform : tf.Tensor of shape (8,)
        From :func:`sampling_transform`.
    output_size : (height, width)
    fill_mode : {"reflect", "constant", "nearest", "wrap"}
        Used for image and mask alike (``constant`` fills 0), so what the network sees
        outside the frame is labelled consistently.
    """
    if fill_mode not in _FILL_MODES:
        raise ParameterError(f"fill_mode={fill_mode!r} is invalid: expected one of "
                             + ", ".join(repr(mode) for mode in _FILL_MODES) + ".")
    shape = tf.constant(list(output_size), tf.int32)

    def resample(values: tf.Tensor, interpolation: str) -> tf.Tensor:
        out = tf.raw_ops.ImageProjectiveTransformV3(
            images=values[tf.newaxis], transforms=transform[tf.newaxis], output_shape=shape,
            fill_value=0.0, interpolation=interpolation, fill_mode=_FILL_MODES[fill_mode])
        return tf.ensure_shape(out[0], (*output_size, values.shape[-1]))

    return resample(image, "BILINEAR"), resample(mask, "NEAREST")


def jitter_intensity(image: tf.Tensor, config: AugmentConfig, *, seed: tf.Tensor) -> tf.Tensor:
    """Randomly change gamma, contrast, brightness and noise of a normalised image.

    The mask is never touched. Fields that are 0 in ``config`` cost nothing.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=4)
    if config.gamma:
        log_limit = math.log1p(config.gamma)
        exponent = tf.exp(tf.random.stateless_uniform((), seeds[0], -log_limit, log_limit))
        # Normalised values can be slightly negative: change the magnitude, keep the sign.
        image = tf.sign(image) * tf.pow(tf.abs(image), exponent)
    if config.contrast:
        factor = 1.0 + _symmetric(seeds[1], config.contrast)
        mean = tf.reduce_mean(image, axis=(0, 1), keepdims=True)
        image = (image - mean) * factor + mean
    if config.brightness:
        image = image + _symmetric(seeds[2], config.brightness)
    if config.noise_std:
        image = image + config.noise_std * tf.random.stateless_normal(tf.shape(image), seeds[3])
    return image


def augment_pair(image: tf.Tensor, mask: tf.Tensor, config: AugmentConfig, *, seed: tf.Tensor,
                 output_size: Sequence[int] | None = None, centre: tf.Tensor | None = None
                 ) -> tuple[tf.Tensor, tf.Tensor]:
    """Apply one random transform to an image and its mask, then jitter the image.

    Works eagerly and inside ``tf.data``/``tf.function``. The same ``seed`` gives the
    same result.

    Parameters
    ----------
    image : tf.Tensor or ndarray of shape (H, W, C), float32
    mask : tf.Tensor or ndarray of shape (H, W, 1)
        Binary mask; keeps its dtype and its values.
    config : AugmentConfig
    seed : tf.Tensor of shape (2,), integer
    output_size : (height, width), optional
        Size of the result; defaults to the input's (static) size.
    centre : tf.Tensor of shape (2,), optional
        ``(row, column)`` of the input point at the output centre before the random
        shift; defaults to the input centre. The pipeline uses it to cut the patch
        straight from the full frame.

    Returns
    -------
    image : tf.Tensor of shape (*output_size, C), float32
    mask : tf.Tensor of shape (*output_size, 1), same dtype as ``mask``
    """
    config.validate()
    image = tf.convert_to_tensor(image, tf.float32)
    mask = tf.convert_to_tensor(mask)
    if output_size is None:
        output_size = tuple(image.shape[:2])
    if centre is None:
        size = tf.cast(tf.shape(image)[:2], tf.float32)
        centre = (size - 1.0) / 2.0
    seed = tf.cast(seed, tf.int64)
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    linear = random_linear(config, seed=seeds[0])
    shift = _symmetric(seeds[1], config.shift_fraction, shape=(2,)) * tf.constant(
        [float(output_size[0]), float(output_size[1])])
    transform = sampling_transform(linear, input_centre=centre, output_size=output_size,
                                   shift=shift)
    image, mask = transform_pair(image, mask, transform, output_size=output_size,
                                 fill_mode=config.fill_mode)
    return jitter_intensity(image, config, seed=seeds[2]), mask
