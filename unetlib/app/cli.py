"""Command-line interface: ``python -m unetlib <command>``.

Each command is a thin layer over one unetlib function: it turns arguments into a config,
calls the function and prints what was written. Expected failures (``UnetlibError``) are
printed as one ``error: …`` line with exit status 2 and no traceback; warnings as
``warning: …`` lines.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from unetlib import __version__
from unetlib.core import interrupts
from unetlib.core.errors import Interrupted, ParameterError, UnetlibError
from unetlib.core.resources import is_out_of_memory

# Imports inside functions are lazy: each command loads only what it runs, so `--help` and
# a mistyped flag answer at once, without loading TensorFlow.

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

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


def _add_tiling_options(parser: argparse.ArgumentParser, defaults) -> None:
    """``--tile``, ``--overlap`` and ``--fill-holes`` of the segmentation (a PredictConfig)."""
    parser.add_argument("--tile", type=int, default=defaults.tile,
                        help=f"tile side in pixels (default: {defaults.tile})")
    parser.add_argument("--overlap", type=int, default=defaults.overlap,
                        help=f"tile overlap in pixels (default: {defaults.overlap})")
    parser.add_argument("--fill-holes", action=argparse.BooleanOptionalAction,
                        default=defaults.fill_holes,
                        help="organ masks: background enclosed by one organ becomes that organ "
                             "(organs are solid); binary masks are never filled (default: "
                             f"{'on' if defaults.fill_holes else 'off'})")


def _split_config(args: argparse.Namespace, **extra):
    from unetlib.core.config import SplitConfig

    return SplitConfig(lasers=args.lasers, offset=args.offset, composite3=args.composite3,
                       composite4=args.composite4, **extra)


# --- commands ---------------------------------------------------------------------------


def _cmd_demo_stack(args: argparse.Namespace) -> int:
    from unetlib.core.config import SyntheticConfig
    from unetlib.data.synthetic import write_synthetic_stack

    config = SyntheticConfig(cycles=args.cycles, lasers=args.lasers, height=args.height,
                             width=args.width, seed=args.seed)
    out = Path(args.out)
    if not args.force and _holds_demo_stack(out, config):
        print(f"{out} already holds this demo stack; nothing to do")
        return 0
    stack, truth = write_synthetic_stack(out / "stack.tif", config, truth_path=out / "truth.tif",
                                         overwrite=args.force)
    print(f"stack: {stack} ({config.cycles * config.lasers} frames, {config.lasers} lasers, "
          f"{config.height} x {config.width}, uint16)")
    print(f"ground truth: {truth} (organ labels, one page per frame)")
    return 0


def _holds_demo_stack(out: Path, config) -> bool:
    """True when ``out`` already holds exactly the stack and truth ``config`` makes (the
    synthetic stack is deterministic): repeating demo-stack is then a no-op."""
    import filecmp
    import shutil
    import tempfile

    from unetlib.data.synthetic import write_synthetic_stack

    names = ("stack.tif", "truth.tif")
    if not all((out / name).is_file() for name in names):
        return False
    # A hidden staging folder: the next writer there removes it if this process dies.
    scratch = Path(tempfile.mkdtemp(prefix=".", suffix=".staging", dir=out))
    try:
        write_synthetic_stack(scratch / names[0], config, truth_path=scratch / names[1])
        return all(filecmp.cmp(out / name, scratch / name, shallow=False) for name in names)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _cmd_split_stack(args: argparse.Namespace) -> int:
    from unetlib.data.stack import split_stack

    config = _split_config(args, frame_format=args.format, force=args.force)
    result = split_stack(args.stack, args.out, config, workers=args.workers, progress=True)
    for folder, count in result.counts.items():
        print(f"{result.out_dir / folder}: {count} files")
    print(f"manifest: {result.manifest}")
    return 0


def _cmd_pick_frames(args: argparse.Namespace) -> int:
    from unetlib.core.config import PickConfig
    from unetlib.inference.uncertainty import pick_frames

    config = PickConfig(count=args.count, method=args.method, channels=args.channels,
                        laser=args.laser, subset=args.subset, exclude=args.exclude,
                        force=args.force, run=args.run)
    stacks = args.stack[0] if len(args.stack) == 1 else args.stack
    result = pick_frames(stacks, args.out, config, _split_config(args))
    if len(set(result.stacks)) > 1:
        for label in dict.fromkeys(result.stacks):
            print(f"picked cycles {[c for c, s in zip(result.cycles, result.stacks) if s == label]}"
                  f" of {label}")
    else:
        print(f"picked cycles {result.cycles}")
    names = (f": {', '.join(path.name for path in result.frames)}" if config.method == "uncertain"
             else "")
    print(f"frames: {result.frames[0].parent} ({len(result.frames)} files{names})")
    if result.annotate:
        print(f"draw masks on: {result.annotate[0].parent} -> save them as "
              f"{Path(args.out) / 'train' / 'masks'}/<same name>.png")
    print(f"table: {result.table}")
    if args.propose:
        from unetlib.inference.proposals import propose_masks

        proposed = propose_masks(args.propose, args.out,
                                 stems=[path.stem for path in result.frames],
                                 progress=not args.quiet)
        _print_proposals(proposed, Path(args.out))
    return 0


def _cmd_run_notebooks(args: argparse.Namespace) -> int:
    import yaml

    from unetlib.app.notebooks import NOTEBOOKS_DIR, find_notebooks, parse_parameter_sets, run_suite

    overrides = {}
    for name, value in args.parameter:
        try:
            overrides[name] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise ParameterError(f"{name}={value} is invalid: not a YAML value "
                                 f"({str(error).splitlines()[0]}). Quote text, e.g. -p {name} "
                                 "'\"...\"'.") from None
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


def _cmd_check_masks(args: argparse.Namespace) -> int:
    from unetlib.core.errors import InputError, describe
    from unetlib.data.dataset import check_pairs

    if not Path(args.data_dir).is_dir():
        raise InputError(describe(args.data_dir, "folder not found",
                                  "Give a data folder such as data1d (with train/frames and "
                                  "train/masks)."))
    report = check_pairs(args.data_dir, binary=not args.allow_labels)
    print(report.format_table())
    _record_origins(Path(args.data_dir))
    if report.errors:
        print(f"error: {len(report.errors)} problem(s) in {args.data_dir}: fix the files "
              "listed above, then run check-masks again", file=sys.stderr)
        return EXIT_ERROR
    return 0


def _record_origins(data_dir: Path) -> None:
    """After proposals were made in ``data_dir``: say in frames.csv and on screen which
    masks were corrected from them, and how much."""
    from unetlib.core.errors import OutputError
    from unetlib.data.annotations import CORRECTED, proposals_folder, record_mask_origins

    if not (proposals_folder(data_dir) / "proposals.csv").is_file():
        return
    try:
        origins = record_mask_origins(data_dir)
    except OutputError as error:
        print(f"warning: mask origins not recorded in frames.csv: {error}", file=sys.stderr)
        return
    corrected = [o for o in origins.values() if o["mask_origin"] == CORRECTED]
    changed = sum(int(o["changed_px"]) for o in corrected if o["changed_px"])
    print(f"masks: {len(origins) - len(corrected)} drawn, {len(corrected)} corrected from "
          f"proposals ({changed} px changed)")


def _cmd_propose(args: argparse.Namespace) -> int:
    from unetlib.runs.locate import find_model

    find_model(args.run)  # a mistyped path is refused before TensorFlow loads (5-8 s)
    from unetlib.inference.proposals import propose_masks  # TensorFlow

    result = propose_masks(args.run, args.data_dir, stems=args.frames or None, force=args.force,
                           progress=not args.quiet)
    _print_proposals(result, Path(args.data_dir))
    return 0


def _print_proposals(result, data_dir: Path) -> None:
    made = len(result.written) + len(result.kept)
    if result.skipped:
        print(f"{len(result.skipped)} frame(s) already have a mask: no proposal")
    if not made:
        print("no frame without a mask: nothing to propose")
        return
    print(f"proposals: {result.folder} ({len(result.written)} written, {len(result.kept)} "
          "kept) -> correct them (GIMP opens them as Indexed images) and save them as "
          f"{data_dir / 'train' / 'masks'}/<same name>.png")


def _train_config(args: argparse.Namespace):
    from unetlib.core.config import (
        PipelineConfig,
        TrainConfig,
        augment_preset,
        model_preset,
        task_preset,
    )
    from unetlib.data.organs import find_organ_table

    model_changes = {} if args.lr is None else {"learning_rate": args.lr}
    preset = args.preset
    if preset is None and model_changes:
        # --lr changes the network the task would get, so that network is chosen here.
        preset = task_preset(find_organ_table(args.data_dir) is not None)
    model = None if preset is None else model_preset(preset, **model_changes)
    pipeline = {name: getattr(args, name) for name in
                ("batch_size", "patch_size", "val_fraction", "seed")
                if getattr(args, name) is not None}
    given = {name: getattr(args, name) for name in
             ("epochs", "steps_per_epoch", "loss", "prior_correction", "max_minutes",
              "checkpoint", "checkpoint_minutes")
             if getattr(args, name) is not None}
    return TrainConfig(model=model,
                       augment=None if args.augment is None else augment_preset(args.augment),
                       pipeline=PipelineConfig(**pipeline),
                       deterministic=args.deterministic,
                       init_from=getattr(args, "init_from", None),
                       freeze_encoder_epochs=getattr(args, "freeze_encoder", 0), **given)


def _keras_verbosity(args: argparse.Namespace) -> int:
    """Keras' progress output: a progress bar redrawn in a log file (CI, ``make demo > log``)
    is one huge line, so one line per epoch there; none with --quiet."""
    return 0 if args.quiet else 1 if sys.stdout.isatty() else 2


def _cmd_train(args: argparse.Namespace) -> int:
    from unetlib.data.dataset import find_pairs
    from unetlib.runs.request import reusable_run, training_request

    # What needs no TensorFlow is decided before it loads (5-8 s), as train decides it
    # first: the settings, the data folder, and the output folder (the same finished run
    # is reused, another one refused). Fine-tuning's request includes its starting model,
    # which only TensorFlow reads.
    config = _train_config(args).validate()
    find_pairs(args.data_dir)
    result = None
    if config.init_from is None:
        result = reusable_run(args.out, training_request(args.data_dir, config),
                              resume=args.resume, force=args.force)
    if result is None:
        from unetlib.runs.train import train  # TensorFlow

        result = train(args.data_dir, args.out, config, resume=args.resume,
                       force=args.force, verbose=_keras_verbosity(args))
    budget = " (stopped by --max-minutes)" if result.stopped_by_time_budget else ""
    print(f"trained {result.epochs_completed} epoch(s){budget}; best epoch {result.best_epoch}")
    if result.threshold is None:
        organs = result.metrics.get("val_organs", {})
        print(f"validation Dice, mean over organs {result.val_dice:.4f}: " + ", ".join(
            f"{name} {scores['dice']:.4f}" for name, scores in organs.items()))
    else:
        print(f"validation Dice {result.val_dice:.4f} at threshold {result.threshold:.2f} "
              f"(calibrated on the validation frames)")
    print(f"run: {result.run_dir} (model.keras, config.json, history.csv, history.png, "
          "metrics.json)")
    return 0


def _cmd_crossval(args: argparse.Namespace) -> int:
    from unetlib.core.config import CrossvalConfig
    from unetlib.data.dataset import find_pairs

    # Checked before TensorFlow loads, as for train: the settings and the data folder.
    config = CrossvalConfig(folds=args.folds, seed=args.fold_seed,
                            train=_train_config(args)).validate()
    find_pairs(args.data_dir)
    from unetlib.runs.crossval import crossvalidate  # TensorFlow

    result = crossvalidate(args.data_dir, args.out, config, force=args.force,
                           verbose=_keras_verbosity(args))
    reused = len(result.folds) - len(result.trained)
    print(f"{len(result.folds)} folds of {', '.join(str(len(f)) for f in result.folds)} held-out "
          f"frames; trained {len(result.trained)}, reused {reused} finished fold(s)")
    print("held-out Dice, mean ± SD over folds (each fold's mean over its frames):")
    print(result.to_text())
    print(f"cross-validation: {result.out_dir} (crossval.json, crossval.csv, scores.csv, "
          "crossval.png, fold<k>/)")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from unetlib.core.config import PredictConfig
    from unetlib.runs.locate import find_model

    find_model(args.model)  # a mistyped path is refused before TensorFlow loads (5-8 s)
    from unetlib.inference.predict import predict_folder  # TensorFlow
    from unetlib.runs.run import load_run

    run = load_run(args.model)
    predict = PredictConfig(tile=args.tile, overlap=args.overlap, tta=args.tta,
                            fill_holes=args.fill_holes)
    written = predict_folder(run, args.input, args.out, threshold=args.threshold,
                             write_probabilities=args.probabilities,
                             write_overlay=args.overlay, overwrite=args.force,
                             predict=predict, progress=not args.quiet)
    masks = [path for path in written if path.name.endswith("_predict.png")]
    if run.organs is not None:
        print(f"{len(masks)} organ mask(s) ({', '.join(run.organs.names)}) in {args.out}")
    else:
        threshold = run.threshold if args.threshold is None else args.threshold
        print(f"{len(masks)} mask(s) at threshold {threshold:.2f} in {args.out}")
    for path in written:
        if not path.name.endswith("_predict.png"):
            print(f"also wrote {path}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from unetlib.core.io import check_output_file, write_json
    from unetlib.inference.evaluate import evaluate_folders

    if args.json:
        # Refuse before the work, not after it: the scores go nowhere a user's file is.
        _refuse_input_as_output(Path(args.json), [Path(args.pred_dir), Path(args.truth_dir)])
        check_output_file(args.json, overwrite=args.force)
    report = evaluate_folders(args.pred_dir, args.truth_dir)
    print(report.to_text())
    if args.json:
        write_json(args.json, report.to_dict(), overwrite=args.force)
        print(f"json: {args.json}")
    return 0


def _refuse_input_as_output(output: Path, folders: list[Path]) -> None:
    """Refuse an output path that is one of the images (or the organ table) in ``folders``:
    ``--force`` replaces earlier outputs, never the inputs."""
    from unetlib.core.errors import OutputError, describe
    from unetlib.core.io import list_images

    if not output.is_file():
        return
    for folder in folders:
        if folder.is_dir() and any(output.samefile(path) for path in
                                   [*list_images(folder), *folder.glob("organs.csv")]):
            raise OutputError(describe(output, "is one of the inputs of this evaluation",
                                       "Give another --json path (--force never replaces "
                                       "inputs)."))


def _cmd_quantify(args: argparse.Namespace) -> int:
    import dataclasses

    from unetlib.core.config import QuantifyConfig, SplitConfig
    from unetlib.runs.locate import find_model

    if args.scheduler is None:  # a remote cluster's workers may see paths this machine does not
        find_model(args.run)  # a mistyped path is refused before TensorFlow loads (5-8 s)
    from unetlib.study.cluster import quantify_study  # TensorFlow

    config = QuantifyConfig(split=SplitConfig(lasers=args.lasers, offset=args.offset),
                            model_input=args.model_input, interval_s=args.interval,
                            background=args.background,
                            predict=dataclasses.replace(QuantifyConfig().predict, tile=args.tile,
                                                        overlap=args.overlap,
                                                        fill_holes=args.fill_holes),
                            drop_incomplete=args.drop_incomplete, force=args.force,
                            dark=args.dark, flat=args.flat, motion=_motion(args))
    result = quantify_study(args.run, args.stacks, args.out, config, workers=args.workers,
                            scheduler=args.scheduler, progress=not args.quiet)
    for outcome in result.outcomes:
        if outcome.result is not None:
            note = " (done before; skipped)" if outcome.status == "skipped" else ""
            flagged = (f", {outcome.result.flagged} organ-cycle(s) flagged by QC"
                       if outcome.result.flagged else "")
            print(f"{outcome.stack}: {outcome.result.cycles} cycles -> "
                  f"{outcome.result.out_dir}{note}{flagged}")
            if args.ome_zarr:
                _write_ome_zarr(outcome.result.out_dir, fresh=outcome.status != "skipped")
    if len(result.failed) < len(result.outcomes):
        print(f"summary: {result.summary}")
        print(f"stacks: {result.table}")
    for outcome in result.failed:
        print(f"error: {outcome.message}", file=sys.stderr)
    if result.failed and len(result.outcomes) > 1:
        print(f"error: {len(result.failed)} of {len(result.outcomes)} stack(s) failed; the "
              f"others finished. Fix them and run the same command again (finished stacks "
              "are skipped).", file=sys.stderr)
    return min(len(result.failed), 100)


def _write_ome_zarr(results_dir: Path, *, fresh: bool) -> None:
    """``quantify --ome-zarr`` for one stack: results just computed replace an older store;
    reused results keep theirs."""
    from unetlib.study.ome_zarr import ome_zarr_path, write_ome_zarr

    if not fresh and ome_zarr_path(results_dir).exists():
        return
    print(f"  OME-Zarr: {write_ome_zarr(results_dir, force=True)}")


def _cmd_export(args: argparse.Namespace) -> int:
    from unetlib.core.io import check_output_file
    from unetlib.runs.locate import finished_run_folder

    # A mistyped run or an existing package is refused before TensorFlow loads (5-8 s).
    finished_run_folder(args.run)
    check_output_file(args.out, overwrite=args.force)
    from unetlib.runs.export import check_package, export_package, package_summary  # TensorFlow

    package = export_package(args.run, args.out, authors=args.author or None, license=args.license,
                             overwrite=args.force)
    print(f"package: {package} ({package.stat().st_size / 1e6:.1f} MB)")
    print(f"validation: {package_summary(check_package(package))}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from unetlib.app.demo import DemoConfig, run_demo

    config = DemoConfig()
    result = run_demo(args.out, config)
    print(f"demo stack: {result.stack} (ground truth beside it)")
    print(f"split: {result.split_dir}")
    for name, run_name in (("1d", "gray1d"), ("3d", "rgb3d")):
        print(f"data{name}: {result.data_dirs[name]}  model: {result.run_dirs[name]}  "
              f"masks: {result.results_dirs[name]}  ({result.seconds[run_name]:.0f} s)")
    target = config.target_dice
    for name, dice in result.test_dice.items():
        organs = result.organ_dice.get(name)
        detail = "" if not organs else " (" + ", ".join(
            f"{organ} {value:.3f}" for organ, value in organs.items()) + ")"
        print(f"data{name} test Dice vs ground truth: {dice:.3f}{detail}")
    print(f"organ curves of every cycle: {result.quantify_dir} "
          f"({result.seconds['quantify']:.0f} s); mean (max) error vs the true curves: " + ", ".join(
              f"{organ} {100 * e['mean_error']:.1f} % ({100 * e['max_error']:.1f} %)"
              for organ, e in result.curve_errors.items()))
    failures = result.failures(config)
    for line in failures:
        print(f"error: {line}", file=sys.stderr)
    if failures:
        return EXIT_ERROR
    print(f"every score reaches the target {target:.2f}")
    return 0


def _cmd_demo_study(args: argparse.Namespace) -> int:
    from unetlib.app.demo_study import run_demo_study
    from unetlib.core.config import DemoStudyConfig
    from unetlib.study.tables import trust_text

    config = DemoStudyConfig(mice_per_group=args.mice, cycles=args.cycles, seed=args.seed)
    result = run_demo_study(args.out, args.run, config.validate(), workers=args.workers,
                            progress=not args.quiet)
    analysis = result.study.analysis
    print(f"study sheet: {result.sheet} ({2 * config.mice_per_group} mice, "
          f"{config.cycles} cycles each)")
    print(f"model: {result.run_dir}")
    print(f"analysis: {analysis.out_dir} (report: {analysis.out_dir / 'report.html'})")
    print("where to trust the model, worst first:")
    print(trust_text(analysis.trust))
    print(result.recovered_text())
    _print_study_problems(analysis)
    return min(len(analysis.left_out), 100)


def _add_demo_stack(commands) -> None:
    """Declare the ``demo-stack`` command and its arguments."""
    demo_stack = commands.add_parser(
        "demo-stack", help="write the synthetic demo acquisition and its ground truth",
        description="Write a deterministic synthetic 4-laser mouse stack (uint16, interleaved) "
                    "as OUT/stack.tif and its organ labels as OUT/truth.tif.")
    from unetlib.core.config import SyntheticConfig

    defaults = SyntheticConfig()
    demo_stack.add_argument("--out", default="demo", help="output folder (default: demo)")
    for option, meaning in (("cycles", "laser cycles"), ("lasers", "lasers"),
                            ("height", "frame height"), ("width", "frame width"),
                            ("seed", "random seed")):
        value = getattr(defaults, option)
        demo_stack.add_argument(f"--{option}", type=int, default=value,
                                help=f"{meaning} (default: {value})")
    demo_stack.add_argument("--force", action="store_true", help="replace existing files")
    demo_stack.set_defaults(handler=_cmd_demo_stack)


def _add_split_stack(commands) -> None:
    """Declare the ``split-stack`` command and its arguments."""
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
    split.add_argument("--workers", type=int, default=2,
                       help="writer threads, 1 to 32 (default: 2)")
    split.add_argument("--force", action="store_true", help="replace existing output folders")
    split.set_defaults(handler=_cmd_split_stack)


def _add_pick_frames(commands) -> None:
    """Declare the ``pick-frames`` command and its arguments."""
    pick = commands.add_parser(
        "pick-frames", help="choose frames to annotate and export them into a data folder",
        description="Choose COUNT frames far apart and write them as 0..COUNT-1 into "
                    "OUT/train/frames (with OUT/train/frames.csv and 8-bit copies to draw on "
                    "in OUT/train/annotate), or into OUT/test with --subset test. Given several "
                    "stacks (the mice of a study), the frames are shared out over them, and "
                    "--method uncertain ranks the cycles of all of them together; frames.csv "
                    "names each frame's stack and cycle.")
    pick.add_argument("stack", nargs="+", help="the acquisition's multi-page TIFF, or several")
    pick.add_argument("--out", required=True, help="data folder, e.g. data1d or data3d")
    pick.add_argument("--count", type=int, default=15, help="frames to pick (default: 15)")
    pick.add_argument("--method", choices=("spread", "diverse", "uncertain"), default="spread",
                      help="evenly spread in time, most different, or (with --run) the cycles "
                           "a trained model is least sure about, added after the frames "
                           "already there (default: spread)")
    pick.add_argument("--run", metavar="RUN",
                      help="with --method uncertain: the trained run (folder, .keras file or "
                           "bioimage.io package) whose uncertainty ranks the cycles")
    pick.add_argument("--channels", type=int, choices=(1, 3, 4), default=1,
                      help="1: one laser (data1d); 3 or 4: a composite (data3d) (default: 1)")
    pick.add_argument("--laser", type=int, default=1, help="laser for --channels 1 (default: 1)")
    pick.add_argument("--subset", choices=("train", "test"), default="train",
                      help="write to train/frames (to annotate) or test/ (default: train)")
    pick.add_argument("--exclude", type=_int_tuple, default=(), metavar="C,C,…",
                      help="cycles never to pick (in every stack given), e.g. those already "
                           "picked for training")
    _add_stack_options(pick)
    pick.add_argument("--force", action="store_true", help="overwrite existing frames")
    pick.add_argument("--propose", metavar="RUN",
                      help="also write RUN's masks of the picked frames into "
                           "OUT/train/proposals, to correct instead of drawing from scratch")
    pick.set_defaults(handler=_cmd_pick_frames)


def _add_propose(commands) -> None:
    """Declare the ``propose`` command and its arguments."""
    propose = commands.add_parser(
        "propose", help="a run's masks of frames still to annotate, to correct in GIMP",
        description="For every frame of DATA_DIR/train/frames without a mask, write RUN's "
                    "segmentation as DATA_DIR/train/proposals/<name>.png: a palette PNG in the "
                    "organs' colours (0/255 for one foreground) that GIMP edits as it is. "
                    "Proposals are never read as masks: save a corrected one as "
                    "DATA_DIR/train/masks/<name>.png. check-masks then records in frames.csv "
                    "which masks were corrected from a proposal, and how many pixels changed.")
    propose.add_argument("run", help="a run folder written by train (its model file, or a "
                                     "bioimage.io package)")
    propose.add_argument("data_dir", help="a data folder such as data1d or data3d")
    propose.add_argument("--frames", nargs="+", metavar="NAME",
                         help="only these frames (stems, e.g. 3 7); default: every frame "
                              "without a mask")
    propose.add_argument("--force", action="store_true",
                         help="replace proposals you edited in place too")
    propose.set_defaults(handler=_cmd_propose)


def _add_check_masks(commands) -> None:
    """Declare the ``check-masks`` command and its arguments."""
    check = commands.add_parser(
        "check-masks", help="check annotated frames and masks before training",
        description="Pair DATA_DIR/train/frames with DATA_DIR/train/masks by file stem and "
                    "print one line per pair: size, channels, foreground %% and the rule that "
                    "decided foreground. Exit status 2 when any pair has an error (unpaired "
                    "file, size mismatch, unreadable file, all-background or non-binary mask).")
    check.add_argument("data_dir", help="a data folder such as data1d or data3d")
    check.add_argument("--allow-labels", action="store_true",
                       help="accept masks with more than two levels (every value above the "
                            "background is foreground)")
    check.set_defaults(handler=_cmd_check_masks)


def _add_training_options(parser) -> None:
    """The options of how a model trains, shared by ``train`` and ``crossval``."""
    from unetlib.core.config import (
        CHECKPOINTS,
        LOSSES,
        MODEL_PRESETS,
        PipelineConfig,
        TrainConfig,
        preset_names,
    )

    train_defaults, pipeline_defaults = TrainConfig(), PipelineConfig()
    parser.add_argument("--epochs", type=int,
                        help=f"epochs (default: {train_defaults.epochs})")
    parser.add_argument("--steps-per-epoch", type=int,
                        help=f"batches per epoch (default: {train_defaults.steps_per_epoch})")
    parser.add_argument("--batch-size", type=int,
                        help=f"patches per batch (default: {pipeline_defaults.batch_size})")
    parser.add_argument("--patch-size", type=int,
                        help=f"patch side in pixels, a multiple of 16 "
                             f"(default: {pipeline_defaults.patch_size})")
    parser.add_argument("--preset", choices=sorted(MODEL_PRESETS),
                        help="network: default (8 base filters, Adam 3e-3: best for one "
                             "foreground, measured), organs (16 filters, Adam 1e-3 decaying on "
                             "a cosine schedule: best for several organs, measured), wide (16 "
                             "filters, the default before 2026-11), classic (the original "
                             "recipe), small (quick looks) "
                             "(default: by task, default without organs.csv, organs with it)")
    parser.add_argument("--augment", choices=preset_names(),
                        help="augmentation preset; original = the Keras 2 recipe's settings, "
                             "organs = stronger intensity jitter (default: organs for "
                             "organs.csv data with the organs network, else default)")
    parser.add_argument("--loss", choices=LOSSES,
                        help="bce or bce+dice for binary masks; ce, ce+dice (soft Dice "
                             "averaged over organs) or edge-ce+dice (the same, cross-entropy "
                             "weighted 5x along organ outlines) with organs.csv; auto picks "
                             "bce, or for organs edge-ce+dice with the organs network and "
                             f"ce+dice with another (default: {train_defaults.loss})")
    parser.add_argument("--prior-correction", type=float, metavar="F",
                        help="organs: how much the kept model (model.keras) is corrected for "
                             "organs filling more of the organ-centred training patches than "
                             "of the frames, 0 (none: organs come out about a pixel too wide) "
                             "to 1 (default: "
                             f"{train_defaults.prior_correction})")
    parser.add_argument("--lr", type=float, help="learning rate (default: the preset's)")
    parser.add_argument("--val-fraction", type=float,
                        help=f"share of frames held out for validation, 0 < F < 1 "
                             f"(default: {pipeline_defaults.val_fraction})")
    parser.add_argument("--seed", type=int,
                        help=f"random seed of training (default: {pipeline_defaults.seed})")
    parser.add_argument("--max-minutes", type=float,
                        help="stop cleanly after this many minutes, keeping the best model")
    parser.add_argument("--checkpoint", choices=CHECKPOINTS,
                        help="the epoch model.keras keeps: best (highest validation Dice on "
                             "whole frames), last, or auto: last when the learning rate decays "
                             "to the end (the organs network), best at a constant rate "
                             f"(default: {train_defaults.checkpoint})")
    parser.add_argument("--checkpoint-minutes", type=float,
                        help="with --max-minutes: validate and keep the best model at least "
                             "this often, pausing an epoch if it is slower (it then trains its "
                             f"remaining steps); 0: only after whole epochs (default: "
                             f"{train_defaults.checkpoint_minutes:g})")
    parser.add_argument("--deterministic", action="store_true",
                        help="bit-identical re-runs on this machine (somewhat slower)")


def _add_train(commands) -> None:
    """Declare the ``train`` command and its arguments."""
    train = commands.add_parser(
        "train", help="train a U-Net on a data folder's annotated frames",
        description="Train a U-Net on DATA_DIR/train/frames + masks (channels come from the "
                    "frames; with DATA_DIR/organs.csv one class per organ) into the run "
                    "folder OUT: model.keras (best validation Dice), "
                    "last.keras, config.json, history.csv, history.png, metrics.json. An "
                    "identical finished run is reused; a different one is never replaced "
                    "without --force.")
    train.add_argument("data_dir", help="a data folder such as data1d or data3d")
    train.add_argument("--out", required=True, help="run folder, e.g. runs/gray1d")
    _add_training_options(train)
    train.add_argument("--init-from", metavar="RUN",
                       help="fine-tune: start from this trained run (its architecture and "
                            "normalisation; same channels and organs as DATA_DIR)")
    train.add_argument("--freeze-encoder", type=int, default=0, metavar="EPOCHS",
                       help="with --init-from: keep the encoder frozen for this many first "
                            "epochs (default: 0)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run")
    train.add_argument("--force", action="store_true", help="replace an existing run")
    train.set_defaults(handler=_cmd_train)


def _add_crossval(commands) -> None:
    """Declare the ``crossval`` command and its arguments."""
    from unetlib.core.config import CrossvalConfig

    defaults = CrossvalConfig()
    crossval = commands.add_parser(
        "crossval", help="cross-validate training: held-out Dice per organ, mean ± SD",
        description="Deal DATA_DIR's annotated frames into K folds (whole frames, seeded); "
                    "for each fold train a run on the other frames (with the usual options; "
                    "--max-minutes is per fold) and score it on the held-out frames it never "
                    "saw. Writes OUT/folds.csv, OUT/fold<k>/ (run folders, kept), "
                    "OUT/scores.csv, OUT/crossval.csv, OUT/crossval.png and OUT/crossval.json "
                    "(mean ± SD Dice per organ). The same command again reuses finished "
                    "folds, resumes an interrupted one and trains the missing ones.")
    crossval.add_argument("data_dir", help="a data folder such as data1d or data3d")
    crossval.add_argument("--out", required=True, help="cross-validation folder, e.g. runs/cv1d")
    crossval.add_argument("--folds", type=int, default=defaults.folds,
                          help=f"K, the number of folds (default: {defaults.folds})")
    crossval.add_argument("--fold-seed", type=int, default=defaults.seed,
                          help=f"seed of the assignment of frames to folds "
                               f"(default: {defaults.seed})")
    _add_training_options(crossval)
    crossval.add_argument("--force", action="store_true",
                          help="replace fold runs of other folds or parameters")
    crossval.set_defaults(handler=_cmd_crossval)


def _add_predict(commands) -> None:
    """Declare the ``predict`` command and its arguments."""
    from unetlib.core.config import PredictConfig

    predict_defaults = PredictConfig()
    predict = commands.add_parser(
        "predict", help="segment frames or a TIFF stack with a trained model",
        description="Segment every frame of INPUT (a folder of frames, one frame, or a "
                    "multi-page TIFF stack) at full resolution with overlapping tiles, and "
                    "write OUT/<stem>_predict.png (0/255; for an organ run the organ values "
                    "as a palette PNG, with OUT/organs.csv); for a stack also one multi-page "
                    "mask TIFF. Frames are normalised as the model's training frames were.")
    predict.add_argument("model", help="a run folder (uses its model.keras) or a .keras file")
    predict.add_argument("input", help="folder of frames, a frame, or a TIFF stack")
    predict.add_argument("--out", required=True, help="output folder, e.g. data1d/results")
    predict.add_argument("--threshold", type=float,
                         help="decision threshold in (0, 1) (default: the run's, calibrated "
                              "on its validation frames)")
    predict.add_argument("--tta", action="store_true",
                         help="average over flips (4x slower, slightly smoother)")
    predict.add_argument("--probabilities", action="store_true",
                         help="also write <stem>_prob.tif (float32)")
    predict.add_argument("--overlay", action="store_true",
                         help="also write <stem>_overlay.png (mask tinted on the frame)")
    _add_tiling_options(predict, predict_defaults)
    predict.add_argument("--force", action="store_true", help="replace existing outputs")
    predict.set_defaults(handler=_cmd_predict)


def _add_quantify(commands) -> None:
    """Declare the ``quantify`` command and its arguments."""
    from unetlib.core.config import QuantifyConfig

    defaults = QuantifyConfig()
    predict_defaults = defaults.predict
    quantify = commands.add_parser(
        "quantify", help="organ time-intensity curves of whole acquisitions",
        description="Segment every laser cycle of each STACK with the run's model (input "
                    "built as in training: the same laser or composite) and apply each "
                    "cycle's organ mask to every laser's frame. Writes OUT/<stack stem>/ "
                    "intensities.csv (cycle x laser x organ), summary.csv (peak, time to "
                    "peak, AUC, half-life per organ x laser), labels.tif, curves.png, and "
                    "OUT/summary.csv, OUT/stacks.csv over all stacks. Several stacks run one "
                    "after another, on a local Dask cluster (--workers 2 or more) or on an "
                    "existing one (--scheduler); "
                    "finished stacks are skipped on a re-run. The exit status is the number "
                    "of stacks that failed.")
    quantify.add_argument("run", help="a run folder written by train (or its model.keras)")
    quantify.add_argument("stacks", nargs="+", metavar="STACK", help="acquisition TIFF stack(s)")
    quantify.add_argument("--out", required=True, help="output folder, e.g. results/study1")
    _add_acquisition_options(quantify, defaults)
    quantify.add_argument("--background", metavar="ORGAN",
                          help="an organ of the run used as background (default: body pixels "
                               "outside every organ)")
    _add_cluster_options(quantify)
    _add_tiling_options(quantify, predict_defaults)
    quantify.add_argument("--drop-incomplete", action="store_true",
                          help="accept a stack that stops mid-cycle, leaving out the incomplete "
                               "last cycle (otherwise refused: it often means wrong --lasers)")
    quantify.add_argument("--force", action="store_true",
                          help="quantify again stacks whose results exist")
    quantify.add_argument("--ome-zarr", action="store_true",
                          help="also write OUT/<stem>/<stem>.ome.zarr: the stack (t, laser, y, x) "
                               "and the organ labels with their names and colours, OME-Zarr 0.5, "
                               "which napari-ome-zarr and other OME tools open")
    _add_calibration_options(quantify)
    quantify.set_defaults(handler=_cmd_quantify)


def _add_acquisition_options(parser: argparse.ArgumentParser, defaults) -> None:
    """How the stacks are read (``quantify`` and ``study``): lasers, offset, model input,
    cycle interval."""
    parser.add_argument("--lasers", type=int, default=defaults.split.lasers,
                        help=f"lasers the stacks cycle through (default: {defaults.split.lasers})")
    parser.add_argument("--offset", type=int, default=defaults.split.offset,
                        help="index of the first frame taken with laser 1 (default: 0)")
    parser.add_argument("--model-input", type=_int_tuple, metavar="L[,L,L]",
                        help="lasers making the model's input, 1-based: 1, or 1,2,3 for a "
                             "composite (default: what the run was trained on)")
    parser.add_argument("--interval", type=float, metavar="SECONDS",
                        help="seconds between laser cycles (default: from the TIFF's timing "
                             "metadata)")
    parser.add_argument("--no-align", action="store_true",
                        help="measure every laser's frame with the segmented frame's organ "
                             "masks as they are, for a mouse that does not move between the "
                             "lasers of a cycle (default: each mask is moved and scaled onto "
                             "its organ's edge in every laser's frame)")
    parser.add_argument("--align-max-shift", type=float, metavar="FRACTION",
                        default=defaults.motion.max_shift,
                        help="farthest a mask may move to follow its organ, as a fraction of "
                             f"the frame's height (default: {defaults.motion.max_shift}, "
                             "15 px in 508 rows)")


def _motion(args: argparse.Namespace):
    """The :class:`~unetlib.core.config.MotionConfig` of ``--no-align`` and
    ``--align-max-shift``."""
    from unetlib.core.config import MotionConfig

    return MotionConfig(enabled=not args.no_align, max_shift=args.align_max_shift)


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--scheduler``: where several stacks are quantified."""
    parser.add_argument("--workers", type=int, default=1,
                        help="stacks quantified at once: 1 (default) one after another in "
                             "this process, 2 or more on a local Dask cluster of that many "
                             "worker processes")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="use this running Dask scheduler instead of a local cluster")


