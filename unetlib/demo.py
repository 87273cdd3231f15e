"""The whole pipeline on the synthetic acquisition: what ``make demo`` runs.

Each step is the same library call a user makes on real data; only the annotation is
replaced by the synthetic ground truth (written as GIMP's value-1 masks).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from unetlib.config import PickConfig, SplitConfig, SyntheticConfig
from unetlib.frames import pick_frames
from unetlib.stack import split_stack
from unetlib.synthetic import ensure_demo_stack, export_truth_masks

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """Sizes of the demo run.

    Attributes
    ----------
    synthetic : SyntheticConfig
        The acquisition (30 cycles of 4 lasers at 508 x 636 by default).
    train_count, test_count : int
        Frames picked for training (annotated with the ground truth) and held out.
    """

    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    train_count: int = 15
    test_count: int = 5


@dataclass
class DemoResult:
    """Paths the demo wrote, and the metrics it measured."""

    stack: Path
    split_dir: Path
    data_dirs: dict[str, Path] = field(default_factory=dict)
    truth_dirs: dict[str, Path] = field(default_factory=dict)


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
