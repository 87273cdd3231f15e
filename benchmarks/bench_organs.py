"""Multi-organ quality: recipes side by side on the hard synthetic preset, seen and unseen mice.

For each seed, a hard synthetic study (:mod:`unetlib.app.organ_benchmark`): 12 annotated
laser-1 frames from 2 mice (6 each, spread over 30 cycles), held-out frames of those mice
from other cycles, and frames of 2 mice never seen, which lie differently. Every recipe
(``RECIPES``) trains on the same folder, one after the other, in one run on this machine:
``--epochs`` x ``--steps`` steps of batch 8 on 128-pixel patches (the issue's budget:
1000 steps). Reported per recipe and seed: training seconds, the validation Dice the run
chose its checkpoint by, and the held-out Dice per organ of the chosen checkpoint
(``model.keras``, saved with the class prior corrected: ``TrainConfig.prior_correction``)
and of the last one as trained (``last.keras``, uncorrected), on seen and unseen mice; with
``--curves``, the organ curves of an unseen mouse's whole acquisition measured by
``quantify`` against the truth. The report starts with the CPU.

    .venv/bin/python benchmarks/bench_organs.py --seeds 0 1 --recipes default wide \\
        --json /tmp/organs.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from unetlib.app.organ_benchmark import curve_errors_of_mouse, make_hard_benchmark, score_run  # noqa: E402
from unetlib.core.config import (  # noqa: E402
    MotionConfig,
    PipelineConfig,
    TrainConfig,
    augment_preset,
    model_preset,
)
from unetlib.core.runtime_report import runtime_line  # noqa: E402
from unetlib.runs.train import train  # noqa: E402

# The "organs" augmentation preset's intensity jitter (2-3x the default's): mice differ in
# brightness, dye dose and vignetting more than the default jitter covers.
ORGANS_JITTER = {name: getattr(augment_preset("organs"), name)
                 for name in ("brightness", "contrast", "gamma", "noise_std")}

# Recipe name -> (model preset, changes to it, augmentation changes, pipeline changes[,
# training changes]).
RECIPES: dict[str, tuple] = {
    "default": ("default", {}, {}, {}),                      # 8 filters, Adam 3e-3
    "wide": ("wide", {}, {}, {}),                            # 16 filters, Adam 1e-3
    "wide-lr3e-3": ("wide", {"learning_rate": 3e-3}, {}, {}),
    "default-lr1e-3": ("default", {"learning_rate": 1e-3}, {}, {}),
    "wide-no-bn": ("wide", {"batch_norm": False}, {}, {}),
    "wide-depth3": ("wide", {"depth": 3}, {}, {}),
    "wide-flips-only": ("wide", {}, {"rotation_degrees": 0.0, "shift_fraction": 0.0,
                                     "shear_degrees": 0.0, "zoom_fraction": 0.0,
                                     "brightness": 0.0, "contrast": 0.0, "gamma": 0.0}, {}),
    "wide-strong-intensity": ("wide", {}, ORGANS_JITTER, {}),
    "wide-pose": ("wide", {}, {"rotation_degrees": 30.0, "zoom_fraction": 0.2}, {}),
    "wide-fg0.75": ("wide", {}, {}, {"foreground_share": 0.75}),
    "wide-24": ("wide", {"base_filters": 24}, {}, {}),
    "wide-cosine": ("wide", {"learning_rate_schedule": "cosine"}, {}, {}),
    "wide-cosine-lr2e-3": ("wide", {"learning_rate_schedule": "cosine", "learning_rate": 2e-3},
                           {}, {}),
    "default-cosine": ("default", {"learning_rate_schedule": "cosine"}, {}, {}),
    "wide-cosine-fg0.75": ("wide", {"learning_rate_schedule": "cosine"}, {},
                           {"foreground_share": 0.75}),
    # cross-entropy alone: the mean organ Dice term weighs the bladder like the liver
    "wide-cosine-ce": ("wide", {"learning_rate_schedule": "cosine"}, {}, {}, {"loss": "ce"}),
    # more context and more organ edge per step, at 1.6x the seconds of a 128-pixel step
    "wide-cosine-p160": ("wide", {"learning_rate_schedule": "cosine"}, {}, {"patch_size": 160}),
    # cross-entropy weighted 5x on the one-pixel band each side of every organ outline
    "wide-cosine-edge": ("wide", {"learning_rate_schedule": "cosine"}, {}, {},
                         {"loss": "edge-ce+dice"}),
    # wide-cosine-edge with the "organs" intensity jitter: today's defaults for organ data
    "wide-cosine-edge-intensity": ("wide", {"learning_rate_schedule": "cosine"}, ORGANS_JITTER,
                                   {}, {"loss": "edge-ce+dice"}),
    # the same trained on the patches' class frequencies alone (no prior correction): the
    # defaults before it; organs came out about a pixel too wide all round
    "wide-cosine-edge-intensity-uncorrected": ("wide", {"learning_rate_schedule": "cosine"},
                                               ORGANS_JITTER, {},
                                               {"loss": "edge-ce+dice", "prior_correction": 0.0}),
    # no resampling of the masks: flips and 90-degree turns only, intensity jitter kept
    "wide-cosine-flips": ("wide", {"learning_rate_schedule": "cosine"},
                          {"rotation_degrees": 0.0, "shift_fraction": 0.0, "shear_degrees": 0.0,
                           "zoom_fraction": 0.0}, {}),
}


def recipe_config(name: str, *, seed: int, epochs: int, steps: int,
                  val_fraction: float) -> TrainConfig:
    preset, model_changes, augment_changes, pipeline_changes, *train_changes = RECIPES[name]
    pipeline = PipelineConfig(**{"patch_size": 128, "batch_size": 8, "val_fraction": val_fraction,
                                 "seed": seed, **pipeline_changes})
    return TrainConfig(model=model_preset(preset, **model_changes),
                       augment=augment_preset("default", **augment_changes),
                       pipeline=pipeline, epochs=epochs, steps_per_epoch=steps,
                       **(train_changes[0] if train_changes else {}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["default", "wide"],
                        choices=sorted(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50, help="steps per epoch")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--binary", action="store_true",
                        help="the blob-like binary task: the union of the organs as one "
                             "foreground (no organs.csv)")
    parser.add_argument("--curves", action="store_true",
                        help="also quantify a whole acquisition of an unseen mouse (mouse 2) "
                             "and compare its organ curves with the truth")
    parser.add_argument("--json", help="also write every result to this JSON file")
    parser.add_argument("--keep", metavar="FOLDER",
                        help="write the studies and runs into this new folder and keep them "
                             "(default: a temporary folder, deleted at the end)")
    args = parser.parse_args()
    if args.keep and Path(args.keep).exists():
        parser.error(f"--keep {args.keep}: the folder exists; name a new one.")
    print(runtime_line(), flush=True)
    results = []
    with (contextlib.nullcontext(args.keep) if args.keep
          else tempfile.TemporaryDirectory(prefix="bench_organs_")) as name:
        for seed in args.seeds:
            benchmark = make_hard_benchmark(Path(name) / f"study{seed}", study_seed=seed,
                                            binary=args.binary)
            for recipe in args.recipes:
                config = recipe_config(recipe, seed=seed, epochs=args.epochs, steps=args.steps,
                                       val_fraction=args.val_fraction)
                run_dir = Path(name) / f"run_{recipe}_{seed}"
                started = time.monotonic()
                result = train(benchmark.data_dir, run_dir, config, verbose=0)
                seconds = time.monotonic() - started
                row = {"recipe": recipe, "seed": seed, "train_seconds": round(seconds, 1),
                       "best_epoch": result.best_epoch,
                       "val_dice": round(result.best_val_dice, 4),
                       "best": score_run(run_dir, benchmark),
                       "last": score_run(run_dir / "last.keras", benchmark)}
                if args.curves:  # masks moved onto each laser's organs (default), and not
                    for key, motion in (("curves", MotionConfig()),
                                        ("curves_unmoved", MotionConfig(enabled=False))):
                        errors = curve_errors_of_mouse(
                            run_dir, Path(name) / f"{key}_{recipe}_{seed}", mouse=2,
                            study_seed=seed, motion=motion)
                        row[key] = {organ: {name: round(value, 4) for name, value in e.items()
                                            if name in ("median_error", "varying_min_correlation")}
                                    for organ, e in errors.items()}
                results.append(row)
                print(json.dumps(row), flush=True)
    print("\nrecipe           checkpoint  group   " + "  ".join(
        f"{organ:>8}" for organ in results[0]["best"]["seen"]) + "      mean  (over seeds)")
    for recipe in args.recipes:
        rows = [row for row in results if row["recipe"] == recipe]
        for checkpoint in ("best", "last"):
            for group in ("seen", "unseen"):
                organs = rows[0][checkpoint][group]
                cells = []
                for organ in organs:
                    values = [row[checkpoint][group][organ] for row in rows]
                    cells.append(f"{statistics.mean(values):8.3f}")
                means = [statistics.mean(row[checkpoint][group].values()) for row in rows]
                spread = f" ±{statistics.stdev(means):.3f}" if len(means) > 1 else ""
                print(f"{recipe:16} {checkpoint:10}  {group:6}  " + "  ".join(cells)
                      + f"  {statistics.mean(means):8.3f}{spread}")
        for key in ("curves", "curves_unmoved"):
            if key not in rows[0]:
                continue
            for organ in rows[0][key]:
                errors = [row[key][organ]["median_error"] for row in rows]
                correlations = [row[key][organ]["varying_min_correlation"] for row in rows]
                masks = "moved" if key == "curves" else "unmoved"
                print(f"{recipe:16} curves of mouse 2, {masks:7} masks, {organ:8}: median "
                      f"error {100 * max(errors):.1f} % at worst, lowest r {min(correlations):.3f}")
        seconds = statistics.mean(row["train_seconds"] for row in rows)
        print(f"{recipe:16} training {seconds:.0f} s per run on average")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
