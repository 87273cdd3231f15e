"""Benchmark: what fine-tuning buys on a new acquisition with only 3 annotated frames.

A second synthetic acquisition differs from the demo's in anatomy (organs moved and 15 %
larger), contrast (organs 40 % dimmer against the body) and noise (fewer photons, more
read noise). Three of its frames are annotated (2 train, 1 validation), five are held out.
Compared side by side, with the same training budget (epochs x steps):

- the demo's organ model applied as it is (no training on the new acquisition);
- a model trained from scratch on the 3 frames;
- the demo's model fine-tuned on the same 3 frames (encoder frozen for the first epochs).

Held-out Dice per organ against the truth. Needs the demo's organ run (``make demo``).

    python benchmarks/bench_finetune.py [--run demo/runs/rgb3d] [--epochs 8] [--steps 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def new_acquisition(folder: Path):
    """The second acquisition: 3 annotated composites in ``data/``, 5 held out with truth."""
    from unetlib.core.config import PickConfig, SyntheticConfig
    from unetlib.data.frames import pick_frames
    from unetlib.data.organs import write_organ_table
    from unetlib.data.synthetic import export_truth_masks, organ_table, write_synthetic_stack

    config = SyntheticConfig(cycles=30, seed=7, organ_shift=(0.04, -0.06), organ_scale=1.15,
                             organ_contrast=0.6, max_count=2000, read_noise=25.0)
    stack, truth = write_synthetic_stack(folder / "stack.tif", config,
                                         truth_path=folder / "truth.tif")
    data = folder / "data"
    picked = pick_frames(stack, data, PickConfig(count=3, channels=3)).cycles
    write_organ_table(data / "organs.csv", organ_table())
    export_truth_masks(truth, data / "train" / "frames.csv", data / "train" / "masks",
                       organs=True)
    pick_frames(stack, data, PickConfig(count=5, channels=3, subset="test", exclude=tuple(picked)))
    export_truth_masks(truth, data / "test" / "frames.csv", folder / "truth", organs=True)
    return data, folder / "truth"


def held_out_dice(run, data: Path, truth: Path, out: Path) -> dict[str, float]:
    from unetlib.inference.evaluate import evaluate_folders
    from unetlib.inference.predict import predict_folder

    predict_folder(run, data / "test", out, overwrite=True, progress=False)
    report = evaluate_folders(out, truth)
    return {organ: scores["dice"] for organ, scores in report.per_organ.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(ROOT / "demo" / "runs" / "rgb3d"),
                        help="the pretrained organ run (default: the demo's)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch")
    parser.add_argument("--freeze", type=int, default=2, help="epochs with the encoder frozen")
    args = parser.parse_args()
    from unetlib.core.runtime_report import runtime_line

    print(runtime_line(), flush=True)  # every figure names its CPU
    if not (Path(args.run) / "model.keras").is_file():
        sys.exit(f"{args.run}: no trained run; run `make demo` first or pass --run.")

    from unetlib.core.config import PipelineConfig, TrainConfig
    from unetlib.runs.train import train

    with tempfile.TemporaryDirectory(prefix="bench_finetune_") as name:
        folder = Path(name)
        data, truth = new_acquisition(folder)
        base = TrainConfig(epochs=args.epochs, steps_per_epoch=args.steps,
                           pipeline=PipelineConfig(patch_size=128, val_fraction=0.34))
        rows = [("pretrained, as it is", held_out_dice(args.run, data, truth, folder / "p0"), 0.0)]
        for label, config in (
                ("from scratch on 3 frames", base),
                (f"fine-tuned on 3 frames (encoder frozen {args.freeze} epochs)",
                 TrainConfig(**{**base.__dict__, "init_from": args.run,
                                "freeze_encoder_epochs": args.freeze}))):
            started = time.perf_counter()
            result = train(data, folder / label.split()[0], config, verbose=0)
            seconds = time.perf_counter() - started
            rows.append((label, held_out_dice(result.run_dir, data, truth,
                                              folder / f"p{len(rows)}"), seconds))
        organs = list(rows[0][1])
        print(f"{args.epochs} epochs x {args.steps} steps of 8 patches of 128 px; "
              "held-out Dice on 5 frames of the new acquisition")
        print(f"{'model':<50} " + " ".join(f"{organ:>8}" for organ in organs) + "  train s")
        for label, dice, seconds in rows:
            print(f"{label:<50} " + " ".join(f"{dice[organ]:8.3f}" for organ in organs)
                  + f"  {seconds:7.1f}")


if __name__ == "__main__":
    main()
