"""Every stage's parameters and their defaults, in one place.

Each stage of the data flow takes one frozen, keyword-only dataclass. Notebooks and the
CLI only set fields; nothing else in unetlib hard-codes a default. ``validate()`` on each
config raises :class:`~unetlib.core.errors.ParameterError` naming the field and the value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from unetlib.core.errors import ParameterError

# Foreground probability at which a binary run's pixel counts as foreground, until the
# run's own threshold is calibrated on its validation frames.
DEFAULT_THRESHOLD = 0.5


def _require(condition: bool, name: str, value: Any, expected: str) -> None:
    """Raise ParameterError for field ``name`` when ``condition`` is false."""
    if not condition:
        raise ParameterError(f"{name}={value!r} is invalid: expected {expected}.")


def _require_seed(seed: Any, name: str = "seed") -> None:
    """Seeds are what NumPy and TensorFlow accept: whole numbers from 0 to 2**32 - 1."""
    _require(isinstance(seed, int) and 0 <= seed < 2 ** 32, name, seed,
             f"a whole number from 0 to {2 ** 32 - 1}")


def to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a dict of its fields (nested configs as dicts, tuples kept;
    :func:`unetlib.core.records.as_record` gives what JSON reads back)."""
    return dataclasses.asdict(config)


@dataclass(frozen=True, kw_only=True)
class SplitConfig:
    """How a multi-laser stack is de-interleaved and exported (notebook 01, ``split-stack``).

    Attributes
    ----------
    lasers : int
        Number of lasers the acquisition cycles through; frame ``i`` belongs to laser
        ``(i - offset) % lasers``.
    offset : int
        Index of the first frame that was taken with laser 1 (frames before it are
        dropped), for acquisitions that start on another laser.
    composite3 : tuple of int
        The three lasers (1-based) combined into ``channels3/`` composites, as R, G, B.
    composite4 : tuple of int
        The four lasers (1-based) combined into ``channels4/`` composites.
    frame_format : {"png", "tif"}
        File format of the per-laser frames; both keep 16-bit data exactly.
    display_percentiles : tuple of float
        Low/high percentiles of each channel mapped to 0/255 in the 8-bit display PNGs.
    force : bool
        Replace existing output folders instead of refusing.
    """

    lasers: int = 4
    offset: int = 0
    composite3: tuple[int, ...] = (1, 2, 3)
    composite4: tuple[int, ...] = (1, 2, 3, 4)
    frame_format: str = "png"
    display_percentiles: tuple[float, float] = (0.5, 99.8)
    force: bool = False

    def validate(self) -> "SplitConfig":
        _require(isinstance(self.lasers, int) and self.lasers >= 1, "lasers", self.lasers,
                 "a whole number of lasers >= 1")
        _require(isinstance(self.offset, int) and 0 <= self.offset, "offset", self.offset,
                 "a frame index >= 0")
        for name, lasers, size in (("composite3", self.composite3, 3),
                                   ("composite4", self.composite4, 4)):
            _require(len(lasers) == size and len(set(lasers)) == size, name, lasers,
                     f"{size} different laser numbers")
        _require(self.frame_format in ("png", "tif"), "frame_format", self.frame_format,
                 "'png' or 'tif'")
        low, high = self.display_percentiles
        _require(0 <= low < high <= 100, "display_percentiles", self.display_percentiles,
                 "0 <= low < high <= 100")
        return self


@dataclass(frozen=True, kw_only=True)
class PickConfig:
    """How frames are chosen for annotation and exported (``pick-frames``).

    Attributes
    ----------
    count : int
        Number of frames to annotate (the original recipe used ~15).
    method : {"spread", "diverse", "uncertain"}
        ``spread`` takes cycles evenly spaced over the acquisition; ``diverse`` takes
        cycles that differ most from each other (greedy farthest-point sampling);
        ``uncertain`` the cycles ``run`` is least sure about, added to existing frames.
    channels : int
        1 (one laser, grayscale, for ``data1d``), 3 or 4 (a composite, for ``data3d``).
    laser : int
        The laser (1-based) used when ``channels == 1``.
    subset : {"train", "test"}
        ``train`` writes to ``train/frames`` (to be annotated), ``test`` to ``test/``.
    exclude : tuple of int
        Cycles never picked (for example, the ones already picked for training).
    force : bool
        Overwrite frames that already exist in the destination.
    run : str or None
        ``method="uncertain"``: the trained run (folder, ``.keras`` or bioimage.io
        package) whose uncertainty ranks the cycles not annotated yet; the chosen ones are
        added after the existing frames (:mod:`unetlib.inference.uncertainty`).
    """

    count: int = 15
    method: str = "spread"
    channels: int = 1
    laser: int = 1
    subset: str = "train"
    exclude: tuple[int, ...] = ()
    force: bool = False
    run: str | None = None

    def validate(self) -> "PickConfig":
        _require(isinstance(self.count, int) and self.count >= 1, "count", self.count,
                 "a whole number of frames >= 1")
        _require(self.method in ("spread", "diverse", "uncertain"), "method", self.method,
                 "'spread', 'diverse' or 'uncertain'")
        _require(self.method != "uncertain" or self.run, "run", self.run,
                 "a trained run (folder or model file) with method='uncertain'")
        _require(self.method != "uncertain" or self.subset == "train", "subset", self.subset,
                 "'train' with method='uncertain' (frames to annotate)")
        _require(self.channels in (1, 3, 4), "channels", self.channels, "1, 3 or 4")
        _require(isinstance(self.laser, int) and self.laser >= 1, "laser", self.laser,
                 "a laser number >= 1")
        _require(self.subset in ("train", "test"), "subset", self.subset, "'train' or 'test'")
        return self


SYNTHETIC_PRESETS = ("demo", "hard")


