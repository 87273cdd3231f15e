"""A Ctrl-C whose ``KeyboardInterrupt`` was swallowed (by TensorFlow's compiled code or a
finaliser) still stops training, prediction and quantification as an interruption.

The swallowing is reproduced in this process: the CLI's handler is installed, SIGINT is
sent, and its exception caught, as compiled code would; then each command must end with
``Interrupted`` and leave no finished output, instead of running on as if no Ctrl-C came.
"""

from __future__ import annotations

import os
import signal

import pytest
from helpers import write_data_folder

from unetlib.core import interrupts
from unetlib.core.config import PipelineConfig, TrainConfig, model_preset
from unetlib.core.errors import Interrupted
from unetlib.inference.predict import predict_folder
from unetlib.runs.train import train
from unetlib.study.quantify import quantify_stack

pytestmark = pytest.mark.slow  # trains a small network

SMALL = TrainConfig(model=model_preset("small"), epochs=1, steps_per_epoch=2,
                    pipeline=PipelineConfig(batch_size=2, patch_size=32, val_fraction=0.25))


@pytest.fixture
def swallow_ctrl_c():
    """Call it to have a Ctrl-C received and its exception lost; forgotten after the test."""
    def swallow() -> None:
        interrupts.install()
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            pass
        assert interrupts.received()

    yield swallow
    interrupts.install()


def test_training_stops_at_its_first_step_and_keeps_no_model(tmp_path, swallow_ctrl_c):
    data = write_data_folder(tmp_path / "data")
    swallow_ctrl_c()
    with pytest.raises(Interrupted, match="training interrupted"):
        train(data, tmp_path / "run", SMALL, verbose=0)
    assert not (tmp_path / "run" / "model.keras").exists()


def test_prediction_stops_before_its_first_frame(tmp_path, swallow_ctrl_c):
    data = write_data_folder(tmp_path / "data")
    run = train(data, tmp_path / "run", SMALL, verbose=0).run_dir
    swallow_ctrl_c()
    with pytest.raises(Interrupted, match="prediction interrupted after 0 of 4"):
        predict_folder(run, data / "test", tmp_path / "masks", progress=False)
    assert not list((tmp_path / "masks").glob("*_predict.png"))


def test_quantify_stops_and_writes_no_results(organ_run, tmp_path, swallow_ctrl_c):
    swallow_ctrl_c()
    with pytest.raises(Interrupted, match="quantification interrupted"):
        quantify_stack(organ_run["run"], organ_run["stack"], tmp_path / "q")
    assert not list((tmp_path / "q").rglob("quantify.json"))
