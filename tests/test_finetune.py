"""Fine-tuning: training that starts from a trained model (``train --init-from``)."""

from __future__ import annotations

import dataclasses
import shutil

import keras
import numpy as np
import pytest
from helpers import write_data_folder

from unetlib.app.cli import main
from unetlib.core.config import PipelineConfig, TrainConfig, model_preset
from unetlib.core.errors import InputError, ParameterError
from unetlib.core.io import read_csv, read_json
from unetlib.data.organs import Organ, OrganTable, write_organ_table
from unetlib.runs.finetune import encoder_layers
from unetlib.runs.train import train

TINY = TrainConfig(model=model_preset("small"), epochs=2, steps_per_epoch=2,
                   pipeline=PipelineConfig(batch_size=2, patch_size=32, val_fraction=0.25,
                                           seed=0))


def first_kernel(model: keras.Model, name: str = "down0_conv1") -> np.ndarray:
    return np.array(model.get_layer(name).kernel)


@pytest.fixture(scope="module")
def organ_start(organ_run):
    """The session's trained organ run and its data folder (3 organs, laser 1)."""
    return organ_run["run"], organ_run["root"] / "data"


@pytest.mark.slow
def test_fine_tuning_starts_from_the_given_weights_and_records_it(organ_start, tmp_path):
    start, data = organ_start
    config = dataclasses.replace(TINY, init_from=str(start), epochs=1, steps_per_epoch=1,
                                 model=model_preset("default"))
    # A learning rate of 0 keeps the weights where they started: the result must be the
    # starting model's weights exactly, which random initialisation never gives.
    config = dataclasses.replace(config, model=dataclasses.replace(config.model,
                                                                   learning_rate=1e-12))
    result = train(data, tmp_path / "tuned", config, verbose=0)
    tuned = keras.saving.load_model(result.run_dir / "model.keras", compile=False)
    original = keras.saving.load_model(start / "model.keras", compile=False)
    np.testing.assert_allclose(first_kernel(tuned), first_kernel(original), atol=1e-6)
    stored = read_json(result.run_dir / "config.json")
    assert stored["init_from"]["model"] == str((start / "model.keras").resolve())
    assert len(stored["init_from"]["sha256"]) == 64
    # The architecture and normalisation are the starting model's, not the preset asked for
    # (the optimiser's learning rate is the one asked for).
    assert {**stored["model"], "learning_rate": None} == {
        **read_json(start / "config.json")["model"], "learning_rate": None}
    assert stored["model"]["learning_rate"] == 1e-12
    assert stored["normalize"] == read_json(start / "config.json")["normalize"]


@pytest.mark.slow
def test_fine_tuning_changes_the_weights_and_learns(organ_start, tmp_path):
    start, data = organ_start
    result = train(data, tmp_path / "tuned",
                   dataclasses.replace(TINY, init_from=str(start), epochs=2, steps_per_epoch=3), verbose=0)
    tuned = keras.saving.load_model(result.run_dir / "model.keras", compile=False)
    original = keras.saving.load_model(start / "model.keras", compile=False)
    assert not np.allclose(first_kernel(tuned, "head" if "head" in [
        layer.name for layer in tuned.layers] else "class_probabilities"),
        first_kernel(original, "head" if "head" in [layer.name for layer in original.layers]
                     else "class_probabilities"))
    # Started from a model that already segments these organs: high Dice after 6 steps.
    assert result.val_dice > 0.8


