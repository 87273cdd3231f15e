"""unetlib: U-Net organ segmentation for multi-laser SWIR mouse imaging.

The package is layered; each subpackage imports only from the ones listed before it
(``tests/test_architecture.py`` checks this):

``core``
    defaults (``config``), errors, atomic files, locks, memory and disk checks,
    TensorFlow start-up.
``data``
    stacks, picked frames, masks, organ tables, data folders, synthetic acquisitions.
``nn``
    the U-Net, augmentation, the tf.data pipeline, metrics and losses.
``viz``
    figures and notebook widgets.
``runs``
    training and the run folder it writes (cross-validation, fine-tuning, export).
``inference``
    prediction, evaluation, feature maps, uncertainty.
``study``
    quantification of whole acquisitions, many at once on Dask.
``app``
    the CLI (``python -m unetlib``), the notebook runner, the demo, the benchmarks.

The entry points are available from the package itself, imported on first use::

    import unetlib as ul
    ul.train("data1d", "runs/first", ul.TrainConfig(epochs=20))

Modules of the flat layout of earlier versions (``unetlib.train``, ``unetlib.predict``,
...) are still importable under their old names for one release.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
from typing import Any

from unetlib.core.errors import (
    InputError,
    OutputError,
    ParameterError,
    UnetlibError,
    UnetlibWarning,
)

__version__ = "0.1.0"

# Name -> module that defines it; imported when first asked for (PEP 562), so that
# ``import unetlib`` stays fast and does not load TensorFlow.
_ENTRY_POINTS = {
    "PickConfig": "unetlib.core.config",
    "PipelineConfig": "unetlib.core.config",
    "QuantifyConfig": "unetlib.core.config",
    "SplitConfig": "unetlib.core.config",
    "SyntheticConfig": "unetlib.core.config",
    "TrainConfig": "unetlib.core.config",
    "model_preset": "unetlib.core.config",
    "load_stack": "unetlib.data.stack",
    "split_stack": "unetlib.data.stack",
    "pick_frames": "unetlib.inference.uncertainty",
    "check_pairs": "unetlib.data.dataset",
    "read_organ_table": "unetlib.data.organs",
    "write_synthetic_stack": "unetlib.data.synthetic",
    "train": "unetlib.runs.train",
    "crossvalidate": "unetlib.runs.crossval",
    "export_package": "unetlib.runs.export",
    "load_run": "unetlib.runs.run",
    "predict_folder": "unetlib.inference.predict",
    "evaluate_folders": "unetlib.inference.evaluate",
    "pick_uncertain": "unetlib.inference.uncertainty",
    "quantify_stack": "unetlib.study.quantify",
    "quantify_study": "unetlib.study.cluster",
}

__all__ = ["InputError", "OutputError", "ParameterError", "UnetlibError", "UnetlibWarning",
           "__version__", *sorted(_ENTRY_POINTS)]


def __getattr__(name: str) -> Any:
    if name in _ENTRY_POINTS:
        value = getattr(importlib.import_module(_ENTRY_POINTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'unetlib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ENTRY_POINTS))


# Old flat module name -> its place in the layers (kept importable for one release).
_MOVED = {
    "activations": "inference.activations", "augment": "nn.augment", "callbacks": "runs.callbacks",
    "cli": "app.cli", "config": "core.config", "crossval": "runs.crossval",
    "dataset": "data.dataset", "demo": "app.demo", "errors": "core.errors",
    "evaluate": "inference.evaluate", "export": "runs.export", "finetune": "runs.finetune",
    "frames": "data.frames", "io": "core.io", "kinetics": "study.kinetics",
    "locking": "core.locking", "masks": "data.masks", "measure": "study.measure",
    "metrics": "nn.metrics", "model": "nn.model", "normalize": "data.normalize",
    "notebooks": "app.notebooks", "organ_benchmark": "app.organ_benchmark",
    "organs": "data.organs", "package": "runs.package", "phantom": "data.phantom",
    "pipeline": "nn.pipeline", "plots": "viz.plots", "predict": "inference.predict",
    "quantify": "study.quantify", "resources": "core.resources", "run": "runs.run",
    "runtime": "core.runtime", "stack": "data.stack", "synthetic": "data.synthetic",
    "timing": "data.timing", "train": "runs.train", "uncertainty": "inference.uncertainty",
    "widgets": "viz.widgets",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import unetlib.train`` gives the module ``unetlib.runs.train`` itself (the same
    object, so patching one patches the other)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        package, _, name = fullname.partition(".")
        if package == __name__ and name in _MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(f"{__name__}.{_MOVED[spec.name.partition('.')[2]]}")

    def exec_module(self, module) -> None:
        """The module was executed under its new name already."""


class _Package(types.ModuleType):
    """Importing an old path (``unetlib.train``) binds it on the package; the entry point
    of the same name (the function ``train``) must stay what ``unetlib.train`` means."""

    def __setattr__(self, name: str, value: Any) -> None:
        if not (name in _ENTRY_POINTS and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
sys.meta_path.append(_MovedModules())
