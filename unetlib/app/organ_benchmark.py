"""A multi-organ benchmark on the hard synthetic preset: mice seen in training and mice not.

Recipes are judged here, not on the demo (where every recipe scores 0.98 or more): a data
folder of annotated laser frames from the *training mice* (their truth masks stand for the
GIMP annotations), held-out frames of those mice from other cycles, and frames of *unseen
mice* that lie differently (:func:`unetlib.data.synthetic.hard_mouse`). :func:`score_run`
gives a trained run's Dice per organ on both. ``benchmarks/bench_organs.py`` compares
recipes with it and ``tests/test_learning.py`` holds the default recipe to floors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unetlib.core.config import MotionConfig, QuantifyConfig
from unetlib.core.io import write_image
from unetlib.data.normalize import normalize_image
from unetlib.data.organs import Organ, OrganTable, write_organ_table
from unetlib.data.synthetic import (
    curve_errors,
    hard_mouse,
    organ_table,
    render_frames,
    write_synthetic_stack,
)
from unetlib.nn.frame_scores import frame_metrics
from unetlib.nn.sliding_window import predict_probabilities, segment
from unetlib.runs.run import load_run, load_run_model
from unetlib.study.quantify import quantify_stack, read_intensities

__all__ = ["HardBenchmark", "HeldOutFrames", "curve_errors_of_mouse", "make_hard_benchmark",
           "organ_dice", "score_run"]


@dataclass(frozen=True)
class HeldOutFrames:
    """Frames of one mouse that no training saw, with their true organ labels.

    Attributes
    ----------
    mouse : int
        The mouse's index in the synthetic study.
    seen : bool
        Whether training frames came from this mouse (other cycles of it).
    cycles : tuple of int
    images : ndarray of shape (N, H, W), uint16
        Raw frames of the benchmark's laser.
    labels : ndarray of shape (N, H, W), uint8
        True organ values (0 background).
    """

    mouse: int
    seen: bool
    cycles: tuple[int, ...]
    images: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class HardBenchmark:
    """A data folder to train on and the held-out frames to score on."""

    data_dir: Path
    organs: OrganTable
    held_out: list[HeldOutFrames] = field(default_factory=list)


def _spread(cycles: int, count: int, offset: float = 0.0) -> list[int]:
    """``count`` cycles evenly spread over the acquisition, shifted by ``offset`` of a gap."""
    gap = cycles / count
    return sorted({min(cycles - 1, int(gap * (index + offset))) for index in range(count)})


def make_hard_benchmark(folder: str | os.PathLike[str], *, train_mice: int = 2,
                        unseen_mice: int = 2, frames_per_mouse: int = 6,
                        held_out_per_mouse: int = 4, cycles: int = 30, laser: int = 1,
                        study_seed: int = 0, height: int = 508, width: int = 636,
                        binary: bool = False) -> HardBenchmark:
    """Write the annotated data folder of the hard benchmark and render its held-out frames.

    Parameters
    ----------
    folder : path-like
        Where the data folder (``folder/data``) is written; it must not hold one yet.
    train_mice, unseen_mice : int
        Mice ``0 .. train_mice - 1`` give the annotated frames; the next ``unseen_mice``
        are only scored.
    frames_per_mouse : int
        Annotated frames per training mouse, spread over the acquisition.
    held_out_per_mouse : int
        Scored frames per mouse, from cycles between the annotated ones.
    cycles, height, width : int
        Size of every mouse's acquisition.
    laser : int
        The laser (1-based) whose frames are annotated and scored.
    study_seed : int
        Seed of the synthetic study (poses, textures, noise).
    binary : bool
        Annotate the union of the organs as one foreground (no ``organs.csv``): the
        blob-like binary task.

    Returns
    -------
    HardBenchmark
    """
    folder = Path(folder)
    data_dir = folder / "data"
    organs = organ_table(hard_mouse(0, study_seed=study_seed))
    if binary:
        organs = OrganTable(organs=(Organ(value=1, name="foreground", color="#ffffff"),))
    else:
        write_organ_table(data_dir / "organs.csv", organs)
    held_out = []
    stem = 0
    for mouse in range(train_mice + unseen_mice):
        config = hard_mouse(mouse, study_seed=study_seed, cycles=cycles, height=height,
                            width=width)
        seen = mouse < train_mice
        if seen:
            annotated = _spread(cycles, frames_per_mouse)
            frames, labels = render_frames(config, [c * config.lasers + laser - 1
                                                    for c in annotated])
            if binary:
                labels = (labels > 0).astype(np.uint8)
            for frame, label in zip(frames, labels):
                write_image(data_dir / "train" / "frames" / f"{stem}.png", frame)
                write_image(data_dir / "train" / "masks" / f"{stem}.png", label)
                stem += 1
            others = [c for c in range(cycles) if c not in annotated]
            scored = [others[i] for i in _spread(len(others), held_out_per_mouse, offset=0.5)]
        else:
            scored = _spread(cycles, held_out_per_mouse, offset=0.5)
        frames, labels = render_frames(config, [c * config.lasers + laser - 1 for c in scored])
        if binary:
            labels = (labels > 0).astype(np.uint8)
        held_out.append(HeldOutFrames(mouse=mouse, seen=seen, cycles=tuple(scored),
                                      images=frames, labels=labels))
    return HardBenchmark(data_dir=data_dir, organs=organs, held_out=held_out)


def organ_dice(prediction: np.ndarray, truth: np.ndarray, value: int) -> float:
    """Dice of one organ value between two label images (NaN when both lack the organ)."""
    predicted, true = prediction == value, truth == value
    if not (predicted.any() or true.any()):
        return float("nan")
    return frame_metrics(predicted, true)["dice"]


def score_run(run_or_model: str | os.PathLike[str], benchmark: HardBenchmark
              ) -> dict[str, dict[str, float]]:
    """Dice per organ of a trained run on the benchmark's held-out frames.

    Parameters
    ----------
    run_or_model : path-like
        A run folder, or one of its ``.keras`` checkpoints (``last.keras``), read with the
        run's normalisation.
    benchmark : HardBenchmark

    Returns
    -------
    dict
        ``{"seen": {organ: dice, ...}, "unseen": {...}}``: the mean over held-out frames
        of the training mice and of the unseen mice (frames where neither prediction nor
        truth shows the organ are left out).
    """
    path = Path(run_or_model)
    run = load_run(path if path.is_dir() else path.parent)
    model = run.model if path.is_dir() else load_run_model(path)
    scores: dict[str, dict[str, list[float]]] = {"seen": {}, "unseen": {}}
    for frames in benchmark.held_out:
        group = scores["seen" if frames.seen else "unseen"]
        for image, truth in zip(frames.images, frames.labels):
            probability = predict_probabilities(model, normalize_image(image, run.normalize))
            # As predict writes it: organ values, or the foreground at the calibrated
            # threshold (255, scored as the benchmark's single organ value 1).
            prediction = segment(probability, threshold=run.threshold, organs=run.organs)
            if run.organs is None:
                prediction = (prediction > 0).astype(np.uint8)
            for organ in benchmark.organs.organs:
                group.setdefault(organ.name, []).append(organ_dice(prediction, truth,
                                                                   organ.value))
    return {group: {name: float(np.nanmean(values)) for name, values in organs.items()}
            for group, organs in scores.items() if organs}


def curve_errors_of_mouse(run_dir: str | os.PathLike[str], folder: str | os.PathLike[str], *,
                          mouse: int, study_seed: int = 0, cycles: int = 30,
                          laser: int = 1, motion: MotionConfig = MotionConfig()
                          ) -> dict[str, dict[str, float]]:
    """Quantify one hard-preset mouse's whole acquisition with a run, against the truth.

    Writes the mouse's stack into ``folder``, measures every organ in every laser with
    :func:`unetlib.study.quantify.quantify_stack` (the run's input: ``laser``; the masks
    follow the organs into each laser's frame as ``motion`` says), and compares the curves
    with the known ones (:func:`unetlib.data.synthetic.curve_errors`).

    Returns
    -------
    dict
        Per organ: ``median_error``, ``mean_error``, ``max_error``, ``min_correlation``,
        ``varying_min_correlation``.
    """
    folder = Path(folder)
    config = hard_mouse(mouse, study_seed=study_seed, cycles=cycles)
    stack, _ = write_synthetic_stack(folder / f"mouse{mouse}.tif", config, overwrite=True)
    result = quantify_stack(run_dir, stack, folder / "quantify",
                            QuantifyConfig(model_input=(laser,), force=True, motion=motion))
    return curve_errors(read_intensities(result.out_dir), config)
