"""The whole pipeline on the synthetic acquisition: what ``make demo`` runs.

Each step is the same library call a user makes on real data; only the annotation is
replaced by the synthetic ground truth. The grayscale folder (``data1d``, one laser) gets
GIMP's value-1 binary masks: in one laser the kidney and the bladder look alike, so one
foreground is what a single laser can teach. The 3-laser composites (``data3d``) get label
masks of the named organs (liver, kidney, bladder) with their ``organs.csv``: the lasers'
colours tell the organs apart, and the demo trains and scores one class per organ.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from unetlib.core.config import (
    PickConfig,
    PipelineConfig,
    SplitConfig,
    SyntheticConfig,
    TrainConfig,
    model_preset,
)
from unetlib.core.errors import InputError, describe
from unetlib.core.io import read_csv, read_image, write_json
from unetlib.data.frames import pick_frames
from unetlib.data.organs import ORGANS_FILE, read_organ_table, write_organ_table
from unetlib.data.stack import split_stack
from unetlib.data.synthetic import curve_errors, ensure_demo_stack, export_truth_masks, organ_table
from unetlib.inference.evaluate import evaluate_folders
from unetlib.inference.predict import predict_folder
from unetlib.runs.train import train
from unetlib.study.quantify import quantify_stack, read_intensities

logger = logging.getLogger(__name__)

# Data folders the demo annotates with separate organs (the rest get one foreground).
ORGAN_FOLDERS = ("3d",)


def gray_demo_training() -> TrainConfig:
    """Training of the demo's grayscale (one foreground) model; notebook 03 uses the same,
    reusing the run.

    5 epochs x 30 batches of 8 patches of 128 pixels, the library's network and loss for
    binary masks. The library's default 256-pixel patches buy nothing on the demo's large,
    smooth organs. Measured on the demo's laser-1 frames
    (AMD EPYC, AVX-512, CPU family 25, 2 cores), test Dice of its 5 held-out frames for
    seeds 0 / 1 / 2 and the seconds of training alone: 128 pixels x 30 batches 0.989 /
    0.983 / 0.992 in 25-27 s; 256 pixels x 15 batches (the setting before) 0.987 / 0.986 /
    0.986 in 41-42 s; 128 pixels x 15 batches 0.989 / 0.978 in 18 s. Notebook 03's 3-fold
    cross-validation of 2 epochs: 0.947 +- 0.069 in 42 s against 0.934 +- 0.065 in 69 s.
    """
    return TrainConfig(epochs=5, steps_per_epoch=30, pipeline=PipelineConfig(patch_size=128))


def organ_demo_training() -> TrainConfig:
    """Training of the demo's organ model (notebook 04 uses the same, reusing the run).

    16 epochs x 40 batches of 8 patches of 128 pixels of the ``default`` network, named
    here because organ data would otherwise get the slower ``organs`` network
    (:meth:`TrainConfig.for_task`), which the demo's high-contrast organs do not need.
    Measured on the demo's 3-laser composites (AMD EPYC, AVX-512, 2 cores), held-out Dice
    liver / kidney / bladder, and the demo's seconds for this folder (training and
    prediction): ``default`` 0.997 / 0.989 / 0.981 in 152 s (8 epochs gave the bladder
    0.953); ``organs`` 0.997 / 0.987 / 0.988 in 282 s, which made the demo 6 minutes, and
    0.994 / 0.966 / 0.976 in 156 s with 8 epochs. Patches centred on each organ alike
    make the small ones as frequent as the liver, and 128 pixels is enough context once the
    colours separate them.

    The loss is named too: ``ce+dice``, not the cross-entropy weighted along the outlines
    that ``auto`` gives organ data. On these frames, seeds 0 / 1 (AMD EPYC, AVX-512): plain
    0.997 / 0.989 / 0.981 and 0.995 / 0.992 / 0.982, weighted 0.992 / 0.986 / 0.971 and
    0.998 / 0.991 / 0.989: no gain on the demo's sharp, high-contrast outlines, and its own
    seed 0 lost 0.010 on the bladder. The kept model is corrected for the patches' class
    frequencies as for any organ data (``TrainConfig.prior_correction``): seeds 0 / 1, 0.997
    / 0.988 / 0.978 and 0.995 / 0.993 / 0.983 against 0.997 / 0.989 / 0.981 and 0.996 /
    0.993 / 0.984 uncorrected (the same trainings): within 0.003, where the hard benchmark's
    blurred outlines gained up to 0.010.
    """
    return TrainConfig(model=model_preset("default"), epochs=16, steps_per_epoch=40,
                       pipeline=PipelineConfig(patch_size=128), loss="ce+dice")


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
        Training of the grayscale model (the 1-laser folder, one foreground).
    target_dice : float
        Test Dice every organ (binary: the foreground) must reach; ``python -m unetlib
        demo`` exits non-zero below it.
    organ_train : TrainConfig
        Training of the organ model (the 3-laser folder).
    target_curve_error : float
        Mean relative error of every organ's quantified curve against the true one that
        the demo must stay below (measured: 1-2 %).
    """

    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    train_count: int = 15
    test_count: int = 5
    train: TrainConfig = field(default_factory=gray_demo_training)
    organ_train: TrainConfig = field(default_factory=organ_demo_training)
    target_dice: float = 0.90
    target_curve_error: float = 0.05


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
    organ_dice: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    quantify_dir: Path | None = None
    curve_errors: dict[str, dict[str, float]] = field(default_factory=dict)

    def below(self, target: float) -> list[str]:
        """``"data1d kidney 0.85"``-style entries of every score under ``target``."""
        scores = {name: self.organ_dice.get(name) or {"foreground": dice}
                  for name, dice in self.test_dice.items()}
        return [f"data{name} {organ} {dice:.3f}" for name, organs in scores.items()
                for organ, dice in organs.items() if dice < target]

    def curves_off(self, target: float) -> list[str]:
        """``"kidney 6.1 %"``-style entries of every organ whose curve error exceeds ``target``."""
        return [f"{organ} {100 * errors['mean_error']:.1f} %"
                for organ, errors in self.curve_errors.items() if errors["mean_error"] > target]

    def failures(self, config: "DemoConfig") -> list[str]:
        """The error lines of every target the demo missed (empty when all are met).

        ``make demo`` exits non-zero when this is not empty: the demo is the check that
        training, prediction and quantification still work end to end.
        """
        lines = []
        off = self.curves_off(config.target_curve_error)
        if off:
            lines.append(f"{self.quantify_dir}: organ curves further than "
                         f"{100 * config.target_curve_error:.0f} % from the truth: "
                         f"{', '.join(off)}.")
        below = self.below(config.target_dice)
        if below:
            lines.append(f"{self.stack.parent}: test Dice below the demo target "
                         f"{config.target_dice:.2f}: {', '.join(below)}. Something in training "
                         "broke; see the runs' history.png.")
        return lines


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
        organs = name in ORGAN_FOLDERS
        annotate_from_truth(data_dir, out_dir / "truth.tif", organs=organs)
        result.data_dirs[name] = data_dir
        result.truth_dirs[name] = truth_for_test_frames(data_dir, out_dir / "truth.tif",
                                                        out_dir / f"truth{name}", organs=organs)
        logger.info("data%s: %d training frames with masks, %d test frames", name,
                    len(train.frames), len(test.frames))
    return result


