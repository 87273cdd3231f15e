"""Feature maps: the levels of a U-Net, their activations for one frame, and their figure.

Tiny untrained models (depth 2, 4 base filters) are built, never trained: the tests are
about which layers are read, how the frame is padded and cropped, and what is drawn.
"""

from __future__ import annotations

import numpy as np
import pytest

from unetlib.core.config import ModelConfig
from unetlib.core.errors import ParameterError
from unetlib.inference.activations import feature_levels, feature_maps, level_layer
from unetlib.nn.model import build_unet
from unetlib.viz.plots import plot_feature_maps

FRAME_SHAPE = (50, 70)  # not a multiple of 2**2: prediction pads it to 52 x 72


@pytest.fixture(scope="module")
def model():
    return build_unet(ModelConfig(depth=2, base_filters=4))


@pytest.fixture(scope="module")
def frame():
    return np.random.default_rng(0).random(FRAME_SHAPE).astype(np.float32)


@pytest.mark.parametrize("depth, batch_norm, ends",
                         [(1, True, "relu2"), (2, True, "relu2"), (3, False, "conv2")])
def test_levels_run_down_the_encoder_through_the_bottleneck_and_up_the_decoder(
        depth, batch_norm, ends):
    model = build_unet(ModelConfig(depth=depth, base_filters=2, batch_norm=batch_norm))
    down = [f"down{i}" for i in range(depth)]
    up = [f"up{i}" for i in reversed(range(depth))]
    assert feature_levels(model) == [*down, "bottleneck", *up]
    # Each level is its conv block's output: the last ReLU (or ReLU-activated conv).
    assert [level_layer(model, level) for level in feature_levels(model)] == \
        [f"{level}_{ends}" for level in feature_levels(model)]


def test_default_maps_are_every_encoder_level_the_bottleneck_and_the_last_decoder_level(
        model, frame):
    assert list(feature_maps(model, frame)) == ["down0", "down1", "bottleneck", "up0"]


def test_maps_cover_the_frame_at_each_level_scale_with_the_level_filter_count(model, frame):
    maps = feature_maps(model, frame, feature_levels(model))
    # A level 2**i coarser keeps ceil(H / 2**i) x ceil(W / 2**i) positions.
    assert {level: values.shape for level, values in maps.items()} == {
        "down0": (50, 70, 4), "down1": (25, 35, 8), "bottleneck": (13, 18, 16),
        "up1": (25, 35, 8), "up0": (50, 70, 4)}
    assert all(values.dtype == np.float32 for values in maps.values())


def test_maps_equal_each_layer_output_on_the_frame_padded_as_prediction_pads_it(model, frame):
    from unetlib.core._tensorflow import keras

    padded = np.pad(frame[..., np.newaxis], ((0, 2), (0, 2), (0, 0)), mode="reflect")
    maps = feature_maps(model, frame[..., np.newaxis], ["bottleneck", "down1", "up0"])
    assert list(maps) == ["bottleneck", "down1", "up0"]
    for level, layer in (("down1", "down1_relu2"), ("bottleneck", "bottleneck_relu2"),
                         ("up0", "up0_relu2")):
        probe = keras.Model(model.input, model.get_layer(layer).output)
        expected = np.asarray(probe(padded[np.newaxis], training=False))[0]
        height, width = maps[level].shape[:2]
        np.testing.assert_allclose(maps[level], expected[:height, :width], rtol=1e-5, atol=1e-6)
        assert np.abs(maps[level]).max() > 0  # the comparison is not between two blanks


def test_an_unknown_level_raises_a_parameter_error_naming_the_valid_levels(model, frame):
    with pytest.raises(ParameterError, match="unknown level.*'down7'") as raised:
        feature_maps(model, frame, ["down0", "down7"])
    assert "down0, down1, bottleneck, up1, up0" in str(raised.value)
    with pytest.raises(ParameterError, match="down0, down1, bottleneck, up1, up0"):
        feature_maps(model, frame, [])


