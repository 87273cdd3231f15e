"""Tests of unetlib.runs.train: the run folder, resume, force, time budget, reproducibility."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from unetlib.core.config import ModelConfig, PipelineConfig, TrainConfig
from unetlib.core.errors import InputError, OutputError, ParameterError
from unetlib.core.io import read_csv, read_image, read_json, write_image
from unetlib.inference.predict import load_run, predict_folder
from unetlib.nn.augment import augment_preset
from unetlib.nn.model import build_unet
from unetlib.runs.train import _compile, calibrate_threshold, train

pytestmark = pytest.mark.usefixtures("fresh_keras_session")


def make_data(root, *, count=5, channels=1, seed=0):
    """64 x 80 uint16 noise frames with a bright ellipse each; the ellipse is the mask."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:64, :80]
    for index in range(count):
        centre_row, centre_col = rng.integers(20, 44), rng.integers(20, 60)
        mask = (rows - centre_row) ** 2 / 150 + (cols - centre_col) ** 2 / 300 < 1
        shape = (64, 80) if channels == 1 else (64, 80, channels)
        frame = rng.random(shape) * 1000 + (mask if channels == 1 else mask[..., None]) * 2500
        write_image(root / "train" / "frames" / f"{index}.png" if channels == 1 else
                    root / "train" / "frames" / f"{index}.tif", frame.astype(np.uint16))
        write_image(root / "train" / "masks" / f"{index}.png", mask.astype(np.uint8))
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data1d"))


TINY = TrainConfig(model=ModelConfig(depth=2, base_filters=4, learning_rate=1e-2),
                   augment=augment_preset("none"), epochs=3, steps_per_epoch=4,
                   pipeline=PipelineConfig(patch_size=32, batch_size=4, val_fraction=0.2, seed=1))


