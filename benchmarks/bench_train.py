"""Training and prediction speed of the model presets, side by side, in one process.

Measures, on whatever device TensorFlow picks (CPU here):

- training samples/s of each preset at the same patch and batch size (random data,
  ``train_on_batch`` after warm-up steps, so the input pipeline is not measured);
- prediction frames/s of the default preset on a 508 x 636 frame (the Goldeye size) with
  ``predict_probabilities`` (one tile, padded to 512 x 640);
- peak resident memory of the process (``resource.getrusage``).

Kernel choices can be set per run (``--jit-compile``, ``--precision mixed_bfloat16``,
``--intra-threads``/``--inter-threads``; oneDNN through ``TF_ENABLE_ONEDNN_OPTS`` in the
environment); ``bench_kernels.py`` runs this script once per combination and compares them.

    .venv/bin/python benchmarks/bench_train.py --patch 256 --batch 4 --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from unetlib.core._tensorflow import keras, tf  # noqa: E402
from unetlib.core.config import model_preset  # noqa: E402
from unetlib.core.runtime_report import runtime_line  # noqa: E402
from unetlib.nn.losses import get_loss  # noqa: E402
from unetlib.nn.metrics import training_metrics  # noqa: E402
from unetlib.nn.model import build_unet, make_optimizer  # noqa: E402
from unetlib.nn.sliding_window import predict_probabilities  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_speed(preset: str, patch: int, batch: int, steps: int, warmup: int,
                jit_compile: bool = False) -> dict:
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    config = model_preset(preset)
    model = build_unet(config)
    model.compile(optimizer=make_optimizer(config), loss=get_loss("bce"),
                  metrics=training_metrics(), jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    images = rng.random((batch, patch, patch, 1), dtype=np.float32)
    masks = (rng.random((batch, patch, patch, 1)) > 0.5).astype(np.float32)
    for _ in range(warmup):
        model.train_on_batch(images, masks)
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, masks)
    seconds = time.perf_counter() - started
    return {"preset": preset, "parameters": model.count_params(),
            "seconds_per_step": seconds / steps, "samples_per_second": steps * batch / seconds,
            "peak_rss_mb": peak_rss_mb()}


def predict_speed(preset: str, frames: int, jit_compile: bool = False) -> dict:
    keras.backend.clear_session()
    model = build_unet(model_preset(preset))
    if jit_compile:
        model.compile(jit_compile=True)  # predict_on_batch then runs the XLA-compiled graph
    image = np.random.default_rng(0).random((508, 636, 1), dtype=np.float32)
    predict_probabilities(model, image)  # warm-up
    started = time.perf_counter()
    for _ in range(frames):
        predict_probabilities(model, image)
    seconds = time.perf_counter() - started
    return {"preset": preset, "frame": "508x636", "frames_per_second": frames / seconds,
            "peak_rss_mb": peak_rss_mb()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["default", "classic"])
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--predict-frames", type=int, default=5)
    parser.add_argument("--predict-presets", nargs="+", default=["default"],
                        help="networks whose prediction speed is measured")
    parser.add_argument("--jit-compile", action="store_true", help="XLA for training and prediction")
    parser.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default="float32")
    parser.add_argument("--intra-threads", type=int, default=0, help="0: TensorFlow's default")
    parser.add_argument("--inter-threads", type=int, default=0, help="0: TensorFlow's default")
    parser.add_argument("--json", action="store_true", help="print only the JSON results")
    args = parser.parse_args(argv)
    # Both must be set before TensorFlow runs its first operation.
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_threads)
    keras.mixed_precision.set_global_policy(args.precision)
    machine = runtime_line()
    if not args.json:
        print(machine, flush=True)  # every figure names its CPU
    results = {"machine": machine,
               "settings": {"jit_compile": args.jit_compile, "precision": args.precision,
                            "intra_threads": args.intra_threads,
                            "inter_threads": args.inter_threads,
                            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
                            "patch": args.patch, "batch": args.batch},
               "training": [train_speed(preset, args.patch, args.batch, args.steps, args.warmup,
                                        args.jit_compile)
                            for preset in args.presets],
               "predictions": [predict_speed(preset, args.predict_frames, args.jit_compile)
                               for preset in args.predict_presets]}
    results["prediction"] = results["predictions"][0]  # the first network's, as before
    results["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(results, indent=None if args.json else 2))
    if args.json:
        return 0
    for row in results["training"]:
        print(f"train {row['preset']:>8}: {row['samples_per_second']:7.2f} samples/s "
              f"({row['seconds_per_step']:.2f} s/step, patch {args.patch}, batch {args.batch})")
    for row in results["predictions"]:
        print(f"predict {row['preset']:>6}: {1 / row['frames_per_second']:.3f} s per 508x636 "
              f"frame ({row['frames_per_second']:.2f} frames/s)")
    print(f"peak RSS: {results['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
