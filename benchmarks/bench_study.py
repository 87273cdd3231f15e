"""Benchmark: a study of many stacks on a local Dask cluster against one stack in-process.

Measured in one invocation, so the ratios hold on a noisy machine:

1. ``quantify`` of one stack in one process (seconds per cycle: the reference);
2. ``study`` of a few stacks, then of all ``--stacks``, each on a local cluster of
   ``--workers`` processes: seconds per cycle over the whole study against (1), and each
   worker's peak resident memory, which must not grow with the number of stacks;
3. the analysis alone (``analyse_study``: NCA, group curves, comparisons, trust table,
   figures and report) of the quantified study, timed in this process.

Every mouse is a hard link of one synthetic acquisition (demo size, 508 x 636, 4 lasers),
so the disk holds one stack whatever ``--stacks`` is; the work per stack is the same as
for distinct mice (segmenting and measuring every cycle). Needs a trained organ run: the
demo's (``make demo``) by default. Each part runs in its own process.

    python benchmarks/bench_study.py [--stacks 12] [--cycles 198] [--workers 2]
                                     [--run demo/runs/rgb3d]
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
FEW = 4  # stacks of the smaller study that memory is compared with


def child_single(run_dir: str, stack: str, out: str) -> None:
    """Quantify one stack in this process; print JSON."""
    from memory import PeakMemory

    from unetlib.core.config import QuantifyConfig
    from unetlib.study.quantify import quantify_stack

    with PeakMemory() as memory:
        start = time.perf_counter()
        result = quantify_stack(run_dir, stack, out, QuantifyConfig())
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "cycles": result.cycles,
                      "peak_anon_mib": memory.peak_anon_mib}))


def child_study(run_dir: str, sheet: str, out: str, workers: int) -> None:
    """``run_study`` on a local cluster; print JSON with the workers' peak RSS (sampled,
    including the pages of memory-mapped stacks) and the analysis' own seconds."""
    from memory import PeakWorkerMemory

    from unetlib.core.config import QuantifyConfig, StudyConfig
    from unetlib.study.analysis import analyse_study
    from unetlib.study.sheet import read_study_sheet
    from unetlib.study.workflow import STACKS_FOLDER, run_study

    with PeakWorkerMemory() as memory:
        start = time.perf_counter()
        result = run_study(sheet, run_dir, out, QuantifyConfig(), StudyConfig(),
                           workers=workers, progress=False)
        seconds = time.perf_counter() - start
    start = time.perf_counter()
    analyse_study(read_study_sheet(sheet), Path(out) / STACKS_FOLDER, Path(out) / "again")
    analysis = time.perf_counter() - start
    outcomes = result.quantified.outcomes
    print(json.dumps({"seconds": seconds, "analysis_seconds": analysis,
                      "cycles": sum(o.result.cycles for o in outcomes if o.result),
                      "failed": len(result.quantified.failed),
                      "peak_worker_rss_mib": memory.peak_mib}))


def _child(*args: str) -> dict:
    from memory import run_child

    return run_child(__file__, *args)


def write_sheet(folder: Path, stack: Path, count: int, cycle_s: float) -> Path:
    """``count`` hard links of ``stack`` as mice of two groups, each injected at its own
    cycle, and their ``study.csv``."""
    lines = ["stack,mouse,group,injection_s"]
    for index in range(count):
        mouse = folder / f"mouse{index + 1}.tif"
        if not mouse.exists():
            os.link(stack, mouse)
        group = "control" if index % 2 == 0 else "treated"
        lines.append(f"{mouse.name},mouse{index + 1},{group},{(3 + index % 4) * cycle_s:g}")
    sheet = folder / f"study{count}.csv"
    sheet.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, default=12, help="mice of the study (default: 12)")
    parser.add_argument("--cycles", type=int, default=198,
                        help="laser cycles per stack (default: 198 x 4 = 792 frames)")
    parser.add_argument("--workers", type=int, default=2, help="local Dask workers (default: 2)")
    parser.add_argument("--run", default=str(ROOT / "demo" / "runs" / "rgb3d"),
                        help="a trained organ run (default: the demo's)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--child-single", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--child-study", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from unetlib.core.runtime_report import runtime_line

    print(runtime_line(), flush=True)  # every figure names its CPU
    if args.child_single:
        child_single(*args.child_single)
        return
    if args.child_study:
        run_dir, sheet, out, workers = args.child_study
        child_study(run_dir, sheet, out, int(workers))
        return
    if not (Path(args.run) / "model.keras").is_file():
        sys.exit(f"{args.run}: no trained run; run `make demo` first or pass --run.")
    if args.stacks < FEW:
        sys.exit(f"--stacks {args.stacks} is invalid: give at least {FEW}.")

    with tempfile.TemporaryDirectory(prefix="bench_study_") as folder:
        from unetlib.core.config import SyntheticConfig
        from unetlib.data.synthetic import write_synthetic_stack

        config = SyntheticConfig(cycles=args.cycles)
        stack = Path(folder) / "acquisition.tif"
        start = time.perf_counter()
        write_synthetic_stack(stack, config)
        print(f"generated one {stack.stat().st_size / 2**20:.0f} MiB stack ({args.cycles} cycles "
              f"x 4 lasers of 508 x 636) in {time.perf_counter() - start:.1f} s", flush=True)
        cycle_s = config.frame_interval_s * config.lasers

        single = _child("--child-single", args.run, str(stack), str(Path(folder) / "single"))
        reference = single["seconds"] / single["cycles"]
        print(f"quantify, one stack in-process: {single['seconds']:.1f} s, "
              f"{reference:.3f} s/cycle, peak anonymous memory {single['peak_anon_mib']:.0f} MiB",
              flush=True)
        figures = {"cycles_per_stack": args.cycles, "workers": args.workers,
                   "single_s_per_cycle": reference, "studies": {}}
        for order, count in enumerate((FEW, args.stacks)):
            sheet = write_sheet(Path(folder), stack, count, cycle_s)
            study = _child("--child-study", args.run, str(sheet),
                           str(Path(folder) / f"out{order}"), str(args.workers))
            per_cycle = study["seconds"] / study["cycles"]
            figures["studies"][count] = {**study, "s_per_cycle": per_cycle,
                                         "ratio_to_single": per_cycle / reference}
            print(f"study of {count} stacks, {args.workers} local workers: {study['seconds']:.1f} s "
                  f"({study['cycles']} cycles, {study['failed']} failed), {per_cycle:.3f} s/cycle "
                  f"= {per_cycle / reference:.2f}x one stack in-process; peak RSS per worker "
                  f"{study['peak_worker_rss_mib']:.0f} MiB; analysis alone "
                  f"{study['analysis_seconds']:.2f} s", flush=True)
        few, many = (figures["studies"][n]["peak_worker_rss_mib"] for n in (FEW, args.stacks))
        print(f"peak worker memory, {args.stacks} stacks over {FEW}: {many / few:.2f}x")
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
