"""Export a run as a bioimage.io model package (a zip others can open without unetlib).

The package (format 0.5 of the bioimage.io model spec) holds the network in three weight
formats -- ``model.keras`` (Keras 3), ``saved_model.zip`` (TensorFlow SavedModel) and,
when tf2onnx is installed, ``model.onnx`` -- with the run's normalisation as
preprocessing (per-channel percentile scaling), the calibrated threshold of a binary run
as postprocessing, a test input and output, a cover picture, a README and the run's
``config.json`` (so :func:`unetlib.runs.run.load_run` reads the package back exactly).

Validation is offline: every file the description names is inside the package.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unetlib.core._tensorflow import keras, tf
from unetlib.core.config import ExportConfig, NormalizeConfig
from unetlib.core.errors import InputError, ParameterError, UnetlibWarning, describe
from unetlib.core.io import (
    atomic_path,
    check_output_file,
    ensure_folder,
    list_images,
    read_image,
    read_json,
    write_image,
)
from unetlib.core.locking import output_lock
from unetlib.data.normalize import normalize_image
from unetlib.nn.sliding_window import segment
from unetlib.runs.locate import finished_run_folder
from unetlib.runs.package import PACKAGE_FILES
from unetlib.runs.run import LoadedRun, RunFolder, load_run
from unetlib.viz.overlays import overlay_image, overlay_organs

__all__ = ["ExportConfig", "PACKAGE_FILES", "check_environment", "check_package", "export_package",
           "package_summary"]

INPUT_ID = "image"
OUTPUT_ID = "probabilities"
ONNX_OPSET = 17

EXPORT_DEFAULTS = ExportConfig()


def export_package(run_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *,
                   authors: Sequence[str] | None = EXPORT_DEFAULTS.authors,
                   license: str = EXPORT_DEFAULTS.license,
                   cite: Sequence[tuple[str, str]] = EXPORT_DEFAULTS.cite,
                   name: str | None = EXPORT_DEFAULTS.name, onnx: bool = EXPORT_DEFAULTS.onnx,
                   overwrite: bool = False) -> Path:
    """Write a run as a bioimage.io model package (zip) and check that it is valid.

    Parameters
    ----------
    run_path : path-like
        A run folder written by training (with ``config.json`` and ``metrics.json``).
    out_path : path-like
        The package to write, e.g. ``liver.zip``.
    authors, license, cite, name, onnx
        See :class:`ExportConfig`.
    overwrite : bool
        Replace an existing ``out_path``.

    Returns
    -------
    Path
        ``out_path``, written atomically (nothing is left there when export fails).

    Raises
    ------
    InputError
        The run folder is missing, unfinished, or its validation frames are gone.
    OutputError
        ``out_path`` exists (without ``overwrite``) or cannot be written.
    ParameterError
        Bad authors or licence, or a description bioimage.io refuses.
    """
    config = ExportConfig(authors=tuple(authors or EXPORT_DEFAULTS.authors), license=license,
                          cite=tuple(cite), name=name, onnx=onnx).validate()
    out_path = check_output_file(out_path, overwrite=overwrite)
    run_dir = finished_run_folder(run_path)
    ensure_folder(out_path.parent)
    check_environment()
    run = load_run(run_dir)
    # One writer per folder, as for every other output: two exports to one path would
    # both succeed and one package would be lost.
    with output_lock(out_path.parent), \
            tempfile.TemporaryDirectory(prefix="unetlib-export-") as staging, _quiet():
        with atomic_path(out_path, overwrite=overwrite) as temporary:
            # The description is dropped inside _quiet: it holds open readers of its files.
            _save(_describe(run, run_dir, Path(staging), config), temporary)
            summary = check_package(temporary)
            if summary.status == "failed":
                raise ParameterError(f"{out_path}: bioimage.io refuses the package: "
                                     f"{_first_error(summary)}")
    return out_path


def check_package(package: str | os.PathLike[str]):
    """Validate a package with bioimageio.spec, offline; return its ValidationSummary.

    Only the package's own files are read (hashes checked), nothing is downloaded.
    """
    check_environment()
    with _quiet():
        return _validation_summary(Path(package))


def _validation_summary(package: Path):
    from bioimageio.spec import load_description

    return load_description(package, perform_io_checks=True).validation_summary


def check_environment() -> None:
    """Refuse early when the installed bioimageio.spec cannot write packages.

    bioimageio.spec 0.5.12 passes an argument pydantic 2.14 (pydantic-core 2.50) rejects,
    so every description with files fails to serialise there.

    Raises
    ------
    InputError
        With the ``pip install`` line that fixes the environment.
    """
    spec, pydantic = _version("bioimageio.spec"), _version("pydantic")
    if _release(spec) <= (0, 5, 12) and _release(pydantic) >= (2, 14):
        raise InputError(f"bioimageio.spec {spec} cannot write or read model packages with "
                         f"pydantic {pydantic} (installed here). Install a compatible pydantic: "
                         "pip install 'pydantic>=2.10.3,<2.14', then export again.")


def _release(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(char for char in part if char.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def package_summary(summary) -> str:
    """One line about a ValidationSummary: status, format version, warnings."""
    warned = sum(len(detail.warnings) for detail in summary.details)
    return (f"{summary.status} (bioimage.io model format {summary.format_version}, checked "
            f"offline with bioimageio.spec {_version('bioimageio.spec')}; {warned} warning(s))")


def _first_error(summary) -> str:
    for detail in summary.details:
        for error in detail.errors:
            return f"{'.'.join(map(str, error.loc))}: {error.msg}"
    return "see bioimageio.spec's validation summary"


# --- the description --------------------------------------------------------------------


def _describe(run: LoadedRun, run_dir: Path, staging: Path, config: ExportConfig):
    """Write every package file into ``staging`` and return the ModelDescr naming them."""
    from bioimageio.spec.model.v0_5 import Author, CiteEntry, Doi, FileDescr, LicenseId, ModelDescr

    frame, stem = _test_frame(run)
    step = 2 ** int(run.config["model"]["depth"])
    frame = frame[:frame.shape[0] // step * step, :frame.shape[1] // step * step]
    probabilities = _probabilities(run, frame)
    test_output = (probabilities > run.threshold).astype(np.uint8) if run.organs is None \
        else probabilities
    files = _write_files(run, run_dir, staging, frame, test_output, config)
    metrics = _read_metrics(run_dir)
    _write_documentation(files["documentation"], run, run_dir, metrics, frame, stem)
    _write_cover(files["cover"], run, frame, probabilities)
    return ModelDescr(
        name=config.name or _default_name(run, run_dir),
        description=_one_line_description(run),
        authors=[Author(name=author) for author in config.authors],
        cite=[CiteEntry(text=text, doi=Doi(doi)) for text, doi in config.cite],
        license=LicenseId(config.license),
        documentation=FileDescr(source=files["documentation"]),
        covers=[FileDescr(source=files["cover"])],
        tags=["unet", "segmentation", "2d", "swir", "mouse", "in-vivo", "keras", "tensorflow",
              "unetlib", "semantic-segmentation" if run.organs is not None else "binary"],
        attachments=[FileDescr(source=files["config"]), FileDescr(source=files["metrics"])],
        inputs=[_input_tensor(run, files, step)],
        outputs=[_output_tensor(run, files)],
        weights=_weights(run, files, config),
        version="1.0.0",
    )


def _input_tensor(run: LoadedRun, files: dict[str, Path], step: int):
    from bioimageio.spec.model.v0_5 import (
        BatchAxis,
        ChannelAxis,
        FileDescr,
        Identifier,
        InputTensorDescr,
        ParameterizedSize,
        SpaceInputAxis,
    )

    return InputTensorDescr(
        id=INPUT_ID,
        description=f"Raw frames, any intensity range (scaled by the preprocessing); height "
                    f"and width multiples of {step}",
        axes=[BatchAxis(),
              SpaceInputAxis(id="y", size=ParameterizedSize(min=step, step=step)),
              SpaceInputAxis(id="x", size=ParameterizedSize(min=step, step=step)),
              ChannelAxis(channel_names=[Identifier(name) for name in _channel_names(run)])],
        test_tensor=FileDescr(source=files["test_input"]),
        preprocessing=_preprocessing(run.normalize),
    )


def _preprocessing(normalize: NormalizeConfig) -> list:
    from bioimageio.spec.model.v0_5 import ScaleRangeDescr, ScaleRangeKwargs

    if normalize.method == "none":
        return []
    if normalize.method not in ("percentile", "minmax"):
        raise InputError(f"normalize method {normalize.method!r} cannot be described in a "
                         "bioimage.io package (it depends on the frames' file dtype). Retrain "
                         "with the default percentile normalisation to export.")
    low, high = (normalize.low, normalize.high) if normalize.method == "percentile" else (0.0, 100.0)
    return [ScaleRangeDescr(kwargs=ScaleRangeKwargs(axes=("y", "x"), min_percentile=low,
                                                    max_percentile=high))]


def _output_tensor(run: LoadedRun, files: dict[str, Path]):
    from bioimageio.spec.model.v0_5 import (
        BatchAxis,
        BinarizeDescr,
        BinarizeKwargs,
        ChannelAxis,
        EnsureDtypeDescr,
        EnsureDtypeKwargs,
        FileDescr,
        Identifier,
        IntervalOrRatioDataDescr,
        NominalOrOrdinalDataDescr,
        OutputTensorDescr,
        SizeReference,
        SpaceOutputAxis,
    )

    axes = [BatchAxis(),
            SpaceOutputAxis(id="y", size=SizeReference(tensor_id=INPUT_ID, axis_id="y")),
            SpaceOutputAxis(id="x", size=SizeReference(tensor_id=INPUT_ID, axis_id="x")),
            ChannelAxis(channel_names=[Identifier(name) for name in _class_names(run)])]
    if run.organs is not None:
        return OutputTensorDescr(
            id=OUTPUT_ID, axes=axes, test_tensor=FileDescr(source=files["test_output"]),
            data=IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
            description="Softmax probability of background and each organ; organ mask = "
                        "argmax over channels, background enclosed by one organ filled")
    return OutputTensorDescr(
        id=OUTPUT_ID, axes=axes, test_tensor=FileDescr(source=files["test_output"]),
        data=NominalOrOrdinalDataDescr(values=[0, 1], type="uint8"),
        postprocessing=[BinarizeDescr(kwargs=BinarizeKwargs(threshold=run.threshold)),
                        EnsureDtypeDescr(kwargs=EnsureDtypeKwargs(dtype="uint8"))],
        description=f"Foreground mask: sigmoid probability > {run.threshold:g} (calibrated "
                    "threshold)")


def _weights(run: LoadedRun, files: dict[str, Path], config: ExportConfig):
    from bioimageio.spec.model.v0_5 import (
        KerasV3WeightsDescr,
        OnnxWeightsDescr,
        TensorflowSavedModelBundleWeightsDescr,
        Version,
        WeightsDescr,
    )

    tf_version = Version(tf.__version__)
    onnx = None
    if "onnx" in files:
        onnx = OnnxWeightsDescr(source=files["onnx"], opset_version=ONNX_OPSET,
                                parent="tensorflow_saved_model_bundle",
                                comment=f"converted with tf2onnx {_version('tf2onnx')}")
    return WeightsDescr(
        keras_v3=KerasV3WeightsDescr(source=files["keras"], keras_version=Version(keras.__version__),
                                     backend=("tensorflow", tf_version),
                                     comment="trained with unetlib (inference copy, no optimiser)"),
        tensorflow_saved_model_bundle=TensorflowSavedModelBundleWeightsDescr(
            source=files["saved_model"], tensorflow_version=tf_version, parent="keras_v3",
            comment=f"endpoint 'serve' (and signature 'serving_default'): input "
                    f"'{INPUT_ID}' (batch, y, x, channel) float32, output dict "
                    f"{{'{OUTPUT_ID}': ...}}"),
        onnx=onnx,
    )


# --- the files --------------------------------------------------------------------------


def _write_files(run: LoadedRun, run_dir: Path, staging: Path, frame: np.ndarray,
                 test_output: np.ndarray, config: ExportConfig) -> dict[str, Path]:
    files = {key: staging / name for key, name in PACKAGE_FILES.items()}
    run.model.save(files["keras"])
    _write_saved_model(run, staging / "saved_model", files["saved_model"])
    if config.onnx and not _write_onnx(staging / "saved_model", files["onnx"]):
        del files["onnx"]
    elif not config.onnx:
        del files["onnx"]
    shutil.copyfile(RunFolder(run_dir).config, files["config"])
    shutil.copyfile(RunFolder(run_dir).metrics, files["metrics"])
    np.save(files["test_input"], _with_axes(frame.astype(np.float32)))
    np.save(files["test_output"], test_output[np.newaxis])
    return files


def _write_saved_model(run: LoadedRun, folder: Path, archive: Path) -> None:
    """SavedModel whose ``serve`` endpoint returns ``{OUTPUT_ID: probabilities}``, zipped.

    bioimageio.core calls the endpoint and expects a dict of outputs.
    """
    model = run.model
    export = keras.export.ExportArchive()
    export.track(model)
    export.add_endpoint(
        name="serve", fn=lambda image: {OUTPUT_ID: model(image, training=False)},
        input_signature=[tf.TensorSpec((None, None, None, int(model.input_shape[-1])),
                                       tf.float32, name=INPUT_ID)])
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.WARNING)  # not "Assets written to <temporary folder>"
    try:
        export.write_out(str(folder), verbose=False)
    finally:
        tf_logger.setLevel(level)
    shutil.make_archive(str(archive.with_suffix("")), "zip", root_dir=folder)


def _write_onnx(saved_model: Path, path: Path) -> bool:
    """Convert the SavedModel with tf2onnx (in a child process); False when unavailable."""
    if importlib.util.find_spec("tf2onnx") is None:
        warnings.warn("tf2onnx is not installed: the package has no ONNX weights (pip install "
                      "tf2onnx onnx to add them).", UnetlibWarning, stacklevel=4)
        return False
    command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model),
               "--signature_def", "serving_default", "--opset", str(ONNX_OPSET),
               "--output", str(path)]
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if result.returncode != 0 or not path.is_file():
        warnings.warn(f"ONNX conversion failed, the package has no ONNX weights: "
                      f"{result.stderr.strip().splitlines()[-1:]}", UnetlibWarning, stacklevel=4)
        return False
    return True


def _test_frame(run: LoadedRun) -> tuple[np.ndarray, str]:
    """The first validation frame of the run's data folder, raw, as ``(H, W, C)``."""
    data = run.config.get("data") or {}
    folder = Path(data.get("data_dir", "")) / "train" / "frames"
    stems = list(data.get("val_stems") or []) + list(data.get("train_stems") or [])
    frames = {path.stem: path for path in list_images(folder)} if folder.is_dir() else {}
    for stem in stems:
        if stem in frames:
            frame = np.asarray(read_image(frames[stem]))
            return (frame[..., np.newaxis] if frame.ndim == 2 else frame), stem
    raise InputError(describe(folder, "holds none of the run's training frames, which the "
                              "package needs as its test image",
                              "Restore the data folder the run was trained on (config.json "
                              "'data_dir'), then export again."))


