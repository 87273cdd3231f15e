"""Reading bioimage.io model packages that :mod:`unetlib.runs.export` wrote, as runs.

A package (the ``.zip``, its unpacked folder, or that folder's ``rdf.yaml``) carries the
run's ``keras_v3`` weights and its ``config.json``/``metrics.json`` as attachments, so
:func:`load_package` gives the same :class:`~unetlib.runs.run.LoadedRun` as the run folder it
was exported from: ``predict`` and ``quantify`` accept either.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Any

from unetlib.core.errors import InputError, describe
from unetlib.core.io import read_json
from unetlib.runs.loaded import LoadedRun, load_run_model, loaded_run
from unetlib.runs.locate import PACKAGE_DESCRIPTIONS, is_package

# Names of the files inside a package (export writes them, load_package reads the run's
# model, config.json and metrics.json back).
PACKAGE_FILES = {"keras": "model.keras", "saved_model": "saved_model.zip", "onnx": "model.onnx",
                 "config": "config.json", "metrics": "metrics.json",
                 "test_input": "test_input.npy", "test_output": "test_output.npy",
                 "cover": "cover.png", "documentation": "README.md"}

__all__ = ["PACKAGE_DESCRIPTIONS", "PACKAGE_FILES", "is_package", "load_package"]


def load_package(path: Path) -> LoadedRun:
    """A package's run: its keras_v3 weights and the attached config.json and metrics.json.

    A zip is read through a temporary folder removed once the model is in memory, so
    nothing is written beside the user's files. ``model_path`` is the package itself.
    """
    folder = path.parent if path.name in PACKAGE_DESCRIPTIONS else path
    if folder.is_dir():
        sources = _package_sources(path, _read_yaml(folder))
        return _package_run(folder / str(sources["keras"]), folder, sources)
    try:
        with zipfile.ZipFile(path) as archive, \
                tempfile.TemporaryDirectory(prefix="unetlib-package-") as unpacked:
            names = set(archive.namelist())
            description = next((name for name in PACKAGE_DESCRIPTIONS if name in names), None)
            if description is None:
                raise InputError(describe(path, "is a zip without rdf.yaml, not a bioimage.io "
                                          "package", "Give a package written by unetlib export."))
            sources = _package_sources(path, _parse_yaml(path, archive.read(description)))
            for name in sources.values():
                if name is not None:
                    if name not in names:
                        raise InputError(describe(path, f"lacks {name}, which its rdf.yaml names",
                                                  "Export the run again."))
                    archive.extract(name, unpacked)
            return _package_run(path, Path(unpacked), sources)
    except (zipfile.BadZipFile, OSError) as error:
        raise InputError(describe(path, f"is not a readable zip ({error})",
                                  "Give a package written by unetlib export.")) from None


def _package_run(path: Path, folder: Path, sources: dict[str, str | None]) -> LoadedRun:
    model = load_run_model(folder / str(sources["keras"]))
    config = read_json(folder / str(sources["config"]))
    metrics = read_json(folder / sources["metrics"]) if sources["metrics"] else {}
    return loaded_run(model, path, config, metrics)


def _read_yaml(folder: Path) -> dict[str, Any]:
    description = next(folder / name for name in PACKAGE_DESCRIPTIONS if (folder / name).is_file())
    return _parse_yaml(description, description.read_bytes())


def _parse_yaml(path: Path, text: bytes) -> dict[str, Any]:
    import yaml

    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InputError(describe(path, f"holds an unreadable rdf.yaml ({str(error)[:200]})",
                                  "Export the run again.")) from None
    return content if isinstance(content, dict) else {}


def _package_sources(path: Path, content: dict[str, Any]) -> dict[str, str | None]:
    """The file names of the keras_v3 weights and of unetlib's attachments in a package."""
    keras_source = ((content.get("weights") or {}).get("keras_v3") or {}).get("source")
    attached = {Path(str(entry.get("source", ""))).name: str(entry.get("source"))
                for entry in content.get("attachments") or [] if isinstance(entry, dict)}
    config, metrics = PACKAGE_FILES["config"], PACKAGE_FILES["metrics"]
    if not keras_source or config not in attached:
        raise InputError(describe(path, "is a bioimage.io package without unetlib's run "
                                  "(keras_v3 weights and an attached config.json)",
                                  "Give a package written by unetlib export, or use the "
                                  "package with bioimage.io tools."))
    if "://" in str(keras_source) or "://" in attached[config]:
        raise InputError(describe(path, "names remote files; unetlib reads local packages only",
                                  "Download the package as a zip and give that."))
    return {"keras": str(keras_source), "config": attached[config],
            "metrics": attached.get(metrics)}
