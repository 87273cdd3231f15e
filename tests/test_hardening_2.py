"""One test per finding of the second hardening review, named by its item number.

Each test reproduces the reported failure on small real files and asserts the behaviour
that replaced it, as ``test_hardening.py`` does for the first review. Bad CLI inputs among
these findings are also cases of ``test_bad_inputs.py``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tifffile
import yaml
from helpers import free_port, organ_data, run_main, write_data_folder

from unetlib.core.config import (
    CrossvalConfig,
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
from unetlib.core.io import read_csv, read_image, read_json, write_csv, write_image, write_json
from unetlib.data.frames import pick_frames
from unetlib.data.organs import read_organ_table
from unetlib.data.stack import split_stack
from unetlib.data.synthetic import write_synthetic_stack
from unetlib.inference.evaluate import evaluate_folders
from unetlib.inference.predict import predict_folder
from unetlib.nn.model import build_unet
from unetlib.runs.crossval import crossvalidate
from unetlib.runs.train import train

TINY = TrainConfig(model=model_preset("small"), augment=augment_preset("none"), epochs=1,
                   steps_per_epoch=1,
                   pipeline=PipelineConfig(batch_size=2, patch_size=32, val_fraction=0.25))
TINY_FLAGS = ("--preset", "small", "--augment", "none", "--epochs", "1", "--steps-per-epoch",
              "1", "--batch-size", "2", "--patch-size", "32", "--val-fraction", "0.25")


pytestmark = pytest.mark.usefixtures("fresh_keras_session")


@pytest.fixture(scope="module")
def organ_run(tmp_path_factory):
    """A one-step run of the small network on the synthetic organ data (quantify needs
    organs, not quality), with its 16-cycle acquisition."""
    root = tmp_path_factory.mktemp("organ_run")
    data = organ_data(root)
    keras.backend.clear_session()
    train(data, root / "run", TINY)
    return {"run": root / "run", "stack": root / "stack.tif", "data": data, "root": root}


def run_cli(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m unetlib ARGS`` in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "unetlib", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def cli(capsys, *args):
    """``python -m unetlib -q ARGS`` in this process: (status, stdout, stderr)."""
    result = run_main(capsys, "-q", *args)
    return result.returncode, result.stdout, result.stderr


def stop_during_finalisation(run_dir) -> None:
    """Leave ``run_dir`` as a kill right after the last epoch's checkpoint leaves it: every
    epoch saved (``last.keras``, ``state.json``), but not calibrated and no metrics.json."""
    (run_dir / "metrics.json").unlink()
    (run_dir / "history.png").unlink()
    write_json(run_dir / "state.json", dict(read_json(run_dir / "state.json"), finished=False),
               overwrite=True)
    write_json(run_dir / "config.json", dict(read_json(run_dir / "config.json"), threshold=None),
               overwrite=True)


# --- 1. a run stopped during finalisation is finished by --resume ------------------------

@pytest.mark.slow
def test_1_resume_finishes_a_run_stopped_after_its_last_epoch(tmp_path, capsys):
    data = write_data_folder(tmp_path / "data")
    run = train(data, tmp_path / "run", TINY).run_dir
    stop_during_finalisation(run)
    model_before = (run / "model.keras").read_bytes()
    status, _, err = cli(capsys, "train", data, "--out", run, "--resume", *TINY_FLAGS)
    assert status == 0, err
    metrics = read_json(run / "metrics.json")
    assert metrics["epochs_completed"] == 1 and 0.0 <= metrics["threshold"] <= 1.0
    assert read_json(run / "config.json")["threshold"] == metrics["threshold"]
    assert (run / "history.png").is_file() and read_json(run / "state.json")["finished"]
    # Nothing was trained again: the one epoch and its best model are kept.
    assert [row["epoch"] for row in read_csv(run / "history.csv")] == ["1"]
    assert (run / "model.keras").read_bytes() == model_before
    # The finished run is then reused by the plain command, and resuming it is refused.
    status, _, err = cli(capsys, "train", data, "--out", run, *TINY_FLAGS)
    assert status == 0, err
    status, _, err = cli(capsys, "train", data, "--out", run, "--resume", *TINY_FLAGS)
    assert status == 2 and "holds a finished run" in err


@pytest.mark.slow
def test_1_crossval_finishes_a_fold_stopped_after_its_last_epoch(tmp_path):
    data = write_data_folder(tmp_path / "data", count=6)
    config = CrossvalConfig(folds=2, seed=0, train=TINY)
    first = crossvalidate(data, tmp_path / "cv", config)
    stop_during_finalisation(tmp_path / "cv" / "fold1")
    (tmp_path / "cv" / "crossval.json").unlink()
    again = crossvalidate(data, tmp_path / "cv", config)
    assert again.trained == [1]
    assert (tmp_path / "cv" / "fold1" / "metrics.json").is_file()
    assert json.loads((tmp_path / "cv" / "crossval.json").read_text())["held_out"] == first.folds


# --- 2. split-stack --force removes only what a split wrote, inside --out ------------------

def test_2_forced_split_never_removes_folders_a_manifest_names_beyond_its_own(tmp_path):
    stack, _ = write_synthetic_stack(tmp_path / "stack.tif",
                                     SyntheticConfig(cycles=3, lasers=4, height=32, width=48))
    victim = tmp_path / "victim"
    write_image(victim / "keep.png", np.ones((4, 4), np.uint8))
    out = tmp_path / "project" / "split"
    split_stack(stack, out, SplitConfig())
    write_image(out.parent / "beside.png", np.ones((4, 4), np.uint8))
    write_image(out / "mydata" / "frame.png", np.ones((4, 4), np.uint8))
    write_image(out / "laser4" / "my_roi.png", np.ones((4, 4), np.uint8))
    rows = read_csv(out / "manifest.csv")
    rows += [{**rows[0], "file": "mydata/frame.png"}, {**rows[0], "file": "../victim/keep.png"},
             {**rows[0], "file": "../../victim/keep.png"}]
    write_csv(out / "manifest.csv", rows, list(rows[0]), overwrite=True)
    with pytest.warns(UnetlibWarning, match="laser4: was a folder of the previous split"):
        split_stack(stack, out, SplitConfig(lasers=2, force=True))
    assert (victim / "keep.png").is_file() and (out.parent / "beside.png").is_file()
    assert (out / "mydata" / "frame.png").is_file()
    # The previous split's own folders go, a user's file in one of them stays.
    assert sorted(path.name for path in out.iterdir()) == [
        "laser1", "laser2", "laser4", "manifest.csv", "mydata", "split.json"]
    assert [path.name for path in (out / "laser4").iterdir()] == ["my_roi.png"]


# --- 3. a Dask scheduler without workers -------------------------------------------------

TEST_3 = "test_3_quantify_on_a_scheduler_without_workers_stops_with_one_line"


@pytest.fixture(scope="module", autouse=True)
def quantify_without_workers(request, tmp_path_factory):
    """``quantify --scheduler`` on a Dask scheduler that no worker joins, started when the
    module starts: the CLI waits 20 s for a worker almost idle, and meanwhile the module's
    other tests run instead of waiting with it. Its test, the module's last, reads the
    result; nothing starts when that test is not selected (``make test-fast``)."""
    if not any(item.name == TEST_3 for item in request.session.items):
        yield None
        return
    organ_run = request.getfixturevalue("organ_run")
    root = tmp_path_factory.mktemp("no_workers")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    with open(root / "scheduler.log", "wb") as log:
        scheduler = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", str(port), "--no-dashboard"], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
    quantify = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and scheduler.poll() is None, \
                    (root / "scheduler.log").read_text()
                time.sleep(0.2)
        with open(root / "stderr.txt", "wb") as stderr:
            quantify = subprocess.Popen(
                [sys.executable, "-m", "unetlib", "quantify", str(organ_run["run"]),
                 str(organ_run["stack"]), "--out", str(root / "out"), "--scheduler", address],
                stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        yield SimpleNamespace(process=quantify, address=address, out=root / "out",
                              stderr=root / "stderr.txt")
    finally:
        for process in (quantify, scheduler):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)


# --- 4. export with organ names that are not identifiers --------------------------------

@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning",
                            "ignore::ResourceWarning")
@pytest.mark.slow
def test_4_export_makes_identifiers_of_any_organ_names(tmp_path):
    from unetlib.runs.export import export_package

    data = organ_data(tmp_path)
    (data / "organs.csv").write_text("value,name\n1,kidney-left\n2,1st_lobe\n3,bladder\n")
    run = train(data, tmp_path / "run", TINY).run_dir
    package = export_package(run, tmp_path / "organs.zip", onnx=False)
    with zipfile.ZipFile(package) as archive:
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
    channels = rdf["outputs"][0]["axes"][-1]["channel_names"]
    assert channels == ["background", "kidney_left", "organ_1st_lobe", "bladder"]


# --- 5. two frames that would give one mask ---------------------------------------------

@pytest.mark.parametrize("force", [False, True])
def test_5_predict_refuses_two_frames_with_one_name_up_front(tmp_path, capsys, force):
    model = tmp_path / "m.keras"
    build_unet(ModelConfig(input_channels=1, depth=1, base_filters=4)).save(model)
    frames = tmp_path / "frames"
    write_image(frames / "0.png", np.full((32, 32), 100, np.uint16))
    write_image(frames / "0.tif", np.full((32, 32), 200, np.uint16))
    write_image(frames / "1.png", np.full((32, 32), 300, np.uint16))
    status, out, err = cli(capsys, "predict", model, frames, "--out", tmp_path / "pred",
                           *(["--force"] if force else []))
    assert status == 2 and "Traceback" not in err
    assert err.startswith(f"error: {frames / '0.png'}: and 0.tif would both give "
                          "0_predict.png"), err
    assert not (tmp_path / "pred").exists()


# --- 6. evaluate maps the truth's organs by name ------------------------------------------

def _organ_masks(folder, stem, values, *, table):
    mask = np.zeros((32, 48), np.uint8)
    mask[2:12, 2:20], mask[16:30, 24:44] = values
    write_image(folder / f"{stem}.png", mask)
    (folder / "organs.csv").write_text(table)


def test_6_evaluate_maps_truth_organs_by_name_or_refuses_other_organs(tmp_path, capsys):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    _organ_masks(pred, "0_predict", (1, 2), table="value,name\n1,liver\n2,kidney\n")
    _organ_masks(truth, "0", (2, 1), table="value,name\n1,kidney\n2,liver\n")
    report = evaluate_folders(pred, truth)
    assert report.per_organ["liver"]["dice"] == 1.0
    assert report.per_organ["kidney"]["dice"] == 1.0
    (truth / "organs.csv").write_text("value,name\n1,kidney\n2,spleen\n")
    status, out, err = cli(capsys, "evaluate", pred, truth)
    assert status == 2 and out == ""
    assert err.startswith(f"error: {truth / 'organs.csv'}: names the organs kidney, spleen "
                          f"but the predictions in {pred} are of liver, kidney"), err


# --- 7. test frames are never training frames -------------------------------------------

def test_7_picking_test_frames_leaves_out_the_training_cycles(tmp_path):
    stack, _ = write_synthetic_stack(tmp_path / "stack.tif",
                                     SyntheticConfig(cycles=12, height=32, width=48))
    data = tmp_path / "data"
    train_cycles = pick_frames(stack, data, PickConfig(count=4)).cycles
    test = pick_frames(stack, data, PickConfig(count=4, subset="test"))
    assert not set(test.cycles) & set(train_cycles)
    training = {path.read_bytes() for path in (data / "train" / "frames").iterdir()}
    assert not any(path.read_bytes() in training for path in test.frames)
    with pytest.raises(ParameterError, match="only 8 of its 12 cycles are left"):
        pick_frames(stack, data, PickConfig(count=9, subset="test", force=True))


# --- 8. quantify checks the laser layout the training frames record ------------------------

@pytest.mark.slow
def test_8_quantify_refuses_another_laser_count_than_the_training_frames(organ_run, tmp_path,
                                                                         capsys):
    assert read_json(organ_run["run"] / "config.json")["data"]["stack_lasers"] == 4
    stack = organ_run["stack"]  # 16 cycles of 4 lasers: 64 frames, also 32 "cycles" of 2
    status, out, err = cli(capsys, "quantify", organ_run["run"], stack, "--out",
                           tmp_path / "q", "--lasers", "2")
    assert status == 1 and "Traceback" not in err  # one stack failed
    assert err.startswith(f"error: {stack}: is read as cycles of 2 lasers (--lasers 2), but "
                          "the training frames of"), err
    assert "Pass --lasers 4" in err and not (tmp_path / "q").exists()
    # A run that does not record it (trained before) is checked against its frames.csv.
    config = read_json(organ_run["run"] / "config.json")
    del config["data"]["stack_lasers"]
    run = tmp_path / "older_run"
    shutil.copytree(organ_run["run"], run)
    write_json(run / "config.json", config, overwrite=True)
    status, _, err = cli(capsys, "quantify", run, stack, "--out", tmp_path / "q", "--lasers", "2")
    assert status == 1 and "Pass --lasers 4" in err


# --- 9. uncertain picks match the data folder ------------------------------------------------

def test_9_uncertain_pick_refuses_other_channels_organs_or_stack(organ_run, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(organ_run["data"], data)
    before = (data / "train" / "frames.csv").read_bytes()
    model = tmp_path / "rgb.keras"
    build_unet(ModelConfig(input_channels=3, depth=1, base_filters=4)).save(model)
    pick = ("pick-frames", organ_run["stack"], "--out", data, "--method", "uncertain",
            "--count", "1")
    status, _, err = cli(capsys, *pick, "--channels", "3", "--run", model)
    assert status == 2 and err.startswith(f"error: {data / 'train' / 'frames.csv'}: holds "
                                          "frames of laser(s) 1 (1 channel(s)), not of laser(s) "
                                          "1,2,3"), err
    (data / "organs.csv").write_text("value,name\n1,liver\n2,kidney\n3,spleen\n")
    status, _, err = cli(capsys, *pick, "--run", organ_run["run"])
    assert status == 2 and err.startswith(f"error: {data / 'organs.csv'}: names the organs "
                                          "liver, kidney, spleen"), err
    shutil.copy(organ_run["data"] / "organs.csv", data / "organs.csv")
    other, _ = write_synthetic_stack(tmp_path / "other" / "stack.tif",
                                     SyntheticConfig(cycles=16, height=96, width=128, seed=7))
    status, _, err = cli(capsys, "pick-frames", other, "--out", data, "--method", "uncertain",
                         "--count", "1", "--run", organ_run["run"])
    assert status == 2 and err.startswith(f"error: {other}: is not the stack.tif that"), err
    assert (data / "train" / "frames.csv").read_bytes() == before
    assert len(list((data / "train" / "frames").iterdir())) == 8


# --- 10. non-finite learning rates and losses -----------------------------------------------

@pytest.mark.slow
def test_10_an_infinite_learning_rate_is_refused_and_a_nan_loss_stops_training(tmp_path,
                                                                              capsys):
    data = write_data_folder(tmp_path / "data")
    status, _, err = cli(capsys, "train", data, "--out", tmp_path / "inf", *TINY_FLAGS,
                         "--lr", "inf")
    assert status == 2 and "--lr inf is invalid: expected a finite number > 0" in err
    assert not (tmp_path / "inf").exists()
    run = tmp_path / "run"
    status, _, err = cli(capsys, "train", data, "--out", run, *TINY_FLAGS, "--lr", "1e38",
                         "--epochs", "2", "--steps-per-epoch", "4")
    assert status == 2 and "Traceback" not in err
    assert err.startswith(f"error: {run}: training stopped: the loss became nan at step"), err
    assert "Lower --lr (it is 1e+38)" in err
    assert not (run / "metrics.json").exists() and not (run / "model.keras").exists()


# --- 11. quantify workers bounded by the memory ---------------------------------------------

def test_11_more_quantify_workers_than_the_memory_holds_are_refused_up_front(organ_run,
                                                                             tmp_path, capsys):
    from unetlib.core.resources import QUANTIFY_WORKER_BYTES, available_memory_bytes

    if 32 * QUANTIFY_WORKER_BYTES <= available_memory_bytes():
        pytest.skip("this machine has memory for 32 quantify workers")
    other = tmp_path / "other.tif"
    shutil.copy(organ_run["stack"], other)
    started = time.monotonic()
    status, _, err = cli(capsys, "quantify", organ_run["run"], organ_run["stack"], other,
                         "--out", tmp_path / "q", "--workers", "32")
    assert status == 2 and err.startswith("error: --workers 32 is invalid: 32 worker processes "
                                          "need about 32.0 GB of memory, more than the"), err
    assert "Use at most" in err and not (tmp_path / "q").exists()
    assert time.monotonic() - started < 10  # refused before any worker started


# --- 12. 32-bit and float stacks ---------------------------------------------------------------

def test_12_float_stacks_split_to_tif_are_refused_as_png_and_picked_as_tif(tmp_path, capsys):
    stack = tmp_path / "float.tif"
    tifffile.imwrite(stack, (np.random.default_rng(0).random((12, 32, 48)) * 1000)
                     .astype(np.float32))
    status, _, err = cli(capsys, "split-stack", stack, "--out", tmp_path / "split")
    assert status == 2 and err == (f"error: {stack}: holds float32 frames, which a PNG cannot "
                                   "store without loss. Split it with --format tif.\n")
    assert not (tmp_path / "split").exists()
    assert split_stack(stack, tmp_path / "split", SplitConfig(frame_format="tif")).counts[
        "laser1"] == 3
    picked = pick_frames(stack, tmp_path / "data", PickConfig(count=2))
    assert [path.name for path in picked.frames] == ["0.tif", "1.tif"]
    assert read_image(picked.frames[0]).dtype == np.float32


# --- 13. paths that are not UTF-8 -------------------------------------------------------------

def test_13_a_writing_command_works_with_a_path_that_is_not_utf8(tmp_path):
    stack, _ = write_synthetic_stack(tmp_path / "stack.tif",
                                     SyntheticConfig(cycles=3, lasers=4, height=32, width=48))
    out = os.fsencode(tmp_path) + b"/split-\xff"  # Latin-1 name from an old file server
    result = subprocess.run([sys.executable, "-m", "unetlib", "split-stack", os.fsencode(stack),
                             "--out", out], capture_output=True, timeout=120,
                            stdin=subprocess.DEVNULL,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                                 "PYTHONIOENCODING": "utf-8:strict"})  # as in a UTF-8 locale
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 0 and "Traceback" not in stderr, stderr
    assert sorted(os.listdir(out)) == [b"channels3", b"channels4", b"laser1", b"laser2",
                                       b"laser3", b"laser4", b"manifest.csv", b"split.json"]


# --- 18. organs.csv saved by Excel --------------------------------------------------------------

def test_18_an_organ_table_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "organs.csv"
    path.write_bytes("value,name\r\n1,liver\r\n2,kidney\r\n".encode("utf-8-sig"))
    assert read_organ_table(path).names == ["liver", "kidney"]


# --- 14, 15. an interrupted single-stack quantify ------------------------------------------------

@pytest.mark.slow
def test_14_15_interrupted_quantify_exits_130_and_keeps_the_earlier_results(organ_run, tmp_path):
    stack, _ = write_synthetic_stack(tmp_path / "long.tif",
                                     SyntheticConfig(cycles=150, height=96, width=128))
    out = tmp_path / "q"
    command = ["-q", "quantify", organ_run["run"], stack, "--out", out]
    assert run_cli(*command, timeout=300).returncode == 0
    record = (out / "long" / "quantify.json").read_bytes()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(tmp_path / "stderr.txt", "wb") as stderr:
        child = subprocess.Popen([sys.executable, "-m", "unetlib", *map(str, command),
                                  "--force"], stdout=subprocess.DEVNULL, stderr=stderr,
                                 stdin=subprocess.DEVNULL, env=env,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not list((out / "long").glob(".*.staging")):  # segmenting the new results
            assert child.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "stderr.txt").read_text()
            time.sleep(0.01)
        child.send_signal(signal.SIGINT)
        status = child.wait(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    err = (tmp_path / "stderr.txt").read_text()
    assert status == 130 and "Traceback" not in err, err
    assert error_lines(err) == [f"error: {stack}: quantification interrupted; nothing of it "
                                "was kept and earlier results are unchanged. Run the same "
                                "command again."], err
    assert (out / "long" / "quantify.json").read_bytes() == record
    assert not list((out / "long").glob(".*.staging"))


# --- 21. export takes the lock ---------------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from unetlib.core.locking import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning",
                            "ignore::ResourceWarning")
def test_21_export_into_a_folder_another_writer_holds_is_refused(organ_run, tmp_path):
    from unetlib.core.errors import OutputError
    from unetlib.runs.export import export_package

    packages = tmp_path / "packages"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(packages)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match=f"is in use by process {holder.pid}"):
            export_package(organ_run["run"], packages / "organs.zip", onnx=False)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert not (packages / "organs.zip").exists()


# --- 24. tiles too small for the network ------------------------------------------------------------

def test_24_tiles_smaller_than_the_training_patches_are_refused(organ_run, tmp_path, capsys):
    status, _, err = cli(capsys, "predict", organ_run["run"], organ_run["data"] / "test",
                         "--out", tmp_path / "pred", "--tile", "8", "--overlap", "4")
    assert status == 2 and err.startswith("error: --tile 8 is invalid: ") and \
        "was trained on 32-pixel patches" in err and "Use at least 32" in err, err
    assert not (tmp_path / "pred").exists()
    status, _, err = cli(capsys, "quantify", organ_run["run"], organ_run["stack"], "--out",
                         tmp_path / "q", "--tile", "16", "--overlap", "4")
    assert status != 0 and "--tile 16 is invalid" in err, err
    assert not (tmp_path / "q").exists()


@pytest.mark.slow
def test_24_quantify_with_an_uncalibrated_binary_run_warns(organ_run, tmp_path):
    from unetlib.core.config import QuantifyConfig
    from unetlib.study.cluster import quantify_study

    data = write_data_folder(tmp_path / "data")
    run = train(data, tmp_path / "run", TINY).run_dir
    stop_during_finalisation(run)
    with pytest.warns(UnetlibWarning, match="did not finish .* never calibrated; using 0.5"):
        quantify_study(run, [organ_run["stack"]], tmp_path / "q",
                       QuantifyConfig(model_input=(1,)), progress=False)


# --- 23. resuming with other sizes -----------------------------------------------------------------

@pytest.mark.slow
def test_23_resume_with_another_patch_or_batch_size_is_refused(tmp_path, capsys):
    data = write_data_folder(tmp_path / "data")
    run = train(data, tmp_path / "run", TINY).run_dir
    stop_during_finalisation(run)
    config = (run / "config.json").read_bytes()
    flags = [flag for flag in TINY_FLAGS]
    flags[flags.index("--patch-size") + 1] = "16"
    status, _, err = cli(capsys, "train", data, "--out", run, "--resume", *flags)
    assert status == 2 and err.startswith(f"error: {run}: was started with --patch-size 32; "
                                          "resuming it with --patch-size 16 would mix them"), err
    assert (run / "config.json").read_bytes() == config


# --- 16. organ names that differ only in punctuation ------------------------------------------

def test_16_organ_names_that_would_share_a_column_are_refused(tmp_path):
    path = tmp_path / "organs.csv"
    path.write_text("value,name\n1,left kidney\n2,Left-Kidney\n")
    with pytest.raises(InputError, match="line 3: name 'Left-Kidney' differs from 'left kidney' "
                                         "only in punctuation or spaces"):
        read_organ_table(path)


# --- 27. the study summary names the run of each row ------------------------------------------

@pytest.mark.slow
def test_27_study_summary_names_the_run_of_every_row(organ_run, tmp_path):
    from unetlib.study.cluster import quantify_study

    result = quantify_study(organ_run["run"], [organ_run["stack"]], tmp_path / "q",
                            progress=False)
    rows = read_csv(result.summary)
    assert rows and {row["run"] for row in rows} == {str(organ_run["run"].resolve())}


# --- 26. every warning line says it is one ------------------------------------------------------

def test_26_logged_warnings_start_with_warning(tmp_path):
    stack, _ = write_synthetic_stack(tmp_path / "stack.tif",
                                     SyntheticConfig(cycles=3, lasers=4, height=32, width=48))
    out = tmp_path / "split"
    (out / ".ab12.staging").mkdir(parents=True)  # left by a killed run
    result = run_cli("-q", "split-stack", stack, "--out", out)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "leftover" in line]
    assert len(lines) == 1 and lines[0].startswith(f"warning: {out}: removed 1 leftover"), \
        result.stderr


# --- 19. repeating the same step is a no-op ------------------------------------------------------

def test_19_repeating_the_same_demo_stack_is_a_no_op(tmp_path, capsys):
    args = ("demo-stack", "--out", tmp_path / "demo", "--cycles", "3", "--height", "32",
            "--width", "48")
    assert cli(capsys, *args)[0] == 0
    stack = (tmp_path / "demo" / "stack.tif").read_bytes()
    status, out, err = cli(capsys, *args)
    assert status == 0 and "already holds this demo stack; nothing to do" in out, err
    assert (tmp_path / "demo" / "stack.tif").read_bytes() == stack
    assert sorted(path.name for path in (tmp_path / "demo").iterdir()) == ["stack.tif",
                                                                          "truth.tif"]
    status, _, err = cli(capsys, *args[:-1], "64")  # another stack: refused, not replaced
    assert status == 2 and "already exists" in err
    assert (tmp_path / "demo" / "stack.tif").read_bytes() == stack


@pytest.mark.slow
def test_19_repeating_the_same_predict_is_a_no_op(tmp_path, capsys):
    model = tmp_path / "m.keras"
    build_unet(ModelConfig(input_channels=1, depth=1, base_filters=4)).save(model)
    frames = tmp_path / "frames"
    for index in range(2):
        write_image(frames / f"{index}.png", np.full((32, 32), 100 * index, np.uint16))
    args = ("predict", model, frames, "--out", tmp_path / "pred", "--threshold", "0.5")
    assert cli(capsys, *args)[0] == 0
    masks = {path: path.stat().st_mtime_ns for path in (tmp_path / "pred").iterdir()}
    status, _, err = cli(capsys, *args)
    assert status == 0, err
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "pred").iterdir()} == masks
    # A mask that differs from what this prediction gives (edited by hand) is not replaced.
    edited = tmp_path / "pred" / "1_predict.png"
    write_image(edited, np.full((32, 32), 7, np.uint8), overwrite=True)
    content = edited.read_bytes()
    status, _, err = cli(capsys, *args)
    assert status == 2 and "already exists" in err and edited.read_bytes() == content
    assert not list((tmp_path / "pred").glob(".*"))  # no staging folder left


# --- 20. frames named like prediction outputs -----------------------------------------------------

def test_20_frames_named_like_outputs_are_not_left_out_silently(tmp_path):
    model = build_unet(ModelConfig(input_channels=1, depth=1, base_filters=4))
    frames = tmp_path / "frames"
    write_image(frames / "liver_prob.png", np.full((32, 32), 100, np.uint16))
    write_image(frames / "1.png", np.full((32, 32), 200, np.uint16))
    with pytest.warns(UnetlibWarning, match="left out 1 file.s. named like prediction outputs "
                                            r"\(liver_prob.png\)"):
        predict_folder(model, frames, tmp_path / "pred", progress=False)
    # Predicting a folder into itself again leaves its outputs out without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (frames / "liver_prob.png").unlink()
        predict_folder(model, frames, frames, progress=False)
        predict_folder(model, frames, frames, progress=False, overwrite=True)


def test_26_no_progress_bar_is_written_into_a_log_file(tmp_path):
    stack, _ = write_synthetic_stack(tmp_path / "stack.tif",
                                     SyntheticConfig(cycles=3, lasers=4, height=32, width=48))
    result = run_cli("split-stack", stack, "--out", tmp_path / "split")  # stderr: a pipe
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "file/s" not in result.stderr, result.stderr
    assert f"split {stack} into {tmp_path / 'split'}: " in result.stderr  # one line instead


def test_26_a_read_only_file_system_is_named_not_reported_as_full(tmp_path, capsys,
                                                                   monkeypatch):
    # A read-only mount reports no free blocks; os.statvfs stands in for one (as root, a
    # real read-only mount cannot be made inside the test).
    real_statvfs = os.statvfs

    def read_only_statvfs(path):
        real = real_statvfs(path)
        values = list(real)
        values[4] = values[5] = 0  # f_bfree, f_bavail: what a read-only mount reports
        values[8] = real.f_flag | os.ST_RDONLY
        return os.statvfs_result(values)

    monkeypatch.setattr(os, "statvfs", read_only_statvfs)
    status, _, err = cli(capsys, "demo-stack", "--out", tmp_path / "demo", "--cycles", "3",
                         "--height", "32", "--width", "48")
    assert status == 2, err
    assert "read-only file system" in err and "free" not in err, err
    assert not (tmp_path / "demo" / "stack.tif").exists()


# --- 26. TensorFlow's out-of-memory errors and Dask's shut-down chatter ------------------------

def test_26_tensorflow_out_of_memory_errors_are_recognised_by_name():
    from unetlib.core._tensorflow import tf
    from unetlib.core.resources import is_out_of_memory

    # (A real tf.zeros of 256 TB raises the same class, after TensorFlow retries for 10 s.)
    exhausted = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
    assert is_out_of_memory(exhausted) and is_out_of_memory(MemoryError())
    assert is_out_of_memory(tf.errors.AbortedError(
        None, None, "could not create a primitive, in file mkl_conv_grad_input_ops.cc:546"))
    assert not is_out_of_memory(tf.errors.AbortedError(None, None, "the session was aborted"))
    assert not is_out_of_memory(ValueError("out of memory"))
    # tifffile reading into memory that cannot be had: ENOMEM, not a damaged file.
    assert is_out_of_memory(OSError(errno.ENOMEM, "Cannot allocate memory"))
    assert not is_out_of_memory(OSError(errno.ENOSPC, "No space left on device"))


CAPPED_CLI = """
import resource, sys
import unetlib.core._tensorflow  # TensorFlow loaded before the cap
from unetlib.app.cli import main
with open("/proc/self/status") as status:
    used = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
