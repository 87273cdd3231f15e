"""Time to quality: ISBI test Dice against seconds of training, default vs classic network.

Both networks train on ISBI images 0-19 in one run on the same machine, a minute of
training at a time (``train --max-minutes 1 --resume``: the run's own checkpointing,
validation and threshold calibration). After each minute the run's best model is scored
at full 512 x 512 on images 20-29 (cell Dice, membrane Dice), against the training
seconds spent so far (model loading, validation of the whole frames and scoring are not
counted). The report starts with the CPU, the oneDNN choice and TensorFlow's version.

    .venv/bin/python benchmarks/bench_time_to_quality.py --minutes 5 --out /tmp/ttq
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from unetlib.augment import augment_preset  # noqa: E402
from unetlib.config import PipelineConfig, TrainConfig, model_preset  # noqa: E402
from unetlib.runtime import runtime_line, runtime_record  # noqa: E402
from unetlib.train import train  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from bench_isbi import ISBI, make_data_folder, score  # noqa: E402

# bench_isbi's settings: 256-pixel patches, batch 4; the classic network gets fewer steps
# per epoch so that its epochs (and checkpoints) are not minutes apart.
STEPS = {"default": 20, "classic": 5}


def curve(preset: str, data: Path, out: Path, minutes: int, seed: int) -> list[dict]:
    config = TrainConfig(model=model_preset(preset), augment=augment_preset("default"),
                         epochs=100_000, steps_per_epoch=STEPS[preset], loss="bce", verbose=0,
                         pipeline=PipelineConfig(patch_size=256, batch_size=4,
                                                 val_fraction=0.15, seed=seed),
                         max_minutes=1.0)
    rows = []
    for minute in range(minutes):
        result = train(data, out, replace(config, resume=minute > 0, force=minute > 0))
        test = score(out, ISBI, range(20, 30))["calibrated"]
        rows.append({"preset": preset, "train_seconds": round(result.metrics["train_seconds"], 1),
                     "steps": result.epochs_completed * STEPS[preset],
                     "cell_dice": round(test["dice_cell"], 4),
                     "membrane_dice": round(test["dice_membrane"], 4),
                     "threshold": test["threshold"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=5, help="training minutes per network")
    parser.add_argument("--out", type=Path, required=True, help="folder for the two runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--presets", nargs="+", default=["default", "classic"])
    args = parser.parse_args(argv)
    print(runtime_line(), flush=True)  # every figure names its CPU

    with tempfile.TemporaryDirectory(prefix="isbi_") as temporary:
        data = make_data_folder(ISBI, Path(temporary), range(20))
        rows = [row for preset in args.presets
                for row in curve(preset, data, args.out / preset, args.minutes, args.seed)]
    print(json.dumps({"runtime": runtime_record(), "rows": rows}, indent=2))
    print("\n| network | training s | steps | cell Dice | membrane Dice |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['preset']} | {row['train_seconds']:.0f} | {row['steps']} | "
              f"{row['cell_dice']:.3f} | {row['membrane_dice']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
