"""Compare predicted masks with ground truth, per frame and on average.

Each ``<stem>_predict.png`` of the prediction folder is paired with the truth mask
``<stem>.<any image suffix>``; truth masks in any encoding (GIMP value 1, 0/255, RGB,
palette, ...) are normalised by :func:`unetlib.data.masks.normalize_mask`. Files without a
partner are listed in the report, never silently skipped. Metric conventions (empty
prediction vs empty truth = 1.0) are those of :mod:`unetlib.nn.frame_scores`.

When the prediction folder holds ``organs.csv`` (``predict`` writes it for organ runs),
both masks are read as organ labels (:func:`unetlib.data.masks.read_labels`) and every organ
is scored on its own, by name, per frame; the report adds each organ's mean, the mean
over organs, and a confusion table of pixel counts (which organ was taken for which).
Truth masks are read with the truth folder's own ``organs.csv`` when it has one, matched
to the predictions' organs by name; tables of different organs are refused.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from unetlib.core.errors import InputError, describe
from unetlib.core.io import list_images, read_image
from unetlib.data.masks import normalize_mask, read_labels
from unetlib.data.organs import OrganTable, find_organ_table, organ_table_path
from unetlib.nn.frame_scores import (
    METRIC_NAMES,
    confusion_matrix,
    frame_metrics,
    organ_frame_metrics,
)
from unetlib.viz.plots import plot_error_map

__all__ = ["EvaluationReport", "PREDICTION_SUFFIX", "error_map", "evaluate_folders", "worst_frame"]

PREDICTION_SUFFIX = "_predict"


@dataclasses.dataclass(frozen=True)
class EvaluationReport:
    """Scores of every paired frame, their mean, and what could not be paired.

    Attributes
    ----------
    frames : list of dict
        One row per pair: ``stem``, ``prediction``, ``truth`` and every metric of
        :data:`unetlib.nn.frame_scores.METRIC_NAMES`.
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
    organs: OrganTable | None = None
    per_organ: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    confusion: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (paths as strings)."""
        result = {"frames": [{**row, "prediction": str(row["prediction"]),
                              "truth": str(row["truth"])} for row in self.frames],
                  "mean": dict(self.mean),
                  "unpaired_predictions": [str(path) for path in self.unpaired_predictions],
                  "unpaired_truths": [str(path) for path in self.unpaired_truths]}
        if self.organs is not None:
            labels = ["background", *self.organs.names]
            result["organs"] = self.organs.to_rows()
            result["per_organ"] = self.per_organ
            result["confusion"] = {"rows_truth_columns_prediction": labels,
                                   "pixels": self.confusion.tolist()}
        return result

    def to_text(self) -> str:
        """A fixed-width table: one line per frame (and organ), the means, the confusion
        table of an organ run, then any unpaired files."""
        names = METRIC_NAMES if self.organs is None else METRIC_NAMES[:4]
        header = ["frame", *([] if self.organs is None else ["organ"]), *names]
        rows = [[row["stem"], *([] if self.organs is None else [row["organ"]]),
                 *(f"{row[name]:.4f}" for name in names)] for row in self.frames]
        for organ, scores in self.per_organ.items():
            rows.append(["mean", organ, *(f"{scores[name]:.4f}" for name in names)])
        count = len({row["stem"] for row in self.frames})
        rows.append([f"mean ({count})", *([] if self.organs is None else ["all organs"]),
                     *(f"{self.mean[name]:.4f}" for name in names)])
        widths = [max(len(str(cells[i])) for cells in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(str(cell).rjust(width) if i else str(cell).ljust(width)
                           for i, (cell, width) in enumerate(zip(cells, widths)))
                 for cells in [header, *rows]]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(len(lines) - 1 - len(self.per_organ), "-" * len(lines[0]))
        if self.organs is not None:
            lines += ["", "pixels: truth (rows) taken for prediction (columns)",
                      *_format_confusion(self.confusion, ["background", *self.organs.names])]
        for label, paths in (("prediction without truth", self.unpaired_predictions),
                             ("truth without prediction", self.unpaired_truths)):
            lines.extend(f"{label}: {path}" for path in paths)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def _format_confusion(confusion: np.ndarray, labels: list[str]) -> list[str]:
    width = max(max(len(label) for label in labels), len(str(int(confusion.max(initial=0)))))
    lines = [" " * width + "  " + "  ".join(label.rjust(width) for label in labels)]
    lines += [label.ljust(width) + "  " + "  ".join(str(int(count)).rjust(width) for count in row)
              for label, row in zip(labels, confusion)]
    return lines


def _read_binary(path: Path) -> np.ndarray:
    mask, _ = normalize_mask(read_image(path), source=path)
    return mask


def _truth_organs(truth_dir: Path, pred_dir: Path,
                  organs: OrganTable | None) -> tuple[OrganTable | None, np.ndarray]:
    """The truth folder's organ table (its own ``organs.csv``, else the predictions') and
    the class of the predictions' table that each of its classes is, matched by name.

    Raises
    ------
    InputError
        When the two tables name different organs.
    """
    truth_organs = find_organ_table(truth_dir) if organs is not None else None
    if truth_organs is None:
        return organs, np.arange(256, dtype=np.uint8)
    names = [name.lower() for name in organs.names]
    if sorted(names) != sorted(name.lower() for name in truth_organs.names):
        raise InputError(describe(organ_table_path(truth_dir), "names the organs "
                                  f"{', '.join(truth_organs.names)} but the predictions in "
                                  f"{pred_dir} are of {', '.join(organs.names)}",
                                  "Compare masks of the same organs (organs.csv names them)."))
    classes = [0, *(names.index(name.lower()) + 1 for name in truth_organs.names)]
    return truth_organs, np.asarray(classes, dtype=np.uint8)


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
    organs = find_organ_table(pred_dir)
    truth_organs, truth_classes = _truth_organs(truth_dir, pred_dir, organs)
    unpaired = {"unpaired_predictions": [predictions[stem] for stem in predictions
                                         if stem not in truths],
                "unpaired_truths": [truths[stem] for stem in truths if stem not in predictions]}
    frames = []
    confusion = None if organs is None else np.zeros((organs.classes, organs.classes), np.int64)
    for stem in paired:
        if organs is None:
            prediction, truth = _read_binary(predictions[stem]), _read_binary(truths[stem])
        else:
            prediction = read_labels(predictions[stem], organs)[0]
            truth = truth_classes[read_labels(truths[stem], truth_organs)[0]]
        if prediction.shape != truth.shape:
            raise InputError(describe(predictions[stem], f"is {prediction.shape[0]}x"
                                      f"{prediction.shape[1]} (height x width) but its truth "
                                      f"{truths[stem]} is {truth.shape[0]}x{truth.shape[1]}",
                                      "Predict at full resolution from the original frames."))
        paths = {"stem": stem, "prediction": predictions[stem], "truth": truths[stem]}
        if organs is None:
            frames.append({**paths, **frame_metrics(prediction, truth)})
            continue
        confusion += confusion_matrix(prediction, truth, organs.classes)
        frames += [{**paths, "organ": name, **scores} for name, scores in
                   zip(organs.names, organ_frame_metrics(prediction, truth, organs.classes))]
    if organs is None:
        mean = {name: float(np.mean([row[name] for row in frames])) for name in METRIC_NAMES}
        return EvaluationReport(frames=frames, mean=mean, **unpaired)
    per_organ = {organ: {name: float(np.mean([row[name] for row in frames
                                              if row["organ"] == organ]))
                         for name in METRIC_NAMES} for organ in organs.names}
    mean = {name: float(np.mean([scores[name] for scores in per_organ.values()]))
            for name in METRIC_NAMES}
    return EvaluationReport(frames=frames, mean=mean, organs=organs, per_organ=per_organ,
                            confusion=confusion, **unpaired)


def worst_frame(report: EvaluationReport) -> str:
    """The stem of the scored frame with the lowest Dice (mean over organs)."""
    dice: dict[str, list[float]] = {}
    for row in report.frames:
        dice.setdefault(row["stem"], []).append(float(row["dice"]))
    return min(dice, key=lambda stem: (float(np.mean(dice[stem])), stem))


def error_map(report: EvaluationReport, frames_dir: str | os.PathLike[str],
              stem: str | None = None) -> Figure:
    """Where the model is wrong on one scored frame (the worst by default): the frame
    from ``frames_dir`` with its missed and extra pixels (:func:`plot_error_map`)."""
    stem = stem or worst_frame(report)
    row = next(row for row in report.frames if row["stem"] == stem)
    frame = next((path for path in list_images(frames_dir) if path.stem == stem), None)
    if frame is None:
        raise InputError(describe(frames_dir, f"holds no frame {stem!r} of the scored masks",
                                  "Give the folder the masks were predicted from."))
    prediction_path, truth_path = Path(row["prediction"]), Path(row["truth"])
    if report.organs is None:
        prediction, truth = _read_binary(prediction_path), _read_binary(truth_path)
    else:
        prediction = read_labels(prediction_path, report.organs)[0]
        truth_organs, truth_classes = _truth_organs(truth_path.parent, prediction_path.parent,
                                                    report.organs)
        truth = truth_classes[read_labels(truth_path, truth_organs)[0]]
    dice = np.mean([float(r["dice"]) for r in report.frames if r["stem"] == stem])
    return plot_error_map(read_image(frame), prediction, truth,
                          title=f"frame {stem}, Dice {dice:.3f}")