def _hand_made_maps() -> tuple[dict[str, np.ndarray], dict[str, list[int]]]:
    """Maps whose channels' mean absolute activation is known, and the expected picks."""
    rng = np.random.default_rng(1)
    # down0: 12 channels; channel c has mean |activation| activity[c]; 3 are dead (zero).
    activity = np.array([0.5, 0.0, 3.0, 1.0, 0.0, 2.5, 0.2, 4.0, 0.0, 1.5, 0.7, 2.0])
    signs = rng.choice([-1.0, 1.0], size=(20, 30, 12))
    down0 = (signs * activity).astype(np.float32)
    # bottleneck: only 3 channels, fewer than the panels per level; negative activations
    # count by their magnitude.
    bottleneck = np.stack([np.full((5, 8), 0.1), np.full((5, 8), -3.0), np.full((5, 8), 1.0)],
                          axis=-1).astype(np.float32)
    maps = {"down0": down0, "bottleneck": bottleneck}
    return maps, {"down0": [7, 2, 5, 11], "bottleneck": [1, 2, 0]}


def _image_axes(figure):
    return [ax for ax in figure.axes if ax.images]


def test_plot_shows_the_most_active_channels_of_each_level_most_active_first():
    maps, expected = _hand_made_maps()
    figure = plot_feature_maps(maps, channels_per_level=4)
    titles = [ax.get_title() for ax in _image_axes(figure)]
    assert titles == [f"{level} · ch {channel}"
                      for level, channels in expected.items() for channel in channels]
    # Each panel shows its channel's values (not a neighbour's).
    shown = _image_axes(figure)[0].images[0].get_array()
    np.testing.assert_array_equal(np.asarray(shown), maps["down0"][..., 7])


def test_plot_starts_each_row_with_the_input_and_labels_rows_with_level_and_size():
    maps, expected = _hand_made_maps()
    image = np.random.default_rng(2).random((20, 30))
    figure = plot_feature_maps(maps, image=image, channels_per_level=4)
    panels = _image_axes(figure)
    assert len(panels) == 2 + sum(len(channels) for channels in expected.values())
    rows = figure.axes[0].get_gridspec().nrows, figure.axes[0].get_gridspec().ncols
    assert rows == (2, 5)
    first_column = [figure.axes[0], figure.axes[5]]
    assert [ax.get_ylabel() for ax in first_column] == ["down0\n20 × 30 px",
                                                        "bottleneck\n5 × 8 px"]
    # The input panels show the frame itself, display-scaled.
    assert all(np.asarray(ax.images[0].get_array()).shape == (20, 30) for ax in first_column)
    assert [ax.get_title() for ax in first_column] == ["input", ""]


def test_plot_scales_each_panel_to_its_own_robust_range():
    maps, _ = _hand_made_maps()
    figure = plot_feature_maps(maps, channels_per_level=2)
    for ax in _image_axes(figure):
        channel = int(ax.get_title().rsplit(" ", 1)[1])
        level = ax.get_title().split(" ")[0]
        low, high = np.percentile(maps[level][..., channel], (1.0, 99.0))
        vmin, vmax = ax.images[0].get_clim()
        assert vmin == pytest.approx(low) and vmax == pytest.approx(max(high, low + 1e-6))


def test_plot_of_a_real_levels_stays_a_readable_size(model, frame):
    from unetlib.viz.plots import DPI

    figure = plot_feature_maps(feature_maps(model, frame), image=frame)
    # 4 levels of 4, 8, 16 and 4 channels: at most 8 each, after the input.
    assert len(_image_axes(figure)) == 4 + 4 + 8 + 8 + 4
    width, height = figure.get_size_inches() * DPI
    assert width <= 1000 and height <= 1000


def test_plot_refuses_no_maps_and_a_channel_count_below_one():
    maps, _ = _hand_made_maps()
    with pytest.raises(ParameterError, match="channels_per_level=0 is invalid"):
        plot_feature_maps(maps, channels_per_level=0)
    with pytest.raises(ParameterError, match="maps=.* is invalid"):
        plot_feature_maps({})