def _add_calibration_options(parser: argparse.ArgumentParser) -> None:
    """``--dark`` and ``--flat``: camera corrections before measuring."""
    parser.add_argument("--dark", metavar="FILE",
                        help="dark frame subtracted before measuring: one frame, one per laser, "
                             "or a dark stack (averaged); default: raw counts")
    parser.add_argument("--flat", metavar="FILE",
                        help="flat field divided out before measuring (one frame or one per "
                             "laser, normalised to mean 1); default: none")


def _add_study(commands) -> None:
    """Declare the ``study`` command and its arguments."""
    from unetlib.core.config import AUC_METHODS, STUDY_TESTS, QuantifyConfig

    defaults = QuantifyConfig()
    study = commands.add_parser(
        "study", help="quantify every mouse of a study and compare the groups",
        description="Read SHEET (study.csv: stack, mouse, group, optional injection_s and any "
                    "other columns), quantify every stack not yet quantified with RUN into "
                    "OUT/stacks/ (as quantify does: one after another, on a local Dask "
                    "cluster with --workers 2 or more, or on a running one with --scheduler), "
                    "then analyse the study into OUT: nca.csv "
                    "(per mouse x organ x laser: F0, peak dF, time of peak, AUC, terminal "
                    "half-life and AUC to infinity by PKNCA's rules, mean SBR, flagged cycles), "
                    "groups.csv (group mean, SD, SEM and n of dF over time), compare.csv (each "
                    "group against --reference: ratio of means with a 95% Fieller interval, a "
                    "two-sided test, Holm-adjusted p over the table) and study.json. Stacks that "
                    "fail are named and left out; the exit status is their number.")
    study.add_argument("sheet", help="the study sheet, study.csv (stack paths relative to it)")
    study.add_argument("--run", required=True, help="a run folder written by train")
    study.add_argument("--out", required=True, help="output folder, e.g. results/study1")
    _add_acquisition_options(study, defaults)
    _add_cluster_options(study)
    _add_calibration_options(study)
    study.add_argument("--reference", metavar="GROUP",
                       help="the group the others are compared with (default: the sheet's first)")
    study.add_argument("--test", choices=STUDY_TESTS, default="welch",
                       help="two-sided Welch t-test or Mann-Whitney U test (default: welch)")
    study.add_argument("--auc", choices=AUC_METHODS, default="linear",
                       help="trapezoids, or log trapezoids where the curve falls (default: linear)")
    study.set_defaults(handler=_cmd_study)