@dataclass(frozen=True, kw_only=True)
class SyntheticConfig:
    """The deterministic synthetic acquisition used by the demo, notebooks and tests.

    Attributes
    ----------
    cycles : int
        Number of laser cycles; the stack has ``cycles * lasers`` frames.
    lasers : int
        Number of interleaved lasers.
    height, width : int
        Frame size in pixels; the Goldeye camera gives 508 x 636.
    seed : int
        Seed of every random draw; the same config always gives the same stack.
    max_count : int
        Expected peak signal in photo-electron counts (sets the shot-noise level).
    read_noise : float
        Standard deviation of the camera read noise, in counts.
    offset_counts : int
        Camera dark offset added to every pixel.
    frame_interval_s : float
        Seconds between consecutive frames, stored in the stack's ImageJ metadata
        (``finterval``) so quantification finds the acquisition's timing, as it would in a
        camera export that records it. 2.5 s per frame is 10 s per 4-laser cycle.
    organ_shift : (float, float)
        Displacement of every organ, as fractions of height and width: another mouse's
        anatomy (with ``organ_scale``), for fine-tuning experiments.
    organ_scale : float
        Factor on every organ's radii.
    organ_contrast : float
        Factor on the organs' brightness relative to the body (another dye dose or camera).
    preset : {"demo", "hard"}
        ``demo``: three high-contrast elliptical organs in a still mouse. ``hard``: four
        irregular, textured organs (a thin spleen, a small bladder), low contrast in some
        lasers, breathing and drift, scattered light and vignetting
        (:mod:`unetlib.data.phantom`); :func:`unetlib.data.synthetic.hard_mouse` gives one mouse of
        a study with its own pose.
    pose_shift : (float, float)
        Hard preset: where the mouse lies, as fractions of height and width.
    pose_angle_degrees : float
        Hard preset: the mouse's rotation in the frame.
    pose_scale : float
        Hard preset: the mouse's size (1: the reference mouse).
    injection_cycle : float
        The dye arrives at this cycle: before it every organ shows its baseline (the
        default 0 is the demo's acquisition, started at the injection).
    dye_changes : tuple of (str, float, float)
        ``(organ, amplitude factor, clearance factor)``: this mouse takes up that much more
        dye in the organ (1: as the reference mouse) and clears it that much more slowly;
        a study's group effects and the spread between mice.
    """

    cycles: int = 30
    lasers: int = 4
    height: int = 508
    width: int = 636
    seed: int = 0
    max_count: int = 3000
    read_noise: float = 12.0
    offset_counts: int = 200
    frame_interval_s: float = 2.5
    organ_shift: tuple[float, float] = (0.0, 0.0)
    organ_scale: float = 1.0
    organ_contrast: float = 1.0
    preset: str = "demo"
    pose_shift: tuple[float, float] = (0.0, 0.0)
    pose_angle_degrees: float = 0.0
    pose_scale: float = 1.0
    injection_cycle: float = 0.0
    dye_changes: tuple[tuple[str, float, float], ...] = ()

    def validate(self) -> "SyntheticConfig":
        _require(isinstance(self.cycles, int) and 1 <= self.cycles <= 100_000, "cycles",
                 self.cycles, "a whole number from 1 to 100000")
        _require(isinstance(self.lasers, int) and 1 <= self.lasers <= 16, "lasers", self.lasers,
                 "a whole number from 1 to 16")
        # A frame is rendered whole in memory (several float copies): keep it camera-sized.
        for name in ("height", "width"):
            value = getattr(self, name)
            _require(isinstance(value, int) and 32 <= value <= 4096, name, value,
                     "a whole number of pixels from 32 to 4096")
        _require(isinstance(self.frame_interval_s, (int, float)) and self.frame_interval_s > 0,
                 "frame_interval_s", self.frame_interval_s, "a positive number of seconds")
        _require(len(self.organ_shift) == 2 and all(abs(v) <= 0.15 for v in self.organ_shift),
                 "organ_shift", self.organ_shift, "two fractions within +-0.15 (inside the body)")
        _require(0.5 <= self.organ_scale <= 1.5, "organ_scale", self.organ_scale, "0.5 to 1.5")
        _require(0.2 <= self.organ_contrast <= 5.0, "organ_contrast", self.organ_contrast,
                 "0.2 to 5")
        _require(self.preset in SYNTHETIC_PRESETS, "preset", self.preset,
                 f"one of {SYNTHETIC_PRESETS}")
        pose_set = (self.pose_shift, self.pose_angle_degrees, self.pose_scale) != ((0.0, 0.0), 0.0, 1.0)
        _require(self.preset == "hard" or not pose_set, "pose", (self.pose_shift,
                 self.pose_angle_degrees, self.pose_scale), "the default pose with the demo "
                 "preset (poses are the hard preset's; the demo uses organ_shift)")
        _require(len(self.pose_shift) == 2 and all(abs(v) <= 0.1 for v in self.pose_shift),
                 "pose_shift", self.pose_shift, "two fractions within +-0.1 (the mouse in view)")
        _require(-45.0 <= self.pose_angle_degrees <= 45.0, "pose_angle_degrees",
                 self.pose_angle_degrees, "-45 to 45")
        _require(0.7 <= self.pose_scale <= 1.3, "pose_scale", self.pose_scale, "0.7 to 1.3")
        _require(0.0 <= self.injection_cycle < self.cycles, "injection_cycle",
                 self.injection_cycle, f"0 to cycles ({self.cycles})")
        _require(all(len(change) == 3 and isinstance(change[0], str)
                     and 0.1 <= change[1] <= 10.0 and 0.1 <= change[2] <= 10.0
                     for change in self.dye_changes), "dye_changes", self.dye_changes,
                 "(organ name, amplitude factor 0.1-10, clearance factor 0.1-10) triples")
        _require_seed(self.seed)
        return self


# ---------------------------------------------------------------------------------------
# Later stages (masks, augmentation, pipeline, model, training, prediction) add their
# configs below, keeping the same conventions.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class NormalizeConfig:
    """How raw frames (8- or 16-bit) become the float32 values the network sees.

    The same config is stored with every trained model and reused for prediction, so a
    frame is always scaled the way the model was trained.

    Attributes
    ----------
    method : {"percentile", "minmax", "dtype", "none"}
        ``percentile`` (default): per image and channel, map the ``low``/``high``
        percentiles to 0/1 -- robust to hot pixels and independent of bit depth and
        exposure. ``minmax``: the same with the extremes. ``dtype``: divide by the dtype's
        maximum (255 or 65535), which keeps absolute intensity. ``none``: cast only.
    low, high : float
        Percentiles used by ``percentile``.
    """

    method: str = "percentile"
    low: float = 1.0
    high: float = 99.8

    def validate(self) -> "NormalizeConfig":
        _require(self.method in ("percentile", "minmax", "dtype", "none"), "method",
                 self.method, "'percentile', 'minmax', 'dtype' or 'none'")
        _require(0 <= self.low < self.high <= 100, "low/high", (self.low, self.high),
                 "0 <= low < high <= 100")
        return self


# === Masks, augmentation and input pipeline =======================================


FILL_MODES = ("reflect", "constant", "nearest", "wrap")