def annotate_from_truth(data_dir: str | os.PathLike[str], truth_path: str | os.PathLike[str], *,
                        organs: bool = False) -> list[Path]:
    """Demo only: write the ground truth of a data folder's picked frames as its masks.

    With ``organs``, the masks hold each organ's value and ``organs.csv`` names them (an
    existing different table is never replaced). Does nothing when ``truth_path`` is
    empty (real data: the masks come from GIMP).
    """
    if not str(truth_path):
        return []
    data_dir = Path(data_dir)
    _check_demo_frames(data_dir / "train" / "frames.csv", Path(truth_path))
    if organs:
        _write_demo_organ_table(data_dir)
    return export_truth_masks(truth_path, data_dir / "train" / "frames.csv",
                              data_dir / "train" / "masks", organs=organs)


def annotate_demo(data_dir: str | os.PathLike[str], *, demo: bool,
                  organs: bool | None = None) -> list[Path]:
    """What the notebooks call: with ``demo``, annotate the demo's data folder from its truth.

    The truth is the demo acquisition's ``truth.tif`` beside the data folder. Without
    ``demo`` nothing happens, so the same notebook runs on real data with ``demo = False``;
    with ``demo`` on a folder whose frames did not come from the demo stack, nothing is
    written and an error says to switch the demo off.
    """
    if not demo:
        return []
    data_dir = Path(data_dir)
    organs = _demo_organs(data_dir) if organs is None else organs
    truth = data_dir.parent / "truth.tif"
    if not truth.is_file():
        raise InputError(describe(data_dir, "is not a demo data folder (no demo truth.tif "
                                  "beside it)", "Set demo = False to work on your own data."))
    return annotate_from_truth(data_dir, truth, organs=organs)