cap = used + int(sys.argv[1]) * 10 ** 6
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
raise SystemExit(main(sys.argv[2:]))
"""


def _has_avx512() -> bool:
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("megabytes", [
    # +2 GB reaches oneDNN's "could not create a primitive" on AVX-512 CPUs. On AVX2-only
    # ones TensorFlow's oneDNN convolution aborts the process instead (SIGABRT, "Check
    # failed: dtype() == expected_dtype", measured at +2 and +2.5 GB), which no program can
    # turn into a line; +3 GB is TensorFlow's own out-of-memory error on both.
    pytest.param(2000, marks=pytest.mark.skipif(
        not _has_avx512(), reason="TensorFlow aborts under this cap on AVX2-only CPUs")),
    3000])
def test_26_predict_out_of_memory_inside_tensorflow_is_one_line(organ_run, tmp_path, megabytes):
    # A 3000 px frame predicted in one tile with a few GB of address space left once
    # TensorFlow is loaded: the frame fits, the network's activations do not, and oneDNN's
    # "could not create a primitive" (an AbortedError) arrived as a 70-line traceback.
    tifffile.imwrite(tmp_path / "big.tif",
                     np.random.default_rng(0).integers(0, 4000, (4, 3000, 3000), np.uint16))
    done = subprocess.run([sys.executable, "-c", CAPPED_CLI, str(megabytes), "predict",
                           str(organ_run["run"]), str(tmp_path / "big.tif"), "--out",
                           str(tmp_path / "p"), "--tile", "3008"], capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 2 and done.stderr.splitlines() == [
        "error: predict ran out of memory. Use smaller settings (batch size, patch or tile "
        "size), or close other programs."], done.stderr[-3000:]
    assert not list((tmp_path / "p").glob("*.png"))


def _quantify_on_two_workers(organ_run, tmp_path, stacks: int) -> tuple[subprocess.Popen, list, Path]:
    paths = []
    for index in range(stacks):
        paths.append(tmp_path / f"m{index}.tif")
        shutil.copyfile(organ_run["stack"], paths[-1])
    out = tmp_path / "q"
    stderr = open(tmp_path / "stderr.txt", "wb")
    child = subprocess.Popen([sys.executable, "-m", "unetlib", "quantify", str(organ_run["run"]),
                              *map(str, paths), "--out", str(out), "--workers", "2"],
                             stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    stderr.close()
    deadline = time.monotonic() + 180
    while not list(out.glob("*/.*.staging")):  # workers are segmenting
        assert child.poll() is None and time.monotonic() < deadline, \
            (tmp_path / "stderr.txt").read_text()
        time.sleep(0.01)
    return child, paths, out


@pytest.mark.slow
def test_26_interrupted_quantify_on_dask_says_one_line(organ_run, tmp_path):
    child, _, _ = _quantify_on_two_workers(organ_run, tmp_path, stacks=6)
    try:
        child.send_signal(signal.SIGINT)
        status = child.wait(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    err = (tmp_path / "stderr.txt").read_text()
    # Workers used to log "... ended with CancelledError" lines here.
    assert status == 130 and err.splitlines() == [
        "error: quantify interrupted; no file was left half-written. Run the same command "
        "again."], err


@pytest.mark.slow
def test_26_a_killed_dask_worker_is_retried_without_dask_chatter(organ_run, tmp_path):
    child, paths, out = _quantify_on_two_workers(organ_run, tmp_path, stacks=4)
    try:
        lock = next(out.glob("*/.unetlib.lock"))
        worker = int(dict(line.split("=", 1) for line in lock.read_text().splitlines()
                          if "=" in line)["pid"])
        os.kill(worker, signal.SIGKILL)
        status = child.wait(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    err = (tmp_path / "stderr.txt").read_text()
    assert status == 0, err
    assert all((out / path.stem / "quantify.json").is_file() for path in paths)
    # Dask's own lines ("Removing worker ... stimulus_id=...", "Restarting worker") and the
    # resource tracker's "leaked semaphore objects" are gone; the lock take-over is ours.
    assert [line for line in err.splitlines() if not line.startswith(f"{out}/")] == [], err


# --- 3. (its result) the module's last test, so that its 20 s wait overlapped the others -----

@pytest.mark.slow
def test_3_quantify_on_a_scheduler_without_workers_stops_with_one_line(quantify_without_workers):
    run = quantify_without_workers
    try:
        status = run.process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail(f"quantify --scheduler {run.address} still waits after 90 s")
    stderr = run.stderr.read_text(errors="replace")
    assert status == 2 and "Traceback" not in stderr, stderr
    assert error_lines(stderr) == [
        f"error: {run.address}: the Dask scheduler has no workers (none joined within 20 s). "
        f"Start workers (dask worker {run.address}), or leave out --scheduler to use a local "
        "cluster."]
    assert not run.out.exists()  # no folder, no lock left behind
