"""K-fold cross-validation by whole frame: how good a model is before trusting it.

With ~15 annotated frames, one split's 3 validation frames are a noisy estimate, and
they also chose the run's best epoch and threshold. Cross-validation deals the frames
into K folds (seeded), and for each fold trains a run on the other frames -- with its
own inner validation split for checkpoint and threshold -- then scores it on the held-out
fold, whose frames that run never saw. Every frame is scored exactly once.

``DIR/`` holds ``folds.csv`` (frame -> fold, written first), ``fold<k>/`` (ordinary run
folders, kept), ``scores.csv`` (held-out scores per frame and organ), ``crossval.csv``
(per fold and organ), ``crossval.json`` (mean ± SD per organ, written last) and
``crossval.png``. Re-running the same command reuses finished folds, resumes an
interrupted one and trains the missing ones.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetlib.core.config import CrossvalConfig, NormalizeConfig, to_dict
from unetlib.core.errors import Interrupted, OutputError, ParameterError, describe
from unetlib.core.io import atomic_path, read_csv, write_csv, write_json
from unetlib.core.locking import output_lock
from unetlib.data.organs import find_organ_table
from unetlib.nn.frame_scores import frame_metrics, organ_frame_metrics
from unetlib.nn.pipeline import load_pairs
from unetlib.nn.sliding_window import organ_classes, predict_probabilities
from unetlib.runs.run import FINISHED, RESUMABLE, RunFolder, load_run
from unetlib.runs.train import load_result, train
from unetlib.viz.plots import plot_crossval

logger = logging.getLogger(__name__)

__all__ = ["CrossvalResult", "assign_folds", "crossvalidate", "fold_summary"]

FOLDS_FIELDS = ("stem", "fold")
FRAME_FIELDS = ("fold", "stem", "organ", "dice", "iou", "precision", "recall")
FOLD_FIELDS = ("fold", "organ", "dice", "iou", "frames", "epochs", "train_seconds")
BINARY_ORGAN = "foreground"


@dataclass(frozen=True)
class CrossvalResult:
    """What :func:`crossvalidate` measured and wrote.

    Attributes
    ----------
    out_dir : Path
    folds : list of list of str
        The held-out stems of each fold.
    frames : list of dict
        Rows of ``scores.csv``: each held-out frame's scores per organ.
    per_fold : list of dict
        Rows of ``crossval.csv``: each fold's mean scores per organ.
    summary : dict
        ``{organ: {"mean", "sd", "min", "max", "per_fold"}}`` of the Dice; ``sd`` is the
        sample standard deviation over folds (ddof=1).
    run_dirs : list of Path
    trained : list of int
        The folds this call trained or resumed (the others were reused).
    seconds : float
    """

    out_dir: Path
    folds: list[list[str]]
    frames: list[dict[str, Any]]
    per_fold: list[dict[str, Any]]
    summary: dict[str, dict[str, Any]]
    run_dirs: list[Path]
    trained: list[int]
    seconds: float

    def to_text(self) -> str:
        """One line per organ: ``kidney  Dice 0.912 ± 0.031 (folds 0.88 … 0.95)``."""
        width = max(len(organ) for organ in self.summary)
        return "\n".join(
            f"{organ:<{width}}  Dice {s['mean']:.3f} ± {s['sd']:.3f} over {len(s['per_fold'])} "
            f"folds (" + ", ".join(f"{value:.3f}" for value in s["per_fold"]) + ")"
            for organ, s in self.summary.items())


def assign_folds(stems: list[str], folds: int, seed: int) -> list[list[str]]:
    """Deal ``stems`` into ``folds`` folds of near-equal size, in a seeded random order.

    Fold sizes differ by at most one; each fold lists its stems in their input order.

    Raises
    ------
    ParameterError
        When there are fewer frames than folds, or so few that a fold's training set
        could not keep a training and a validation frame.
    """
    count = len(stems)
    valid = [k for k in range(2, count + 1) if count - -(-count // k) >= 2]
    if folds not in valid:
        fix = (f"use 2 to {valid[-1]} folds" if valid else "annotate at least 4 frames")
        raise ParameterError(f"folds={folds} is invalid for {count} annotated frames: each "
                             f"fold holds out at least one frame and trains on at least 2; "
                             f"{fix}.")
    order = np.random.default_rng(seed).permutation(count)
    fold_of = {int(index): position % folds for position, index in enumerate(order)}
    return [[stem for index, stem in enumerate(stems) if fold_of[index] == fold]
            for fold in range(folds)]


def crossvalidate(data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                  config: CrossvalConfig | None = None, *, force: bool = False,
                  verbose: int = 0) -> CrossvalResult:
    """Cross-validate training on ``data_dir`` into ``out_dir``.

    Parameters
    ----------
    data_dir : path-like
        A data folder (``train/frames``, ``train/masks``, optional ``organs.csv``).
    out_dir : path-like
        The cross-validation folder (created); see the module docstring for its files.
    config : CrossvalConfig
        K, the fold seed, and how each fold trains (``max_minutes`` per fold).
    force : bool
        Replace fold runs made with other parameters or folds (finished folds of the same
        request are always reused).
    verbose : {0, 1, 2}
        Each fold's Keras progress output (0: silent, the default).

    Returns
    -------
    CrossvalResult

    Raises
    ------
    ParameterError
        Too few frames for K folds, or a training parameter out of range.
    OutputError
        ``out_dir`` holds folds of other frames or another seed, or a fold run made with
        other parameters (pass ``force`` to replace them); another process writes there.
    Interrupted
        Ctrl-C; finished folds are kept and the same command continues.
    """
    started = time.monotonic()
    config = (config or CrossvalConfig()).validate()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(describe(out_dir, "exists and is not a folder",
                                   "Give a folder for --out."))
    pairs = load_pairs(data_dir, normalize=config.train.normalize)
    folds = assign_folds([pair.stem for pair in pairs], config.folds, config.seed)
    with output_lock(out_dir):
        _record_folds(out_dir / "folds.csv", folds, force=force)
        run_dirs, trained = [], []
        try:
            for fold, held_out in enumerate(folds):
                run_dir = out_dir / f"fold{fold}"
                logger.info("fold %d of %d: holding out frames %s", fold + 1, len(folds),
                            held_out)
                if _train_fold(train, data_dir, run_dir, config, held_out, force=force,
                               verbose=verbose):
                    trained.append(fold)
                run_dirs.append(run_dir)
        except Interrupted:
            done = len(run_dirs)
            raise Interrupted(describe(out_dir, f"cross-validation interrupted after {done} of "
                                       f"{len(folds)} fold(s); finished folds are kept",
                                       "Run the same command again to continue.")) from None
        frames = [row for fold, run_dir in enumerate(run_dirs)
                  for row in score_held_out(run_dir, data_dir, folds[fold], fold,
                                            loaded=(config.train.normalize, pairs))]
        per_fold = _per_fold(frames, run_dirs)
        summary = fold_summary(per_fold)
        _write_outputs(out_dir, config, data_dir, folds, frames, per_fold, summary)
    return CrossvalResult(out_dir=out_dir, folds=folds, frames=frames, per_fold=per_fold,
                          summary=summary, run_dirs=run_dirs, trained=trained,
                          seconds=time.monotonic() - started)


def _train_fold(train, data_dir: Path, run_dir: Path, config: CrossvalConfig,
                held_out: list[str], *, force: bool, verbose: int) -> bool:
    """Train (or reuse, or resume) one fold's run; True unless a finished run was reused.

    ``force`` replaces a fold run only when it differs from this request: an identical
    finished fold is reused even then, so ``--force`` never throws away equal work.
    """
    fold_config = dataclasses.replace(config.train, holdout=tuple(held_out))
    status = RunFolder(run_dir).status
    try:
        train(data_dir, run_dir, fold_config, resume=status == RESUMABLE, verbose=verbose)
    except OutputError:
        if not (force and status == FINISHED):
            raise
        logger.warning("%s holds a fold run of other parameters: replacing it", run_dir)
        train(data_dir, run_dir, fold_config, force=True, verbose=verbose)
        return True
    return status != FINISHED


def _record_folds(path: Path, folds: list[list[str]], *, force: bool) -> None:
    """Write ``folds.csv``, or check that an existing one holds the same folds.

    Reusing fold runs made for other folds would score frames a run trained on.
    """
    rows = [{"stem": stem, "fold": str(fold)} for fold, held in enumerate(folds) for stem in held]
    if path.is_file() and not force:
        stored = {row["stem"]: row["fold"] for row in read_csv(path)}
        if stored != {row["stem"]: row["fold"] for row in rows}:
            raise OutputError(describe(path.parent, "holds a cross-validation of other folds "
                                       "(other frames, --folds or --seed)",
                                       "Choose another --out, or pass --force to replace it."))
        return
    write_csv(path, rows, FOLDS_FIELDS, overwrite=True)


def score_held_out(run_dir: str | os.PathLike[str], data_dir: str | os.PathLike[str],
                   stems: list[str], fold: int = 0, *,
                   loaded: tuple[NormalizeConfig, list] | None = None) -> list[dict[str, Any]]:
    """Score a run on annotated frames of ``data_dir`` it never saw, at full resolution.

    Frames are normalised as the run's training frames were and segmented as
    ``predict`` does (overlapping tiles; a binary run at its calibrated threshold, an
    organ run by the most probable class).

    ``loaded`` is ``(normalisation, pairs)`` of the data folder's pairs already loaded
    (:func:`unetlib.nn.pipeline.load_pairs`): used when normalised as the run's frames
    were, so K folds do not read the data K times.

    Returns
    -------
    list of dict
        One row per frame and organ (``organ="foreground"`` for a binary run) with
        ``fold, stem, organ, dice, iou, precision, recall``.
    """
    run = load_run(run_dir)
    pairs = loaded[1] if loaded is not None and loaded[0] == run.normalize else None
    if pairs is None:
        pairs = load_pairs(data_dir, normalize=run.normalize)
    wanted = set(stems)
    pairs = [pair for pair in pairs if pair.stem in wanted]
    rows = []
    for pair in pairs:
        probability = predict_probabilities(run.model, pair.image)
        truth = pair.mask[..., 0]
        if run.organs is None:
            scored = [(BINARY_ORGAN, frame_metrics(probability >= run.threshold, truth))]
        else:
            scored = list(zip(run.organs.names, organ_frame_metrics(
                organ_classes(probability), truth, run.organs.classes)))
        rows += [{"fold": fold, "stem": pair.stem, "organ": organ,
                  **{name: float(scores[name]) for name in FRAME_FIELDS[3:]}}
                 for organ, scores in scored]
    return rows


def _per_fold(frames: list[dict[str, Any]], run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Each fold's mean held-out scores per organ, with what its training cost."""
    rows = []
    for fold, run_dir in enumerate(run_dirs):
        result = load_result(run_dir)
        organs = list(dict.fromkeys(row["organ"] for row in frames if row["fold"] == fold))
        for organ in organs:
            mine = [row for row in frames if row["fold"] == fold and row["organ"] == organ]
            rows.append({"fold": fold, "organ": organ,
                         "dice": float(np.mean([row["dice"] for row in mine])),
                         "iou": float(np.mean([row["iou"] for row in mine])),
                         "frames": len(mine), "epochs": result.epochs_completed,
                         "train_seconds": round(float(result.metrics.get("train_seconds", 0.0)), 1)})
    return rows


