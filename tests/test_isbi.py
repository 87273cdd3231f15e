"""On the real ISBI 2012 data (when present): a short training beats a constant answer."""

from __future__ import annotations

import os

import numpy as np
import pytest

from unetlib.core.config import PipelineConfig, TrainConfig, augment_preset, model_preset
from unetlib.core.io import read_image
from unetlib.data.normalize import normalize_image
from unetlib.nn.frame_scores import frame_metrics
from unetlib.nn.sliding_window import predict_probabilities
from unetlib.runs.run import load_run
from unetlib.runs.train import train


@pytest.mark.slow
def test_short_training_on_isbi_beats_a_constant_prediction(isbi_dir, tmp_path):
    data = tmp_path / "isbi"
    for sub in ("frames", "masks"):
        (data / "train" / sub).mkdir(parents=True)
    for index in range(8):  # the protocol's training images (a subset, for time)
        os.symlink(isbi_dir / "images" / f"{index}.png", data / "train" / "frames" / f"{index}.png")
        os.symlink(isbi_dir / "masks" / f"{index}.png", data / "train" / "masks" / f"{index}.png")
    config = TrainConfig(model=model_preset("default"), augment=augment_preset("default"),
                         epochs=3, steps_per_epoch=10,
                         pipeline=PipelineConfig(patch_size=128, batch_size=4, val_fraction=0.25,
                                                 seed=0))
    run = load_run(train(data, tmp_path / "run", config, verbose=0).run_dir)

    trained, constant = [], []
    for index in range(20, 24):  # evaluation images of the protocol, full 512 x 512
        truth = read_image(isbi_dir / "masks" / f"{index}.png") > 127  # cell = foreground
        image = normalize_image(read_image(isbi_dir / "images" / f"{index}.png"), run.normalize)
        predicted = predict_probabilities(run.model, image) >= run.threshold
        assert predicted.shape == truth.shape == (512, 512)
        trained.append((frame_metrics(predicted, truth), frame_metrics(~predicted, ~truth)))
        all_cell = np.ones_like(truth)
        constant.append((frame_metrics(all_cell, truth), frame_metrics(~all_cell, ~truth)))

    def mean(rows, part, key):
        return float(np.mean([row[part][key] for row in rows]))

    # "Everything is cell" already scores cell Dice ~0.89 and high pixel accuracy, but
    # finds no membrane at all; a trained model must find membranes and be more accurate.
    assert mean(trained, 1, "dice") > 0.5 > mean(constant, 1, "dice")
    assert mean(trained, 0, "pixel_accuracy") > mean(constant, 0, "pixel_accuracy")
    assert mean(trained, 0, "dice") > mean(constant, 0, "dice")
