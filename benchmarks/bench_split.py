"""Benchmark: split a full-size synthetic acquisition (792 x 508 x 636 uint16, ~510 MB).

Each variant runs in its own process, so peak-memory figures are its own; variants run
one after another in the same invocation so their ratio is meaningful on a noisy machine.

    python benchmarks/bench_split.py [--cycles 198] [--keep STACK]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def child(stack: str, out: str, frame_format: str, workers: int) -> None:
    """Run one split and print its measurements as JSON."""
    from memory import PeakMemory

    from unetlib.core.config import SplitConfig
    from unetlib.data.stack import split_stack

    with PeakMemory() as memory:
        start = time.perf_counter()
        result = split_stack(stack, out, SplitConfig(frame_format=frame_format), workers=workers)
        seconds = time.perf_counter() - start
    frames = sum(count for name, count in result.counts.items() if name.startswith("laser"))
    print(json.dumps({"seconds": seconds, "frames": frames,
                      "files": sum(result.counts.values()),
                      "peak_anon_mib": memory.peak_anon_mib,
                      "peak_rss_mib": memory.peak_rss_mib()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=198, help="laser cycles (198 x 4 = 792 frames)")
    parser.add_argument("--stack", help="use this stack instead of generating one")
    parser.add_argument("--child", nargs=4, metavar=("STACK", "OUT", "FORMAT", "WORKERS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    from unetlib.core.runtime import describe_cpu

    print(f"machine: {describe_cpu()}", flush=True)  # every figure names its CPU
    if args.child:
        child(args.child[0], args.child[1], args.child[2], int(args.child[3]))
        return

    with tempfile.TemporaryDirectory(prefix="bench_split_") as folder:
        stack = Path(args.stack) if args.stack else Path(folder) / "stack.tif"
        if not args.stack:
            from unetlib.core.config import SyntheticConfig
            from unetlib.data.synthetic import write_synthetic_stack

            start = time.perf_counter()
            write_synthetic_stack(stack, SyntheticConfig(cycles=args.cycles))
            print(f"generated {stack.stat().st_size / 2**20:.0f} MiB stack in "
                  f"{time.perf_counter() - start:.1f} s")
        size_mib = stack.stat().st_size / 2**20
        results = {}
        for frame_format, workers in (("png", 1), ("png", 2), ("tif", 2)):
            out = Path(folder) / f"out_{frame_format}_{workers}"
            completed = subprocess.run([sys.executable, __file__, "--child", str(stack), str(out),
                                        frame_format, str(workers)],
                                       capture_output=True, text=True, check=True)
            result = json.loads(completed.stdout.strip().splitlines()[-1])
            results[(frame_format, workers)] = result
            print(f"split format={frame_format} workers={workers}: {result['seconds']:.1f} s, "
                  f"{result['frames'] / result['seconds']:.0f} frames/s, "
                  f"{size_mib / result['seconds']:.0f} MiB/s of stack, {result['files']} files; "
                  f"peak anonymous memory {result['peak_anon_mib']:.0f} MiB, "
                  f"peak RSS incl. mapped file {result['peak_rss_mib']:.0f} MiB")
        base = results[("png", 1)]["seconds"]
        for key, result in results.items():
            print(f"speed-up vs png/1 worker: {key[0]}/{key[1]} = {base / result['seconds']:.2f}x")


if __name__ == "__main__":
    main()
