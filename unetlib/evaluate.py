"""Compare predicted masks with ground truth, per frame and on average.

Each ``<stem>_predict.png`` of the prediction folder is paired with the truth mask
``<stem>.<any image suffix>``; truth masks in any encoding (GIMP value 1, 0/255, RGB,
palette, ...) are normalised by :func:`unetlib.masks.normalize_mask`. Files without a
partner are listed in the report, never silently skipped. Metric conventions (empty
prediction vs empty truth = 1.0) are those of :mod:`unetlib.metrics`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from unetlib.errors import InputError, describe
from unetlib.io import list_images, read_image
from unetlib.masks import normalize_mask
from unetlib.metrics import METRIC_NAMES, frame_metrics

__all__ = ["EvaluationReport", "PREDICTION_SUFFIX", "evaluate_folders"]

PREDICTION_SUFFIX = "_predict"


@dataclasses.dataclass(frozen=True)
class EvaluationReport:
    """Scores of every paired frame, their mean, and what could not be paired.

    Attributes
    ----------
    frames : list of dict
        One row per pair: ``stem``, ``prediction``, ``truth`` and every metric of
        :data:`unetlib.metrics.METRIC_NAMES`.
    mean : dict
        Mean of each metric over the frames.
    unpaired_predictions : list of Path
        Predictions whose truth mask is missing.
    unpaired_truths : list of Path
        Truth masks with no prediction.
    """

    frames: list[dict[str, Any]]
    mean: dict[str, float]
    unpaired_predictions: list[Path]
    unpaired_truths: list[Path]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (paths as strings)."""
        return {"frames": [{**row, "prediction": str(row["prediction"]),
                            "truth": str(row["truth"])} for row in self.frames],
                "mean": dict(self.mean),
                "unpaired_predictions": [str(path) for path in self.unpaired_predictions],
                "unpaired_truths": [str(path) for path in self.unpaired_truths]}

    def to_text(self) -> str:
        """A fixed-width table: one line per frame, the mean, then any unpaired files."""
        header = ["frame", *METRIC_NAMES]
        rows = [[row["stem"], *(f"{row[name]:.4f}" for name in METRIC_NAMES)]
                for row in self.frames]
        rows.append([f"mean ({len(self.frames)})",
                     *(f"{self.mean[name]:.4f}" for name in METRIC_NAMES)])
        widths = [max(len(str(cells[i])) for cells in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(str(cell).rjust(width) if i else str(cell).ljust(width)
                           for i, (cell, width) in enumerate(zip(cells, widths)))
                 for cells in [header, *rows]]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(len(lines) - 1, "-" * len(lines[0]))
        for label, paths in (("prediction without truth", self.unpaired_predictions),
                             ("truth without prediction", self.unpaired_truths)):
            lines.extend(f"{label}: {path}" for path in paths)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def _read_binary(path: Path) -> np.ndarray:
    mask, _ = normalize_mask(read_image(path), source=path)
    return mask


def evaluate_folders(pred_dir: str | os.PathLike[str],
                     truth_dir: str | os.PathLike[str]) -> EvaluationReport:
    """Score every ``<stem>_predict.png`` in ``pred_dir`` against ``truth_dir/<stem>.*``.

    Raises
    ------
    InputError
        When a folder is missing, ``pred_dir`` holds no ``*_predict`` images, no
        prediction has a truth mask, or a pair's sizes differ.
    """
    pred_dir, truth_dir = Path(pred_dir), Path(truth_dir)
    predictions = {path.stem[:-len(PREDICTION_SUFFIX)]: path for path in list_images(pred_dir)
                   if path.stem.endswith(PREDICTION_SUFFIX)}
    if not predictions:
        raise InputError(describe(pred_dir, "holds no <stem>_predict.png files",
                                  "Run prediction into this folder first."))
    truths: dict[str, Path] = {}
    for path in list_images(truth_dir):
        truths.setdefault(path.stem, path)
    paired = [stem for stem in predictions if stem in truths]
    if not paired:
        raise InputError(describe(pred_dir, f"none of its {len(predictions)} predictions has a "
                                  f"truth mask of the same stem in {truth_dir}",
                                  "Name truth masks like the frames (0.png for 0_predict.png)."))
    frames = []
    for stem in paired:
        prediction = _read_binary(predictions[stem])
        truth = _read_binary(truths[stem])
        if prediction.shape != truth.shape:
            raise InputError(describe(predictions[stem], f"is {prediction.shape[0]}x"
                                      f"{prediction.shape[1]} (height x width) but its truth "
                                      f"{truths[stem]} is {truth.shape[0]}x{truth.shape[1]}",
                                      "Predict at full resolution from the original frames."))
        frames.append({"stem": stem, "prediction": predictions[stem], "truth": truths[stem],
                       **frame_metrics(prediction, truth)})
    mean = {name: float(np.mean([row[name] for row in frames])) for name in METRIC_NAMES}
    return EvaluationReport(
        frames=frames, mean=mean,
        unpaired_predictions=[predictions[stem] for stem in predictions if stem not in truths],
        unpaired_truths=[truths[stem] for stem in truths if stem not in predictions])
