"""unetlib.runs.request: what a training is asked to compute, resolved without TensorFlow.

Reuse and refusal of a finished run are tested with a real trained run in test_cli.py.
"""

import pytest
from helpers import organ_data, write_data_folder

from unetlib.core.config import TrainConfig, augment_preset, model_preset
from unetlib.runs.request import training_request


@pytest.fixture(scope="module")
def organs_dir(tmp_path_factory):
    return organ_data(tmp_path_factory.mktemp("organs"))


def test_organ_data_gets_the_organs_network_its_loss_and_its_stronger_intensity_jitter(
        organs_dir):
    request = training_request(organs_dir, TrainConfig().validate())
    assert request.config.model == model_preset("organs")
    assert request.config.loss == "edge-ce+dice"
    assert request.config.augment == augment_preset("organs")
    assert request.config.augment.contrast > augment_preset("default").contrast
    assert request.record["config"]["augment"]["noise_std"] == 0.03


def test_a_named_network_or_augmentation_keeps_what_was_asked(organs_dir):
    named_network = training_request(organs_dir, TrainConfig(model=model_preset("default")))
    assert named_network.config.augment == augment_preset("default")
    asked = augment_preset("none")
    named_augment = training_request(organs_dir, TrainConfig(augment=asked))
    assert named_augment.config.augment == asked


def test_binary_data_keeps_the_default_augmentation(tmp_path):
    request = training_request(write_data_folder(tmp_path / "data"), TrainConfig())
    assert request.config.model == model_preset("default")
    assert request.config.augment == augment_preset("default")