def _cmd_study(args: argparse.Namespace) -> int:
    from unetlib.core.config import QuantifyConfig, SplitConfig, StudyConfig
    from unetlib.study.workflow import run_study

    quantify = QuantifyConfig(split=SplitConfig(lasers=args.lasers, offset=args.offset),
                              model_input=args.model_input, interval_s=args.interval,
                              dark=args.dark, flat=args.flat, motion=_motion(args))
    config = StudyConfig(reference=args.reference, test=args.test, auc=args.auc)
    result = run_study(args.sheet, args.run, args.out, quantify, config, workers=args.workers,
                       scheduler=args.scheduler, progress=not args.quiet)
    analysis = result.analysis
    print(f"{len(analysis.nca)} curves of {len({row['mouse'] for row in analysis.nca})} mice: "
          f"{analysis.out_dir / 'nca.csv'}")
    print(f"group curves: {analysis.out_dir / 'groups.csv'}")
    print(f"comparisons: {analysis.out_dir / 'compare.csv'}")
    _print_study_problems(analysis)
    return min(len(analysis.left_out), 100)


def _print_study_problems(analysis) -> None:
    """The mice to look at closer, and those left out, as warning and error lines."""
    for caution in analysis.warnings:
        print(f"warning: {caution}", file=sys.stderr)
    for mouse, why in analysis.left_out.items():
        print(f"error: {mouse} left out of the analysis: {why}", file=sys.stderr)