@dataclass(frozen=True, kw_only=True)
class AugmentConfig:
    """Random geometric and intensity changes applied to training patches (notebook 02).

    One geometric transform is drawn per sample and applied to the image (bilinear) and
    its mask (nearest neighbour, so it stays binary) together; intensity jitter touches
    the image only. Every range is symmetric around "no change" and in explicit units.
    The defaults are the ``"default"`` preset of :func:`unetlib.nn.augment.augment_preset`;
    ``"original"`` reproduces the Keras 2 recipe and ``"none"`` switches everything off.

    Attributes
    ----------
    rotation_degrees : float
        Rotation angle drawn from ``[-r, r]`` degrees (the original recipe's
        ``rotation_range=0.2`` was 0.2 degrees, i.e. practically none).
    shift_fraction : float
        Shift drawn from ``[-s, s]`` times the patch size, per axis.
    shear_degrees : float
        Horizontal shear angle drawn from ``[-s, s]`` degrees.
    zoom_fraction : float
        Scale drawn from ``[1 - z, 1 + z]`` (above 1 magnifies).
    zoom_isotropic : bool
        One scale for both axes (keeps organ shapes); ``False`` draws height and width
        scales independently, as Keras's ``zoom_range`` did.
    horizontal_flip, vertical_flip : bool
        Mirror left-right / top-bottom with probability 1/2 each.
    fill_mode : {"reflect", "constant", "nearest", "wrap"}
        How pixels outside the frame are filled (``constant`` fills 0). The mask is
        filled the same way as the image, so a mirrored organ is labelled as an organ.
    brightness : float
        Offset added to the normalised image, drawn from ``[-b, b]`` (units of the
        normalised intensity, where the 1st..99.8th percentile span is 1).
    contrast : float
        Factor drawn from ``[1 - c, 1 + c]`` applied around each channel's patch mean.
    gamma : float
        Exponent drawn log-uniformly from ``[1 / (1 + g), 1 + g]``, applied to the
        magnitude of each value (sign kept, since normalised values can be negative).
    noise_std : float
        Standard deviation of added Gaussian noise, in normalised intensity units.
    """

    rotation_degrees: float = 15.0
    shift_fraction: float = 0.1
    shear_degrees: float = 5.0
    zoom_fraction: float = 0.1
    zoom_isotropic: bool = True
    horizontal_flip: bool = True
    vertical_flip: bool = True
    fill_mode: str = "reflect"
    brightness: float = 0.05
    contrast: float = 0.1
    gamma: float = 0.1
    noise_std: float = 0.0

    def validate(self) -> "AugmentConfig":
        _require(0 <= self.rotation_degrees <= 180, "rotation_degrees", self.rotation_degrees,
                 "an angle in degrees between 0 and 180")
        _require(0 <= self.shift_fraction < 1, "shift_fraction", self.shift_fraction,
                 "a fraction of the patch size in [0, 1)")
        _require(0 <= self.shear_degrees < 60, "shear_degrees", self.shear_degrees,
                 "an angle in degrees in [0, 60)")
        _require(0 <= self.zoom_fraction < 1, "zoom_fraction", self.zoom_fraction,
                 "a fraction in [0, 1)")
        _require(self.fill_mode in FILL_MODES, "fill_mode", self.fill_mode,
                 "one of " + ", ".join(repr(mode) for mode in FILL_MODES))
        _require(self.brightness >= 0, "brightness", self.brightness, "an offset >= 0")
        _require(0 <= self.contrast < 1, "contrast", self.contrast, "a fraction in [0, 1)")
        _require(0 <= self.gamma < 1, "gamma", self.gamma, "a fraction in [0, 1)")
        _require(self.noise_std >= 0, "noise_std", self.noise_std, "a standard deviation >= 0")
        return self


# The Keras 2 recipe: ImageDataGenerator(rotation_range=0.2, width_shift_range=0.05,
# height_shift_range=0.05, shear_range=0.05, zoom_range=0.05, horizontal_flip=True,
# fill_mode="nearest"). Keras read rotation and shear in degrees and drew the two zoom
# factors independently; it had no intensity jitter.
AUGMENT_PRESETS: dict[str, AugmentConfig] = {
    "default": AugmentConfig(),
    "original": AugmentConfig(rotation_degrees=0.2, shift_fraction=0.05, shear_degrees=0.05,
                              zoom_fraction=0.05, zoom_isotropic=False, horizontal_flip=True,
                              vertical_flip=False, fill_mode="nearest", brightness=0.0,
                              contrast=0.0, gamma=0.0, noise_std=0.0),
    "none": AugmentConfig(rotation_degrees=0.0, shift_fraction=0.0, shear_degrees=0.0,
                          zoom_fraction=0.0, horizontal_flip=False, vertical_flip=False,
                          brightness=0.0, contrast=0.0, gamma=0.0, noise_std=0.0),
    # The default's geometry with 2-3x its intensity jitter, plus noise: mice differ in
    # brightness, dye dose and vignetting more than the default jitter covers (measured on
    # the hard benchmark's unseen mice: README, "Which network for which task").
    "organs": AugmentConfig(brightness=0.1, contrast=0.3, gamma=0.3, noise_std=0.03),
}


def augment_preset(name: str, **changes: object) -> AugmentConfig:
    """Return a named augmentation setting, optionally with some fields changed.

    Parameters
    ----------
    name : {"default", "original", "none", "organs"}
        ``default``: organ-sized changes (15 degrees rotation, 10 % shift and zoom, 5
        degrees shear, both flips, reflect fill, mild intensity jitter). ``original``:
        the Keras 2 recipe (0.2 degrees rotation, 5 % shift and zoom, 0.05 degrees shear,
        horizontal flip, nearest fill). ``none``: the patch as cropped. ``organs``: the
        default's geometry with stronger intensity jitter and noise (what the ``organs``
        network trains with on organ data: :func:`auto_augment`).
    **changes
        Fields to override, e.g. ``augment_preset("default", noise_std=0.02)``.
    """
    if name not in AUGMENT_PRESETS:
        raise ParameterError(f"augment preset {name!r} is unknown: expected one of "
                             + ", ".join(repr(key) for key in AUGMENT_PRESETS) + ".")
    return dataclasses.replace(AUGMENT_PRESETS[name], **changes).validate()


def preset_names() -> list[str]:
    """Names accepted by :func:`augment_preset`."""
    return list(AUGMENT_PRESETS)



@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """How training patches and validation tiles are cut from the annotated frames.

    Frames are decoded and normalised once and kept in memory (~15 frames are a few MB);
    there is therefore no cache or shuffle buffer to tune: every training sample draws
    its own frame, crop and transform from a seed derived from ``seed`` and its index.

    Attributes
    ----------
    patch_size : int
        Side of the square patches, in pixels; a multiple of 16 so that four 2x2 poolings
        of the U-Net divide it. Crops never resize, so the aspect ratio is kept; frames
        smaller than a patch are padded.
    batch_size : int
        Patches per batch. 8 patches of 256 x 256 fit a laptop CPU or a small GPU.
    foreground_share : float
        Share of training patches centred (with jitter) on a random foreground pixel, so
        small organs do not vanish into background-only crops; the rest are uniform.
    foreground_jitter : float
        Largest offset of such a patch's centre from the chosen foreground pixel, as a
        fraction of the patch size (at most 0.4). The augmentation's shift adds up to
        ``shift_fraction`` more; while the two sum to less than 0.5 (0.25 + 0.1 by
        default) the chosen pixel stays inside the patch.
    val_fraction : float
        Share of the frames (whole frames, never augmented copies) kept for validation.
    seed : int
        Seed of the train/validation split and of every training sample.
    """

    patch_size: int = 256
    batch_size: int = 8
    foreground_share: float = 0.5
    foreground_jitter: float = 0.25
    val_fraction: float = 0.2
    seed: int = 0

    def validate(self) -> "PipelineConfig":
        _require(isinstance(self.patch_size, int) and self.patch_size >= 16
                 and self.patch_size % 16 == 0, "patch_size", self.patch_size,
                 "a positive multiple of 16 pixels (e.g. 128, 256)")
        _require(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size",
                 self.batch_size, "a whole number of patches >= 1")
        _require(0 <= self.foreground_share <= 1, "foreground_share", self.foreground_share,
                 "a share in [0, 1]")
        _require(0 <= self.foreground_jitter <= 0.4, "foreground_jitter",
                 self.foreground_jitter, "a fraction of the patch size in [0, 0.4]")
        _require(0 <= self.val_fraction < 1, "val_fraction", self.val_fraction,
                 "a share in [0, 1)")
        _require_seed(self.seed)
        return self


