"""Write the suite's notebooks from the cell sources below, optionally executing them.

The notebooks are the product's face, so their sources are kept here, reviewable as
plain Python strings, and regenerated rather than hand-edited as JSON:

    .venv/bin/python tools/build_notebooks.py            # sources only, no outputs
    .venv/bin/python tools/build_notebooks.py --execute  # and store a demo run's outputs

``--execute`` runs each notebook in ``notebooks/`` (as a user would, on the demo data in
``../demo``) and saves it with its outputs, which nbval then guards (``make test``).
Cells tagged ``nbval-check-output`` have deterministic output that nbval compares; the
rest (timings, trained metrics, figures) are executed but not compared.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from unetlib.app.demo import DemoConfig, organ_demo_training

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CHECK = "nbval-check-output"
PARAMETERS = "parameters"

NB01 = [
    ("md", """
# 01 · Reshaping a multi-laser stack

A SWIR acquisition is one TIFF stack whose frames cycle through the lasers (frame *i* was
taken with laser *i* mod 4). This notebook

1. opens the stack memory-mapped and de-interleaves the lasers,
2. lets you browse the frames, and shows a 3-laser composite and each laser's brightness
   over time,
3. exports per-laser frames (`laser1/ … laser4/`, bit depth kept), composites
   (`channels3/`: 8-bit PNG to look at + lossless TIFF; `channels4/`: TIFF) and `manifest.csv`,
4. picks frames far apart in time for annotation into `data1d/` (one laser) and `data3d/`
   (composite), plus a few held-out test frames.

**Needs:** a TIFF stack. With `stack_path = ""` it runs on the synthetic demo acquisition.
**Next:** draw masks in GIMP on `train/annotate/<i>.png`, save them as `train/masks/<i>.png`,
then run `02_augmentation`. Re-running with the same parameters is safe: nothing is overwritten.
"""),
    ("code", """
%matplotlib inline
%config InlineBackend.figure_formats = ["jpeg"]  # photos of noisy frames: a fraction of the PNG size
from unetlib import (
    PickConfig, SplitConfig, SyntheticConfig, ensure_demo_stack, frame_browser, load_stack, pick_frames,
    plot_composite, plot_laser_means, plot_picked, split_stack,
)
"""),
    ("code", """
stack_path = ""                  # acquisition TIFF to reshape; empty: the synthetic demo stack
demo_dir = "../demo"             # where the demo stack is written when stack_path is empty
demo_cycles = 30                 # laser cycles of the demo stack (4 frames each)
lasers = 4                       # number of lasers the stack cycles through
offset = 0                       # index of the first frame taken with laser 1
split_dir = "../demo/split"      # output folder of laser1/..., channels3/, channels4/
show_cycle = 0                   # cycle (time point) shown in the composite figure
pick_count = 15                  # frames to pick for annotation
test_count = 5                   # held-out frames to pick for testing (0: none)
pick_method = "spread"           # "spread" (even in time) or "diverse" (most different)
pick_laser = 1                   # laser of the grayscale frames (data1d), 1-based
data1d_dir = "../demo/data1d"    # grayscale data folder receiving picked frames
data3d_dir = "../demo/data3d"    # 3-channel data folder receiving picked composites
force = False                    # replace earlier, different outputs (re-runs never need it)
""", PARAMETERS),
    ("code", """
split_config = SplitConfig(lasers=lasers, offset=offset, force=force)
stack = load_stack(ensure_demo_stack(stack_path, demo_dir, SyntheticConfig(cycles=demo_cycles)), split_config)
print(stack.summary())
""", CHECK),
    ("md", "Browse the frames: cycle slider, laser selector and contrast limits (a static figure when run headless)."),
    ("code", """
frame_browser(stack)
"""),
    ("code", """
plot_composite(stack, show_cycle, split_config.composite3)
"""),
    ("code", """
plot_laser_means(stack)
"""),
    ("code", """
split = split_stack(stack.path, split_dir, split_config)
for folder, count in split.counts.items():
    print(f"{folder}: {count} files")
""", CHECK),
    ("code", """
picked = {}
for data_dir, channels in ((data1d_dir, 1), (data3d_dir, 3)):
    train = pick_frames(stack.path, data_dir, PickConfig(count=pick_count, method=pick_method, channels=channels,
                                                           laser=pick_laser, force=force), split_config)
    picked[data_dir] = train.cycles
    if test_count:
        pick_frames(stack.path, data_dir, PickConfig(count=test_count, channels=channels, laser=pick_laser,
                                                     subset="test", exclude=tuple(train.cycles), force=force), split_config)
    print(f"{data_dir}: train cycles {train.cycles}")