def _check_demo_frames(frames_table: Path, truth_path: Path) -> None:
    """Refuse to annotate frames that were not picked from the demo stack of ``truth_path``.

    Demo masks must never land in a user's data folder: every picked frame is compared
    with the page of the demo stack it claims to come from.
    """
    stack_path = truth_path.with_name("stack.tif")
    rows = read_csv(frames_table)
    folder = frames_table.parent
    stack = tifffile.memmap(stack_path, mode="r") if stack_path.is_file() else None
    for row in rows:
        frame_path = folder / ("frames" if folder.name == "train" else "") / row["file"]
        pages = [int(page) for page in row["stack_frames"].split()]
        expected = None if stack is None or max(pages) >= len(stack) else np.stack(
            [np.asarray(stack[page]) for page in pages], axis=-1).squeeze()
        if expected is None or not frame_path.is_file() or not np.array_equal(
                read_image(frame_path), expected):
            raise InputError(describe(frame_path, "was not picked from the demo stack "
                                      f"{stack_path}; demo annotation only writes into the "
                                      "demo's own data folders",
                                      "Set demo = False to work on your own data."))


def _write_demo_organ_table(data_dir: Path) -> None:
    path = data_dir / ORGANS_FILE
    if path.is_file() and read_organ_table(path).organs == organ_table().organs:
        return
    write_organ_table(path, organ_table())


def truth_for_test_frames(data_dir: str | os.PathLike[str], truth_path: str | os.PathLike[str],
                          truth_dir: str | os.PathLike[str], *, organs: bool = False) -> Path | None:
    """Demo only: the true masks of a data folder's test frames, for evaluation.

    Returns ``truth_dir`` (written once), or None when ``truth_path`` is empty.
    """
    if not str(truth_path) or not str(truth_dir):
        return None
    frames_table = Path(data_dir) / "test" / "frames.csv"
    _check_demo_frames(frames_table, Path(truth_path))
    export_truth_masks(truth_path, frames_table, truth_dir, organs=organs)
    return Path(truth_dir)


def demo_test_truth(data_dir: str | os.PathLike[str], truth_dir: str | os.PathLike[str], *,
                    demo: bool, organs: bool | None = None) -> Path | None:
    """What the notebooks call: with ``demo``, the true masks of the demo's test frames.

    Returns None without ``demo`` (real data has no ground truth unless the user gives
    a folder of truth masks).
    """
    if not demo:
        return Path(truth_dir) if str(truth_dir) else None
    organs = _demo_organs(Path(data_dir)) if organs is None else organs
    return truth_for_test_frames(data_dir, Path(data_dir).parent / "truth.tif", truth_dir,
                                 organs=organs)


def _demo_organs(data_dir: Path) -> bool:
    """The demo's choice for a data folder: organs for 3-laser composites, else binary."""
    return data_dir.name in {f"data{name}" for name in ORGAN_FOLDERS}


def run_demo(out_dir: str | os.PathLike[str], config: DemoConfig = DemoConfig()) -> DemoResult:
    """The whole pipeline on the synthetic acquisition (what ``make demo`` runs).

    Prepares the data (:func:`prepare_demo_data`), trains a grayscale model on
    ``data1d`` and an RGB model on ``data3d`` into ``runs/gray1d`` and ``runs/rgb3d``,
    predicts the held-out test frames into ``dataXd/results`` and scores them against the
    ground truth (``truthXd``, written to ``dataXd/results/metrics.json``), then measures
    the organ curves of the whole stack with the RGB model into ``quantify/`` and compares
    them with the known true curves. Re-running reuses finished runs and quantification.
    """
    out_dir = Path(out_dir)
    started = time.monotonic()
    result = prepare_demo_data(out_dir, config)
    result.seconds["data"] = time.monotonic() - started
    for name, run_name in (("1d", "gray1d"), ("3d", "rgb3d")):
        started = time.monotonic()
        data_dir = result.data_dirs[name]
        run = train(data_dir, out_dir / "runs" / run_name,
                    config.organ_train if name in ORGAN_FOLDERS else config.train, verbose=2)
        results_dir = data_dir / "results"
        predict_folder(run.run_dir, data_dir / "test", results_dir, overwrite=True,
                       progress=False)
        report = evaluate_folders(results_dir, result.truth_dirs[name])
        write_json(results_dir / "metrics.json", report.to_dict(), overwrite=True)
        result.run_dirs[name] = run.run_dir
        result.results_dirs[name] = results_dir
        result.test_dice[name] = report.mean["dice"]
        if report.organs is not None:
            result.organ_dice[name] = {organ: scores["dice"]
                                       for organ, scores in report.per_organ.items()}
        result.seconds[run_name] = time.monotonic() - started
        logger.info("%s: test Dice %.4f over %d frames (validation %.4f)", run_name,
                    report.mean["dice"], len({row["stem"] for row in report.frames}),
                    run.val_dice)
    started = time.monotonic()
    quantified = quantify_stack(result.run_dirs["3d"], result.stack, out_dir / "quantify")
    result.quantify_dir = quantified.out_dir
    result.curve_errors = curve_errors(read_intensities(quantified.out_dir), config.synthetic)
    result.seconds["quantify"] = time.monotonic() - started
    return result