# === Model, training, prediction and evaluation ===================================


LEARNING_RATE_SCHEDULES = ("constant", "cosine")
CHECKPOINTS = ("auto", "best", "last")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Architecture and optimiser of a U-Net (see :func:`unetlib.nn.model.build_unet`).

    The defaults are the ``default`` preset, the network for one foreground: chosen by
    measurement on the ISBI 2012 data for test Dice per CPU-second
    (``benchmarks/bench_time_to_quality.py``), on an AVX-512 CPU and with oneDNN capped
    at AVX2: 8 base filters and Adam 3e-3 train about three times more steps per second
    than 16 filters and reach a better Dice within every budget measured (1 to 5
    minutes). Several organs get ``model_preset("organs")`` (16 filters, Adam 1e-3 on a
    cosine schedule), chosen on the hard synthetic benchmark
    (``benchmarks/bench_organs.py``), where the 8-filter network loses the small organs;
    :meth:`TrainConfig.for_task` picks between them. ``model_preset("wide")`` is the
    16-filter network that was the default before; ``model_preset("classic")``
    reproduces the original network exactly.

    Attributes
    ----------
    input_channels : int
        1 (one laser), 3 or 4 (composites). Training sets it from the data.
    depth : int
        Number of 2x2 poolings; frames are padded to a multiple of ``2**depth``.
    base_filters : int
        Filters of the first level; each deeper level doubles them.
    batch_norm : bool
        Batch normalisation after every 3x3 convolution (before its ReLU).
    batch_norm_momentum : float
        Momentum of batch normalisation's moving statistics. 0.9 (not Keras's 0.99)
        because runs are short: with 0.99 the statistics used for validation and
        prediction lag far behind the weights for the first few hundred steps, and a
        model with training Dice 0.99 validates at 0.3.
    dropout : float
        Dropout rate applied at the ``dropout_levels`` deepest levels (0 disables it).
    dropout_levels : int
        How many of the deepest levels (the bottleneck counts as one) get dropout.
    upsampling : {"transpose", "upsample"}
        ``transpose``: 2x2 transposed convolution. ``upsample``: nearest-neighbour
        up-sampling then a 2x2 convolution with ReLU (the original recipe).
    head_filters : int
        Filters of the extra 3x3 ReLU convolution before the 1x1 sigmoid; 0 (default)
        omits it. The original recipe used 2: with ReLU this layer can die and give
        all-black predictions, so only ``classic`` keeps it.
    kernel_initializer : str
        Keras initializer of the convolutions.
    optimizer : {"adam", "adamw", "sgd", "rmsprop"}
        Optimiser used by training.
    learning_rate : float
        Optimiser learning rate (the peak one with a schedule).
    learning_rate_schedule : {"constant", "cosine"}
        ``cosine``: the rate decays along a cosine from ``learning_rate`` to 5 % of it
        over the run's ``epochs x steps_per_epoch`` steps, so the last epochs settle
        instead of jumping between solutions (a time budget that ends the run early
        stops it part way down).
    classes : int
        Outputs of the head. 1: one foreground, a sigmoid probability (binary data).
        2 or more: background plus one class per organ of ``organs.csv``, a softmax.
        Training sets it from the data.
    """

    input_channels: int = 1
    depth: int = 4
    base_filters: int = 8
    batch_norm: bool = True
    batch_norm_momentum: float = 0.9
    dropout: float = 0.0
    dropout_levels: int = 2
    upsampling: str = "transpose"
    head_filters: int = 0
    kernel_initializer: str = "he_normal"
    optimizer: str = "adam"
    learning_rate: float = 3e-3
    learning_rate_schedule: str = "constant"
    classes: int = 1

    def validate(self) -> "ModelConfig":
        _require(self.input_channels in (1, 3, 4), "input_channels", self.input_channels,
                 "1, 3 or 4")
        _require(isinstance(self.depth, int) and 1 <= self.depth <= 6, "depth", self.depth,
                 "a whole number from 1 to 6")
        _require(isinstance(self.base_filters, int) and self.base_filters >= 1, "base_filters",
                 self.base_filters, "a whole number >= 1")
        _require(0.0 < self.batch_norm_momentum < 1.0, "batch_norm_momentum",
                 self.batch_norm_momentum, "0 < batch_norm_momentum < 1")
        _require(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "0 <= dropout < 1")
        _require(isinstance(self.dropout_levels, int) and self.dropout_levels >= 0,
                 "dropout_levels", self.dropout_levels, "a whole number >= 0")
        _require(self.upsampling in ("transpose", "upsample"), "upsampling", self.upsampling,
                 "'transpose' or 'upsample'")
        _require(isinstance(self.head_filters, int) and self.head_filters >= 0, "head_filters",
                 self.head_filters, "a whole number >= 0")
        _require(self.optimizer in ("adam", "adamw", "sgd", "rmsprop"), "optimizer",
                 self.optimizer, "'adam', 'adamw', 'sgd' or 'rmsprop'")
        _require(0 < self.learning_rate < float("inf"), "learning_rate", self.learning_rate,
                 "a finite number > 0")
        _require(self.learning_rate_schedule in LEARNING_RATE_SCHEDULES, "learning_rate_schedule",
                 self.learning_rate_schedule, f"one of {LEARNING_RATE_SCHEDULES}")
        _require(isinstance(self.classes, int) and 1 <= self.classes <= 255, "classes",
                 self.classes, "1 (binary) or 2-255 (background + organs)")
        return self


MODEL_PRESETS: dict[str, ModelConfig] = {
    # The network for one foreground (measured on ISBI membranes and a blob-like organ
    # union: benchmarks/bench_time_to_quality.py, bench_organs.py --binary; README "Which
    # network for which task"): 8 base filters, Adam 3e-3, 0.5 M parameters.
    "default": ModelConfig(),
    # The network for several organs (benchmarks/bench_organs.py on the hard synthetic
    # preset, seen and unseen mice): 16 base filters, Adam 1e-3, 1.9 M parameters.
    "organs": ModelConfig(base_filters=16, learning_rate=1e-3, learning_rate_schedule="cosine"),
    # 16 base filters, Adam 1e-3: the default for every task until 2026-11, and the
    # organ network's architecture; kept under its old name.
    "wide": ModelConfig(base_filters=16, learning_rate=1e-3),
    # zhixuhao/unet, the recipe this project replaces: 64 base filters, 4 poolings, no batch
    # norm, dropout 0.5 at the two deepest levels, UpSampling2D + 2x2 conv, the 2-filter
    # ReLU head, 1x1 sigmoid, Adam 1e-4 (31,031,685 parameters for one input channel).
    "classic": ModelConfig(depth=4, base_filters=64, batch_norm=False, dropout=0.5,
                           dropout_levels=2, upsampling="upsample", head_filters=2,
                           learning_rate=1e-4),
    # A smaller, faster network for quick looks and tests.
    "small": ModelConfig(depth=3, base_filters=8, learning_rate=1e-3),
}
# The network chosen when none is asked for, by task (several organs: organs.csv).
TASK_PRESETS = {"binary": "default", "organs": "organs"}


def task_preset(organs: bool) -> str:
    """The preset name training uses for a task when no network is asked for."""
    return TASK_PRESETS["organs" if organs else "binary"]


def model_preset(name: str, **changes: Any) -> ModelConfig:
    """Return the named :class:`ModelConfig` preset, with optional field changes.

    ``model_preset("classic", input_channels=3)`` is the original network for RGB input.

    Examples
    --------
    >>> model_preset("default").base_filters, model_preset("organs").base_filters
    (8, 16)
    >>> model_preset("default", input_channels=3).input_channels
    3
    """
    _require(name in MODEL_PRESETS, "preset", name, f"one of {sorted(MODEL_PRESETS)}")
    return dataclasses.replace(MODEL_PRESETS[name], **changes).validate()


# Binary data: binary cross-entropy, alone or plus soft Dice. Several organs: categorical
# cross-entropy, alone or plus soft Dice averaged over the organs (so a small organ weighs
# as much as a large one), the cross-entropy weighted 5x along the organs' outlines or not.
BINARY_LOSSES = ("bce", "bce+dice")
ORGAN_LOSSES = ("ce", "ce+dice", "edge-ce+dice")
LOSSES = ("auto", *BINARY_LOSSES, *ORGAN_LOSSES)


def auto_loss(organs: bool, model: ModelConfig) -> str:
    """What ``loss="auto"`` trains with: ``bce`` for one foreground; for several organs
    ``edge-ce+dice`` with the ``organs`` network (where it was measured to win: README,
    "Which network for which task") and ``ce+dice`` with any other (smaller networks and
    budgets, where the outline weights were measured to cost the small organs).

    Examples
    --------
    >>> auto_loss(True, model_preset("organs")), auto_loss(True, model_preset("small"))
    ('edge-ce+dice', 'ce+dice')
    """
    if not organs:
        return "bce"
    return "edge-ce+dice" if model == model_preset(TASK_PRESETS["organs"]) else "ce+dice"


def auto_augment(organs: bool, model: ModelConfig) -> AugmentConfig:
    """The augmentation training uses when none is asked for: ``organs`` (stronger
    intensity jitter) for several organs with the ``organs`` network, where it was measured
    to carry to mice the model never saw; ``default`` otherwise (one foreground, where the
    ISBI figures were measured, and smaller networks, not measured with it).

    Examples
    --------
    >>> auto_augment(True, model_preset("organs")) == augment_preset("organs")
    True
    >>> auto_augment(True, model_preset("default")) == augment_preset("default")
    True
    """
    chosen = organs and model == model_preset(TASK_PRESETS["organs"])
    return augment_preset("organs" if chosen else "default")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything a training run computes with; stored in the run folder's ``config.json``.

    How a call treats its run folder and how much it prints (resume, force, verbose) are
    not part of it: they are arguments of :func:`unetlib.runs.train.train`, so two runs
    of equal configs are the same request however they were started.

    Attributes
    ----------
    model : ModelConfig or None
        Architecture and optimiser (``model_preset(...)``); ``input_channels`` and
        ``classes`` are replaced by the data's. None (the default): the network measured
        best for the data's task, :func:`task_preset` -- ``default`` for one foreground,
        ``organs`` when the data folder has ``organs.csv`` (:meth:`for_task`).
    normalize : NormalizeConfig
        Intensity scaling; stored with the run and reused by prediction.
    pipeline : PipelineConfig
        Input pipeline: patch and batch size, the validation share and the seed (which
        seeds the split, the weights and the augmentation). Their one home.
    augment : AugmentConfig or None
        Joint image/mask augmentation (``augment_preset(...)``). None (the default): the
        one measured for the data and network, :func:`auto_augment` -- ``organs`` for
        several organs with the ``organs`` network, else ``default``.
    epochs : int
        Number of epochs (the original recipe's 5 by default).
    steps_per_epoch : int
        Batches per epoch (patches are random crops, so an "epoch" is this many steps).
    loss : {"auto", "bce", "bce+dice", "ce", "ce+dice", "edge-ce+dice"}
        ``bce``/``bce+dice`` for binary data (cross-entropy, or its sum with the soft Dice
        loss); ``ce``/``ce+dice`` for several organs (categorical cross-entropy, or its sum
        with soft Dice averaged over organs), ``edge-ce+dice`` the same sum with the
        cross-entropy of the pixels along every organ outline weighted 5x. ``auto``
        (:func:`auto_loss`): ``bce`` for binary data; for organs ``edge-ce+dice`` with the
        ``organs`` network (the one chosen by task), ``ce+dice`` with any other.
    prior_correction : float
        Organ data: how much of the organs' over-representation in the training patches
        (centred on an organ a ``foreground_share`` of the time) the kept checkpoint is
        corrected for, 0 to 1 (:func:`unetlib.nn.model.class_prior_shifted`; the shift is
        recorded in ``config.json``). Without it every organ came out about a pixel too wide
        all round on the hard benchmark; 0.75 (default) gave the best Dice over seen and
        unseen mice there (README, "Which network for which task"). Binary data need none:
        their threshold is calibrated on whole validation frames.
    deterministic : bool
        Also enable TensorFlow op determinism (bit-identical reruns, somewhat slower).
    max_minutes : float or None
        Time budget; training stops cleanly after the step that spends it, validates,
        and keeps the checkpoint ``checkpoint`` chooses.
    checkpoint : {"auto", "best", "last"}
        The epoch ``model.keras`` keeps. ``best``: the highest whole-frame validation Dice.
        ``last``: the last epoch trained. ``auto`` (default): ``last`` when the learning
        rate decays to the end of the run (a ``cosine`` schedule: the organ network),
        ``best`` at a constant rate (one foreground). Measured on the hard synthetic
        benchmark (README, "Which network for which task"): with the decaying rate, the
        epoch chosen on a few validation frames of the training mice scored up to 0.08
        Dice lower on a mouse the model never saw than the last epoch (its kidney curve
        then fell to r = 0.46), and at most 0.01 higher on the training mice.
    checkpoint_minutes : float
        With a time budget: after this many minutes of training, an epoch pauses for
        validation and the best and last checkpoints, then trains its remaining steps
        (so ``epochs`` still means ``epochs x steps_per_epoch`` steps). A slow CPU, where
        50 steps can take 4 minutes, thus keeps its best model about this often. 0: only
        whole epochs. Without a budget nothing pauses, so validation never depends on
        the machine's speed.
    threshold_grid : tuple of float
        Thresholds tried when calibrating the decision threshold on the validation frames.
    init_from : str or None
        Fine-tune: start from this trained run (folder or ``.keras`` file) instead of
        random weights. Its architecture and normalisation are kept; its channels and
        organs must be the data's.
    freeze_encoder_epochs : int
        With ``init_from``: keep the encoder (the ``down*`` levels) frozen for this many
        first epochs, so the decoder adapts before the pretrained features move.
    holdout : tuple of str
        Stems of annotated frames left out of training and validation altogether: the
        test fold of a cross-validation (:mod:`unetlib.runs.crossval`), scored afterwards on
        frames the run never saw, not even to choose its best epoch.
    """

    model: ModelConfig | None = None
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    augment: AugmentConfig | None = None
    epochs: int = 5
    steps_per_epoch: int = 50
    loss: str = "auto"
    prior_correction: float = 0.75
    deterministic: bool = False
    max_minutes: float | None = None
    checkpoint: str = "auto"
    checkpoint_minutes: float = 1.0
    threshold_grid: tuple[float, ...] = tuple(round(0.1 + 0.05 * i, 2) for i in range(17))
    init_from: str | None = None
    freeze_encoder_epochs: int = 0
    holdout: tuple[str, ...] = ()

    def kept_checkpoint(self) -> str:
        """``checkpoint`` with ``auto`` resolved for the network (after :meth:`for_task`):
        ``last`` when its learning rate decays to the end of the run, else ``best``."""
        if self.checkpoint != "auto":
            return self.checkpoint
        decays = self.model is not None and self.model.learning_rate_schedule != "constant"
        return "last" if decays else "best"

    def for_task(self, organs: bool) -> "TrainConfig":
        """This config with its network chosen for the task when none was asked for.

        Parameters
        ----------
        organs : bool
            Whether the data has several organs (``organs.csv``) or one foreground.
        """
        if self.model is not None:
            return self
        return dataclasses.replace(self, model=model_preset(task_preset(organs))).validate()

    def validate(self) -> "TrainConfig":
        if self.model is not None:
            self.model.validate()
        self.normalize.validate()
        # Checked before the pipeline's own (wider) range, so training states one range.
        val_fraction = self.pipeline.val_fraction
        _require(0.0 < val_fraction < 1.0, "val_fraction", val_fraction,
                 "0 < val_fraction < 1 (training needs validation frames)")
        self.pipeline.validate()
        if self.augment is not None:
            self.augment.validate()
        _require(isinstance(self.epochs, int) and self.epochs >= 1, "epochs", self.epochs,
                 "a whole number >= 1")
        _require(isinstance(self.steps_per_epoch, int) and self.steps_per_epoch >= 1,
                 "steps_per_epoch", self.steps_per_epoch, "a whole number >= 1")
        # Without a network yet (chosen by task), every task's preset is checked.
        depths = ({self.model.depth} if self.model is not None else
                  {MODEL_PRESETS[name].depth for name in TASK_PRESETS.values()})
        multiple = 2 ** max(depths)
        patch_size = self.pipeline.patch_size
        _require(patch_size % multiple == 0, "patch_size", patch_size,
                 f"a multiple of 2**depth = {multiple} for a depth-{max(depths)} model")
        _require(self.loss in LOSSES, "loss", self.loss, f"one of {LOSSES}")
        _require(0.0 <= self.prior_correction <= 1.0, "prior_correction",
                 self.prior_correction, "from 0 (none) to 1 (full)")
        _require(self.max_minutes is None or self.max_minutes > 0, "max_minutes",
                 self.max_minutes, "None or > 0")
        _require(self.checkpoint in CHECKPOINTS, "checkpoint", self.checkpoint,
                 f"one of {CHECKPOINTS}")
        _require(self.checkpoint_minutes >= 0, "checkpoint_minutes", self.checkpoint_minutes,
                 ">= 0 (0: whole epochs only)")
        _require(len(self.threshold_grid) >= 1
                 and all(0.0 < value < 1.0 for value in self.threshold_grid),
                 "threshold_grid", self.threshold_grid, "thresholds strictly between 0 and 1")
        _require(isinstance(self.freeze_encoder_epochs, int)
                 and 0 <= self.freeze_encoder_epochs < self.epochs, "freeze_encoder_epochs",
                 self.freeze_encoder_epochs, f"a whole number from 0 to epochs - 1 ({self.epochs - 1})")
        _require(self.freeze_encoder_epochs == 0 or self.init_from is not None,
                 "freeze_encoder_epochs", self.freeze_encoder_epochs,
                 "0 unless training starts from a trained model (init_from)")
        _require(all(isinstance(stem, str) for stem in self.holdout), "holdout", self.holdout,
                 "frame stems (strings)")
        return self