@pytest.fixture(scope="module")
def finished_run(data_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    keras.backend.clear_session()
    result = train(data_dir, run_dir, TINY, verbose=0)
    keras.backend.clear_session()
    return result


def copy_run(result, destination):
    shutil.copytree(result.run_dir, destination)
    return destination


@pytest.mark.slow
def test_train_writes_a_complete_run_folder(finished_run, data_dir, tmp_path):
    result = finished_run
    run_dir = result.run_dir
    for name in ("model.keras", "last.keras", "config.json", "history.csv", "metrics.json",
                 "state.json"):
        assert (run_dir / name).is_file(), name
    history = read_csv(run_dir / "history.csv")
    assert len(history) == 3 == result.epochs_completed
    assert {"loss", "dice", "iou", "pixel_accuracy", "val_loss", "val_dice",
            "val_frame_dice"} <= set(history[0])
    assert float(history[-1]["loss"]) < float(history[0]["loss"])
    config = read_json(run_dir / "config.json")
    assert config["model"]["input_channels"] == 1
    assert config["pipeline"]["patch_size"] == 32 and config["pipeline"]["seed"] == 1
    assert len(config["data"]["fingerprint"]) == 64
    assert {"tensorflow", "keras", "numpy"} <= set(config["versions"])
    assert config["normalize"]["method"] == "percentile"
    assert config["log_prior_shift"] is None  # one foreground: the threshold is calibrated
    metrics = read_json(run_dir / "metrics.json")
    # The threshold is the grid's best on the validation frames; the best epoch the one
    # with the highest Dice on whole validation frames, and the checkpoint kept is that
    # epoch's: calibration, which reloads model.keras, scores it the same at 0.5.
    by_threshold = metrics["dice_by_threshold"]
    assert metrics["threshold"] == config["threshold"] == result.threshold
    assert by_threshold[f"{metrics['threshold']:.2f}"] == max(by_threshold.values())
    frame_dice = [float(row["val_frame_dice"]) for row in history]
    assert metrics["best_epoch"] == 1 + int(np.argmax(frame_dice))
    assert metrics["best_val_dice"] == pytest.approx(max(frame_dice))
    assert metrics["val_dice_at_0.5"] == pytest.approx(max(frame_dice), abs=1e-6)
    assert not metrics["stopped_by_time_budget"]
    # The run folder is what prediction needs.
    run = load_run(run_dir)
    assert run.threshold == result.threshold
    written = predict_folder(run_dir, data_dir / "train" / "frames", tmp_path / "results",
                             progress=False)
    assert sorted(path.name for path in written) == [f"{i}_predict.png" for i in range(5)]


def test_the_checkpoint_kept_follows_the_learning_rate_schedule_unless_asked():
    cosine = dataclasses.replace(TINY.model, learning_rate_schedule="cosine")
    assert TINY.kept_checkpoint() == "best"
    assert dataclasses.replace(TINY, model=cosine).kept_checkpoint() == "last"
    assert dataclasses.replace(TINY, model=cosine, checkpoint="best").kept_checkpoint() == "best"
    assert dataclasses.replace(TINY, checkpoint="last").kept_checkpoint() == "last"
    with pytest.raises(ParameterError, match="checkpoint"):
        dataclasses.replace(TINY, checkpoint="latest").validate()


@pytest.mark.parametrize("keep_last, kept_epoch", [(False, 1), (True, 2)])
def test_the_recorder_keeps_the_best_epoch_or_the_last(keep_last, kept_epoch, tmp_path,
                                                       fresh_keras_session):
    from unetlib.runs.callbacks import CRITERION, RunRecorder, logged_fields

    model = build_unet(TINY.model)
    _compile(model, dataclasses.replace(TINY, loss="bce"), None)
    state = {"epochs_completed": 0, "best_val_dice": -1.0, "best_epoch": 0}
    recorder = RunRecorder(tmp_path, [], state, logged_fields(None), 0.0, 0.0, None,
                           keep_last=keep_last)
    recorder.set_model(model)
    for epoch, score in enumerate([0.9, 0.5]):  # validation got worse in the last epoch
        recorder.on_epoch_begin(epoch)
        recorder.on_epoch_end(epoch, {"loss": 0.1, CRITERION: score})
    assert state["best_epoch"] == kept_epoch
    assert state["best_val_dice"] == [0.9, 0.5][kept_epoch - 1]
    assert (tmp_path / "model.keras").is_file() and (tmp_path / "last.keras").is_file()


@pytest.mark.slow
def test_a_decaying_learning_rate_keeps_the_last_epoch(data_dir, tmp_path):
    config = dataclasses.replace(
        TINY, model=dataclasses.replace(TINY.model, learning_rate_schedule="cosine"))
    result = train(data_dir, tmp_path / "run", config, verbose=0)
    metrics = read_json(tmp_path / "run" / "metrics.json")
    history = read_csv(tmp_path / "run" / "history.csv")
    assert metrics["checkpoint"] == "last" and metrics["best_epoch"] == 3 == result.best_epoch
    # Calibration reloads model.keras: its score is the last epoch's, whatever the best was.
    assert metrics["val_dice_at_0.5"] == pytest.approx(float(history[-1]["val_frame_dice"]),
                                                       abs=1e-6)
    kept = keras.saving.load_model(tmp_path / "run" / "model.keras", compile=False)
    last = keras.saving.load_model(tmp_path / "run" / "last.keras", compile=False)
    for kept_weights, last_weights in zip(kept.get_weights(), last.get_weights()):
        np.testing.assert_array_equal(kept_weights, last_weights)
    assert read_json(tmp_path / "run" / "config.json")["train"]["checkpoint"] == "last"


def test_organ_model_is_kept_with_the_frames_class_frequencies(organ_run, tmp_path):
    """model.keras answers for whole frames: each class's odds against the background are
    those of the network as trained (last.keras) divided by how much more often the class
    fills the organ-centred patches than the frames (the shift config.json records)."""
    keep_last = dataclasses.replace(TINY, epochs=1, steps_per_epoch=2, checkpoint="last")
    result = train(organ_run["root"] / "data", tmp_path / "run", keep_last, verbose=0)
    config = read_json(result.run_dir / "config.json")
    assert config["train"]["prior_correction"] == TrainConfig().prior_correction > 0
    shift = np.array(config["log_prior_shift"])
    kept = keras.saving.load_model(result.run_dir / "model.keras", compile=False)
    trained = keras.saving.load_model(result.run_dir / "last.keras", compile=False)
    frame = np.random.default_rng(0).random((1, 32, 32, 1)).astype(np.float32)
    odds_kept, odds_trained = (np.log(model.predict_on_batch(frame)[0])
                               for model in (kept, trained))
    odds_kept, odds_trained = (odds - odds[..., :1] for odds in (odds_kept, odds_trained))
    np.testing.assert_allclose(odds_kept - odds_trained,
                               np.broadcast_to(-(shift - shift[0]), odds_kept.shape), atol=1e-4)
    assert shift[0] < 0 < min(shift[1:])
    # Validation scored the model as it was kept.
    assert result.val_dice == pytest.approx(read_json(result.run_dir / "metrics.json")[
        "val_dice_at_threshold"], abs=1e-6)


@pytest.mark.slow
def test_existing_run_is_not_overwritten_without_force(finished_run, data_dir, tmp_path):
    run_dir = copy_run(finished_run, tmp_path / "run")
    quick = dataclasses.replace(TINY, epochs=1, steps_per_epoch=1)
    with pytest.raises(OutputError, match="finished run"):
        train(data_dir, run_dir, quick, verbose=0)
    result = train(data_dir, run_dir, quick, force=True, verbose=0)
    assert result.epochs_completed == 1 and len(read_csv(run_dir / "history.csv")) == 1


@pytest.mark.slow
def test_resume_continues_from_the_last_epoch(finished_run, data_dir, tmp_path):
    run_dir = copy_run(finished_run, tmp_path / "run")
    # Simulate an interruption after epoch 3 of 4: the finished marker is not there.
    (run_dir / "metrics.json").unlink()
    config = dataclasses.replace(TINY, epochs=4)
    with pytest.raises(OutputError, match="unfinished run.*resume"):
        train(data_dir, run_dir, config, verbose=0)
    result = train(data_dir, run_dir, config, resume=True, verbose=0)
    assert result.epochs_completed == 4
    assert [row["epoch"] for row in read_csv(run_dir / "history.csv")] == ["1", "2", "3", "4"]
    finished_model = (run_dir / "model.keras").read_bytes()
    with pytest.raises(OutputError, match="finished run; resuming it would replace"):
        train(data_dir, run_dir, config, resume=True, verbose=0)
    assert (run_dir / "model.keras").read_bytes() == finished_model
    with pytest.raises(OutputError, match="already completed 4 of 4"):
        train(data_dir, run_dir, config, resume=True, force=True, verbose=0)
    with pytest.raises(InputError, match="no interrupted run"):
        train(data_dir, tmp_path / "fresh", config, resume=True, verbose=0)


@pytest.mark.slow
def test_time_budget_stops_cleanly(data_dir, tmp_path):
    result = train(data_dir, tmp_path / "run",
                   dataclasses.replace(TINY, epochs=50, max_minutes=1e-4), verbose=0)
    assert result.stopped_by_time_budget and result.epochs_completed == 1
    assert (tmp_path / "run" / "model.keras").is_file()
    assert read_json(tmp_path / "run" / "metrics.json")["stopped_by_time_budget"]


@pytest.mark.slow
def test_with_a_budget_an_epoch_ends_early_by_time_then_training_goes_on(data_dir, tmp_path):
    """A slow CPU keeps its best model every ``checkpoint_minutes``, not every epoch, and
    still trains ``epochs x steps_per_epoch`` steps: an epoch cut short is finished first.
    With a checkpoint interval shorter than one step, every step is validated on its own."""
    config = dataclasses.replace(TINY, epochs=2, steps_per_epoch=6, max_minutes=10.0,
                                 checkpoint_minutes=1e-9)
    result = train(data_dir, tmp_path / "run", config, verbose=0)
    assert result.epochs_completed == 2 and not result.stopped_by_time_budget
    history = read_csv(tmp_path / "run" / "history.csv")
    assert [int(row["steps"]) for row in history] == [1] * 12
    assert [int(row["epoch"]) for row in history] == [1] * 6 + [2] * 6
    assert all(row["val_dice"] != "" for row in history)  # each piece was validated
    assert result.metrics["samples_per_second"] == pytest.approx(
        11 * TINY.pipeline.batch_size / sum(float(row["epoch_seconds"]) for row in history[1:]))
    state = read_json(tmp_path / "run" / "state.json")
    assert state["epochs_completed"] == 2 and state["epoch_steps_done"] == 0


@pytest.mark.slow
def test_without_a_budget_epochs_are_whole_whatever_the_checkpoint_minutes(data_dir, tmp_path):
    config = dataclasses.replace(TINY, epochs=2, checkpoint_minutes=1e-6)
    train(data_dir, tmp_path / "run", config, verbose=0)
    history = read_csv(tmp_path / "run" / "history.csv")
    assert [int(row["steps"]) for row in history] == [TINY.steps_per_epoch] * 2


@pytest.mark.slow
def test_deterministic_runs_with_the_same_seed_have_identical_weights(data_dir, tmp_path):
    """``deterministic=True`` promises bit-identical re-runs. Op determinism is switched on
    for a whole process, so the two runs train in a child process of their own."""
    script = textwrap.dedent(f"""
        import dataclasses, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import keras, numpy as np
        from test_train import TINY
        from unetlib.runs.train import train
        config = dataclasses.replace(TINY, deterministic=True)
        runs = [train({str(data_dir)!r}, {str(tmp_path)!r} + f"/run{{i}}", config, verbose=0) for i in (1, 2)]
        weights = [keras.saving.load_model(run.run_dir / "last.keras", compile=False).get_weights()
                   for run in runs]
        same = all(np.array_equal(a, b) for a, b in zip(*weights))
        print("identical" if same and runs[0].threshold == runs[1].threshold else "different")
    """)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=600)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.strip().splitlines()[-1] == "identical"


