"""Are the frames a model is unsure about worth more than evenly spread ones?

On synthetic acquisitions with ground truth (3-laser composites, liver / kidney /
bladder): start from 5 annotated frames spread over the acquisition and train a model;
then add 5 frames either chosen by ``pick-frames --method uncertain`` with that model, or
spread evenly over the cycles left; retrain each from scratch with the same budget and
seed, and score both on 10 held-out cycles never offered for annotation. Repeated over
seeds (each seed is another acquisition and another training seed).

    .venv/bin/python benchmarks/bench_active.py --seeds 0 1 2 --out /tmp/active
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tifffile  # noqa: E402

from unetlib.core.config import (  # noqa: E402
    PickConfig,
    PipelineConfig,
    SplitConfig,
    SyntheticConfig,
    TrainConfig,
    model_preset,
)
from unetlib.core.io import read_csv  # noqa: E402
from unetlib.core.runtime_report import runtime_line  # noqa: E402
from unetlib.data.frames import Source, append_frames, pick_frames  # noqa: E402
from unetlib.data.normalize import normalize_image  # noqa: E402
from unetlib.data.organs import write_organ_table  # noqa: E402
from unetlib.data.stack import load_stack  # noqa: E402
from unetlib.data.synthetic import export_truth_masks, organ_table, write_synthetic_stack  # noqa: E402
from unetlib.nn.frame_scores import organ_frame_metrics  # noqa: E402
from unetlib.nn.sliding_window import predict_probabilities  # noqa: E402
from unetlib.runs.run import load_run  # noqa: E402
from unetlib.runs.train import train  # noqa: E402

LASERS = (1, 2, 3)


def _annotate(data: Path, truth: Path) -> None:
    export_truth_masks(truth, data / "train" / "frames.csv", data / "train" / "masks",
                       organs=True)


def _score(run_dir: Path, stack, truth: Path, cycles: list[int]) -> dict[str, float]:
    run = load_run(run_dir)
    labels = tifffile.memmap(truth, mode="r")
    scores = []
    for cycle in cycles:
        image = normalize_image(stack.composite(cycle, LASERS), run.normalize)
        predicted = np.argmax(predict_probabilities(run.model, image), axis=-1)
        reference = np.asarray(labels[int(stack.frame_numbers[cycle, 0])])
        scores.append([s["dice"] for s in organ_frame_metrics(predicted, reference,
                                                               run.organs.classes)])
    per_organ = np.mean(scores, axis=0)
    return {**dict(zip(run.organs.names, map(float, per_organ))), "mean": float(per_organ.mean())}


def run_seed(seed: int, out: Path, config: TrainConfig, cycles: int, size: tuple[int, int]) -> dict:
    root = out / f"seed{seed}"
    shutil.rmtree(root, ignore_errors=True)
    stack_path, truth = write_synthetic_stack(
        root / "stack.tif", SyntheticConfig(cycles=cycles, height=size[0], width=size[1],
                                            seed=seed), truth_path=root / "truth.tif")
    stack = load_stack(stack_path, SplitConfig())
    # Held-out cycles, never offered for annotation: evenly spread, offset from the picks.
    test = [int(c) for c in np.linspace(2, cycles - 3, 10).round()]
    config = replace(config, pipeline=replace(config.pipeline, seed=seed))

    base = root / "base"
    pick_frames(stack_path, base, PickConfig(count=5, channels=3, exclude=tuple(test)))
    write_organ_table(base / "organs.csv", organ_table())
    _annotate(base, truth)
    train(base, root / "run_base", config, verbose=0)
    annotated = [int(row["cycle"]) for row in read_csv(base / "train" / "frames.csv")]
    result = {"seed": seed, "test_cycles": test, "base_cycles": annotated,
              "base": _score(root / "run_base", stack, truth, test)}

    uncertain = root / "uncertain"
    shutil.copytree(base, uncertain)
    started = time.monotonic()
    picked = pick_frames(stack_path, uncertain, PickConfig(
        count=5, channels=3, method="uncertain", run=str(root / "run_base"), exclude=tuple(test)))
    result["uncertain_pick_seconds"] = round(time.monotonic() - started, 1)
    _annotate(uncertain, truth)

    spread = root / "spread"
    shutil.copytree(base, spread)
    left = [c for c in range(cycles) if c not in set(test) | set(annotated)]
    chosen = [left[i] for i in np.linspace(0, len(left) - 1, 5).round().astype(int)]
    append_frames([Source(stack, stack.path.name, cycle) for cycle in chosen], spread, LASERS,
                  SplitConfig(), [{}] * 5)
    _annotate(spread, truth)

    for name, data in (("uncertain", uncertain), ("spread", spread)):
        train(data, root / f"run_{name}", config, verbose=0)
        result[name] = _score(root / f"run_{name}", stack, truth, test)
    result["uncertain_cycles"], result["spread_cycles"] = picked.cycles, chosen
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cycles", type=int, default=60)
    parser.add_argument("--size", type=int, nargs=2, default=(192, 240))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    print(runtime_line(), flush=True)  # every figure names its CPU

    config = TrainConfig(model=model_preset("default"), epochs=args.epochs,
                         steps_per_epoch=args.steps,
                         pipeline=PipelineConfig(patch_size=128, batch_size=8, val_fraction=0.2))
    started = time.monotonic()
    results = [run_seed(seed, args.out, config, args.cycles, tuple(args.size))
               for seed in args.seeds]
    report = {"config": {"cycles": args.cycles, "size": args.size, "epochs": args.epochs,
                         "steps": args.steps, "patch": 128, "batch": 8},
              "seeds": results, "seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(report, indent=2))
    for row in results:
        print(f"seed {row['seed']}: base (5 frames) {row['base']['mean']:.4f}; +5 uncertain "
              f"{row['uncertain']['mean']:.4f}; +5 spread {row['spread']['mean']:.4f}")
    for name in ("base", "uncertain", "spread"):
        values = [row[name]["mean"] for row in results]
        spread = np.std(values, ddof=1) if len(values) > 1 else 0
        print(f"{name:>9}: mean organ Dice {np.mean(values):.4f} ± {spread:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