@dataclass(frozen=True, kw_only=True)
class CrossvalConfig:
    """K-fold cross-validation by whole frame (``crossval``, :mod:`unetlib.runs.crossval`).

    Attributes
    ----------
    folds : int
        K: the annotated frames are dealt into K folds; each fold is held out once while
        a model trains (and validates) on the others. 5 is the usual compromise between
        the cost of K trainings and a noisy estimate.
    seed : int
        Seeds the assignment of frames to folds (each fold's training uses
        ``train.pipeline.seed``), so a resumed cross-validation holds out the same frames.
    train : TrainConfig
        How each fold trains; ``max_minutes`` is per fold, ``holdout`` is set per fold.
    """

    folds: int = 5
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> "CrossvalConfig":
        _require(isinstance(self.folds, int) and 2 <= self.folds <= 100, "folds", self.folds,
                 "a whole number from 2 to 100")
        _require_seed(self.seed, "fold_seed")  # the flag's name: --seed is the training's
        self.train.validate()
        return self


@dataclass(frozen=True, kw_only=True)
class PredictConfig:
    """Sliding-window inference (see :func:`unetlib.nn.sliding_window.predict_probabilities`).

    Attributes
    ----------
    tile : int
        Tile side in pixels (rounded up to a multiple of ``2**depth``); frames with no
        more pixels than ``batch_size`` tiles are predicted whole, in a single pass.
    overlap : int
        Minimum overlap of neighbouring tiles in pixels. Each tile discards ``overlap/4``
        pixels at its inner edges (where it saw zero padding instead of image) and the
        rest of the overlap is blended with Gaussian weights; when ``overlap/4`` exceeds
        the network's receptive-field radius, tiling equals a whole-frame pass.
    batch_size : int
        Tiles per forward pass.
    tta : bool
        Average over horizontal/vertical flips (4 passes).
    fill_holes : bool
        Organ masks: background enclosed by one organ becomes that organ (organs are solid;
        see :func:`unetlib.nn.sliding_window.organ_classes`). Binary masks are never filled.
    """

    tile: int = 512
    overlap: int = 128
    batch_size: int = 4
    tta: bool = False
    fill_holes: bool = True

    def validate(self) -> "PredictConfig":
        _require(isinstance(self.tile, int) and self.tile >= 8, "tile", self.tile,
                 "a whole number of pixels >= 8")
        _require(isinstance(self.overlap, int) and 0 <= self.overlap < self.tile, "overlap",
                 self.overlap, f"0 <= overlap < tile ({self.tile})")
        _require(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size",
                 self.batch_size, "a whole number >= 1")
        return self


