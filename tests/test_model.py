"""Tests of unetlib.nn.model: shapes, presets, the classic network's exact structure."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from unetlib.core.config import ModelConfig, model_preset
from unetlib.core.errors import ParameterError
from unetlib.nn.model import build_unet, make_optimizer, model_depth, model_input_channels

pytestmark = pytest.mark.usefixtures("fresh_keras_session")


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("upsampling", ["transpose", "upsample"])
def test_shapes_for_channels_and_sizes(channels, upsampling):
    config = ModelConfig(input_channels=channels, depth=2, base_filters=4,
                         upsampling=upsampling)
    model = build_unet(config)
    assert model.input_shape == (None, None, None, channels)
    assert model.output_shape == (None, None, None, 1)
    for height, width in ((32, 32), (48, 80)):
        output = model(np.random.default_rng(0).random((2, height, width, channels),
                                                         dtype=np.float32))
        assert output.shape == (2, height, width, 1)
        values = keras.ops.convert_to_numpy(output)
        # Two different frames give two different maps: the output depends on the input.
        assert not np.allclose(values[0], values[1], atol=1e-4)
    assert model_depth(model) == 2
    assert model_input_channels(model) == channels


def test_classic_preset_matches_original_recipe():
    config = model_preset("classic")
    assert (config.depth, config.base_filters, config.batch_norm, config.dropout,
            config.upsampling, config.head_filters, config.learning_rate) == (
        4, 64, False, 0.5, "upsample", 2, 1e-4)
    model = build_unet(config)
    # zhixuhao/unet's model.summary() for input_size=(256, 256, 1): 31,031,685 parameters.
    assert model.count_params() == 31_031_685
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("MaxPooling2D") == 4
    assert kinds.count("UpSampling2D") == 4
    assert kinds.count("Dropout") == 2
    assert "BatchNormalization" not in kinds
    head = model.get_layer("head")
    assert head.filters == 2 and head.get_config()["activation"] == "relu"
    output = model.get_layer("probability")
    assert output.filters == 1 and output.kernel_size == (1, 1)
    assert output.get_config()["activation"] == "sigmoid"
    # The dropout layers sit at the two deepest levels (512 and 1024 filters).
    assert {layer.name for layer in model.layers if kinds[model.layers.index(layer)] == "Dropout"} \
        == {"down3_dropout", "bottleneck_dropout"}
    assert model.get_layer("down0_conv1").get_config()["kernel_initializer"]["class_name"] \
        == "HeNormal"


def test_default_preset_has_no_relu_head_and_uses_batch_norm():
    model = build_unet(model_preset("default"))
    names = [layer.name for layer in model.layers]
    assert "head" not in names
    assert any(type(layer).__name__ == "BatchNormalization" for layer in model.layers)
    # 8 filters at full resolution, doubling over 4 levels: 0.49 M parameters (the
    # 16-filter organs network has 4x as many, 1.95 M).
    assert model.count_params() == 487_881
    assert build_unet(model_preset("organs")).count_params() == 1_945_233


def test_model_preset_changes_and_unknown_name():
    assert model_preset("classic", input_channels=3).input_channels == 3
    with pytest.raises(ParameterError, match="preset"):
        model_preset("nope")


@pytest.mark.parametrize("changes", [{"input_channels": 2}, {"depth": 0}, {"dropout": 1.0},
                                     {"upsampling": "bilinear"}, {"learning_rate": 0.0},
                                     {"optimizer": "adagrad"}])
def test_invalid_model_config(changes):
    ((field, value),) = changes.items()
    with pytest.raises(ParameterError, match=re.escape(f"{field}={value!r} is invalid")):
        build_unet(ModelConfig(**changes))


def test_make_optimizer_uses_learning_rate():
    optimizer = make_optimizer(ModelConfig(optimizer="sgd", learning_rate=0.01))
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(0.01)