def _probabilities(run: LoadedRun, frame: np.ndarray) -> np.ndarray:
    """The model's output on one raw frame, normalised as in training: ``(H, W, K)``."""
    batch = normalize_image(frame, run.normalize)[np.newaxis]
    return np.asarray(run.model(batch, training=False))[0].astype(np.float32)


def _with_axes(frame: np.ndarray) -> np.ndarray:
    return frame[np.newaxis]  # (batch, y, x, channel), as the axes are declared


def _read_metrics(run_dir: Path) -> dict[str, Any]:
    return read_json(RunFolder(run_dir).metrics)


def _write_cover(path: Path, run: LoadedRun, frame: np.ndarray, probabilities: np.ndarray) -> None:
    """The frame beside its predicted mask (a 2:1 picture for a 4:3 frame or wider)."""
    plain = overlay_image(frame, np.zeros(frame.shape[:2], np.uint8), alpha=0.0)
    mask = segment(probabilities, threshold=run.threshold, organs=run.organs)
    tinted = (overlay_image(frame, mask[..., 0]) if run.organs is None
              else overlay_organs(frame, mask, run.organs))
    gap = np.full((frame.shape[0], 4, 3), 255, np.uint8)
    write_image(path, np.concatenate([plain, gap, tinted], axis=1))