@dataclass(frozen=True, kw_only=True)
class MotionConfig:
    """Following the organs into each laser's frame (see :mod:`unetlib.study.motion`).

    Attributes
    ----------
    enabled : bool
        Align each organ's mask to every laser's frame of its cycle before measuring
        there. Off: the segmented frame's mask is used in every laser's frame, which is
        right only for a mouse that does not move between the lasers of a cycle.
    max_shift : float
        The farthest a mask may move, rows and columns each, as a fraction of the frame's
        height (0.03: 15 px in a 508-row frame, 3 px in 96 rows). Breathing moved the hard
        synthetic preset's organs up to 12 px between two frames of 508 rows; motion scales
        with the mouse's image, and a smaller frame needs a shorter search, where a mask
        could otherwise reach another organ's edge.
    max_scale : float
        The largest relative change of size tried, about the mask's centroid.
    scale_step : float
        Step between the sizes tried, from ``1 - max_scale`` to ``1 + max_scale``.
    band_px : int
        Width of the bands just inside and just outside the mask whose contrast places it.
    """

    enabled: bool = True
    max_shift: float = 0.03
    max_scale: float = 0.08
    scale_step: float = 0.04
    band_px: int = 3

    def scales(self) -> tuple[float, ...]:
        """The sizes tried, 1.0 first.

        >>> MotionConfig().scales()
        (1.0, 0.92, 0.96, 1.04, 1.08)
        """
        steps = int(round(self.max_scale / self.scale_step)) if self.scale_step else 0
        others = [round(1.0 + k * self.scale_step, 6) for k in range(-steps, steps + 1) if k]
        return (1.0, *others)

    def validate(self) -> "MotionConfig":
        _require(isinstance(self.enabled, bool), "align", self.enabled, "true or false")
        _require(isinstance(self.max_shift, (int, float)) and 0 <= self.max_shift <= 0.25,
                 "align_max_shift", self.max_shift, "a fraction of the frame's height from 0 "
                 "to 0.25")
        _require(isinstance(self.max_scale, (int, float)) and 0 <= self.max_scale <= 0.5,
                 "align_max_scale", self.max_scale, "a fraction from 0 to 0.5")
        _require(isinstance(self.scale_step, (int, float)) and 0 < self.scale_step <= 0.5,
                 "align_scale_step", self.scale_step, "a fraction above 0, at most 0.5")
        _require(isinstance(self.band_px, int) and 1 <= self.band_px <= 20, "align_band",
                 self.band_px, "a whole number of pixels from 1 to 20")
        return self