@pytest.mark.slow
def test_channels_come_from_the_data(tmp_path):
    data = make_data(tmp_path / "data3d", count=3, channels=3)
    result = train(data, tmp_path / "run", dataclasses.replace(TINY, epochs=1,
                                                               steps_per_epoch=1), verbose=0)
    assert read_json(result.run_dir / "config.json")["model"]["input_channels"] == 3


def test_invalid_config_and_too_little_data(tmp_path):
    with pytest.raises(ParameterError, match="patch_size"):
        train(tmp_path, tmp_path / "run", dataclasses.replace(TINY, pipeline=dataclasses.replace(TINY.pipeline,
                                                                                 patch_size=40)), verbose=0)
    with pytest.raises(ParameterError, match="loss"):
        train(tmp_path, tmp_path / "run", dataclasses.replace(TINY, loss="focal"), verbose=0)
    data = make_data(tmp_path / "one", count=1)
    with pytest.raises(InputError, match="1 frame/mask pair"):
        train(data, tmp_path / "run", TINY, verbose=0)


def test_calibrate_threshold():
    probability = np.array([[0.2, 0.4], [0.6, 0.8]], np.float32)
    truth = np.array([[0, 1], [1, 1]], np.uint8)
    threshold, means = calibrate_threshold([probability], [truth], (0.3, 0.5, 0.7))
    assert threshold == 0.3 and means[0.3] == 1.0 and means[0.5] == pytest.approx(0.8)


