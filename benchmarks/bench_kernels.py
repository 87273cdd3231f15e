"""Kernel and thread choices compared side by side: oneDNN, XLA, bfloat16, thread counts.

Runs ``bench_train.py`` once per setting, each in its own process (oneDNN and the thread
pools are fixed when TensorFlow loads), one after the other on this machine, and reports
training samples/s (256-pixel patches, batch 4, random data) and the time to predict one
508 x 636 frame, each also as a ratio to the first setting, the one unetlib chooses at
start-up. Only ratios measured in one run are comparable; absolute figures hold for the CPU
named on the first line.

``ONEDNN_MAX_CPU_ISA=AVX2`` rows cap oneDNN's kernels at AVX2 on an AVX-512 CPU: a partial
stand-in for an AVX2-only machine (clock, caches and memory stay this machine's).

    .venv/bin/python benchmarks/bench_kernels.py --steps 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from unetlib.core.runtime import cpu_info, describe_cpu  # noqa: E402

HERE = Path(__file__).parent

# (name, environment, bench_train arguments); the first is unetlib's start-up choice.
SETTINGS: list[tuple[str, dict[str, str], list[str]]] = [
    ("oneDNN on (unetlib's choice)", {"TF_ENABLE_ONEDNN_OPTS": "1"}, []),
    ("oneDNN off", {"TF_ENABLE_ONEDNN_OPTS": "0"}, []),
    ("oneDNN on + XLA", {"TF_ENABLE_ONEDNN_OPTS": "1"}, ["--jit-compile"]),
    ("oneDNN off + XLA", {"TF_ENABLE_ONEDNN_OPTS": "0"}, ["--jit-compile"]),
    ("oneDNN on, 2 intra / 1 inter threads", {"TF_ENABLE_ONEDNN_OPTS": "1"},
     ["--intra-threads", "2", "--inter-threads", "1"]),
    ("oneDNN on, 1 intra / 1 inter thread", {"TF_ENABLE_ONEDNN_OPTS": "1"},
     ["--intra-threads", "1", "--inter-threads", "1"]),
    ("oneDNN on + mixed bfloat16", {"TF_ENABLE_ONEDNN_OPTS": "1"},
     ["--precision", "mixed_bfloat16"]),
    ("oneDNN on, capped at AVX2", {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2"},
     []),
]


def run_setting(env_changes: dict[str, str], arguments: list[str], presets: list[str],
                steps: int, frames: int) -> dict:
    env = {**os.environ, **env_changes}
    command = [sys.executable, str(HERE / "bench_train.py"), "--json", "--steps", str(steps),
               "--predict-frames", str(frames), "--presets", *presets, *arguments]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per setting")
    parser.add_argument("--predict-frames", type=int, default=5)
    parser.add_argument("--presets", nargs="+", default=["default", "classic"])
    parser.add_argument("--only", nargs="+", type=int, help="indices of SETTINGS to run")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    cpu = cpu_info()
    print(f"machine: {describe_cpu(cpu)}", flush=True)
    chosen = [SETTINGS[i] for i in args.only] if args.only else SETTINGS
    rows = []
    for name, env_changes, arguments in chosen:
        if "mixed_bfloat16" in arguments and not (cpu.has("avx512_bf16") or cpu.has("amx_bf16")):
            print(f"{name}: skipped (the CPU has no bfloat16 instructions)", flush=True)
            continue
        result = run_setting(env_changes, arguments, args.presets, args.steps,
                             args.predict_frames)
        row = {"setting": name, **result}
        rows.append(row)
        if "error" in result:
            print(f"{name}: failed: {result['error']}", flush=True)
            continue
        speeds = "  ".join(f"{r['preset']} {r['samples_per_second']:.2f} samples/s"
                           for r in result["training"])
        print(f"{name}: {speeds}; predict {1 / result['prediction']['frames_per_second']:.3f} "
              "s/frame", flush=True)
    base = next((row for row in rows if "error" not in row), None)
    if base is not None:
        print("\nratios to the first setting (training per preset; prediction speed):")
        for row in rows:
            if "error" in row:
                continue
            ratios = "  ".join(
                f"{r['preset']} {r['samples_per_second'] / b['samples_per_second']:.2f}x"
                for r, b in zip(row["training"], base["training"]))
            speed = (row["prediction"]["frames_per_second"]
                     / base["prediction"]["frames_per_second"])
            print(f"  {row['setting']:<40} {ratios}  predict {speed:.2f}x")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