def _add_evaluate(commands) -> None:
    """Declare the ``evaluate`` command and its arguments."""
    evaluate = commands.add_parser(
        "evaluate", help="score predicted masks against ground truth",
        description="Pair each PRED_DIR/<stem>_predict.png with TRUTH_DIR/<stem>.* (any mask "
                    "encoding check-masks accepts) and print Dice, IoU, precision, recall and "
                    "pixel accuracy per frame and their mean; unpaired files are listed.")
    evaluate.add_argument("pred_dir", help="folder of <stem>_predict.png files")
    evaluate.add_argument("truth_dir", help="folder of truth masks named <stem>.png/.tif")
    evaluate.add_argument("--json", help="also write the scores to this JSON file (a new file; "
                                         "an existing one only with --force)")
    evaluate.add_argument("--force", action="store_true", help="replace an existing --json file")
    evaluate.set_defaults(handler=_cmd_evaluate)


def _add_export(commands) -> None:
    """Declare the ``export`` command and its arguments."""
    from unetlib.core.config import ExportConfig

    defaults = ExportConfig()

    export = commands.add_parser(
        "export", help="write a run as a bioimage.io model package (zip)",
        description="Write RUN as a bioimage.io model package (format 0.5): Keras 3, "
                    "TensorFlow SavedModel and (with tf2onnx installed) ONNX weights, the "
                    "run's normalisation as preprocessing, a binary run's calibrated "
                    "threshold as postprocessing, a test image and its expected output, a "
                    "cover, a README and the run's config.json; then validate it offline. "
                    "predict and quantify accept the package in place of the run folder.")
    export.add_argument("run", help="a finished run folder written by train")
    export.add_argument("--out", required=True, help="the package to write, e.g. liver.zip")
    export.add_argument("--author", action="append", metavar="NAME",
                        help="an author (repeat for several; default: "
                             f"{', '.join(defaults.authors)!r})")
    export.add_argument("--license", default=defaults.license, metavar="ID",
                        help=f"SPDX licence of the weights (default: {defaults.license})")
    export.add_argument("--force", action="store_true", help="replace an existing package")
    export.set_defaults(handler=_cmd_export)


