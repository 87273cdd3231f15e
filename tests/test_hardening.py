"""One test per finding of the first hardening review, named by its item number.

Each test reproduces the reported failure on small real files and asserts the behaviour
that replaced it. The catalogue of bad CLI inputs is ``test_bad_inputs.py``; faults
(signals, a full disk, a read-only folder, two writers) are ``test_faults.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import warnings

import numpy as np
import pytest
from helpers import run_main, write_data_folder

from unetlib.core.config import (
    ModelConfig,
    PickConfig,
    PipelineConfig,
    SplitConfig,
    SyntheticConfig,
    TrainConfig,
    augment_preset,
    model_preset,
)
from unetlib.core.errors import InputError, ParameterError, UnetlibWarning
from unetlib.core.io import process_umask, read_csv, read_image, write_image, write_json
from unetlib.core.locking import LOCK_NAME, find_leftovers, output_lock
from unetlib.core.resources import training_memory_bytes
from unetlib.data.dataset import check_pairs
from unetlib.data.frames import pick_frames
from unetlib.data.stack import display_scale, split_stack
from unetlib.data.synthetic import write_synthetic_stack
from unetlib.inference.predict import predict_folder
from unetlib.nn.model import build_unet
from unetlib.runs.run import load_run
from unetlib.runs.train import train

TINY = TrainConfig(model=model_preset("small"), augment=augment_preset("none"), epochs=1,
                   steps_per_epoch=1,
                   pipeline=PipelineConfig(batch_size=2, patch_size=32, val_fraction=0.25))


pytestmark = pytest.mark.usefixtures("fresh_keras_session")


@pytest.fixture(scope="module")
def stack_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stack")
    stack, _ = write_synthetic_stack(folder / "stack.tif",
                                     SyntheticConfig(cycles=12, height=32, width=48),
                                     truth_path=folder / "truth.tif")
    return stack


def cli(capsys, *args):
    """``python -m unetlib -q ARGS`` in this process: (status, stdout, stderr)."""
    result = run_main(capsys, "-q", *args)
    return result.returncode, result.stdout, result.stderr


# --- 1. sizes bounded by the data and the memory ---------------------------------------

@pytest.mark.slow
def test_1_patch_far_larger_than_the_frames_is_refused_before_any_folder(tmp_path, capsys):
    data = write_data_folder(tmp_path / "data")
    status, _, err = cli(capsys, "train", data, "--out", tmp_path / "run", "--patch-size", 100000)
    assert status == 2
    assert "--patch-size 100000 is invalid" in err and "at most 64" in err
    assert not (tmp_path / "run").exists()
    # A plain re-run with a sensible size is then not refused by a half-made run folder.
    result = train(data, tmp_path / "run", TINY)
    assert result.epochs_completed == 1


def test_1_memory_estimate_refuses_a_batch_the_machine_cannot_hold(tmp_path):
    data = write_data_folder(tmp_path / "data")
    with pytest.raises(ParameterError, match="needs about .* of memory, more than"):
        train(data, tmp_path / "run", TrainConfig(pipeline=PipelineConfig(batch_size=100000, patch_size=64)))
    assert not (tmp_path / "run").exists()
    # Above a fixed part, the estimate grows with the batch and the square of the patch.
    config = ModelConfig()

    def estimate(patch: int, batch: int) -> int:
        return training_memory_bytes(config, patch_size=patch, batch_size=batch)

    doubled_patch = estimate(512, 8) - estimate(256, 8)
    assert doubled_patch / (estimate(256, 8) - estimate(128, 8)) == pytest.approx(4.0, rel=1e-3)
    doubled_batch = estimate(256, 16) - estimate(256, 8)
    assert doubled_batch / (estimate(256, 8) - estimate(256, 4)) == pytest.approx(2.0, rel=1e-3)


# --- 2. a mask never stays on a frame it was not drawn on ----------------------------

def test_2_pick_force_moves_the_masks_of_replaced_frames_aside(stack_path, tmp_path):
    data = tmp_path / "data"
    pick_frames(stack_path, data, PickConfig(count=8))
    masks = data / "train" / "masks"
    for index in range(8):
        write_image(masks / f"{index}.png", np.full((32, 48), index + 1, np.uint8))
    drawn = {path.name: path.read_bytes() for path in masks.iterdir()}
    with pytest.warns(UnetlibWarning, match="moved 5 mask"):
        pick_frames(stack_path, data, PickConfig(count=7, force=True))
    cycles_before = [0, 2, 3, 5, 6, 8, 9, 11]
    cycles_after = [int(row["cycle"]) for row in read_csv(data / "train" / "frames.csv")][:7]
    kept = {f"{i}.png" for i in range(7) if cycles_before[i] == cycles_after[i]} | {"7.png"}
    assert {path.name for path in masks.iterdir()} == kept
    aside = next(data.joinpath("train").glob("masks_replaced_*"))
    moved = {path.name: path.read_bytes() for path in aside.iterdir()}
    assert set(moved) | kept == set(drawn)
    assert all(drawn[name] == content for name, content in moved.items())  # nothing lost


def test_2_check_masks_detects_a_frame_changed_after_it_was_picked(stack_path, tmp_path):
    data = tmp_path / "data"
    pick_frames(stack_path, data, PickConfig(count=3))
    for index in range(3):
        write_image(data / "train" / "masks" / f"{index}.png",
                    np.pad(np.ones((8, 8), np.uint8), ((4, 20), (4, 36))))
    assert check_pairs(data).ok
    shutil.copy(data / "train" / "frames" / "0.png", data / "train" / "frames" / "1.png")
    report = check_pairs(data)
    assert [finding.message.split(":")[0] for finding in report.errors] == [
        str(data / "train" / "frames" / "1.png")]
    assert "changed since it was picked" in report.errors[0].message
    assert {row.stem: row.status for row in report.rows}["1"] == "error"


# --- 3. NaN and infinite pixels -----------------------------------------------------------

def test_3_non_finite_training_frame_is_refused_naming_it(tmp_path):
    data = write_data_folder(tmp_path / "data", dtype=np.float32)
    frame_path = data / "train" / "frames" / "2.tif"
    frame = read_image(frame_path)
    frame[5, 5], frame[6, 7] = np.nan, np.inf
    write_image(frame_path, frame, overwrite=True)
    report = check_pairs(data)
    assert [finding.path for finding in report.errors] == [frame_path]
    assert "2 pixel(s) that are NaN or infinite" in report.errors[0].message
    with pytest.raises(InputError, match="2.tif: has 2 pixel"):
        train(data, tmp_path / "run", TINY)


def test_3_prediction_masks_out_non_finite_pixels_and_says_so(tmp_path):
    model = build_unet(ModelConfig(input_channels=1, depth=1, base_filters=4, batch_norm=False))
    rng = np.random.default_rng(1)
    frame = (rng.random((32, 48)) * 1000).astype(np.float32)
    write_image(tmp_path / "clean" / "f.tif", frame)
    spoiled = frame.copy()
    spoiled[10:12, 10:14] = np.nan
    write_image(tmp_path / "nan" / "f.tif", spoiled)
    clean = predict_folder(model, tmp_path / "clean", tmp_path / "out_clean", threshold=0.01,
                           progress=False)
    with pytest.warns(UnetlibWarning, match="f.tif: 8 pixel.s. are NaN"):
        predict_folder(model, tmp_path / "nan", tmp_path / "out_nan", threshold=0.01,
                       progress=False)
    clean_mask = read_image(clean[0])
    mask = read_image(tmp_path / "out_nan" / "f_predict.png")
    assert clean_mask.any(), "the control frame must give a non-empty mask"
    assert not mask[10:12, 10:14].any()
    # Away from the bad pixels the mask is what the clean frame gives, not blank.
    assert np.mean(mask == clean_mask) > 0.9


def test_3_display_copies_of_float_frames_with_nan_stay_readable():
    frame = np.random.default_rng(2).random((40, 40, 3)).astype(np.float32) * 1000
    frame[3, 3, 1], frame[7, 9] = np.nan, np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value encountered in cast"
        display = display_scale(frame)
    assert display.dtype == np.uint8 and display[3, 3, 1] == 0 and (display[7, 9] == 0).all()
    assert display[..., 0].max() == 255  # the other pixels keep their contrast


# --- 4. evaluate --json never replaces a file unasked --------------------------------

def test_4_evaluate_json_refuses_an_existing_file_and_a_folder(tmp_path, capsys):
    for folder in ("pred", "truth"):
        write_image(tmp_path / folder / ("0_predict.png" if folder == "pred" else "0.png"),
                    np.pad(np.full((4, 4), 255, np.uint8), 6))
    scores = tmp_path / "scores.csv"
    scores.write_text("frame,dice\n0,0.9\n")
    status, out, err = cli(capsys, "evaluate", tmp_path / "pred", tmp_path / "truth", "--json",
                           scores)
    assert status == 2 and err.startswith(f"error: {scores}: already exists")
    assert out == "" and scores.read_text() == "frame,dice\n0,0.9\n"
    status, _, err = cli(capsys, "evaluate", tmp_path / "pred", tmp_path / "truth", "--json",
                         tmp_path)
    assert status == 2 and err == f"error: {tmp_path}: is a folder, not a file. Give a file name for this output.\n"
    status, _, _ = cli(capsys, "evaluate", tmp_path / "pred", tmp_path / "truth", "--json",
                       scores, "--force")
    assert status == 0 and '"mean"' in scores.read_text()


# --- 5 and 12. one writer per folder; leftovers of killed runs ------------------------

HOLD_LOCK = """
import sys, time
from unetlib.core.locking import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_5_a_live_lock_refuses_a_second_writer_and_a_stale_one_is_taken_over(tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        data = write_data_folder(tmp_path / "data")
        status, _, err = cli(capsys, "train", data, "--out", run, "--force")
        assert status == 2 and f"is in use by process {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # The killed holder left its lock file behind; the next writer takes it over.
    assert (run / LOCK_NAME).is_file()
    with output_lock(run):
        assert f"pid={os.getpid()}" in (run / LOCK_NAME).read_text()
        with output_lock(run):  # re-entrant within one process
            pass
    assert not (run / LOCK_NAME).exists()


def test_12_leftovers_of_an_interrupted_run_are_removed_and_reported(tmp_path, caplog):
    out = tmp_path / "out"
    (out / ".ab12.staging" / "laser1").mkdir(parents=True)
    (out / ".ab12.staging" / "laser1" / "0000.png").write_bytes(b"x" * 5000)
    (out / ".model.k3j.part.keras").write_bytes(b"y" * 100)
    (out / "model.keras").write_bytes(b"keep")
    (out / ".notes.txt").write_text("a user's hidden file stays")
    assert [path.name for path in find_leftovers(out)] == [".ab12.staging", ".model.k3j.part.keras"]
    with output_lock(out):
        pass
    assert sorted(path.name for path in out.iterdir()) == [".notes.txt", "model.keras"]
    assert "removed 2 leftover(s) of an interrupted run (5.1 KB)" in caplog.text


# --- 7. a truncated stack ------------------------------------------------------------------

def test_7_truncated_stack_is_one_clear_error_in_split_and_predict(stack_path, tmp_path, capsys):
    truncated = tmp_path / "cut.tif"
    data = stack_path.read_bytes()
    truncated.write_bytes(data[:int(len(data) * 0.6)])
    status, _, err = cli(capsys, "split-stack", truncated, "--out", tmp_path / "split")
    assert status == 2 and err.startswith(f"error: {truncated}: is damaged or truncated")
    assert "Copy it again" in err and not (tmp_path / "split").exists()
    model = tmp_path / "m.keras"
    build_unet(ModelConfig(input_channels=1, depth=1, base_filters=4)).save(model)
    status, _, err = cli(capsys, "predict", model, truncated, "--out", tmp_path / "pred")
    assert status == 2 and err.startswith(f"error: {truncated}: is damaged or truncated")


# --- 9. permissions follow the umask -----------------------------------------------------

def test_9_final_files_and_folders_get_normal_permissions(stack_path, tmp_path):
    umask = process_umask()
    split_stack(stack_path, tmp_path / "split", SplitConfig())
    write_json(tmp_path / "file.json", {"a": 1})
    paths = [tmp_path / "split", *(tmp_path / "split").rglob("*"), tmp_path / "file.json"]
    for path in paths:
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


# --- 10. outputs are never inputs --------------------------------------------------------

def test_10_predicting_a_folder_into_itself_twice_never_reads_its_outputs(tmp_path):
    model = build_unet(ModelConfig(input_channels=1, depth=1, base_filters=4))
    folder = tmp_path / "frames"
    for index in range(2):
        write_image(folder / f"{index}.png", np.full((32, 32), 100 * index, np.uint16))
    predict_folder(model, folder, folder, progress=False, write_overlay=True)
    written = predict_folder(model, folder, folder, progress=False, overwrite=True)
    assert sorted(path.name for path in written) == ["0_predict.png", "1_predict.png"]
    assert not list(folder.glob("*_predict_*"))


# --- 11. a forced split leaves no folders of the previous one ------------------------

def test_11_forced_split_with_fewer_lasers_removes_the_old_folders(stack_path, tmp_path):
    out = tmp_path / "split"
    user_file = out / "my_notes.txt"
    split_stack(stack_path, out, SplitConfig())
    user_file.write_text("mine")
    assert {"laser3", "laser4", "channels3", "channels4"} <= {p.name for p in out.iterdir()}
    split_stack(stack_path, out, SplitConfig(lasers=2, force=True))
    assert sorted(p.name for p in out.iterdir()) == ["laser1", "laser2", "manifest.csv",
                                                      "my_notes.txt", "split.json"]
    assert user_file.read_text() == "mine"


# --- 13. unfinished runs, finished runs, interruptions ---------------------------------

@pytest.mark.slow
def test_13_predicting_with_an_unfinished_run_warns_about_the_threshold(tmp_path):
    data = write_data_folder(tmp_path / "data")
    run = train(data, tmp_path / "run", TINY).run_dir
    (run / "metrics.json").unlink()
    config = dict(json.loads((run / "config.json").read_text()), threshold=None)
    write_json(run / "config.json", config, overwrite=True)
    assert not load_run(run).calibrated
    with pytest.warns(UnetlibWarning, match="did not finish .* using 0.5"):
        predict_folder(run, data / "test", tmp_path / "pred", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict_folder(run, data / "test", tmp_path / "pred2", threshold=0.4, progress=False)


@pytest.mark.slow
def test_13_resume_of_a_finished_run_needs_force(tmp_path, capsys):
    data = write_data_folder(tmp_path / "data")
    run = train(data, tmp_path / "run", TINY).run_dir
    before = (run / "model.keras").read_bytes()
    status, _, err = cli(capsys, "train", data, "--out", run, "--resume", "--preset", "small",
                         "--epochs", "2", "--patch-size", "32", "--batch-size", "2")
    assert status == 2 and "holds a finished run; resuming it would replace" in err
    assert "--force" in err and (run / "model.keras").read_bytes() == before


# --- 14. messages and small inconsistencies ----------------------------------------------

@pytest.mark.parametrize("args, expected", [
    (("check-masks", "{data}"), "--allow-labels"),
    (("train", "{data}", "--out", "{tmp}/r", "--val-fraction", "0"),
     "--val-fraction 0.0 is invalid: expected 0 < val_fraction < 1"),
    (("train", "{data}", "--out", "{tmp}/r", "--val-fraction", "1.5"),
     "--val-fraction 1.5 is invalid: expected 0 < val_fraction < 1"),
    (("split-stack", "{stack}", "--out", "{tmp}/s", "--workers", "0"), "--workers 0 is invalid"),
])
def test_14_messages_name_the_cli_flags(tmp_path, capsys, stack_path, args, expected):
    data = write_data_folder(tmp_path / "data")
    organs = np.zeros((48, 64), np.uint8)
    organs[5:15, 5:15], organs[20:30, 5:15], organs[5:15, 30:40] = 1, 2, 3
    write_image(data / "train" / "masks" / "1.png", organs, overwrite=True)
    argv = [arg.format(data=data, tmp=tmp_path, stack=stack_path) for arg in args]
    status, out, err = cli(capsys, *argv)
    assert status == 2
    assert expected in out + err
    assert "binary=False" not in out + err and "overwrite=True" not in out + err


def test_14_system_files_are_ignored_and_broken_links_named(tmp_path):
    data = write_data_folder(tmp_path / "data")
    masks = data / "train" / "masks"
    for name in ("Thumbs.db", "desktop.ini", ".DS_Store", "0.png~"):
        (masks / name).write_bytes(b"junk")
    (masks / "0.xcf").write_bytes(b"gimp project beside its export")
    assert check_pairs(data).ok
    (masks / "3.png").unlink()
    (masks / "3.png").symlink_to("3.png")
    report = check_pairs(data)
    assert len(report.errors) == 1 and report.errors[0].path == masks / "3.png"
    assert "broken symbolic link" in report.errors[0].message


def test_14_no_empty_run_folder_is_left_when_the_data_is_refused(tmp_path):
    data = write_data_folder(tmp_path / "data")
    write_image(data / "train" / "masks" / "2.png", np.zeros((48, 64), np.uint8), overwrite=True)
    with pytest.raises(InputError, match="all background"):
        train(data, tmp_path / "run", TINY)
    assert not (tmp_path / "run").exists()


def test_14_sizes_read_height_by_width_everywhere(tmp_path, capsys):
    write_image(tmp_path / "pred" / "0_predict.png", np.zeros((20, 30), np.uint8))
    write_image(tmp_path / "truth" / "0.png", np.full((30, 20), 255, np.uint8))
    status, _, err = cli(capsys, "evaluate", tmp_path / "pred", tmp_path / "truth")
    assert status == 2 and "is 20x30 (height x width)" in err and "is 30x20" in err
