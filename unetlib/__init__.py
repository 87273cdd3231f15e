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
    quantification of whole acquisitions, many at once on Dask; a study's sheet, per-mouse
    kinetics, group comparisons and report.
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

# What the package exposes, by the module that defines it: the steps of the notebooks and
# the CLI, their configs, and the figures and widgets the notebooks show. Each name is
# imported when first asked for (PEP 562), so ``import unetlib`` stays fast and does not
# load TensorFlow.
_EXPORTS = {
    "unetlib.core.config": ("CrossvalConfig", "DemoStudyConfig", "PickConfig", "PipelineConfig", "QuantifyConfig",
                            "SplitConfig", "StudyConfig", "SyntheticConfig", "SyntheticStudyConfig",
                            "TrainConfig", "augment_preset", "model_preset", "to_dict"),
    "unetlib.core.io": ("read_image",),
    "unetlib.data.stack": ("load_stack", "split_stack"),
    "unetlib.data.dataset": ("check_pairs", "find_pairs"),
    "unetlib.data.normalize": ("normalize_image",),
    "unetlib.data.organs": ("read_organ_table",),
    "unetlib.data.synthetic": ("ensure_demo_stack", "write_synthetic_stack"),
    "unetlib.data.synthetic_study": ("true_ratio", "write_synthetic_study"),
    "unetlib.nn.pipeline": ("load_pairs", "make_training_dataset", "split_pairs", "take_samples",
                            "to_display", "write_augmented_pairs"),
    "unetlib.viz.plots": ("plot_composite", "plot_confusion", "plot_crossval", "plot_feature_maps",
                          "plot_frame_scores", "plot_history", "plot_laser_means",
                          "plot_organ_curves", "plot_organ_scores", "plot_pairs", "plot_picked",
                          "plot_threshold_curve"),
    "unetlib.viz.widgets": ("cycle_browser", "frame_browser", "mask_viewer", "prediction_viewer",
                            "study_browser"),
    "unetlib.viz.study_figures": ("plot_group_curves", "plot_parameter_dots"),
    "unetlib.runs.train": ("train",),
    "unetlib.runs.crossval": ("crossvalidate",),
    "unetlib.runs.export": ("check_package", "export_package", "package_summary"),
    "unetlib.runs.run": ("load_run",),
    "unetlib.inference.predict": ("predict_folder",),
    "unetlib.inference.evaluate": ("error_map", "evaluate_folders"),
    "unetlib.inference.activations": ("feature_maps",),
    "unetlib.inference.uncertainty": ("pick_frames", "pick_uncertain"),
    "unetlib.study.quantify": ("quantify_stack", "read_intensities", "summary_text"),
    "unetlib.study.cluster": ("quantify_study",),
    "unetlib.study.sheet": ("read_study_sheet",),
    "unetlib.study.analysis": ("analyse_study",),
    "unetlib.study.tables": ("comparison_text", "trust_text"),
    "unetlib.study.workflow": ("run_study",),
    "unetlib.app.demo": ("annotate_demo", "demo_test_truth"),
    "unetlib.app.demo_study": ("ensure_demo_study", "perfect_mask_ratios", "run_demo_study"),
    "unetlib.app.notebooks": ("publish_summary",),
}
_ENTRY_POINTS = {name: module for module, names in _EXPORTS.items() for name in names}

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
