"""Does the cross-validation fold ensemble beat one model trained for the same total time?

One model trains on all annotated frames for ``T`` minutes; ``crossval`` trains K fold
models for ``T/K`` minutes each (the same total budget). Both are scored on test frames
none of them saw: the single model at its calibrated threshold; the ensemble by averaging
the K models' probabilities, at the mean of their calibrated thresholds. Each fold model
alone is reported too.

    .venv/bin/python benchmarks/bench_ensemble.py --isbi --minutes 5 --out /tmp/ens_isbi
    .venv/bin/python benchmarks/bench_ensemble.py --demo demo --minutes 2.5 --out /tmp/ens_demo

ISBI: train on images 0-19, score 20-29 (cell Dice; membrane Dice too). Demo: train on
``demo/data1d``, score its test frames against ``demo/truth1d``. Wall-clock budgets: run
nothing else heavy at the same time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from unetlib.core.config import CrossvalConfig, PipelineConfig, TrainConfig, model_preset  # noqa: E402
from unetlib.core.io import read_image  # noqa: E402
from unetlib.core.runtime_report import runtime_line  # noqa: E402
from unetlib.data.normalize import normalize_image  # noqa: E402
from unetlib.nn.augment import augment_preset  # noqa: E402
from unetlib.nn.frame_scores import frame_metrics  # noqa: E402
from unetlib.nn.sliding_window import predict_probabilities  # noqa: E402
from unetlib.runs.crossval import crossvalidate  # noqa: E402
from unetlib.runs.run import load_run  # noqa: E402
from unetlib.runs.train import train  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from bench_isbi import ISBI, make_data_folder  # noqa: E402


def _scores(probabilities, truths, threshold: float) -> dict[str, float]:
    cell = [frame_metrics(p >= threshold, t)["dice"] for p, t in zip(probabilities, truths)]
    membrane = [frame_metrics(p < threshold, ~t)["dice"] for p, t in zip(probabilities, truths)]
    return {"dice": float(np.mean(cell)), "dice_background": float(np.mean(membrane)),
            "threshold": float(threshold)}


def _probabilities(run_dir: Path, images: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    run = load_run(run_dir)
    return ([predict_probabilities(run.model, normalize_image(image, run.normalize))
             for image in images], float(run.threshold))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--isbi", action="store_true", help="../shared/data/isbi2012-membrane")
    source.add_argument("--demo", type=Path, help="a demo folder (python -m unetlib demo)")
    parser.add_argument("--minutes", type=float, required=True, help="total training budget")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(runtime_line(), flush=True)  # every figure names its CPU

    if args.isbi:
        temporary = tempfile.TemporaryDirectory(prefix="isbi_")
        data = make_data_folder(ISBI, Path(temporary.name), range(20))
        images = [read_image(ISBI / "images" / f"{i}.png") for i in range(20, 30)]
        truths = [read_image(ISBI / "masks" / f"{i}.png") > 127 for i in range(20, 30)]
        pipeline = PipelineConfig(patch_size=256, batch_size=4, val_fraction=0.15, seed=args.seed)
        steps, loss = 20, "bce"
    else:
        data = args.demo / "data1d"
        names = sorted((data / "test").glob("*.png"), key=lambda p: int(p.stem))
        images = [read_image(path) for path in names]
        truths = [read_image(args.demo / "truth1d" / path.name) > 0 for path in names]
        pipeline = PipelineConfig(seed=args.seed)
        steps, loss = 15, "auto"
    config = TrainConfig(model=model_preset("default"), augment=augment_preset("default"),
                         epochs=1000, steps_per_epoch=steps, pipeline=pipeline, loss=loss)

    started = time.monotonic()
    single = train(data, args.out / "single", replace(config, max_minutes=args.minutes), verbose=0)
    single_seconds = time.monotonic() - started
    started = time.monotonic()
    fold_config = replace(config, max_minutes=args.minutes / args.folds)
    cv = crossvalidate(data, args.out / "cv", CrossvalConfig(folds=args.folds, seed=args.seed,
                                                             train=fold_config), verbose=0)
    folds_seconds = time.monotonic() - started

    single_p, single_t = _probabilities(single.run_dir, images)
    fold_results = [_probabilities(run_dir, images) for run_dir in cv.run_dirs]
    mean_p = [np.mean([probabilities[i] for probabilities, _ in fold_results], axis=0)
              for i in range(len(images))]
    mean_t = float(np.mean([threshold for _, threshold in fold_results]))
    report = {
        "data": "isbi 0-19 / 20-29" if args.isbi else f"{args.demo}/data1d test",
        "minutes": args.minutes, "folds": args.folds, "seed": args.seed,
        "single": {**_scores(single_p, truths, single_t), "seconds": round(single_seconds, 1),
                   "steps": single.epochs_completed * steps},
        "ensemble": {**_scores(mean_p, truths, mean_t), "seconds": round(folds_seconds, 1),
                     "steps": sum(int(row["epochs"]) for row in cv.per_fold
                                  if row["organ"] == "foreground") * steps},
        "fold_models": [_scores(p, truths, t)["dice"] for p, t in fold_results],
        "crossval_dice": cv.summary["foreground"],
    }
    print(json.dumps(report, indent=2))
    print(f"\nsame budget ({args.minutes} min): single model Dice {report['single']['dice']:.4f} "
          f"({report['single']['steps']} steps); {args.folds}-fold ensemble "
          f"{report['ensemble']['dice']:.4f} ({report['ensemble']['steps']} steps); fold models "
          f"alone {np.mean(report['fold_models']):.4f} on average; cross-validated estimate "
          f"{cv.summary['foreground']['mean']:.4f} ± {cv.summary['foreground']['sd']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
