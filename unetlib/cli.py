"""Command-line interface: ``python -m unetlib <command>``.

Each command is a thin layer over one unetlib function: it turns arguments into a config,
calls the function and prints what was written. Expected failures (``UnetlibError``) are
printed as one ``error: …`` line with exit status 2 and no traceback; warnings as
``warning: …`` lines.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from unetlib import __version__
from unetlib.errors import UnetlibError

EXIT_ERROR = 2

Handler = Callable[[argparse.Namespace], int]


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected laser numbers like 1,2,3, got {text!r}") from None


def _add_stack_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lasers", type=int, default=4,
                        help="number of lasers the stack cycles through (default: 4)")
    parser.add_argument("--offset", type=int, default=0,
                        help="index of the first frame taken with laser 1 (default: 0)")
    parser.add_argument("--composite3", type=_int_tuple, default=(1, 2, 3), metavar="L,L,L",
                        help="lasers combined into 3-channel composites, as R,G,B (default: 1,2,3)")
    parser.add_argument("--composite4", type=_int_tuple, default=(1, 2, 3, 4), metavar="L,L,L,L",
                        help="lasers combined into 4-channel composites (default: 1,2,3,4)")


def _split_config(args: argparse.Namespace, **extra):
    from unetlib.config import SplitConfig

    return SplitConfig(lasers=args.lasers, offset=args.offset, composite3=args.composite3,
                       composite4=args.composite4, **extra)


# --- commands ---------------------------------------------------------------------------


def _cmd_demo_stack(args: argparse.Namespace) -> int:
    from unetlib.config import SyntheticConfig
    from unetlib.synthetic import write_synthetic_stack

    config = SyntheticConfig(cycles=args.cycles, lasers=args.lasers, height=args.height,
                             width=args.width, seed=args.seed)
    out = Path(args.out)
    stack, truth = write_synthetic_stack(out / "stack.tif", config, truth_path=out / "truth.tif",
                                         overwrite=args.force)
    print(f"stack: {stack} ({config.cycles * config.lasers} frames, {config.lasers} lasers, "
          f"{config.height} x {config.width}, uint16)")
    print(f"ground truth: {truth} (organ labels, one page per frame)")
    return 0


def _cmd_split_stack(args: argparse.Namespace) -> int:
    from unetlib.stack import split_stack

    config = _split_config(args, frame_format=args.format, force=args.force)
    result = split_stack(args.stack, args.out, config, workers=args.workers, progress=True)
    for folder, count in result.counts.items():
        print(f"{result.out_dir / folder}: {count} files")
    print(f"manifest: {result.manifest}")
    return 0


def _cmd_pick_frames(args: argparse.Namespace) -> int:
    from unetlib.config import PickConfig
    from unetlib.frames import pick_frames

    config = PickConfig(count=args.count, method=args.method, channels=args.channels,
                        laser=args.laser, subset=args.subset, exclude=args.exclude,
                        force=args.force)
    result = pick_frames(args.stack, args.out, config, _split_config(args))
    print(f"picked cycles {result.cycles}")
    print(f"frames: {result.frames[0].parent} ({len(result.frames)} files)")
    if result.annotate:
        print(f"draw masks on: {result.annotate[0].parent} -> save them as "
              f"{Path(args.out) / 'train' / 'masks'}/<same name>.png")
    print(f"table: {result.table}")
    return 0


def _cmd_run_notebooks(args: argparse.Namespace) -> int:
    import yaml

    from unetlib.notebooks import NOTEBOOKS_DIR, find_notebooks, parse_parameter_sets, run_suite

    overrides = {name: yaml.safe_load(value) for name, value in args.parameter}
    sets = parse_parameter_sets(args.params, overrides)
    notebooks = find_notebooks(args.notebooks or NOTEBOOKS_DIR, args.only)
    runs = run_suite(args.out, sets, notebooks=notebooks, kernel_name=args.kernel)
    failed_sets = sorted({run.set_name for run in runs if run.status == "failed"})
    for run in runs:
        print(f"{run.set_name:>12}  {run.notebook:<28} {run.status:<8} {run.seconds:7.1f} s  "
              f"{run.error or run.output}")
    print(f"summary: {Path(args.out) / 'summary.csv'}")
    for name in failed_sets:
        error = next(run.error for run in runs if run.set_name == name and run.status == "failed")
        print(f"error: set {name!r} failed in {error}", file=sys.stderr)
    return min(len(failed_sets), 100)


def _cmd_demo(args: argparse.Namespace) -> int:
    from unetlib.demo import prepare_demo_data

    result = prepare_demo_data(args.out)
    print(f"demo stack: {result.stack}")
    print(f"split: {result.split_dir}")
    for name, data_dir in result.data_dirs.items():
        print(f"data{name}: {data_dir} (test truth: {result.truth_dirs[name]})")
    return 0



def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command (also used to test ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m unetlib",
        description="U-Net organ segmentation for multi-laser SWIR mouse stacks.")
    parser.add_argument("--version", action="version", version=f"unetlib {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only print warnings and errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo_stack = commands.add_parser(
        "demo-stack", help="write the synthetic demo acquisition and its ground truth",
        description="Write a deterministic synthetic 4-laser mouse stack (uint16, interleaved) "
                    "as OUT/stack.tif and its organ labels as OUT/truth.tif.")
    demo_stack.add_argument("--out", default="demo", help="output folder (default: demo)")
    demo_stack.add_argument("--cycles", type=int, default=30, help="laser cycles (default: 30)")
    demo_stack.add_argument("--lasers", type=int, default=4, help="lasers (default: 4)")
    demo_stack.add_argument("--height", type=int, default=508, help="frame height (default: 508)")
    demo_stack.add_argument("--width", type=int, default=636, help="frame width (default: 636)")
    demo_stack.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo_stack.add_argument("--force", action="store_true", help="replace existing files")
    demo_stack.set_defaults(handler=_cmd_demo_stack)

    split = commands.add_parser(
        "split-stack", help="de-interleave lasers; export per-laser frames and composites",
        description="Split a multi-laser TIFF stack into OUT/laser1..N (bit depth kept), "
                    "OUT/channels3 (8-bit display PNG + lossless TIFF), OUT/channels4 (TIFF) "
                    "and OUT/manifest.csv.")
    split.add_argument("stack", help="the acquisition's multi-page TIFF (or ImageJ hyperstack)")
    split.add_argument("--out", required=True, help="output folder")
    _add_stack_options(split)
    split.add_argument("--format", choices=("png", "tif"), default="png",
                       help="per-laser frame format, both 16-bit lossless (default: png)")
    split.add_argument("--workers", type=int, default=2, help="writer threads (default: 2)")
    split.add_argument("--force", action="store_true", help="replace existing output folders")
    split.set_defaults(handler=_cmd_split_stack)

    pick = commands.add_parser(
        "pick-frames", help="choose frames to annotate and export them into a data folder",
        description="Choose COUNT frames far apart and write them as 0..COUNT-1 into "
                    "OUT/train/frames (with OUT/train/frames.csv and 8-bit copies to draw on "
                    "in OUT/train/annotate), or into OUT/test with --subset test.")
    pick.add_argument("stack", help="the acquisition's multi-page TIFF")
    pick.add_argument("--out", required=True, help="data folder, e.g. data1d or data3d")
    pick.add_argument("--count", type=int, default=15, help="frames to pick (default: 15)")
    pick.add_argument("--method", choices=("spread", "diverse"), default="spread",
                      help="evenly spread in time, or most different (default: spread)")
    pick.add_argument("--channels", type=int, choices=(1, 3, 4), default=1,
                      help="1: one laser (data1d); 3 or 4: a composite (data3d) (default: 1)")
    pick.add_argument("--laser", type=int, default=1, help="laser for --channels 1 (default: 1)")
    pick.add_argument("--subset", choices=("train", "test"), default="train",
                      help="write to train/frames (to annotate) or test/ (default: train)")
    pick.add_argument("--exclude", type=_int_tuple, default=(), metavar="C,C,…",
                      help="cycles never to pick, e.g. those already picked for training")
    _add_stack_options(pick)
    pick.add_argument("--force", action="store_true", help="overwrite existing frames")
    pick.set_defaults(handler=_cmd_pick_frames)

    notebooks = commands.add_parser(
        "run-notebooks", help="run the notebook suite headlessly with papermill",
        description="Execute notebooks/01_* … in order with papermill into OUT/<set>/, with "
                    "parameters from -p or a YAML file (one mapping, or 'defaults:' plus "
                    "'sets: {name: {...}}' for several sets), and write OUT/summary.csv. "
                    "Paths under ../demo are rebased into OUT/<set>/demo. The exit status is "
                    "the number of parameter sets that failed.")
    notebooks.add_argument("--out", required=True, help="folder for the executed notebooks")
    notebooks.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                           metavar=("NAME", "VALUE"), help="set a parameter (YAML value syntax)")
    notebooks.add_argument("--params", help="YAML file of parameters or parameter sets")
    notebooks.add_argument("--only", type=lambda t: tuple(t.split(",")), default=(),
                           metavar="01,02", help="run only notebooks starting with these prefixes")
    notebooks.add_argument("--notebooks", help="folder of the notebooks (default: the suite)")
    notebooks.add_argument("--kernel", default="python3", help="Jupyter kernel (default: python3)")
    notebooks.set_defaults(handler=_cmd_run_notebooks)

    demo = commands.add_parser(
        "demo", help="run the whole pipeline on the synthetic demo acquisition",
        description="Write the synthetic acquisition, split it, pick frames, take the ground "
                    "truth in place of GIMP masks, and prepare data1d/ and data3d/ under OUT.")
    demo.add_argument("--out", default="demo", help="output folder (default: demo)")
    demo.set_defaults(handler=_cmd_demo)
    return parser


class _OneLineWarnings:
    """Print warnings as ``warning: message`` lines, as users of a CLI expect."""

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        print(f"warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 success, 2 expected error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    previous_showwarning = warnings.showwarning
    warnings.showwarning = _OneLineWarnings()
    try:
        return args.handler(args)
    except UnetlibError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted; outputs in progress were discarded", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous_showwarning