@dataclass(frozen=True, kw_only=True)
class QuantifyConfig:
    """Organ time--intensity curves of whole acquisitions (see :mod:`unetlib.study.quantify`).

    Attributes
    ----------
    split : SplitConfig
        ``lasers`` and ``offset`` of the stacks (de-interleaved as ``split-stack`` does).
    model_input : tuple of int, optional
        Lasers (1-based, in channel order) that make the model's input frame: ``(1,)`` one
        laser, ``(1, 2, 3)`` a composite. None: what the run was trained on (its
        ``config.json``, or the ``frames.csv`` of its data folder).
    interval_s : float, optional
        Seconds between laser cycles; None: from the stack's timing metadata.
    background : str, optional
        Name of an organ of the run whose mean is the background of the signal-to-
        background ratio. None: body pixels outside every organ (and ``organ_margin``).
    organ_margin : int
        Pixels around every organ left out of the body background, where organ light
        still spills over and a mask edge is least certain.
    batch_cycles : int
        Cycles segmented together (their tiles share the network's forward passes).
    predict : PredictConfig
        Tiling of the segmentation, as in prediction (one tile per forward pass).
    qc_window : int
        Cycles in the running median of each organ's area (odd, >= 3).
    qc_tolerance : float
        A cycle is flagged when an organ's area differs from its running median by more
        than this fraction of it: a failed mask or motion, kept out of the summary.
    drop_incomplete : bool
        Accept a stack whose frames after ``offset`` are not a whole number of cycles,
        leaving out the incomplete last cycle (an acquisition stopped mid-cycle). Off, such
        a stack is refused: a wrong ``lasers`` or ``offset`` shows up that way, and would
        otherwise mix lasers silently.
    force : bool
        Quantify again stacks whose results exist (otherwise a finished stack is skipped).
    dark : str or None
        A dark frame (the camera's counts without light) subtracted from every frame before
        measuring: one frame, one per laser, or a dark stack averaged
        (:mod:`unetlib.data.calibration`). None: raw counts, dark offset included.
    flat : str or None
        A flat field (one frame, or one per laser) divided out before measuring, after
        normalising it to mean 1: uneven illumination and vignetting. None: not corrected.
    motion : MotionConfig
        How each organ's mask follows the organ into the other lasers' frames of a cycle.
    """

    split: SplitConfig = field(default_factory=SplitConfig)
    model_input: tuple[int, ...] | None = None
    interval_s: float | None = None
    background: str | None = None
    organ_margin: int = 3
    batch_cycles: int = 4
    # Two tiles' pixels per forward pass: the camera's 508 x 636 frames then go through the
    # network whole, one per pass. On the demo study's mice (12 cycles, AMD EPYC AVX-512)
    # 15-25 % faster than one tile per pass (two tiles per frame) for a peak of 0.96 instead
    # of 0.94 GB per process, which each Dask worker pays (four tiles per pass had peaked at
    # 0.82 GB where one took 0.49, in an earlier measurement of the demo stack).
    predict: PredictConfig = field(default_factory=lambda: PredictConfig(batch_size=2))
    qc_window: int = 9
    qc_tolerance: float = 0.3
    drop_incomplete: bool = False
    force: bool = False
    dark: str | None = None
    flat: str | None = None
    motion: MotionConfig = field(default_factory=MotionConfig)

    def validate(self) -> "QuantifyConfig":
        self.split.validate()
        self.predict.validate()
        self.motion.validate()
        if self.model_input is not None:
            _require(isinstance(self.model_input, tuple) and len(self.model_input) >= 1
                     and all(isinstance(n, int) and 1 <= n <= 64 for n in self.model_input),
                     "model_input", self.model_input, "laser numbers like 1 or 1,2,3 (1-based)")
        _require(self.interval_s is None or (isinstance(self.interval_s, (int, float))
                                             and 0 < self.interval_s < 1e7),
                 "interval", self.interval_s, "a positive number of seconds per cycle")
        _require(isinstance(self.organ_margin, int) and 0 <= self.organ_margin <= 50,
                 "organ_margin", self.organ_margin, "a whole number of pixels from 0 to 50")
        _require(isinstance(self.batch_cycles, int) and 1 <= self.batch_cycles <= 64,
                 "batch_cycles", self.batch_cycles, "a whole number from 1 to 64")
        _require(isinstance(self.qc_window, int) and self.qc_window >= 3
                 and self.qc_window % 2 == 1, "qc_window", self.qc_window, "an odd number >= 3")
        _require(isinstance(self.qc_tolerance, (int, float)) and 0 < self.qc_tolerance < 10,
                 "qc_tolerance", self.qc_tolerance, "a fraction such as 0.3")
        return self


