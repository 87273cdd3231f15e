"""The whole pipeline on the synthetic acquisition: what ``make demo`` runs.

Each step is the same library call a user makes on real data; only the annotation is
replaced by the synthetic ground truth (written as GIMP's value-1 masks).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from unetlib.config import PickConfig, SplitConfig, SyntheticConfig, TrainConfig
from unetlib.frames import pick_frames
from unetlib.stack import split_stack
from unetlib.synthetic import ensure_demo_stack, export_truth_masks

logger = logging.getLogger(__name__)


# Batches per epoch in the demo: 5 epochs x 15 batches of 8 patches train each model in
# about a minute and a half on a 2-core CPU (the notebooks 03/04 use the same setting, so
# they reuse the demo's runs).
DEMO_STEPS = 15


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """Sizes of the demo run.

    Attributes
    ----------
    synthetic : SyntheticConfig
        The acquisition (30 cycles of 4 lasers at 508 x 636 by default).
    train_count, test_count : int
        Frames picked for training (annotated with the ground truth) and held out.
    train : TrainConfig
        Training of both models (the library defaults, with fewer steps per epoch).
    target_dice : float
        Mean test Dice the demo is expected to reach (reported, not enforced).
    """

    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    train_count: int = 15
    test_count: int = 5
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps_per_epoch=DEMO_STEPS))
    target_dice: float = 0.90


@dataclass
class DemoResult:
    """Paths the demo wrote, and the metrics it measured."""

    stack: Path
    split_dir: Path
    data_dirs: dict[str, Path] = field(default_factory=dict)
    truth_dirs: dict[str, Path] = field(default_factory=dict)
    run_dirs: dict[str, Path] = field(default_factory=dict)
    results_dirs: dict[str, Path] = field(default_factory=dict)
    test_dice: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def prepare_demo_data(out_dir: str | os.PathLike[str],
                      config: DemoConfig = DemoConfig()) -> DemoResult:
    """Write the demo stack, split it, pick train and test frames, annotate with the truth.

    Produces ``stack.tif``/``truth.tif``, ``split/``, and ``data1d/`` (laser 1) and
    ``data3d/`` (lasers 1-3) each with ``train/frames``, ``train/masks`` and ``test/``,
    plus ``truth1d/``/``truth3d/``: the true masks of the test frames, for evaluation.
    Re-running is a no-op for the steps already done.
    """
    out_dir = Path(out_dir)
    stack = ensure_demo_stack("", out_dir, config.synthetic)
    split_config = SplitConfig(lasers=config.synthetic.lasers)
    split = split_stack(stack, out_dir / "split", split_config, progress=True)
    result = DemoResult(stack=stack, split_dir=split.out_dir)
    for name, channels in (("1d", 1), ("3d", 3)):
        data_dir = out_dir / f"data{name}"
        train = pick_frames(stack, data_dir, PickConfig(count=config.train_count, channels=channels),
                            split_config)
        test = pick_frames(stack, data_dir, PickConfig(count=config.test_count, channels=channels,
                                                       subset="test", exclude=tuple(train.cycles)),
                           split_config)
        annotate_from_truth(data_dir, out_dir / "truth.tif")
        result.data_dirs[name] = data_dir
        result.truth_dirs[name] = truth_for_test_frames(data_dir, out_dir / "truth.tif",
                                                        out_dir / f"truth{name}")
        logger.info("data%s: %d training frames with masks, %d test frames", name,
                    len(train.frames), len(test.frames))
    return result


def annotate_from_truth(data_dir: str | os.PathLike[str], truth_path: str | os.PathLike[str]) -> list[Path]:
    """Demo only: write the ground truth of a data folder's picked frames as its masks.

    Does nothing when ``truth_path`` is empty (real data: the masks come from GIMP), so
    notebooks can call it unconditionally.
    """
    if not str(truth_path):
        return []
    data_dir = Path(data_dir)
    return export_truth_masks(truth_path, data_dir / "train" / "frames.csv", data_dir / "train" / "masks")


def truth_for_test_frames(data_dir: str | os.PathLike[str], truth_path: str | os.PathLike[str],
                          truth_dir: str | os.PathLike[str]) -> Path | None:
    """Demo only: the true masks of a data folder's test frames, for evaluation.

    Returns ``truth_dir`` (written once), or None when ``truth_path`` is empty.
    """
    if not str(truth_path) or not str(truth_dir):
        return None
    export_truth_masks(truth_path, Path(data_dir) / "test" / "frames.csv", truth_dir)
    return Path(truth_dir)


def run_demo(out_dir: str | os.PathLike[str], config: DemoConfig = DemoConfig()) -> DemoResult:
    """The whole pipeline on the synthetic acquisition (what ``make demo`` runs).

    Prepares the data (:func:`prepare_demo_data`), trains a grayscale model on
    ``data1d`` and an RGB model on ``data3d`` into ``runs/gray1d`` and ``runs/rgb3d``,
    predicts the held-out test frames into ``dataXd/results`` and scores them against the
    ground truth (``truthXd``, written to ``dataXd/results/metrics.json``). Re-running
    reuses finished runs and re-derives the results.
    """
    from unetlib.evaluate import evaluate_folders
    from unetlib.io import write_json
    from unetlib.predict import predict_folder
    from unetlib.train import train

    out_dir = Path(out_dir)
    started = time.monotonic()
    result = prepare_demo_data(out_dir, config)
    result.seconds["data"] = time.monotonic() - started
    for name, run_name in (("1d", "gray1d"), ("3d", "rgb3d")):
        started = time.monotonic()
        data_dir = result.data_dirs[name]
        run = train(data_dir, out_dir / "runs" / run_name, config.train)
        results_dir = data_dir / "results"
        predict_folder(run.run_dir, data_dir / "test", results_dir, overwrite=True,
                       progress=False)
        report = evaluate_folders(results_dir, result.truth_dirs[name])
        write_json(results_dir / "metrics.json", report.to_dict(), overwrite=True)
        result.run_dirs[name] = run.run_dir
        result.results_dirs[name] = results_dir
        result.test_dice[name] = report.mean["dice"]
        result.seconds[run_name] = time.monotonic() - started
        logger.info("%s: test Dice %.4f over %d frames (validation %.4f)", run_name,
                    report.mean["dice"], len(report.frames), run.val_dice)
    return result