""", CHECK),
    ("code", """
plot_picked(stack, picked[data1d_dir], pick_laser)
"""),
]

NB02 = [
    ("md", """
# 02 · Checking masks and augmenting

The annotated frames are checked before anything trains on them: every frame in
`train/frames` needs a mask with the same name in `train/masks`, of the same size, that is
binary and not empty. Masks may come from GIMP in any encoding (value 1, 0/255, colour,
alpha, palette, 16-bit); the table says which rule decided the foreground.

Then one random transform (rotation, shift, shear, zoom, flips) is applied to each image
*and* its mask, patches are cut so that a share of them contains the organ, and a batch
is drawn from the same tf.data pipeline training uses.

**Needs:** `data1d/` and `data3d/` with `train/frames` and `train/masks` (notebook 01, then
GIMP), and `organs.csv` naming the organ values when masks hold several organs. With
`demo = True` the synthetic demo's ground truth stands in for the GIMP masks; set
`demo = False` for your own data (demo masks are only ever written into the demo's folders).
**Next:** `03_train_grayscale` and `04_train_rgb`.
"""),
    ("code", """
%matplotlib inline
%config InlineBackend.figure_formats = ["jpeg"]  # photos of noisy frames: a fraction of the PNG size
import dataclasses

from unetlib import (
    PipelineConfig, annotate_demo, augment_preset, check_pairs, load_pairs, make_training_dataset,
    mask_viewer, plot_pairs, publish_summary, split_pairs, take_samples, to_dict, to_display,
    write_augmented_pairs,
)
"""),
    ("code", """
data1d_dir = "../demo/data1d"      # grayscale data folder (train/frames + train/masks)
data3d_dir = "../demo/data3d"      # 3-channel data folder (train/frames + train/masks)
demo = True                        # the synthetic demo: its ground truth stands in for GIMP masks; False for your data
augment = "default"                # augmentation preset: "default", "organs" (stronger intensity jitter: what organ data train with), "original" (Keras 2 recipe) or "none"
patch_size = 256                   # side of the training patches, pixels (multiple of 16)
batch_size = 8                     # patches per batch
foreground_share = 0.5             # share of patches centred on the organ, 0..1
val_fraction = 0.2                 # share of frames held out for validation
seed = 0                           # seed of the split and of the augmentation
preview_count = 8                  # augmented pairs shown in the preview grid
aug_dir = ""                       # write preview_count augmented pairs here (e.g. "../demo/data1d/train/aug"); "" skips
""", PARAMETERS),
    ("code", """
for data_dir in (data1d_dir, data3d_dir):
    annotate_demo(data_dir, demo=demo)
reports = {data_dir: check_pairs(data_dir) for data_dir in (data1d_dir, data3d_dir)}
print(reports[data1d_dir].format_table())
""", CHECK),
    ("code", """
print(reports[data3d_dir].format_table())
""", CHECK),
    ("md", "Flip through the annotated pairs, mask outlined in yellow (a static grid when run headless)."),
    ("code", """
for report in reports.values():
    report.raise_for_errors()
mask_viewer(data1d_dir)
"""),
    ("code", """
pipeline = PipelineConfig(patch_size=patch_size, batch_size=batch_size, foreground_share=foreground_share,
                          val_fraction=val_fraction, seed=seed)
augment_config = augment_preset(augment)
pairs = load_pairs(data1d_dir)
train_pairs, val_pairs = split_pairs(pairs, val_fraction=val_fraction, seed=seed)
print(f"{len(pairs)} pairs: training {[p.stem for p in train_pairs]}, validation {[p.stem for p in val_pairs]}")
print(f"augmentation '{augment}': {to_dict(augment_config)}")
""", CHECK),
    ("md", "Augmented training patches as the network sees them, with their masks outlined."),
    ("code", """
images, masks = take_samples(train_pairs, pipeline, augment_config, count=preview_count)
plot_pairs([to_display(image) for image in images], masks[..., 0], columns=4, panel_inches=1.6)
"""),
    ("code", """
shapes = {}
for data_dir in (data1d_dir, data3d_dir):
    train_set = split_pairs(load_pairs(data_dir), val_fraction=val_fraction, seed=seed)[0]
    batch_images, batch_masks = next(iter(make_training_dataset(train_set, pipeline, augment_config)))
    shapes[data_dir] = batch_images.shape[-1]
    print(f"{data_dir}: images {tuple(batch_images.shape)} {batch_images.dtype.name}, "
          f"masks {tuple(batch_masks.shape)} {batch_masks.dtype.name} with values {sorted(set(batch_masks.numpy().ravel().tolist()))}")
""", CHECK),
    ("code", """
if aug_dir:
    written = write_augmented_pairs(train_pairs, aug_dir, pipeline, augment_config, count=preview_count)
    print(f"wrote {len(written)} augmented pairs to {aug_dir}")
"""),
    ("code", """
publish_summary({"pairs_1d": len(reports[data1d_dir].rows), "pairs_3d": len(reports[data3d_dir].rows),
                 "mask_errors": sum(len(r.errors) for r in reports.values()),
                 "mask_warnings": sum(len(r.warnings) for r in reports.values())})
""", CHECK),
]


def _train_notebook(kind: str) -> list:
    gray = kind == "1d"
    title = "03 · Training on grayscale frames" if gray else "04 · Training on RGB composites"
    data_name, data_default, run_prefix = (("data1d_dir", "../demo/data1d", "gray") if gray
                                           else ("data3d_dir", "../demo/data3d", "rgb"))
    run_name = f"{run_prefix}_run_dir"
    run_default = f"../demo/runs/{run_prefix}{kind}"
    truth_name = f"truth{kind}_dir"
    truth_default = f"../demo/truth{kind}"
    results_name = f"results{kind}_dir"
    what = ("one laser per frame (`data1d/`, 1 channel; the demo annotates one foreground: in "
            "one laser kidney and bladder look alike)" if gray
            else "3-laser composites (`data3d/`, 3 channels; the demo annotates liver, kidney "
            "and bladder as separate organs)")
    # The demo's own settings (unetlib.app.demo), so the notebook reuses the demo's finished run.
    demo_train = DemoConfig().train if gray else organ_demo_training()
    epochs, steps = demo_train.epochs, demo_train.steps_per_epoch
    patch = demo_train.pipeline.patch_size
    return [
        ("md", f"""
# {title}

Trains a U-Net on {what}. With `organs.csv` in the data folder (the demo has one: liver,
kidney, bladder) it learns each organ as its own class: a softmax head, cross-entropy plus
Dice averaged over the organs (`loss = "auto"` weighs the cross-entropy of the pixels along
the outlines 5x; the demo's sharp organs need only the plain sum), patches centred on every
organ alike; with binary masks,
one sigmoid foreground and a decision threshold calibrated on the validation frames.
Patches are cut from the full-resolution frames (no resizing); whole frames are held out
for validation, where Dice (per organ) and IoU are logged every epoch. The run folder keeps the best model, every parameter, the history and the
metrics; re-running with the same parameters reuses the finished run.

The held-out test frames are then segmented at full resolution (overlapping tiles, no
seams) into `results/` -- organ values in a palette PNG that shows each organ in its
colour -- and, when ground truth is known (the demo), scored honestly: Dice, IoU,
precision and recall per organ and frame, not just pixel accuracy.

**Needs:** checked frames and masks (notebook 02). **Command line:** `python -m unetlib
train`, `predict`, `evaluate` do the same.
"""),
        ("code", """
%matplotlib inline
%config InlineBackend.figure_formats = ["jpeg"]  # photos of noisy frames: a fraction of the PNG size
import dataclasses
import os

from unetlib import (
    CrossvalConfig, PipelineConfig, TrainConfig, annotate_demo, augment_preset, check_package, crossvalidate,
    demo_test_truth, error_map, evaluate_folders, export_package, feature_maps, find_pairs, load_run,
    model_preset, normalize_image, package_summary, plot_confusion, plot_crossval, plot_feature_maps,
    plot_frame_scores, plot_history, plot_organ_scores, plot_threshold_curve, predict_folder,
    prediction_viewer, publish_summary, read_image, train,
)
"""),
        ("code", "\n".join([
            f'{data_name} = "{data_default}"'.ljust(33) + "  # data folder: train/frames, train/masks, test/",
            f'{run_name} = "{run_default}"'.ljust(33) + "  # run folder (model.keras, config.json, history, metrics)",
            f'{results_name} = ""'.ljust(33) + '  # predicted masks; "": <data folder>/results',
        ]) + """
demo = True                        # the synthetic demo: its ground truth stands in for GIMP masks; False for your data
""" + f'{truth_name} = "{truth_default}"'.ljust(33) + """  # truth masks of the test frames, for scoring; "" if none
""" + ('preset = ""'.ljust(35) + '# network; "": by task ("default" for one foreground, "organs" with organs.csv); or "wide", "classic", "small"' if gray else
       'preset = "default"'.ljust(35) + '# network; the demo\'s easy organs need only "default"; "": by task ("organs" with organs.csv, for real acquisitions); or "wide", "classic", "small"') + """
augment = "default"                # augmentation preset: "default", "organs" (stronger intensity jitter), "original" or "none"; "": by task ("organs" for organs.csv with the "organs" network)
""" + (f'loss = "{demo_train.loss}"'.ljust(35) + '# "auto": bce (binary masks) or edge-ce+dice (organs.csv); or "bce+dice", "ce", "ce+dice"' if gray else
       f'loss = "{demo_train.loss}"'.ljust(35) + '# the demo\'s easy organs: plain ce+dice; "auto": edge-ce+dice for organs.csv (real acquisitions), bce for binary masks; or "ce"') + """
""" + f"epochs = {epochs}".ljust(35) + """# training epochs
""" + f"steps_per_epoch = {steps}".ljust(35) + """# batches per epoch
batch_size = 8                     # patches per batch
""" + f"patch_size = {patch}".ljust(35) + """# patch side, pixels (multiple of 16)
val_fraction = 0.2                 # share of frames held out for validation
seed = 0                           # seed of split, weights and augmentation
max_minutes = 0                    # stop after this many minutes, keeping the best model; 0: no limit
threshold = 0                      # decision threshold in (0, 1); 0: the one calibrated on validation frames
tta = False                        # average predictions over flips (4x slower)
force = False                      # replace an existing, different run in the run folder
""" + f"crossval_folds = {3 if gray else 0}".ljust(35) + """# K-fold cross-validation of this training (e.g. 5); 0: skip it
crossval_epochs = 2                # epochs per fold (the demo keeps it short; use `epochs` for a real estimate)
crossval_dir = ""                  # fold runs and scores; "": <run folder>_crossval
feature_levels = ["down0", "down2", "bottleneck", "up0"]  # U-Net levels to show (down0 … bottleneck … up0); []: every encoder level, the bottleneck, the last decoder level
""" + f'package_path = "../demo/{run_prefix}{kind}.zip"'.ljust(33) + """  # bioimage.io package the model is exported to; "": none
""", PARAMETERS),
        ("code", f"""
annotate_demo({data_name}, demo=demo)
truth_dir = demo_test_truth({data_name}, {truth_name}, demo=demo)
pipeline = PipelineConfig(batch_size=batch_size, patch_size=patch_size, val_fraction=val_fraction, seed=seed)
config = TrainConfig(model=model_preset(preset) if preset else None, augment=augment_preset(augment) if augment else None, pipeline=pipeline, loss=loss,
                     epochs=epochs, steps_per_epoch=steps_per_epoch, max_minutes=max_minutes or None)
result = train({data_name}, {run_name}, config, force=force, verbose=2)
print(f"{{result.epochs_completed}} epochs, best {{result.best_epoch}}: validation Dice {{result.val_dice:.3f}}",
      "per organ " + str({{name: round(s["dice"], 3) for name, s in result.metrics["val_organs"].items()}})
      if result.threshold is None else f"at threshold {{result.threshold:.2f}}")
"""),
        ("code", """
plot_history(result.history)
"""),
        ("md", "A binary run's decision threshold, calibrated on the validation frames: how much Dice depends on it."),
        ("code", """
plot_threshold_curve(result.metrics["dice_by_threshold"], result.threshold) if result.threshold is not None else print("organ run: each pixel takes its most probable organ, no threshold")
"""),
        ("md", """
**What the network sees.** The activations of a few levels of the U-Net for the first annotated
frame, the most active channels of each (every panel scaled on its own): the encoder's
edges and textures, the coarse organ-versus-body map at the bottleneck, and the last
decoder level the classes are read from.
"""),
        ("code", f"""
run = load_run(result.run_dir)
frame = normalize_image(read_image(find_pairs({data_name})[0][0]), run.normalize)  # the first annotated frame
plot_feature_maps(feature_maps(run.model, frame, feature_levels or None), image=frame, channels_per_level=5)
"""),
        ("md", """
**How good is this model likely to be?** The validation frames above are few, and they
also chose the best epoch. K-fold cross-validation trains one model per fold of whole
frames and scores each on the frames it never saw; the spread over folds says how much a
single split can be trusted. Fold runs are kept and reused (`python -m unetlib crossval`
does the same).
"""),
        ("code", f"""
cv = crossvalidate({data_name}, crossval_dir or str({run_name}).rstrip("/") + "_crossval",
                   CrossvalConfig(folds=crossval_folds, seed=seed,
                                  train=dataclasses.replace(config, epochs=crossval_epochs))) if crossval_folds else None
print(cv.to_text() if cv else "cross-validation skipped (crossval_folds = 0)")
"""),
        ("code", """
plot_crossval(cv.per_fold, cv.summary, load_run(cv.run_dirs[0]).organs) if cv else None
"""),
        ("code", f"""
results_dir = {results_name} or os.path.join({data_name}, "results")
written = predict_folder(result.run_dir, os.path.join({data_name}, "test"), results_dir,
                         threshold=threshold or None, tta=tta, overwrite=True, progress=False)
print(sorted(os.path.basename(path) for path in written))
""", CHECK),
        ("md", "Test frames with the predicted mask (red) and, when known, the truth (green); a static grid when run headless."),
        ("code", f"""
prediction_viewer(os.path.join({data_name}, "test"), results_dir, truth_dir)
"""),
        ("code", """
report = evaluate_folders(results_dir, truth_dir) if truth_dir else None
print(report.to_text() if report else "no truth masks: nothing to score")
"""),
        ("code", """
if report is None:
    figure = None
elif report.organs is not None:
    figure = plot_organ_scores(report.per_organ, report.organs)
else:
    figure = plot_frame_scores(report.frames, keys=("dice", "iou", "precision", "recall"))
figure
"""),
        ("md", "Where the model is wrong on its worst test frame: pixels it missed (blue) and added (red)."),
        ("code", f"""
error_map(report, os.path.join({data_name}, "test")) if report else None
"""),
        ("md", "Which organ was taken for which, as a share of each true organ's pixels (organ runs)."),
        ("code", """
plot_confusion(report.confusion, ["background", *report.organs.names]) if report is not None and report.confusion is not None else None
"""),
        ("code", """
print(sorted(report.mean) if report else [])
""", CHECK),
        ("md", "Export the model as a bioimage.io package (Fiji/deepImageJ, ilastik, QuPath, napari; `predict` and `quantify` accept it too), validated offline."),
        ("code", """
package = export_package(result.run_dir, package_path, overwrite=True) if package_path else None
print(package_summary(check_package(package)) if package else "not exported")
"""),
        ("code", """
publish_summary({"val_dice": round(result.val_dice, 4), "threshold": result.threshold,
                 **({"crossval_dice": round(float(sum(s["mean"] for s in cv.summary.values()) / len(cv.summary)), 4)} if cv else {}),
                 **({f"test_dice_{name}": round(s["dice"], 4) for name, s in report.per_organ.items()} if report else {}),
                 "epochs": result.epochs_completed, "test_frames": len(written),
                 **({f"test_{key}": round(value, 4) for key, value in report.mean.items()} if report else {})})
"""),
    ]


NB05 = [
    ("md", """
# 05 · Organ signal over time

What a SWIR study reports is how bright each organ is, in each laser, over the
acquisition. This notebook takes whole stacks and a trained run (notebook 03 or 04) and

1. segments **every** laser cycle at full resolution with the run's model -- its input built
   as in training (the same laser, or the same composite) -- and applies that cycle's organ
   mask to the frame of every laser;
2. writes, per stack, `intensities.csv` (cycle x laser x organ: area, mean, median, 95th
   percentile, integrated intensity, body background, signal-to-background ratio, QC flag),
   `summary.csv` (peak, time to peak, area under the curve, clearance half-life with its fit
   quality), `cycles.csv` (the model's uncertainty per cycle), `labels.tif` (the mask of every
   cycle) and `curves.png`;
3. lets you browse the cycles with the organ outlines over each laser, and shows the curves
   and the summary.

Cycles where an organ's area jumps away from its running median (a failed mask, motion)
are flagged in the `qc` column and kept out of the summary, not averaged in. Several stacks
run on a local Dask cluster (`workers`) or an existing one (`scheduler`); finished stacks are
skipped when the notebook is run again.

**Needs:** a run folder (notebook 04 trains the demo's) and stacks. With `stack_paths = []` it
runs on the synthetic demo stack, whose true organ curves are known. **Command line:**
`python -m unetlib quantify RUN STACK ... --out DIR` does the same.
"""),
    ("code", """
%matplotlib inline
%config InlineBackend.figure_formats = ["jpeg"]  # photos of noisy frames: a fraction of the PNG size
from unetlib import (
    QuantifyConfig, SplitConfig, SyntheticConfig, cycle_browser, ensure_demo_stack, load_stack,
    plot_organ_curves, publish_summary, quantify_study, read_intensities, read_organ_table, summary_text,
)
"""),
    ("code", """
stack_paths = []                 # acquisition TIFFs to quantify; []: the synthetic demo stack
run_dir = "../demo/runs/rgb3d"   # run folder of the model (notebook 04 trains the demo's)
out_dir = "../demo/quantify"     # results: <out_dir>/<stack stem>/ per stack, summary.csv over all
demo_dir = "../demo"             # where the demo stack is written when stack_paths is empty
demo_cycles = 30                 # laser cycles of the demo stack (4 frames each)
interval = 0                     # seconds between laser cycles; 0: from the TIFF's timing metadata
lasers = 4                       # number of lasers the stacks cycle through
offset = 0                       # index of the first frame taken with laser 1
model_input = []                 # lasers making the model input, e.g. [1] or [1, 2, 3]; []: as in training
background = ""                  # organ used as background; "": body pixels outside every organ
workers = 1                      # local Dask worker processes when there are several stacks
scheduler = ""                   # a running Dask cluster, e.g. "tcp://10.0.0.5:8786"; "": local
show_cycle = 10                  # cycle shown in the browser (the only one when run headless)
force = False                    # quantify again stacks whose results exist
""", PARAMETERS),
    ("code", """
stacks = stack_paths or [ensure_demo_stack("", demo_dir, SyntheticConfig(cycles=demo_cycles))]
config = QuantifyConfig(split=SplitConfig(lasers=lasers, offset=offset), model_input=tuple(model_input) or None,
                        interval_s=interval or None, background=background or None, force=force)
study = quantify_study(run_dir, stacks, out_dir, config, workers=workers, scheduler=scheduler or None,
                       progress=False)
print([(outcome.stack.name, outcome.status != "failed", outcome.result.cycles if outcome.result else outcome.message)
       for outcome in study.outcomes])
""", CHECK),
    ("md", "Browse the cycles of the first stack: every laser's frame with that cycle's organ outlines (a static figure of `show_cycle` when run headless)."),
    ("code", """
first = study.outcomes[0].result
stack = load_stack(first.stack, config.split)
cycle_browser(stack, first.out_dir, cycle=min(show_cycle, stack.cycles - 1))
"""),
    ("md", "Mean intensity of each organ over time, one panel per laser; crosses mark cycles flagged by QC, the dashed line is the body background."),
    ("code", """
plot_organ_curves(read_intensities(first.out_dir), read_organ_table(first.out_dir / "organs.csv"),
                  title=first.stack.name)
"""),
    ("md", "Per organ and laser: peak, time to peak (s), area under the curve (counts x s), clearance half-life (s) and its fit's R² (`-`: the curve does not decay enough within the acquisition to tell), mean signal-to-background ratio, cycles flagged."),
    ("code", """
print(summary_text(study.summary))
"""),
    ("code", """
print(sorted({name for name in read_intensities(first.out_dir)[0]}))
""", CHECK),
    ("code", """
publish_summary({"stacks": len(study.outcomes), "failed": len(study.failed),
                 "cycles": sum(o.result.cycles for o in study.outcomes if o.result),
                 "qc_flagged": sum(o.result.flagged for o in study.outcomes if o.result)})
"""),
]


NB06 = [
    ("md", """
# 06 · A study: groups of mice compared

A scientist reports a study, not one mouse: mice in groups (control / treated, doses), each
imaged after an injection, compared on one value per mouse. This notebook takes a study
sheet and a trained run and

1. quantifies every mouse's stack not yet quantified (as notebook 05, on Dask when there are
   several), aligns each curve to its injection (ΔF = F − F0, F0 the mean before it),
2. computes per mouse, organ and laser the peak, its time, the AUC over the window every mouse
   was observed for, the terminal half-life and AUC to infinity by PKNCA's rules (`nca.csv`),
3. compares every group with the reference group: ratio of means with a 95 % Fieller
   interval, a two-sided test and Holm-adjusted p over the whole table (`compare.csv`),
4. says where to trust the model: per mouse, the share of organ-cycles QC flagged and the
   model's uncertainty on the stack, worst first (`trust.csv`), and writes `report.html`, one
   self-contained file with figures, tables and methods for the lab notebook.

**The sheet**, `study.csv` beside the stacks: `stack` (path relative to the sheet), `mouse`,
`group`, optional `injection_s` (seconds from the first frame to the injection) and any other
columns (dose, sex, ...), carried into every table. With `sheet_path = ""` it runs on the
synthetic demo study: 2 groups of demo mice, the treated one taking up 1.6x the dye in the
kidney and nothing else different, so you can see the analysis find what was put in.
**Needs:** a run folder (notebook 04 trains the demo's). **Command line:**
`python -m unetlib study study.csv --run RUN --out DIR` does the same.
"""),
    ("code", """
%matplotlib inline
from unetlib import (
    DemoStudyConfig, QuantifyConfig, SplitConfig, StudyConfig, comparison_text, ensure_demo_study,
    perfect_mask_ratios, plot_group_curves, publish_summary, read_study_sheet, run_study, study_browser,
    true_ratio, trust_text,
)
"""),
    ("code", """
sheet_path = ""                       # the study sheet, study.csv; "": the synthetic demo study
run_dir = "../demo/runs/rgb3d"        # run folder of the model (notebook 04 trains the demo's)
out_dir = "../demo/study/results"     # the analysis: stacks/ (each mouse quantified), nca.csv, compare.csv, report.html
demo_dir = "../demo/study"            # where the demo study's mice are written when sheet_path is empty
study_mice = 5                        # mice per group of the demo study
study_cycles = 12                     # laser cycles of each demo mouse (4 frames each)
interval = 0                          # seconds between laser cycles; 0: from the TIFF's timing metadata
lasers = 4                            # number of lasers the stacks cycle through
offset = 0                            # index of the first frame taken with laser 1
model_input = []                      # lasers making the model input, e.g. [1, 2, 3]; []: as in training
dark = ""                             # dark frame (or stack) subtracted before measuring; "": raw counts
flat = ""                             # flat field (one per laser) divided out; "": none
reference = ""                        # the group the others are compared with; "": the sheet's first
test = "welch"                        # "welch" (two-sided Welch t-test) or "mannwhitney"
auc = "linear"                        # "linear" trapezoids or "linear-up-log-down"
workers = 1                           # local Dask worker processes quantifying the mice
scheduler = ""                        # a running Dask cluster, e.g. "tcp://10.0.0.5:8786"; "": local
show_lasers = [1, 2]                  # lasers of the group curves; []: every laser
show_parameter = "auc_window"         # parameter of the comparison table (and shown first in the browser)
""", PARAMETERS),
    ("code", """
sheet = sheet_path or ensure_demo_study(demo_dir, DemoStudyConfig(mice_per_group=study_mice, cycles=study_cycles))
study_sheet = read_study_sheet(sheet)
print({group: [mouse.mouse for mouse in study_sheet.mice if mouse.group == group] for group in study_sheet.groups})
""", CHECK),
    ("code", """
quantify = QuantifyConfig(split=SplitConfig(lasers=lasers, offset=offset), model_input=tuple(model_input) or None,
                          interval_s=interval or None, dark=dark or None, flat=flat or None)
result = run_study(sheet, run_dir, out_dir, quantify, StudyConfig(reference=reference or None, test=test, auc=auc),
                   workers=workers, scheduler=scheduler or None, progress=False)
analysis = result.analysis
print(f"{len(analysis.nca)} curves of {len(study_sheet.mice) - len(analysis.left_out)} mice; left out: {analysis.left_out or 'none'}")
""", CHECK),
    ("md", "Where to trust the model, worst first: the share of each mouse's organ-cycles that QC flagged and the model's mean uncertainty on its stack (entropy inside the body, 0: sure, 1: a coin toss). A mouse far from the others is named below with the frames to annotate next."),
    ("code", """
print(trust_text(analysis.trust) + "".join(f"\\nwarning: {caution}" for caution in analysis.warnings))
"""),
    ("md", "Each group's mean ΔF ± SD over time since the injection, a panel per organ and laser (each mouse's cycles matched to a common grid of the median cycle interval)."),
    ("code", """
plot_group_curves(analysis.groups, study_sheet.groups, lasers=show_lasers or None,
                  signal="dF" if study_sheet.has_injection else "F")
"""),
    ("md", "One dot per mouse, the bar its group's mean: choose the parameter and the laser (a static figure of `show_parameter` in the first laser when run headless)."),
    ("code", """
study_browser(analysis.nca, study_sheet.groups, parameter=show_parameter)
"""),
    ("md", "Every group against the reference on `show_parameter`, per organ and laser: the means, the ratio with its 95 % interval and the Holm-adjusted p over the whole `compare.csv` (every organ, laser and parameter)."),
    ("code", """
print(comparison_text(analysis.comparisons, show_parameter))
"""),
    ("md", "The demo study's truth, to hold beside the kidney rows above: the ratio of the groups' mean kidney uptake that was put in, and per laser the AUC ratio a perfect mask on a noiseless camera measures (in laser 3 the kidney starts dimmer than the body around it, which hides the start of its rise from every mouse alike and inflates the ratio: see the README's Studies section)."),
    ("code", """
print(f"kidney uptake ratio put in: {true_ratio(sheet, 'treated', 'control'):.2f}; a perfect mask, per laser: "
      + str({laser: round(ratio, 2) for laser, ratio in perfect_mask_ratios(
          sheet, "kidney", "treated", "control", window_s=analysis.nca[0]["window_s"]).items()})
      if not sheet_path else "your study: no truth to compare with")
print(f"report for the lab notebook: {analysis.out_dir / 'report.html'}")
"""),
    ("code", """
publish_summary({"mice": len(study_sheet.mice), "left_out": len(analysis.left_out), "warnings": len(analysis.warnings),
                 "comparisons": len(analysis.comparisons),
                 "significant": sum(row["p_holm"] < 0.05 for row in analysis.comparisons)})
"""),
]


SUITE = {
    "01_reshaping.ipynb": NB01,
    "02_augmentation.ipynb": NB02,
    "03_train_grayscale.ipynb": _train_notebook("1d"),
    "04_train_rgb.ipynb": _train_notebook("3d"),
    "05_quantify.ipynb": NB05,
    "06_study.ipynb": NB06,
}


def build(cells: list) -> nbformat.NotebookNode:
    """A notebook from ``(kind, source, *tags)`` tuples, with stable cell ids."""
    notebook = new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                       "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    for index, (kind, source, *tags) in enumerate(cells):
        cell = (new_markdown_cell if kind == "md" else new_code_cell)(source.strip("\n"))
        if tags:
            cell.metadata["tags"] = list(tags)
        cell["id"] = f"c{index:02d}"
        notebook.cells.append(cell)
    return notebook


def execute(notebook: nbformat.NotebookNode, timeout: int = 1800) -> nbformat.NotebookNode:
    """Run a notebook from the notebooks folder and drop run-specific metadata."""
    from nbclient import NotebookClient

    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
    notebook.metadata.pop("widgets", None)
    notebook.metadata["language_info"] = {"name": "python"}
    return notebook


def with_stored_outputs(notebook: nbformat.NotebookNode,
                        stored: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``notebook`` with the outputs of ``stored``, cell by cell; both must have the same cells."""
    kinds = [cell.cell_type for cell in notebook.cells]
    if kinds != [cell.cell_type for cell in stored.cells]:
        raise SystemExit("the cells changed (added, removed or reordered): run with --execute")
    for cell, old in zip(notebook.cells, stored.cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = old.outputs, old.execution_count
    notebook.metadata = stored.metadata
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebooks to write (default: all), e.g. 02")
    parser.add_argument("--execute", action="store_true", help="run them and store the outputs")
    parser.add_argument("--keep-outputs", action="store_true",
                        help="keep each cell's stored outputs (after a change to code that prints "
                             "nothing different, e.g. imports; nbval then checks they still hold)")
    args = parser.parse_args(argv)
    for name, cells in SUITE.items():
        if args.names and not any(name.startswith(prefix) for prefix in args.names):
            continue
        notebook = build(cells)
        if args.execute:
            print(f"executing {name} ...", flush=True)
            notebook = execute(notebook)
        elif args.keep_outputs:
            notebook = with_stored_outputs(notebook, nbformat.read(NOTEBOOKS / name, as_version=4))
        nbformat.write(notebook, NOTEBOOKS / name)
        print(f"wrote {NOTEBOOKS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