# The U-Net paper: what an exported model package cites by default.
UNET_CITATION = ("Ronneberger O, Fischer P, Brox T (2015). U-Net: Convolutional Networks for "
                 "Biomedical Image Segmentation. MICCAI 2015.", "10.1007/978-3-319-24574-4_28")


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """What a package says about its makers and how it may be used.

    Attributes
    ----------
    authors : tuple of str
        Who trained the model (shown on bioimage.io).
    license : str
        SPDX licence identifier of the weights, e.g. ``CC-BY-4.0`` or ``MIT``.
    cite : tuple of (text, doi)
        References; the U-Net paper by default.
    name : str or None
        Package name (default: from the run folder's name).
    onnx : bool
        Also add ONNX weights (needs tf2onnx; skipped with a warning when missing).
    """

    authors: tuple[str, ...] = ("unetlib user",)
    license: str = "CC-BY-4.0"
    cite: tuple[tuple[str, str], ...] = (UNET_CITATION,)
    name: str | None = None
    onnx: bool = True

    def validate(self) -> "ExportConfig":
        _require(bool(self.authors) and all(str(author).strip() and "/" not in str(author)
                                            for author in self.authors),
                 "authors", list(self.authors), "at least one author name, without '/'")
        _require(bool(str(self.license).strip()), "license", self.license,
                 "an SPDX licence identifier such as CC-BY-4.0")
        return self


# Two-sided tests of one parameter between two groups of mice; AUC rules of NCA (PKNCA's
# names: "linear", and "lin up/log down" written as a flag value).
STUDY_TESTS = ("welch", "mannwhitney")
AUC_METHODS = ("linear", "linear-up-log-down")


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    """How a study's curves become one value per mouse, then group comparisons
    (:mod:`unetlib.study.analysis`).

    Attributes
    ----------
    reference : str or None
        The group every other group is compared with; None: the first group of the sheet.
    test : {"welch", "mannwhitney"}
        Two-sided Welch t-test (unequal variances) or Mann-Whitney U test per parameter.
    auc : {"linear", "linear-up-log-down"}
        Trapezoids throughout, or logarithmic trapezoids where the curve falls (PKNCA's
        "lin up/log down", closer to the area of an exponential decay).
    min_terminal_points : int
        Fewest last points a terminal-phase fit may use (PKNCA's ``min.hl.points``, 3).
    adj_r2_factor : float
        Fits whose adjusted R² is within this of the best count as equally good, and the
        one with the most points among them is taken (PKNCA's ``adj.r.squared.factor``).
    confidence : float
        Level of the ratio's confidence interval.
    """

    reference: str | None = None
    test: str = "welch"
    auc: str = "linear"
    min_terminal_points: int = 3
    adj_r2_factor: float = 1e-4
    confidence: float = 0.95

    def validate(self) -> "StudyConfig":
        _require(self.test in STUDY_TESTS, "test", self.test, f"one of {STUDY_TESTS}")
        _require(self.auc in AUC_METHODS, "auc", self.auc, f"one of {AUC_METHODS}")
        _require(isinstance(self.min_terminal_points, int) and self.min_terminal_points >= 3,
                 "min_terminal_points", self.min_terminal_points, "a whole number >= 3")
        _require(0.0 <= self.adj_r2_factor < 0.1, "adj_r2_factor", self.adj_r2_factor,
                 "from 0 to 0.1")
        _require(0.5 <= self.confidence < 1.0, "confidence", self.confidence, "from 0.5 to 1")
        return self


@dataclass(frozen=True, kw_only=True)
class SyntheticStudyConfig:
    """A synthetic study (:mod:`unetlib.data.synthetic_study`): mice in groups, a known effect.

    Attributes
    ----------
    groups : tuple of (str, int)
        Each group's name and number of mice, in the sheet's order (the first is the
        reference).
    effect : (str, str, float)
        ``(group, organ, factor)``: that group's mice take up ``factor`` times the dye in
        that organ; every other organ and group is alike (no effect to find).
    mouse : SyntheticConfig
        The acquisition of every mouse (size, cycles, preset); each mouse gets its own
        seed, its own lie in the frame and injection cycle.
    injection_cycles : (int, int)
        Each mouse is injected at a cycle drawn from this range (inclusive).
    between_mice : float
        Relative SD of every organ's uptake and clearance between mice of one group.
    seed : int
        Seeds the whole study (mice, injections, spread).
    """

    groups: tuple[tuple[str, int], ...] = (("control", 6), ("treated", 6))
    effect: tuple[str, str, float] = ("treated", "kidney", 1.6)
    mouse: SyntheticConfig = field(default_factory=lambda: SyntheticConfig(cycles=24, height=96,
                                                                           width=128))
    injection_cycles: tuple[int, int] = (3, 6)
    between_mice: float = 0.06
    seed: int = 0

    def validate(self) -> "SyntheticStudyConfig":
        _require(len(self.groups) >= 1 and all(isinstance(name, str) and name and
                                               isinstance(count, int) and 1 <= count <= 200
                                               for name, count in self.groups)
                 and len({name for name, _ in self.groups}) == len(self.groups),
                 "groups", self.groups, "distinct (name, 1 to 200 mice) pairs")
        _require(self.effect[0] in {name for name, _ in self.groups} and 0.1 <= self.effect[2] <= 10,
                 "effect", self.effect, "(a group of the study, an organ, a factor from 0.1 to 10)")
        low, high = self.injection_cycles
        _require(0 <= low <= high < self.mouse.cycles - 3, "injection_cycles",
                 self.injection_cycles, f"a range within 0 and cycles - 4 ({self.mouse.cycles - 4})")
        _require(0.0 <= self.between_mice <= 0.5, "between_mice", self.between_mice, "0 to 0.5")
        _require_seed(self.seed)
        self.mouse.validate()
        return self


@dataclass(frozen=True)
class DemoStudyConfig:
    """The demo study (``python -m unetlib demo-study``, notebook 06).

    Its mice are demo acquisitions (the size and look of ``demo-stack``), so the demo's
    organ model (``runs/rgb3d`` of ``make demo``) segments them; two groups, the treated
    one taking up 1.6x the dye in the kidney.

    Attributes
    ----------
    mice_per_group : int
        Mice in each of the groups ``control`` and ``treated``. Five, as many labs use: with
        three (measured, seed 0) the kidney's ratio came out right (1.72 against an uptake
        ratio of 1.66) but Holm's correction over the 60 comparisons of the table left
        p = 0.44.
    cycles : int
        Laser cycles of every mouse's acquisition.
    seed : int
        Seeds the study (each mouse's noise, lie and injection).
    """

    mice_per_group: int = 5
    cycles: int = 12
    seed: int = 0

    def validate(self) -> "DemoStudyConfig":
        # Each mouse is 4 x 508 x 636 16-bit frames a cycle (2.6 MB): the bounds keep a
        # typo from filling the disk.
        _require(isinstance(self.mice_per_group, int) and 2 <= self.mice_per_group <= 20,
                 "mice_per_group", self.mice_per_group, "2 to 20 mice (a test needs 2 per group)")
        _require(isinstance(self.cycles, int) and 10 <= self.cycles <= 400, "cycles",
                 self.cycles, "10 to 400 laser cycles")
        _require_seed(self.seed)
        return self

    def study(self) -> SyntheticStudyConfig:
        """The synthetic study these settings describe."""
        self.validate()
        return SyntheticStudyConfig(
            groups=(("control", self.mice_per_group), ("treated", self.mice_per_group)),
            effect=("treated", "kidney", 1.6), mouse=SyntheticConfig(cycles=self.cycles),
            injection_cycles=(2, min(5, self.cycles - 6)), seed=self.seed).validate()