def test_identical_finished_run_is_reused_not_retrained(finished_run, data_dir):
    before = (finished_run.run_dir / "model.keras").stat().st_mtime_ns
    again = train(data_dir, finished_run.run_dir, TINY, verbose=0)
    assert (finished_run.run_dir / "model.keras").stat().st_mtime_ns == before
    assert again.threshold == finished_run.threshold
    assert again.best_epoch == finished_run.best_epoch
    assert again.history == [pytest.approx(row) for row in finished_run.history]


def test_changed_parameters_do_not_reuse_a_finished_run(finished_run, data_dir):
    with pytest.raises(OutputError, match="finished run"):
        train(data_dir, finished_run.run_dir, dataclasses.replace(TINY, epochs=4), verbose=0)


# --- several organs -----------------------------------------------------------------------

@pytest.mark.slow
def test_a_small_multi_organ_model_learns_every_organ(organ_run, tmp_path):
    """Fails when learning breaks: every organ's held-out Dice must clear a floor.

    The session's ``organ_run`` (conftest): 300 steps of the ``small`` network on the
    synthetic organ data. Measured when written (AMD EPYC, 2 cores): 0.99 / 0.97 / 0.95 for
    liver, kidney and bladder; with cross-entropy alone 0.98 / 0.76 / 0.55.
    """
    from unetlib.inference.evaluate import evaluate_folders
    from unetlib.inference.predict import predict_folder

    run, root = organ_run["run"], organ_run["root"]
    metrics = read_json(run / "metrics.json")
    assert metrics["threshold"] is None and set(metrics["val_organs"]) == {
        "liver", "kidney", "bladder"}
    header = read_csv(run / "history.csv")[0]
    assert {"val_dice_liver", "val_dice_kidney", "val_dice_bladder"} <= set(header)
    # Trained on the frames' class frequencies: organ-centred patches show every organ more
    # often than the frames do (shift > 0), the background less.
    shift = read_json(run / "config.json")["log_prior_shift"]
    assert len(shift) == 4 and shift[0] < 0 < min(shift[1:]), shift
    written = predict_folder(run, root / "data" / "test", tmp_path / "pred", progress=False)
    assert (tmp_path / "pred" / "organs.csv") in written
    report = evaluate_folders(tmp_path / "pred", root / "truth")
    dice = {organ: scores["dice"] for organ, scores in report.per_organ.items()}
    assert min(dice.values()) > 0.8, dice
    # The confusion table counts every truth pixel once, in the row of its class.
    truth = np.stack([np.asarray(read_image(path)) for path in sorted((root / "truth").glob("*.png"))])
    assert report.confusion.shape == (4, 4)
    assert report.confusion.sum(axis=1).tolist() == [int((truth == k).sum()) for k in range(4)]