def _write_documentation(path: Path, run: LoadedRun, run_dir: Path, metrics: dict[str, Any],
                         frame: np.ndarray, stem: str) -> None:
    data = run.config.get("data") or {}
    train = run.config.get("train") or {}
    lasers = data.get("lasers")
    scores = _score_lines(run, metrics)
    what = ("the organs " + ", ".join(run.organs.names) if run.organs is not None
            else "the foreground (one class)")
    lines = [
        f"# {_default_name(run, run_dir)}",
        "",
        f"A 2D U-Net trained with unetlib that segments {what} in short-wave infrared (SWIR) "
        "fluorescence frames of mice.",
        "",
        "## Input and output",
        "",
        f"- Input `{INPUT_ID}`: (batch, y, x, channel) float32, channels "
        f"{', '.join(_channel_names(run))}"
        + (f" (laser(s) {', '.join(map(str, lasers))} of the acquisition)" if lasers else "")
        + f". Height and width must be multiples of {2 ** int(run.config['model']['depth'])}.",
        f"- Preprocessing: per frame and channel, (x - p{run.normalize.low:g}) / "
        f"(p{run.normalize.high:g} - p{run.normalize.low:g}) with the {run.normalize.low:g}th "
        f"and {run.normalize.high:g}th percentiles, not clipped (method "
        f"`{run.normalize.method}`).",
    ]
    if run.organs is not None:
        lines.append(f"- Output `{OUTPUT_ID}`: softmax probabilities of "
                     f"{', '.join(_class_names(run))}; the mask is the argmax (0 background, "
                     + ", ".join(f"{organ.value} {organ.name}" for organ in run.organs.organs)
                     + "), with background that one organ encloses given to that organ.")
    else:
        lines.append(f"- Output `{OUTPUT_ID}`: 0/1 mask, sigmoid probability > "
                     f"{run.threshold:g} (threshold calibrated on the validation frames).")
    lines += [
        "",
        "## Training data",
        "",
        f"- {data.get('pairs', '?')} annotated frames ({len(data.get('train_stems') or [])} for "
        f"training, {len(data.get('val_stems') or [])} for validation) of "
        f"{frame.shape[0]} x {frame.shape[1]} pixels (test image: frame `{stem}`), "
        f"{data.get('channels', frame.shape[-1])} channel(s)"
        + (f" from laser(s) {', '.join(map(str, lasers))}" if lasers else "") + ".",
        f"- Model: depth {run.config['model'].get('depth')}, "
        f"{run.config['model'].get('base_filters')} base filters; "
        f"{train.get('epochs', '?')} epochs of {train.get('steps_per_epoch', '?')} steps, "
        f"loss `{train.get('loss', '?')}`; trained {run.config.get('created', '?')} with "
        + ", ".join(f"{key} {value}" for key, value in (run.config.get("versions") or {}).items()
                    if key in ("unetlib", "tensorflow", "keras")) + ".",
        "- Command: `python -m unetlib train "
        f"{data.get('data_dir', 'DATA')} --out {run_dir.name}` (every setting is in the "
        "attached `config.json`).",
        "",
        "## Validation scores",
        "",
        *scores,
        "",
        "## Intended use and limits",
        "",
        "- For frames like the training frames: same instrument, lasers, exposure regime and "
        "field of view. Other set-ups need fine-tuning (`python -m unetlib train --init-from`).",
        "- The scores come from few validation frames of the same acquisitions as the "
        "training frames; check masks on new data before quantifying.",
        "- Not a diagnostic tool.",
        "- With unetlib: `python -m unetlib predict PACKAGE.zip FRAMES --out OUT` gives the "
        "same masks as the run folder (tiled prediction on frames of any size).",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def _score_lines(run: LoadedRun, metrics: dict[str, Any]) -> list[str]:
    organs = metrics.get("val_organs") or {}
    if organs:
        return ["| organ | Dice | IoU | precision | recall |", "| --- | --- | --- | --- | --- |",
                *(f"| {name} | {s.get('dice', float('nan')):.3f} | {s.get('iou', float('nan')):.3f} "
                  f"| {s.get('precision', float('nan')):.3f} | {s.get('recall', float('nan')):.3f} |"
                  for name, s in organs.items())]
    dice = metrics.get("val_dice_at_threshold", metrics.get("val_dice"))
    return [f"Validation Dice {dice:.3f} at threshold {run.threshold:g}." if dice is not None
            else "No validation score recorded."]


# --- names ------------------------------------------------------------------------------


def _channel_names(run: LoadedRun) -> list[str]:
    lasers = (run.config.get("data") or {}).get("lasers")
    channels = int(run.model.input_shape[-1])
    if lasers and len(lasers) == channels:
        return [f"laser{int(laser)}" for laser in lasers]
    return [f"channel{index}" for index in range(channels)]


def _class_names(run: LoadedRun) -> list[str]:
    if run.organs is None:
        return ["foreground"]
    names = ["background"]
    for organ in run.organs.names:
        name = _identifier(organ)
        candidate, number = name, 2
        while candidate in names:  # names that differ only in punctuation stay apart
            candidate, number = f"{name}_{number}", number + 1
        names.append(candidate)
    return names


def _identifier(text: str) -> str:
    """``text`` as the Python identifier bioimage.io needs for a channel name
    (``kidney-left`` -> ``kidney_left``, ``1st_lobe`` -> ``organ_1st_lobe``)."""
    cleaned = "".join(char if char.isalnum() or char == "_" else "_" for char in text.strip())
    if not cleaned.isidentifier():
        cleaned = f"organ_{cleaned}"
    return cleaned if cleaned.isidentifier() else "organ"


def _default_name(run: LoadedRun, run_dir: Path) -> str:
    what = "organ" if run.organs is not None else "binary"
    name = "".join(char if char.isalnum() or char in " _-()" else " " for char in run_dir.name)
    return f"unetlib {what} U-Net {name}".strip()[:120]


def _one_line_description(run: LoadedRun) -> str:
    if run.organs is not None:
        return (f"2D U-Net segmenting {', '.join(run.organs.names)} in SWIR fluorescence frames "
                "of mice (unetlib).")
    return "2D U-Net segmenting the foreground in SWIR fluorescence frames of mice (unetlib)."


def _save(descr, path: Path) -> None:
    from bioimageio.spec import save_bioimageio_package

    save_bioimageio_package(descr, output_path=path)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


class _quiet:
    """Silence bioimageio's console logging (loguru) while a block runs.

    bioimageio.spec leaves file readers open (hashing, validation); they are collected on
    leaving the block, without their ResourceWarnings.
    """

    def __enter__(self) -> None:
        from loguru import logger

        logger.disable("bioimageio")

    def __exit__(self, *exc) -> None:
        from loguru import logger

        logger.enable("bioimageio")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
