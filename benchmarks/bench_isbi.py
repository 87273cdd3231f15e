"""Train a preset on the real ISBI 2012 data and score it at full resolution.

Protocol (DESIGN.md): train on images 0-19 (the run holds some of them out for checkpoint
selection and threshold calibration), evaluate on 20-29 at full 512 x 512 with
``predict_probabilities``. Reports Dice of both classes (cell = mask 255 = foreground,
membrane = 0) and pixel accuracy, at the run's calibrated threshold and at 0.5.

    .venv/bin/python benchmarks/bench_isbi.py --preset default --max-minutes 10 \\
        --out /tmp/isbi_runs/default

The data folder is built in a temporary directory from symlinks; nothing is copied into
the repository.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from unetlib.core.config import PipelineConfig, TrainConfig, model_preset  # noqa: E402
from unetlib.core.io import read_image  # noqa: E402
from unetlib.core.runtime_report import runtime_line  # noqa: E402
from unetlib.data.normalize import normalize_image  # noqa: E402
from unetlib.nn.augment import augment_preset  # noqa: E402
from unetlib.nn.frame_scores import frame_metrics  # noqa: E402
from unetlib.nn.sliding_window import predict_probabilities  # noqa: E402
from unetlib.runs.run import load_run  # noqa: E402
from unetlib.runs.train import train  # noqa: E402

ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012-membrane"


def make_data_folder(source: Path, root: Path, indices: range) -> Path:
    for sub in ("frames", "masks"):
        (root / "train" / sub).mkdir(parents=True, exist_ok=True)
    for index in indices:
        os.symlink(source / "images" / f"{index}.png", root / "train" / "frames" / f"{index}.png")
        os.symlink(source / "masks" / f"{index}.png", root / "train" / "masks" / f"{index}.png")
    return root


def score(run_dir: Path, source: Path, indices: range, *, tta: bool = False) -> dict:
    run = load_run(run_dir)
    probabilities, truths = [], []
    started = time.monotonic()
    for index in indices:
        image = normalize_image(read_image(source / "images" / f"{index}.png"), run.normalize)
        probabilities.append(predict_probabilities(run.model, image, tta=tta))
        truths.append(read_image(source / "masks" / f"{index}.png") > 127)
    seconds = time.monotonic() - started
    results = {"predict_seconds_per_frame": seconds / len(indices)}
    for label, threshold in (("calibrated", run.threshold), ("0.5", 0.5)):
        cell, membrane, accuracy = [], [], []
        for probability, truth in zip(probabilities, truths):
            predicted = probability >= threshold
            cell.append(frame_metrics(predicted, truth)["dice"])
            membrane.append(frame_metrics(~predicted, ~truth)["dice"])
            accuracy.append(frame_metrics(predicted, truth)["pixel_accuracy"])
        results[label] = {"threshold": threshold, "dice_cell": float(np.mean(cell)),
                          "dice_membrane": float(np.mean(membrane)),
                          "pixel_accuracy": float(np.mean(accuracy))}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="default", help="model preset (default, classic, ...)")
    parser.add_argument("--max-minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, required=True, help="run folder (must not exist)")
    parser.add_argument("--epochs", type=int, default=1000, help="upper bound; time ends the run")
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch")
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=None, help="override the preset's rate")
    parser.add_argument("--base-filters", type=int, default=None)
    parser.add_argument("--depth", type=int, default=None)
    parser.add_argument("--loss", default="bce", choices=("bce", "bce+dice"))
    parser.add_argument("--augment", default="default")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--data", type=Path, default=ISBI)
    args = parser.parse_args(argv)
    print(runtime_line(), flush=True)  # every figure names its CPU

    changes = {key: value for key, value in (("learning_rate", args.lr),
                                             ("base_filters", args.base_filters),
                                             ("depth", args.depth)) if value is not None}
    model = model_preset(args.preset, **changes)
    pipeline = PipelineConfig(patch_size=args.patch, batch_size=args.batch,
                              val_fraction=args.val_fraction, seed=args.seed)
    config = TrainConfig(model=model, augment=augment_preset(args.augment), epochs=args.epochs,
                         steps_per_epoch=args.steps, pipeline=pipeline, loss=args.loss,
                         max_minutes=args.max_minutes)
    with tempfile.TemporaryDirectory(prefix="isbi_") as temporary:
        data = make_data_folder(args.data, Path(temporary), range(20))
        started = time.monotonic()
        result = train(data, args.out, config, verbose=2)
        train_seconds = time.monotonic() - started
    scores = score(args.out, args.data, range(20, 30), tta=args.tta)
    report = {"preset": args.preset, "model": dataclasses.asdict(model), "patch": args.patch,
              "batch": args.batch, "loss": args.loss, "augment": args.augment,
              "max_minutes": args.max_minutes, "train_seconds": round(train_seconds, 1),
              "epochs": result.epochs_completed, "steps": result.epochs_completed * args.steps,
              "best_epoch": result.best_epoch, "threshold": result.threshold,
              "val_dice": result.val_dice, "test": scores,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(report, indent=2))
    calibrated = scores["calibrated"]
    print(f"\n{args.preset}: {train_seconds / 60:.1f} min, {report['steps']} steps; test 20-29 "
          f"at threshold {calibrated['threshold']:.2f}: Dice cell {calibrated['dice_cell']:.4f}, "
          f"membrane {calibrated['dice_membrane']:.4f}, pixel accuracy "
          f"{calibrated['pixel_accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
