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
        truth = out_dir / "truth.tif"
        masks_dir = data_dir / "train" / "masks"
        truth_dir = out_dir / f"truth{name}"
        export_truth_masks(truth, train.table, masks_dir, overwrite=True)
        export_truth_masks(truth, test.table, truth_dir, overwrite=True)
        result.data_dirs[name] = data_dir
        result.truth_dirs[name] = truth_dir
        logger.info("data%s: %d training frames with masks, %d test frames", name,
                    len(train.frames), len(test.frames))
    return result
