"""bioimage.io model packages: export, offline validation, bioimageio.core's test, round trip."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import write_data_folder

from unetlib.core.errors import InputError


def _environment_problem() -> str | None:
    from unetlib.runs.export import check_environment

    try:
        check_environment()
    except InputError as error:
        return str(error)
    return None


# bioimageio.spec/core leave file readers of package files open; they are closed when
# collected, with a ResourceWarning that is not unetlib's to fix.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning",
                                        "ignore::ResourceWarning")


@pytest.fixture(scope="module", autouse=True)
def _collect_leaked_readers():
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


# requirements.txt pins what bioimageio.spec needs: a broken environment fails, not skips.


@pytest.fixture(scope="module")
def organ_package(organ_run, tmp_path_factory) -> Path:
    from unetlib.runs.export import export_package

    if _environment_problem():
        pytest.fail(_environment_problem())
    return export_package(organ_run["run"], tmp_path_factory.mktemp("package") / "organs.zip",
                          authors=["Test Author"])


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory) -> dict[str, Path]:
    """A binary run trained for one short epoch, and its package."""
    from unetlib.core.config import PipelineConfig, TrainConfig, model_preset
    from unetlib.runs.export import export_package
    from unetlib.runs.train import train

    if _environment_problem():
        pytest.fail(_environment_problem())
    root = tmp_path_factory.mktemp("binary")
    data = write_data_folder(root / "data")
    train(data, root / "run", TrainConfig(
        model=model_preset("small"), epochs=1, steps_per_epoch=2,
        pipeline=PipelineConfig(batch_size=2, patch_size=32, val_fraction=0.25, seed=0)), verbose=0)
    package = export_package(root / "run", root / "binary.zip", onnx=False)
    return {"run": root / "run", "package": package, "data": data}


def _masks(folder: Path) -> dict[str, np.ndarray]:
    from unetlib.core.io import read_image

    return {path.name: np.asarray(read_image(path)) for path in sorted(folder.glob("*_predict.png"))}


@pytest.mark.slow
def test_organ_package_validates_offline_and_holds_its_files(organ_package):
    from unetlib.runs.export import check_package

    summary = check_package(organ_package)
    assert summary.status == "valid-format", summary.format()
    names = set(zipfile.ZipFile(organ_package).namelist())
    assert {"rdf.yaml", "model.keras", "saved_model.zip", "config.json", "metrics.json",
            "test_input.npy", "test_output.npy", "cover.png", "README.md"} <= names
    with zipfile.ZipFile(organ_package) as archive:
        readme = archive.read("README.md").decode()
        description = archive.read("rdf.yaml").decode()
    assert all(organ in readme for organ in ("liver", "kidney", "bladder"))
    assert "laser1" in description and "background" in description


@pytest.mark.slow
def test_bioimageio_core_runs_every_weight_format(organ_package, tmp_path, monkeypatch):
    from bioimageio.core import test_model

    monkeypatch.chdir(tmp_path)  # core unzips the SavedModel into the working folder
    # bioimageio.core writes KERAS_BACKEND (default "torch") and TF_ENABLE_ONEDNN_OPTS into
    # os.environ; set them here so the test's teardown restores them, or every later
    # subprocess of the session (the CLI tests) would start Keras on torch.
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1"))
    formats = ["keras_v3", "tensorflow_saved_model_bundle"]
    if "model.onnx" in zipfile.ZipFile(organ_package).namelist():
        formats.append("onnx")
    for weight_format in formats:
        with warnings.catch_warnings():
            # bioimageio.core leaves file readers open; collect them here, quietly.
            warnings.simplefilter("ignore", ResourceWarning)
            summary = test_model(organ_package, weight_format=weight_format)
            gc.collect()
        assert summary.status == "passed", (weight_format, summary.format())


@pytest.mark.parametrize("kind", ["organs", "binary"])
@pytest.mark.slow
def test_package_predicts_the_masks_of_its_run(kind, organ_run, organ_package, binary_run,
                                               tmp_path):
    from unetlib.inference.predict import predict_folder

    if kind == "organs":
        run, package = organ_run["run"], organ_package
        frames = organ_run["root"] / "data" / "train" / "frames"
    else:
        run, package, frames = binary_run["run"], binary_run["package"], binary_run["data"] / "test"
    predict_folder(run, frames, tmp_path / "run", progress=False)
    predict_folder(package, frames, tmp_path / "package", progress=False)
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(package).extractall(unpacked)
    predict_folder(unpacked, frames, tmp_path / "unpacked_out", progress=False)
    expected = _masks(tmp_path / "run")
    assert expected and expected.keys() == _masks(tmp_path / "package").keys()
    for name, mask in expected.items():
        np.testing.assert_array_equal(_masks(tmp_path / "package")[name], mask)
        np.testing.assert_array_equal(_masks(tmp_path / "unpacked_out")[name], mask)


def test_load_run_of_a_package_matches_the_run_folder(organ_run, organ_package):
    from unetlib.runs.run import load_run

    from_folder, from_package = load_run(organ_run["run"]), load_run(organ_package)
    assert from_package.normalize == from_folder.normalize
    assert from_package.organs.names == from_folder.organs.names
    assert from_package.threshold == from_folder.threshold
    assert from_package.model_path == organ_package


@pytest.mark.slow
def test_saved_model_reproduces_the_masks_with_plain_tensorflow(organ_run, organ_package,
                                                                 tmp_path):
    from unetlib.core.io import read_image
    from unetlib.data.normalize import normalize_image
    from unetlib.nn.sliding_window import predict_probabilities
    from unetlib.runs.run import load_run

    run = load_run(organ_run["run"])
    frame = read_image(sorted((organ_run["root"] / "data" / "train" / "frames").glob("*.png"))[0])
    normalised = normalize_image(frame, run.normalize)
    np.save(tmp_path / "frame.npy", normalised[np.newaxis])
    with zipfile.ZipFile(organ_package) as archive:
        archive.extract("saved_model.zip", tmp_path)
    zipfile.ZipFile(tmp_path / "saved_model.zip").extractall(tmp_path / "saved_model")
    script = ("import sys, numpy as np, tensorflow as tf\n"
              "model = tf.saved_model.load(sys.argv[1])\n"
              "out = model.serve(np.load(sys.argv[2]))['probabilities'].numpy()\n"
              "np.save(sys.argv[3], np.argmax(out[0], axis=-1))\n"
              "assert 'unetlib' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "saved_model"),
                    str(tmp_path / "frame.npy"), str(tmp_path / "classes.npy")],
                   check=True, capture_output=True, cwd=tmp_path)
    expected = np.argmax(predict_probabilities(run.model, normalised), axis=-1)
    np.testing.assert_array_equal(np.load(tmp_path / "classes.npy"), expected)


@pytest.mark.slow
def test_cli_export_prints_package_and_validation(organ_run, tmp_path, capsys):
    from unetlib.app.cli import main

    out = tmp_path / "cli.zip"
    assert main(["export", str(organ_run["run"]), "--out", str(out), "--author", "Jane Doe",
                 "--license", "MIT"]) == 0
    printed = capsys.readouterr().out
    assert f"package: {out}" in printed and "MB" in printed and "valid-format" in printed
    with zipfile.ZipFile(out) as archive:
        assert "Jane Doe" in archive.read("rdf.yaml").decode()
        assert "MIT" in archive.read("rdf.yaml").decode()
        packed = json.loads(archive.read("config.json"))
    # The run's own config.json, organs included.
    assert packed == json.loads((organ_run["run"] / "config.json").read_text())
    assert [organ["name"] for organ in packed["organs"]] == ["liver", "kidney", "bladder"]


def test_cli_export_refuses_a_missing_run(tmp_path, capsys):
    from unetlib.app.cli import main

    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "p.zip")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "missing" in error and error.count("\n") == 1
    assert not (tmp_path / "p.zip").exists()


def test_cli_export_refuses_to_overwrite_and_an_out_inside_a_file(organ_run, tmp_path, capsys):
    from unetlib.app.cli import main

    existing = tmp_path / "existing.zip"
    existing.write_bytes(b"keep me")
    assert main(["export", str(organ_run["run"]), "--out", str(existing)]) == 2
    assert "already exists" in capsys.readouterr().err and existing.read_bytes() == b"keep me"
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert main(["export", str(organ_run["run"]), "--out", str(blocker / "p.zip")]) == 2
    assert "afile" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["afile", "existing.zip"]


def test_load_run_refuses_a_zip_that_is_not_a_unetlib_package(tmp_path):
    from unetlib.runs.run import load_run

    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("rdf.yaml", "type: model\nweights: {onnx: {source: m.onnx}}\n")
    with pytest.raises(InputError, match="foreign.zip.*config.json"):
        load_run(foreign)
    (tmp_path / "notzip.zip").write_text("plain text")
    with pytest.raises(InputError, match="notzip.zip"):
        load_run(tmp_path / "notzip.zip")


@pytest.mark.slow
def test_quantify_accepts_a_package_and_measures_what_the_run_measures(organ_run, organ_package,
                                                                        tmp_path):
    from unetlib.study.quantify import quantify_stack, read_intensities

    from_run = quantify_stack(organ_run["run"], organ_run["stack"], tmp_path / "run")
    from_package = quantify_stack(organ_package, organ_run["stack"], tmp_path / "package")
    assert read_intensities(from_package.out_dir) == read_intensities(from_run.out_dir)
