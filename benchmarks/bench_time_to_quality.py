"""Time to quality: ISBI test Dice against seconds of training, for several networks.

The networks (``--presets``, names from ``VARIANTS``; default and classic unless told)
train on ISBI images 0-19 one after the other, in one run on the same machine, a round
of training at a time (``train --max-minutes R --resume``: the run's own checkpointing,
validation and threshold calibration). After each round the run's best model is scored
at full 512 x 512 on images 20-29 (cell Dice, membrane Dice), against the training
seconds spent so far (model loading, validation of the whole frames and scoring are not
counted). The report starts with the CPU, the oneDNN choice and TensorFlow's version.
With ``ONEDNN_MAX_CPU_ISA=AVX2`` in the environment, an AVX-512 CPU stands in (partly)
for an AVX2-only one.

    .venv/bin/python benchmarks/bench_time_to_quality.py --minutes 5 --out /tmp/ttq
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/bench_time_to_quality.py \
        --minutes 3 --presets default wide --out /tmp/ttq-avx2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from unetlib.core.config import PipelineConfig, TrainConfig, model_preset  # noqa: E402
from unetlib.core.runtime_report import runtime_line, runtime_record  # noqa: E402
from unetlib.nn.augment import augment_preset  # noqa: E402
from unetlib.runs.train import train  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from bench_isbi import ISBI, make_data_folder, score  # noqa: E402

# Networks compared: (model preset, changes to it, steps per epoch). bench_isbi's settings
# otherwise: 256-pixel patches, batch 4. The classic network gets fewer steps per epoch so
# that its epochs (and checkpoints) are not minutes apart.
VARIANTS: dict[str, tuple[str, dict, int]] = {
    "default": ("default", {}, 20),      # 8 base filters, Adam 3e-3
    "wide": ("wide", {}, 20),            # 16 base filters, Adam 1e-3: the default until 2026-11
    "classic": ("classic", {}, 5),
    "small": ("small", {}, 20),
    "wide-lr3e-3": ("wide", {"learning_rate": 3e-3}, 20),
    "default-lr1e-3": ("default", {"learning_rate": 1e-3}, 20),
}


def curve(variant: str, data: Path, out: Path, rounds: int, round_minutes: float,
          seed: int) -> list[dict]:
    preset, changes, steps = VARIANTS[variant]
    config = TrainConfig(model=model_preset(preset, **changes),
                         augment=augment_preset("default"), epochs=100_000,
                         steps_per_epoch=steps, loss="bce",
                         pipeline=PipelineConfig(patch_size=256, batch_size=4,
                                                 val_fraction=0.15, seed=seed),
                         max_minutes=round_minutes)
    rows = []
    for round_ in range(rounds):
        result = train(data, out, config, resume=round_ > 0, force=round_ > 0, verbose=0)
        test = score(out, ISBI, range(20, 30))["calibrated"]
        rows.append({"preset": variant, "train_seconds": round(result.metrics["train_seconds"], 1),
                     "steps": sum(int(row.get("steps", steps)) for row in result.history),
                     "cell_dice": round(test["dice_cell"], 4),
                     "membrane_dice": round(test["dice_membrane"], 4),
                     "threshold": test["threshold"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5, help="training minutes per network")
    parser.add_argument("--round-minutes", type=float, default=1.0,
                        help="training minutes between two scorings on images 20-29")
    parser.add_argument("--out", type=Path, required=True, help="folder for the two runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--presets", nargs="+", default=["default", "classic"],
                        choices=sorted(VARIANTS), help="networks to compare (VARIANTS)")
    args = parser.parse_args(argv)
    print(runtime_line(), flush=True)  # every figure names its CPU

    with tempfile.TemporaryDirectory(prefix="isbi_") as temporary:
        data = make_data_folder(ISBI, Path(temporary), range(20))
        rounds = max(1, math.ceil(args.minutes / args.round_minutes - 1e-9))
        rows = [row for preset in args.presets
                for row in curve(preset, data, args.out / preset, rounds, args.round_minutes,
                                 args.seed)]
    print(json.dumps({"runtime": runtime_record(), "rows": rows}, indent=2))
    print("\n| network | training s | steps | cell Dice | membrane Dice |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['preset']} | {row['train_seconds']:.0f} | {row['steps']} | "
              f"{row['cell_dice']:.3f} | {row['membrane_dice']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