@pytest.mark.slow
def test_frozen_encoder_does_not_move_during_its_epochs(organ_start, tmp_path, monkeypatch):
    import unetlib.runs.callbacks

    start, data = organ_start
    config = dataclasses.replace(TINY, init_from=str(start), epochs=2, steps_per_epoch=3,
                                 freeze_encoder_epochs=1)
    # The encoder's weights at the end of each epoch, taken when last.keras is saved.
    encoder_after_epoch = []
    save_model = unetlib.runs.callbacks.save_model

    def recording_save_model(model, path, *args, **kwargs):
        if path.name == "last.keras":
            encoder_after_epoch.append([np.array(weight) for layer in encoder_layers(model)
                                        for weight in layer.weights])
        return save_model(model, path, *args, **kwargs)

    monkeypatch.setattr(unetlib.runs.callbacks, "save_model", recording_save_model)
    result = train(data, tmp_path / "tuned", config, verbose=0)
    original = keras.saving.load_model(start / "model.keras", compile=False)
    before = [np.array(weight) for layer in encoder_layers(original) for weight in layer.weights]
    assert before, "the U-Net has no down* layers to freeze"
    assert len(encoder_after_epoch) == 2
    # Epoch 1 (frozen): every encoder weight, batch-norm statistics included, as it started.
    for after, start_weight in zip(encoder_after_epoch[0], before, strict=True):
        np.testing.assert_array_equal(after, start_weight)
    # Epoch 2 (unfrozen): the encoder moves.
    assert not np.allclose(encoder_after_epoch[1][0], before[0])
    tuned = keras.saving.load_model(result.run_dir / "last.keras", compile=False)
    np.testing.assert_array_equal(first_kernel(tuned), encoder_after_epoch[1][0])
    # ...and every encoder layer is trainable again in the saved model.
    assert all(layer.trainable for layer in encoder_layers(tuned))


@pytest.mark.slow
def test_frozen_encoder_keeps_its_weights_while_the_decoder_learns(organ_start, tmp_path):
    from unetlib.runs.finetune import set_encoder_trainable

    start, _ = organ_start
    model = keras.saving.load_model(start / "model.keras", compile=False)
    before = first_kernel(model)
    decoder = np.array(model.get_layer("class_probabilities").kernel)
    assert set_encoder_trainable(model, False) == len(encoder_layers(model)) > 0
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    images = np.random.default_rng(0).random((2, 32, 32, 1)).astype(np.float32)
    labels = np.zeros((2, 32, 32, 4), np.float32)
    labels[..., 1] = 1.0
    model.fit(images, labels, epochs=2, verbose=0)
    np.testing.assert_array_equal(first_kernel(model), before)
    assert not np.allclose(np.array(model.get_layer("class_probabilities").kernel), decoder)


def test_fine_tuning_refuses_another_channel_count(organ_start, tmp_path):
    start, _ = organ_start
    data = tmp_path / "rgb"
    from unetlib.core.io import write_image

    rng = np.random.default_rng(0)
    for index in range(4):
        write_image(data / "train" / "frames" / f"{index}.tif",
                    (rng.random((48, 64, 3)) * 1000).astype(np.uint16))
        mask = np.zeros((48, 64), np.uint8)
        mask[10:20, 10:20] = 1
        mask[25:35, 30:40] = 2
        mask[5:10, 40:50] = 3
        write_image(data / "train" / "masks" / f"{index}.png", mask)
    shutil.copy(start.parent / "data" / "organs.csv", data / "organs.csv")
    with pytest.raises(InputError, match="takes 1-channel frames but .* holds 3-channel"):
        train(data, tmp_path / "tuned", dataclasses.replace(TINY, init_from=str(start)), verbose=0)
    assert not (tmp_path / "tuned").exists()


def test_fine_tuning_refuses_other_organs_or_binary_masks(organ_start, tmp_path):
    start, data = organ_start
    other = tmp_path / "other"
    shutil.copytree(data, other)
    write_organ_table(other / "organs.csv", OrganTable(organs=(
        Organ(1, "liver", "#e6194b"), Organ(2, "spleen", "#3cb44b"),
        Organ(3, "bladder", "#4363d8")), explicit_colors=True), overwrite=True)
    with pytest.raises(InputError, match="liver, kidney, bladder.*liver, spleen, bladder"):
        train(other, tmp_path / "tuned", dataclasses.replace(TINY, init_from=str(start)), verbose=0)
    binary = write_data_folder(tmp_path / "binary")
    with pytest.raises(InputError, match="one foreground"):
        train(binary, tmp_path / "tuned", dataclasses.replace(TINY, init_from=str(start)), verbose=0)
    assert not (tmp_path / "tuned").exists()


