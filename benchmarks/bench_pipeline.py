"""Benchmark: input-pipeline throughput against the rate the default model consumes samples.

Builds a data folder of 15 synthetic 508 x 636 frames (the demo acquisition's laser 1
and 3-laser composites, with their true organ masks) in a temporary folder, then measures
side by side in one process:

- augmented 256 x 256 training pairs per second from ``make_training_dataset`` (default
  augmentation, batch 8), for 1 and 3 channels, after warm-up;
- the default model's training consumption in samples per second at the same patch and
  batch size (``train_on_batch`` on fixed arrays, so the pipeline is not involved);
- their ratio (the target is at least 10: input must never limit training), and the
  process's peak memory.

    .venv/bin/python benchmarks/bench_pipeline.py [--batches 40] [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from memory import PeakMemory  # noqa: E402

from unetlib.app.demo import DemoConfig, prepare_demo_data  # noqa: E402
from unetlib.core._tensorflow import keras  # noqa: E402
from unetlib.core.config import PipelineConfig, augment_preset, model_preset  # noqa: E402
from unetlib.core.io import read_image  # noqa: E402
from unetlib.core.runtime_report import runtime_line  # noqa: E402
from unetlib.nn.losses import get_loss  # noqa: E402
from unetlib.nn.metrics import training_metrics  # noqa: E402
from unetlib.nn.model import build_unet, make_optimizer  # noqa: E402
from unetlib.nn.pipeline import load_pairs, make_training_dataset  # noqa: E402


def describe_folder(data_dir: Path) -> dict:
    """Count, size and dtype of a data folder's training frames (what was measured)."""
    frames = sorted((data_dir / "train" / "frames").iterdir())
    frames = [path for path in frames if path.suffix in (".png", ".tif")]
    first = read_image(frames[0])
    return {"frames": len(frames), "shape": list(first.shape), "dtype": str(first.dtype),
            "masks": len(list((data_dir / "train" / "masks").glob("*.png")))}


def pipeline_rate(data_dir: Path, pipeline: PipelineConfig, batches: int) -> dict:
    """Augmented pairs per second, measured after the first (tracing) batches."""
    pairs = load_pairs(data_dir)
    iterator = iter(make_training_dataset(pairs, pipeline, augment_preset("default")))
    for _ in range(3):
        next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    seconds = time.perf_counter() - started
    return {"channels": int(pairs[0].image.shape[-1]), "frames": len(pairs),
            "pairs_per_second": batches * pipeline.batch_size / seconds}


def consumption_rate(channels: int, pipeline: PipelineConfig, steps: int) -> dict:
    """Samples per second the default model trains on (no input pipeline)."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    config = model_preset("default", input_channels=channels)
    model = build_unet(config)
    model.compile(optimizer=make_optimizer(config), loss=get_loss("bce"),
                  metrics=training_metrics())
    shape = (pipeline.batch_size, pipeline.patch_size, pipeline.patch_size)
    rng = keras.random.SeedGenerator(0)
    images = keras.random.uniform((*shape, channels), seed=rng)
    masks = keras.ops.cast(keras.random.uniform((*shape, 1), seed=rng) > 0.5, "float32")
    for _ in range(2):
        model.train_on_batch(images, masks)
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, masks)
    seconds = time.perf_counter() - started
    return {"channels": channels, "samples_per_second": steps * pipeline.batch_size / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=40, help="pipeline batches timed")
    parser.add_argument("--steps", type=int, default=6, help="training steps timed")
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv)
    print(runtime_line(), flush=True)  # every figure names its CPU
    pipeline = PipelineConfig(patch_size=args.patch, batch_size=args.batch)

    results: dict = {"patch": args.patch, "batch": args.batch, "pipeline": [], "model": []}
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as temporary:
        started = time.perf_counter()
        demo = prepare_demo_data(temporary, DemoConfig())
        results["data_seconds"] = time.perf_counter() - started
        results["data"] = {name: describe_folder(demo.data_dirs[name]) for name in ("1d", "3d")}
        # Peak anonymous memory of the measurements only (the stack written above is not
        # part of training); peak RSS is the whole process's.
        with PeakMemory() as memory:
            for name in ("1d", "3d"):
                results["pipeline"].append(pipeline_rate(demo.data_dirs[name], pipeline,
                                                         args.batches))
                results["model"].append(consumption_rate(3 if name == "3d" else 1, pipeline,
                                                         args.steps))
    results["peak_anon_mib"] = memory.peak_anon_mib
    results["peak_rss_mib"] = memory.peak_rss_mib()
    print(json.dumps(results, indent=2))
    for produced, consumed in zip(results["pipeline"], results["model"]):
        ratio = produced["pairs_per_second"] / consumed["samples_per_second"]
        print(f"{produced['channels']} channel(s): pipeline {produced['pairs_per_second']:.0f} "
              f"augmented {args.patch}x{args.patch} pairs/s, default model consumes "
              f"{consumed['samples_per_second']:.1f} samples/s -> {ratio:.0f}x (target >= 10x)")
    for name, folder in results["data"].items():
        print(f"data{name}: {folder['frames']} frames {'x'.join(map(str, folder['shape']))} "
              f"{folder['dtype']} with {folder['masks']} masks (built in "
              f"{results['data_seconds']:.0f} s for both folders)")
    print(f"peak memory during the measurements: {results['peak_anon_mib']:.0f} MiB anonymous; "
          f"peak RSS of the process: {results['peak_rss_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
