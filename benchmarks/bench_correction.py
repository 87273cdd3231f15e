"""Benchmark: what correcting a model's proposals buys over drawing every mask from scratch.

A simulated annotator on the hard synthetic preset (the true organ labels stand for the
person). Frames are annotated in rounds of ``--per-round``, alternating between the two
training mice, and after each round a model is trained; it is scored on held-out frames of
the training mice and of a mouse never seen. Two arms, with the same training budget per
round:

- **scratch**: every new frame is drawn from an empty canvas (effort: all its organ
  pixels), and the model is trained from scratch on all frames so far;
- **correct**: from the second round on, the previous round's model proposes the new frames
  (:func:`unetlib.inference.proposals.propose_masks`, as ``propose`` does), the annotator
  corrects them to the truth (effort: the pixels whose organ differs between proposal
  and truth), and the previous model is fine-tuned (``--init-from``) on all frames so far.

Both arms share the first round. Prints, per round, the frames annotated, the cumulative
effort in pixels and the held-out mean organ Dice of each arm, and the effort each arm
needed to reach ``--target``.

    python benchmarks/bench_correction.py [--seeds 0 1] [--rounds 5] [--per-round 2]

    python benchmarks/bench_correction.py --from-json seed0.json seed1.json --figure effort.png

Measured (README, "Correct the model instead of drawing from scratch"): ``--seeds 0`` and
``--seeds 1``, each ``--rounds 3 --per-round 2 --epochs 10 --steps 50`` (500 steps a round,
about 4 minutes of training on an AMD EPYC, 2 cores, AVX2 only).

Caveat: the correcting arm fine-tunes, so its model has trained ``round x steps`` steps by
a round, the drawing arm's only ``steps``; the effort axis (pixels changed) is what the
comparison is about, the Dice axis carries that difference too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from unetlib.app.organ_benchmark import make_hard_benchmark, score_run  # noqa: E402
from unetlib.core.config import PipelineConfig, TrainConfig, model_preset, task_preset  # noqa: E402
from unetlib.core.io import read_image, write_image  # noqa: E402
from unetlib.core.runtime_report import runtime_line  # noqa: E402
from unetlib.data.annotations import proposals_folder  # noqa: E402
from unetlib.inference.proposals import propose_masks  # noqa: E402
from unetlib.runs.train import train  # noqa: E402


def _order(frames_per_mouse: int) -> list[str]:
    """Annotation order: the two training mice's frames alternately."""
    return [str(mouse * frames_per_mouse + index) for index in range(frames_per_mouse)
            for mouse in (0, 1)]


