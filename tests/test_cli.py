"""The CLI: help for every command, one-line errors without tracebacks, real outputs."""

import argparse
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from helpers import write_data_folder

from unetlib.app.cli import build_parser, main
from unetlib.core.config import SyntheticConfig
from unetlib.core.io import read_image, write_image
from unetlib.data.synthetic import write_synthetic_stack


def run_cli(*args, cwd=None, python_options=()):
    """Run ``python -m unetlib`` as a user would, in a fresh process."""
    return subprocess.run([sys.executable, *python_options, "-m", "unetlib", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def imported_tensorflow(importtime_stderr: str) -> bool:
    """Whether a process run with ``python -X importtime`` imported TensorFlow."""
    return any(line.startswith("import time:") and line.split("|")[-1].strip() == "tensorflow"
               for line in importtime_stderr.splitlines())


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


@pytest.mark.parametrize("command", subcommands())
def test_every_command_explains_its_arguments(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m unetlib {command}")
    assert "options:" in out
    # Every argument is listed with its own help text (compared without line wrapping).
    parser = build_parser()
    subparser = next(a for a in parser._actions if a.dest == "command").choices[command]
    flat = "".join(out.split())
    for action in subparser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = action.option_strings[0] if action.option_strings else (action.metavar
                                                                        or action.dest)
        assert action.help and action.help != argparse.SUPPRESS, name
        assert name in out, name
        assert "".join(subparser._get_formatter()._expand_help(action).split()) in flat, name


def test_expected_error_is_one_line_without_traceback(tmp_path):
    result = run_cli("split-stack", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.tif'}: file not found. Check the path."]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, args, message", [
    ("text", (), "is not a TIFF file"),
    (np.zeros((8, 8), np.uint16), (), "single 2-D image"),
    (np.zeros((2, 8, 8), np.uint16), (), "fewer than the 4 lasers"),
    (np.zeros((8, 8, 8), np.uint16), ("--lasers", "0"), "--lasers 0 is invalid"),
])
def test_bad_input_exits_non_zero_naming_the_file(tmp_path, capsys, content, args, message):
    path = tmp_path / "in.tif"
    if isinstance(content, str):
        path.write_text(content)
    else:
        tifffile.imwrite(path, content, photometric="minisblack")
    status = main(["-q", "split-stack", str(path), "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith(f"error: {path}") and message in err
    assert not (tmp_path / "out").exists()


def test_unwritable_output_folder(tmp_path, capsys):
    stack, _ = write_synthetic_stack(tmp_path / "s.tif", SyntheticConfig(cycles=1, height=32, width=32))
    (tmp_path / "blocker").write_text("x")
    status = main(["-q", "split-stack", str(stack), "--out", str(tmp_path / "blocker" / "out")])
    assert status == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_stack_split_and_pick_from_the_command_line(tmp_path):
    demo = run_cli("demo-stack", "--out", str(tmp_path / "demo"), "--cycles", "5",
                   "--height", "48", "--width", "64")
    assert demo.returncode == 0, demo.stderr
    assert tifffile.imread(tmp_path / "demo" / "stack.tif").shape == (20, 48, 64)
    split = run_cli("split-stack", str(tmp_path / "demo" / "stack.tif"), "--out", str(tmp_path / "split"))
    assert split.returncode == 0, split.stderr
    assert len(list((tmp_path / "split" / "laser4").iterdir())) == 5
    pick = run_cli("pick-frames", str(tmp_path / "demo" / "stack.tif"), "--count", "3",
                   "--channels", "3", "--out", str(tmp_path / "data3d"),
                   python_options=("-X", "importtime"))
    assert pick.returncode == 0, pick.stderr
    assert "picked cycles [0, 2, 4]" in pick.stdout
    assert not imported_tensorflow(pick.stderr)  # spreading frames needs no model
    repeated = run_cli("pick-frames", str(tmp_path / "demo" / "stack.tif"), "--count", "3",
                       "--out", str(tmp_path / "data3d"), "--channels", "3")
    assert repeated.returncode == 0 and "nothing to do" in repeated.stderr
    different = run_cli("pick-frames", str(tmp_path / "demo" / "stack.tif"), "--count", "2",
                        "--out", str(tmp_path / "data3d"), "--channels", "3")
    assert different.returncode == 2 and "--force" in different.stderr


@pytest.mark.slow
def test_check_train_predict_evaluate_from_the_command_line(tmp_path):
    data = write_data_folder(tmp_path / "data1d")
    check = run_cli("check-masks", str(data))
    assert check.returncode == 0, check.stderr
    assert "4 stems, 4 usable pairs, 0 errors, 0 warnings" in check.stdout

    run = tmp_path / "runs" / "tiny"
    train = run_cli("-q", "train", str(data), "--out", str(run), "--preset", "small",
                    "--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "2",
                    "--patch-size", "32", "--val-fraction", "0.25",
                    python_options=("-X", "importtime"))
    assert train.returncode == 0, train.stderr
    assert "trained 2 epoch(s)" in train.stdout
    assert imported_tensorflow(train.stderr)  # training does
    assert {"model.keras", "config.json", "history.csv", "history.png", "metrics.json"} <= {
        path.name for path in run.iterdir()}
    # The same request again is that run, another request into it is refused: both decided
    # before TensorFlow loads.
    same = run_cli("-q", "train", str(data), "--out", str(run), "--preset", "small",
                   "--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "2",
                   "--patch-size", "32", "--val-fraction", "0.25",
                   python_options=("-X", "importtime"))
    assert same.returncode == 0 and "trained 2 epoch(s)" in same.stdout, same.stderr
    assert not imported_tensorflow(same.stderr)
    again = run_cli("-q", "train", str(data), "--out", str(run), "--preset", "small",
                    "--epochs", "3", "--steps-per-epoch", "2", "--batch-size", "2",
                    "--patch-size", "32", "--val-fraction", "0.25",
                    python_options=("-X", "importtime"))
    assert again.returncode == 2 and "holds a finished run" in again.stderr
    assert "Traceback" not in again.stderr and not imported_tensorflow(again.stderr)
    assert [line for line in again.stderr.splitlines()
            if not line.startswith("import time:")] == [
        f"error: {run}: holds a finished run (model.keras, last.keras, state.json, config.json, "
        "history.csv, metrics.json, history.png). Choose another --out or pass --force to "
        "replace it."]

    predict = run_cli("-q", "predict", str(run), str(data / "test"), "--out",
                      str(data / "results"), "--overlay")
    assert predict.returncode == 0, predict.stderr
    assert "4 mask(s)" in predict.stdout
    masks = sorted(path.name for path in (data / "results").glob("*_predict.png"))
    assert masks == [f"{index}_predict.png" for index in range(4)]
    assert read_image(data / "results" / "0_predict.png").shape == (48, 64)

    evaluate = run_cli("evaluate", str(data / "results"), str(data / "truth"), "--json",
                       str(tmp_path / "scores.json"))
    assert evaluate.returncode == 0, evaluate.stderr
    assert "mean (4)" in evaluate.stdout
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert [row["stem"] for row in scores["frames"]] == ["0", "1", "2", "3"]
    assert set(scores["mean"]) == {"dice", "iou", "precision", "recall", "pixel_accuracy"}
    # The scores are those of the files written: Dice counted here from the masks.
    expected = []
    for index in range(4):
        predicted = read_image(data / "results" / f"{index}_predict.png") > 0
        truth = read_image(data / "truth" / f"{index}.png") > 0
        both = predicted.sum() + truth.sum()
        expected.append(1.0 if both == 0 else 2 * (predicted & truth).sum() / both)
    assert [row["dice"] for row in scores["frames"]] == pytest.approx(expected)
    assert scores["mean"]["dice"] == pytest.approx(np.mean(expected))


def test_check_masks_reports_errors_with_non_zero_exit(tmp_path):
    data = write_data_folder(tmp_path / "data1d", count=2)
    (data / "train" / "masks" / "1.png").unlink()
    write_image(data / "train" / "masks" / "0.png", np.zeros((48, 64), np.uint8), overwrite=True)
    result = run_cli("check-masks", str(data))
    assert result.returncode == 2
    assert "all background" in result.stdout and "1.png" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("case", ["not-a-model", "empty-input", "threshold", "no-masks",
                                  "channels"])
@pytest.mark.slow
def test_train_and_predict_bad_input_is_one_line(tmp_path, case):
    data = write_data_folder(tmp_path / "data1d", count=2)
    model = tmp_path / "model.keras"
    if case == "not-a-model":
        model.write_text("not a model")
        args = ("predict", str(model), str(data / "test"), "--out", str(tmp_path / "out"))
        expected = f"error: {model}: is not a readable Keras model"
    else:
        from unetlib.core.config import model_preset
        from unetlib.nn.model import build_unet

        channels = 3 if case == "channels" else 1
        build_unet(model_preset("small", input_channels=channels)).save(model)
        if case == "empty-input":
            (tmp_path / "empty").mkdir()
            args = ("predict", str(model), str(tmp_path / "empty"), "--out", str(tmp_path / "out"))
            expected = "holds no image files"
        elif case == "threshold":
            args = ("predict", str(model), str(data / "test"), "--out", str(tmp_path / "out"),
                    "--threshold", "1.5")
            expected = "--threshold 1.5 is invalid"
        elif case == "channels":
            args = ("predict", str(model), str(data / "test"), "--out", str(tmp_path / "out"))
            expected = "has 1 channel(s) but the model expects 3"
        else:
            shutil.rmtree(data / "train" / "masks")
            args = ("train", str(data), "--out", str(tmp_path / "run"))
            expected = "masks: folder not found"
    result = run_cli("-q", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert expected in result.stderr and lines[-1].startswith("error: ")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "run").exists()