def _add_run_notebooks(commands) -> None:
    """Declare the ``run-notebooks`` command and its arguments."""
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


def _add_demo(commands) -> None:
    """Declare the ``demo`` command and its arguments."""
    demo = commands.add_parser(
        "demo", help="run the whole pipeline on the synthetic demo acquisition",
        description="Write the synthetic acquisition, split it, pick frames, take the ground "
                    "truth in place of GIMP masks, train a grayscale (data1d, one foreground) "
                    "and an RGB (data3d, liver, kidney and bladder as separate organs) U-Net, "
                    "predict the held-out frames into dataXd/results and print their Dice "
                    "against the ground truth, per organ; exit status 2 when any is below "
                    "0.90. Finished steps are reused.")
    demo.add_argument("--out", default="demo", help="output folder (default: demo)")
    demo.set_defaults(handler=_cmd_demo)


def _add_demo_study(commands) -> None:
    """Declare the ``demo-study`` command and its arguments."""
    from unetlib.core.config import DemoStudyConfig

    defaults = DemoStudyConfig()
    demo_study = commands.add_parser(
        "demo-study", help="a whole study on synthetic mice, checked against the truth",
        description="Write a synthetic study into OUT/study/mice (two groups of MICE demo "
                    "acquisitions, each mouse with its own noise, lie, injection time and "
                    "uptake; the treated group takes up 1.6x the dye in the kidney), segment "
                    "every mouse with RUN (default: OUT/runs/rgb3d, trained as 'demo' trains "
                    "it when missing), analyse the study into OUT/study/results as 'study' "
                    "does, and print the trust table and the kidney's recovered ratio against "
                    "the one put in. Finished steps are reused.")
    demo_study.add_argument("--out", default="demo", help="the demo's folder (default: demo)")
    demo_study.add_argument("--run", help="a 3-laser organ run (default: OUT/runs/rgb3d)")
    demo_study.add_argument("--mice", type=int, default=defaults.mice_per_group,
                            help=f"mice per group, 2 to 20 (default: {defaults.mice_per_group})")
    demo_study.add_argument("--cycles", type=int, default=defaults.cycles,
                            help=f"laser cycles per mouse, 10 to 400 (default: {defaults.cycles})")
    demo_study.add_argument("--seed", type=int, default=defaults.seed,
                            help=f"seed of the study (default: {defaults.seed})")
    demo_study.add_argument("--workers", type=int, default=1,
                            help="mice quantified at once: 1 (default) one after another in "
                                 "this process, 2 or more on a local Dask cluster")
    demo_study.set_defaults(handler=_cmd_demo_study)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command (also used to test ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m unetlib",
        description="U-Net organ segmentation for multi-laser SWIR mouse stacks.")
    parser.add_argument("--version", action="version", version=f"unetlib {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only print warnings and errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo_stack, _add_split_stack, _add_pick_frames, _add_propose,
                _add_check_masks, _add_train, _add_crossval, _add_predict, _add_evaluate,
                _add_quantify, _add_study, _add_export, _add_run_notebooks, _add_demo,
                _add_demo_study):
        add(commands)
    return parser


