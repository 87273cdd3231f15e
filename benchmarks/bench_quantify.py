"""Benchmark: organ curves of a full-size acquisition (198 cycles x 4 lasers of 508 x 636).

Measured in one invocation, so the ratios hold on a noisy machine:

1. ``quantify`` of the whole stack in one process (cycles/s; peak memory against the
   stack's size on disk);
2. prediction of single frames, one at a time, as ``predict`` does (frames/s), in the
   same process: quantify's rate over this one is what segmenting every cycle in
   batches, measuring every laser and writing the results cost or save;
3. a study of two such stacks on a local Dask cluster of 1 and of 2 worker processes.

Each part runs in its own process, so memory figures are its own. Needs a trained organ
run: the demo's (``make demo``) by default.

    python benchmarks/bench_quantify.py [--cycles 198] [--run demo/runs/rgb3d] [--no-study]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]
SINGLE_FRAMES = 24


def child_single(run_dir: str, stack: str, out: str) -> None:
    """Single-frame prediction speed, then quantify of the whole stack; print JSON."""
    from memory import PeakMemory

    from unetlib.core.config import QuantifyConfig
    from unetlib.data.normalize import normalize_image
    from unetlib.data.stack import load_stack
    from unetlib.nn.sliding_window import predict_probabilities
    from unetlib.runs.run import load_run
    from unetlib.study.quantify import model_input_lasers, quantify_stack

    run = load_run(run_dir)
    # Quantify first, so its peak memory is its own, not what single frames left behind.
    with PeakMemory() as memory:
        start = time.perf_counter()
        result = quantify_stack(run, stack, out, QuantifyConfig())
        seconds = time.perf_counter() - start
    lasers = model_input_lasers(run)
    data = load_stack(stack)
    frames = [normalize_image(data.composite(cycle, lasers)) for cycle in range(SINGLE_FRAMES)]
    predict_probabilities(run.model, frames[0])  # warm-up: the first call builds the graph
    start = time.perf_counter()
    for frame in frames:
        predict_probabilities(run.model, frame)
    single = SINGLE_FRAMES / (time.perf_counter() - start)
    print(json.dumps({"single_frames_per_s": single, "seconds": seconds, "cycles": result.cycles,
                      "peak_anon_mib": memory.peak_anon_mib,
                      "peak_rss_mib": memory.peak_rss_mib()}))


def child_study(run_dir: str, stacks: list[str], out: str, workers: int) -> None:
    """A study on a local cluster of ``workers`` processes; print JSON with the workers'
    peak resident memory (sampled, incl. mapped stack pages)."""
    from memory import PeakWorkerMemory

    from unetlib.core.config import QuantifyConfig
    from unetlib.study.cluster import quantify_study

    with PeakWorkerMemory() as memory:
        start = time.perf_counter()
        result = quantify_study(run_dir, stacks, out, QuantifyConfig(), workers=workers,
                                progress=False)
        seconds = time.perf_counter() - start
    cycles = sum(outcome.result.cycles for outcome in result.outcomes if outcome.result)
    print(json.dumps({"seconds": seconds, "cycles": cycles, "failed": len(result.failed),
                      "peak_worker_rss_mib": memory.peak_mib}))


def _child(*args: str) -> dict:
    from memory import run_child

    return run_child(__file__, *args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=198, help="laser cycles (198 x 4 = 792 frames)")
    parser.add_argument("--run", default=str(ROOT / "demo" / "runs" / "rgb3d"),
                        help="a trained organ run (default: the demo's)")
    parser.add_argument("--no-study", action="store_true", help="skip the Dask comparison")
    parser.add_argument("--child-single", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--child-study", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from unetlib.core.runtime_report import runtime_line

    print(runtime_line(), flush=True)  # every figure names its CPU
    if args.child_single:
        child_single(*args.child_single)
        return
    if args.child_study:
        run_dir, out, workers, *stacks = args.child_study
        child_study(run_dir, stacks, out, int(workers))
        return
    if not (Path(args.run) / "model.keras").is_file():
        sys.exit(f"{args.run}: no trained run; run `make demo` first or pass --run.")

    with tempfile.TemporaryDirectory(prefix="bench_quantify_") as folder:
        from unetlib.core.config import SyntheticConfig
        from unetlib.data.synthetic import write_synthetic_stack

        stack = Path(folder) / "mouse1.tif"
        start = time.perf_counter()
        write_synthetic_stack(stack, SyntheticConfig(cycles=args.cycles))
        size_mib = stack.stat().st_size / 2**20
        print(f"generated {size_mib:.0f} MiB stack ({args.cycles} cycles x 4 lasers of "
              f"508 x 636) in {time.perf_counter() - start:.1f} s")

        single = _child("--child-single", args.run, str(stack), str(Path(folder) / "single"))
        per_cycle = single["cycles"] / single["seconds"]
        print(f"predict, single frames one at a time: {single['single_frames_per_s']:.2f} frames/s")
        print(f"quantify, one stack in-process: {single['seconds']:.1f} s, {per_cycle:.2f} "
              f"cycles/s ({per_cycle / single['single_frames_per_s']:.2f}x the single-frame "
              f"prediction rate; each cycle = 1 segmentation + {4} lasers measured); peak "
              f"anonymous memory {single['peak_anon_mib']:.0f} MiB, peak RSS incl. mapped "
              f"stack pages {single['peak_rss_mib']:.0f} MiB, stack on disk {size_mib:.0f} MiB")
        if args.no_study:
            return
        second = Path(folder) / "mouse2.tif"
        os.link(stack, second)  # a second acquisition without another 500 MB on disk
        seconds = {}
        for workers in (1, 2):
            study = _child("--child-study", args.run, str(Path(folder) / f"study{workers}"),
                           str(workers), str(stack), str(second))
            seconds[workers] = study["seconds"]
            print(f"study of 2 stacks, {workers} local worker(s): {study['seconds']:.1f} s, "
                  f"{study['cycles'] / study['seconds']:.2f} cycles/s overall, "
                  f"{study['failed']} failed; peak worker RSS {study['peak_worker_rss_mib']:.0f} MiB")
        print(f"speed-up of 2 workers over 1: {seconds[1] / seconds[2]:.2f}x")


if __name__ == "__main__":
    main()