def test_freeze_needs_a_starting_model_and_fewer_epochs():
    with pytest.raises(ParameterError, match="freeze_encoder_epochs"):
        dataclasses.replace(TINY, freeze_encoder_epochs=1).validate()
    with pytest.raises(ParameterError, match="freeze_encoder_epochs"):
        dataclasses.replace(TINY, init_from="run", freeze_encoder_epochs=2).validate()


def test_cli_init_from_a_missing_run_is_one_error_line(organ_start, tmp_path, capsys):
    _, data = organ_start
    status = main(["-q", "train", str(data), "--out", str(tmp_path / "tuned"), "--init-from",
                   str(tmp_path / "nowhere"), "--epochs", "1", "--steps-per-epoch", "1"])
    err = capsys.readouterr().err
    assert status == 2
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        line for line in err.splitlines() if line.strip()]
    assert str(tmp_path / "nowhere") in err and "Traceback" not in err
    assert not (tmp_path / "tuned").exists()


@pytest.mark.slow
def test_cli_fine_tunes_with_a_frozen_encoder(organ_start, tmp_path, capsys):
    start, data = organ_start
    status = main(["-q", "train", str(data), "--out", str(tmp_path / "tuned"), "--init-from",
                   str(start), "--freeze-encoder", "1", "--epochs", "2", "--steps-per-epoch",
                   "2", "--batch-size", "2", "--patch-size", "32"])
    assert status == 0, capsys.readouterr().err
    stored = read_json(tmp_path / "tuned" / "config.json")
    assert stored["init_from"]["freeze_encoder_epochs"] == 1
    assert stored["init_from"]["model"] == str((start / "model.keras").resolve())
    # A finished run of both epochs (one frozen, one not), scored on every organ.
    metrics = read_json(tmp_path / "tuned" / "metrics.json")
    assert metrics["epochs_completed"] == 2 and not metrics["stopped_by_time_budget"]
    assert set(metrics["val_organs"]) == {"liver", "kidney", "bladder"}
    assert [row["epoch"] for row in read_csv(tmp_path / "tuned" / "history.csv")] == ["1", "2"]


@pytest.mark.slow
def test_organs_listed_in_another_order_are_mapped_by_name(organ_start, tmp_path):
    start, data = organ_start
    reordered = tmp_path / "reordered"
    shutil.copytree(data, reordered)
    # The same organs with other values and in another order: kidney, bladder, liver.
    from unetlib.core.io import write_image
    from unetlib.data.masks import read_labels
    from unetlib.data.organs import read_organ_table

    old = read_organ_table(data / "organs.csv")
    new = OrganTable(organs=(Organ(5, "kidney", "#3cb44b"), Organ(6, "bladder", "#4363d8"),
                             Organ(7, "liver", "#e6194b")), explicit_colors=True)
    write_organ_table(reordered / "organs.csv", new, overwrite=True)
    values = {"liver": 7, "kidney": 5, "bladder": 6}
    for mask in sorted((data / "train" / "masks").glob("*.png")):
        classes = read_labels(mask, old)[0]
        relabelled = np.zeros(classes.shape, np.uint8)
        for index, organ in enumerate(old.organs, start=1):
            relabelled[classes == index] = values[organ.name]
        write_image(reordered / "train" / "masks" / mask.name, relabelled, overwrite=True)
    config = dataclasses.replace(TINY, init_from=str(start), epochs=1, steps_per_epoch=1,
                                 model=dataclasses.replace(model_preset("default"),
                                                           learning_rate=1e-12))
    result = train(reordered, tmp_path / "tuned", config, verbose=0)
    tuned = keras.saving.load_model(result.run_dir / "model.keras", compile=False)
    original = keras.saving.load_model(start / "model.keras", compile=False)
    # The output layer's class k is now the data's k-th organ, as the model learnt it.
    after = np.array(tuned.get_layer("class_probabilities").kernel)
    before = np.array(original.get_layer("class_probabilities").kernel)
    np.testing.assert_allclose(after[..., 0], before[..., 0], atol=1e-6)
    for name in ("liver", "kidney", "bladder"):
        np.testing.assert_allclose(after[..., 1 + new.names.index(name)],
                                   before[..., 1 + old.names.index(name)], atol=1e-6)
    assert not np.allclose(after[..., 1], before[..., 1], atol=1e-3)