class _OneLineWarnings:
    """Print warnings as ``warning: message`` lines, as users of a CLI expect."""

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        print(f"warning: {message}", file=sys.stderr)


class _WarningPrefix(logging.Formatter):
    """Log lines as the messages they are; warnings start with ``warning:`` like the
    warnings of :mod:`warnings` do."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"warning: {text}" if record.levelno == logging.WARNING else text


_PYTHON_PARAMETER = re.compile(
    r"\b([a-z][a-z0-9_]*)=('[^']*'|\([^)]*\)|\[[^\]]*\]|\S+?) is invalid")
# A setting named in the explanation (``with method='uncertain'``).
_PYTHON_SETTING = re.compile(r"\b([a-z][a-z0-9_]*)='([^']*)'")
# Parameters whose flag is not their name with dashes.
_FLAG_OF = {"learning_rate": "--lr", "freeze_encoder_epochs": "--freeze-encoder",
            "authors": "--author", "mice_per_group": "--mice"}


def cli_message(message: str, parser: argparse.ArgumentParser) -> str:
    """Name the command's own flags in a library message: ``patch_size=100000 is invalid``
    becomes ``--patch-size 100000 is invalid`` when the command has ``--patch-size``."""
    options = set(parser._option_string_actions)

    def flag_of(name: str) -> str:
        return _FLAG_OF.get(name, "--" + name.replace("_", "-"))

    def as_flag(match: re.Match) -> str:
        flag = flag_of(match.group(1))
        if flag not in options:
            return match.group(0)
        # Values as typed on the command line: (1, 1, 2) -> 1,1,2; ['a/b'] -> a/b.
        value = re.sub(r"[()\[\]' ]", "", match.group(2))
        return f"{flag} is missing" if value == "None" else f"{flag} {value} is invalid"

    def as_setting(match: re.Match) -> str:
        flag = flag_of(match.group(1))
        return f"{flag} {match.group(2)}" if flag in options else match.group(0)

    return _PYTHON_SETTING.sub(as_setting, _PYTHON_PARAMETER.sub(as_flag, message))


def _error(message: str) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)


def _out_of_memory(command: str) -> int:
    _error(f"{command} ran out of memory. Use smaller settings (batch size, patch or tile "
           "size), or close other programs.")
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 success, 2 expected error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command_parser = next(action for action in parser._actions
                          if action.dest == "command").choices[args.command]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_WarningPrefix("%(message)s"))
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        handlers=[handler])
    previous_showwarning = warnings.showwarning
    warnings.showwarning = _OneLineWarnings()
    interrupts.install()
    try:
        return args.handler(args)
    except Interrupted as error:
        _error(cli_message(str(error), command_parser))
        return EXIT_INTERRUPTED
    except UnetlibError as error:
        _error(cli_message(str(error), command_parser))
        return EXIT_ERROR
    except KeyboardInterrupt:
        _error(f"{args.command} interrupted; no file was left half-written. Run the same "
               "command again.")
        return EXIT_INTERRUPTED
    except OSError as error:
        if is_out_of_memory(error):
            return _out_of_memory(args.command)
        # Disk full, permission denied, a vanished network share: the environment, not a
        # bug; one line naming the file, like every other expected failure.
        where = error.filename or args.command
        _error(f"{where}: {error.strerror or error}. Check free space, permissions and the path.")
        return EXIT_ERROR
    except Exception as error:  # Python's MemoryError or TensorFlow's
        if not is_out_of_memory(error):
            raise
        return _out_of_memory(args.command)
    finally:
        warnings.showwarning = previous_showwarning