def _round_folder(pool: Path, folder: Path, stems: list[str], with_masks: list[str]) -> Path:
    """A data folder of ``stems``' frames, with masks for ``with_masks`` only."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "train" / "frames").mkdir(parents=True)
    (folder / "train" / "masks").mkdir()
    shutil.copy(pool / "organs.csv", folder / "organs.csv")
    for stem in stems:
        shutil.copy(pool / "train" / "frames" / f"{stem}.png", folder / "train" / "frames")
    for stem in with_masks:
        shutil.copy(pool / "train" / "masks" / f"{stem}.png", folder / "train" / "masks")
    return folder


def _mean_dice(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    return {group: round(statistics.mean(organs.values()), 4) for group, organs in scores.items()}


def run_seed(seed: int, args: argparse.Namespace, work: Path) -> list[dict]:
    frames_per_mouse = (args.rounds * args.per_round + 1) // 2
    benchmark = make_hard_benchmark(work / "bench", train_mice=2, unseen_mice=1,
                                    frames_per_mouse=frames_per_mouse, held_out_per_mouse=3,
                                    height=args.height, width=args.width, study_seed=seed)
    pool = benchmark.data_dir
    order = _order(frames_per_mouse)

    def config(init_from: str | None = None) -> TrainConfig:
        return TrainConfig(model=model_preset(task_preset(True)), epochs=args.epochs,
                           steps_per_epoch=args.steps, init_from=init_from,
                           pipeline=PipelineConfig(patch_size=128, batch_size=8, seed=seed,
                                                   val_fraction=0.2))

    rows, effort, previous = [], {"scratch": 0, "correct": 0}, {}
    for number in range(1, args.rounds + 1):
        stems = order[:number * args.per_round]
        new = stems[-args.per_round:]
        truth = {stem: read_image(pool / "train" / "masks" / f"{stem}.png") for stem in new}
        painted = sum(int(np.count_nonzero(mask)) for mask in truth.values())
        row = {"seed": seed, "round": number, "frames": len(stems)}
        for arm in ("scratch", "correct"):
            if arm == "correct" and number == 1:  # no model yet: the first round is shared
                effort[arm] += painted
                row[arm] = dict(row["scratch"], effort_px=effort[arm])
                previous[arm] = previous["scratch"]
                continue
            folder = _round_folder(pool, work / f"{arm}{number}", stems, stems[:-len(new)])
            if arm == "scratch":
                effort[arm] += painted
            else:
                propose_masks(previous[arm], folder, stems=new)
                for stem in new:  # the palette index is the organ value
                    with Image.open(proposals_folder(folder) / f"{stem}.png") as image:
                        proposal = np.array(image)
                    effort[arm] += int(np.count_nonzero(proposal != truth[stem]))
            for stem in new:  # the annotator's finished masks
                write_image(folder / "train" / "masks" / f"{stem}.png", truth[stem])
            started = time.monotonic()
            run_dir = work / f"run_{arm}{number}"
            train(folder, run_dir, config(str(previous[arm]) if arm == "correct" else None),
                  verbose=0)
            seconds = time.monotonic() - started
            row[arm] = {"effort_px": effort[arm], "train_s": round(seconds, 1),
                        **_mean_dice(score_run(run_dir, benchmark))}
            previous[arm] = run_dir
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def plot_effort(rows: list[dict], target: float) -> Figure:
    """Held-out mean organ Dice against the annotator's cumulative effort, one line per arm
    and seed, seen and unseen mice side by side."""
    figure = Figure(figsize=(9, 3.6), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    for ax, group in zip(axes, ("seen", "unseen")):
        for arm, color in (("scratch", "tab:gray"), ("correct", "tab:blue")):
            for number, seed in enumerate(sorted({row["seed"] for row in rows})):
                mine = [row for row in rows if row["seed"] == seed]
                ax.plot([row[arm]["effort_px"] / 1000 for row in mine],
                        [row[arm][group] for row in mine], "os^vD"[number % 5] + "-", color=color,
                        label=f"{arm}, seed {seed}")
                for row in mine:
                    ax.annotate(str(row["frames"]), (row[arm]["effort_px"] / 1000, row[arm][group]),
                                textcoords="offset points", xytext=(3, -10), fontsize=7,
                                color=color)
        ax.axhline(target, color="tab:red", linewidth=0.8, linestyle="--",
                   label=f"target {target}")
        ax.set_title(f"mice {'seen in training' if group == 'seen' else 'never seen'}")
        ax.set_xlabel("pixels the annotator changed (thousands)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out mean organ Dice")
    axes[0].legend(fontsize=7)
    figure.suptitle("Drawing every frame vs correcting the model's proposals "
                    "(numbers: frames annotated)", fontsize=10)
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=25, help="steps per epoch")
    parser.add_argument("--height", type=int, default=254)
    parser.add_argument("--width", type=int, default=318)
    parser.add_argument("--target", type=float, default=0.95,
                        help="mean organ Dice (seen and unseen mice averaged) to reach")
    parser.add_argument("--json", help="also write every row to this JSON file")
    parser.add_argument("--from-json", nargs="+", help="summarise the rows of earlier --json "
                        "files (one per seed, say) instead of measuring")
    parser.add_argument("--figure", help="write the effort figure (PNG) here")
    args = parser.parse_args()
    if args.from_json:
        rows = [row for name in args.from_json for row in json.loads(Path(name).read_text())]
    else:
        print(runtime_line(), flush=True)
        rows = []
        with tempfile.TemporaryDirectory(prefix="bench_correction_") as name:
            for seed in args.seeds:
                rows += run_seed(seed, args, Path(name) / f"seed{seed}")
                if args.json:  # every finished seed is kept, whatever happens to the next
                    Path(args.json).write_text(json.dumps(rows, indent=1))
    seeds = sorted({row["seed"] for row in rows})
    rounds = sorted({row["round"] for row in rows})
    print(f"\n{'round':>5} {'frames':>6}  " + "  ".join(
        f"{arm + ' effort px':>18} {'seen':>6} {'unseen':>6}" for arm in ("scratch", "correct")))
    for number in rounds:
        group = [row for row in rows if row["round"] == number]
        cells = []
        for arm in ("scratch", "correct"):
            effort = statistics.mean(row[arm]["effort_px"] for row in group)
            seen = statistics.mean(row[arm]["seen"] for row in group)
            unseen = statistics.mean(row[arm]["unseen"] for row in group)
            cells.append(f"{effort:18.0f} {seen:6.3f} {unseen:6.3f}")
        print(f"{number:5d} {group[0]['frames']:6d}  " + "  ".join(cells))
    for arm in ("scratch", "correct"):
        reached = []
        for seed in seeds:
            hits = [row[arm]["effort_px"] for row in rows if row["seed"] == seed
                    and (row[arm]["seen"] + row[arm]["unseen"]) / 2 >= args.target]
            reached.append(f"{hits[0]} px" if hits else "not reached")
        print(f"{arm}: effort to mean Dice {args.target} per seed: {', '.join(reached)}")
    if args.figure:
        plot_effort(rows, args.target).savefig(args.figure, dpi=110)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    sys.exit(main())