def fold_summary(per_fold: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean, sample SD (ddof=1), min and max over folds of each organ's Dice."""
    summary = {}
    for organ in dict.fromkeys(row["organ"] for row in per_fold):
        values = [float(row["dice"]) for row in per_fold if row["organ"] == organ]
        summary[organ] = {"mean": float(np.mean(values)),
                          "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                          "min": min(values), "max": max(values), "per_fold": values}
    return summary


def _write_outputs(out_dir: Path, config: CrossvalConfig, data_dir: Path,
                   folds: list[list[str]], frames: list[dict[str, Any]],
                   per_fold: list[dict[str, Any]], summary: dict[str, dict[str, Any]]) -> None:
    """scores.csv, crossval.csv, crossval.png, then crossval.json (last: complete)."""
    write_csv(out_dir / "scores.csv", frames, FRAME_FIELDS, overwrite=True)
    write_csv(out_dir / "crossval.csv", per_fold, FOLD_FIELDS, overwrite=True)
    figure = plot_crossval(per_fold, summary, find_organ_table(data_dir))
    with atomic_path(out_dir / "crossval.png", overwrite=True) as temporary:
        figure.savefig(temporary, format="png")
    train = {key: value for key, value in to_dict(config.train).items()
             if key != "holdout"}
    write_json(out_dir / "crossval.json",
               {"data_dir": str(data_dir.resolve()), "folds": config.folds, "seed": config.seed,
                "held_out": folds, "dice": summary,
                "mean_dice": float(np.mean([s["mean"] for s in summary.values()])),
                "train": train}, overwrite=True)