@pytest.mark.slow
def test_a_finished_run_from_an_older_unetlib_is_still_reused(finished_run, data_dir):
    """Its stored request lacks settings added since (model classes) and still holds the
    removed pipeline shortcuts as None: the identical call reuses it, a changed one not."""
    config_path = finished_run.run_dir / "config.json"
    original = read_json(config_path)
    older = json.loads(json.dumps(original))
    del older["request"]["config"]["model"]["classes"]
    older["request"]["config"].update(batch_size=None, patch_size=None, val_fraction=None,
                                      seed=None)
    from unetlib.core.io import write_json

    write_json(config_path, older, overwrite=True)
    try:
        stamp = (finished_run.run_dir / "model.keras").stat().st_mtime_ns
        again = train(data_dir, finished_run.run_dir, TINY, verbose=0)
        assert again.seconds == 0.0  # read back, not trained
        assert (finished_run.run_dir / "model.keras").stat().st_mtime_ns == stamp
        older["request"]["config"]["seed"] = 7  # a setting that was really set differs
        write_json(config_path, older, overwrite=True)
        with pytest.raises(OutputError, match="holds a finished run"):
            train(data_dir, finished_run.run_dir, TINY, verbose=0)
    finally:
        write_json(config_path, original, overwrite=True)


def test_a_verbosity_keras_does_not_have_is_refused_before_anything_is_written(data_dir, tmp_path):
    with pytest.raises(ParameterError, match="verbose=3 is invalid"):
        train(data_dir, tmp_path / "run", TINY, verbose=3)
    assert not (tmp_path / "run").exists()


def test_fit_creates_no_variable_so_its_step_is_traced_once():
    """The optimiser is built when the model is compiled: had Keras created its slots while
    tracing the first step, TensorFlow would trace the step a second time (seconds per fit)."""
    model = build_unet(TINY.model)
    _compile(model, dataclasses.replace(TINY, loss="bce"), None)
    images = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32)
    created = []

    def record(next_creator, **kwargs):
        variable = next_creator(**kwargs)
        created.append(variable.name)
        return variable

    with tf.variable_creator_scope(record):
        model.fit(images, (images > 0.5).astype(np.float32), epochs=1, verbose=0)
    assert created == []
    assert len(model.optimizer.variables) > 2 * len(model.trainable_variables)
