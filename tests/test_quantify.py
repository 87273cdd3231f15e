"""Tests of unetlib.study.quantify (organ curves of whole stacks), unetlib.study.kinetics and unetlib.data.timing.

The end-to-end tests segment the 16-cycle synthetic acquisition with the session's trained
organ run (``organ_run``) and compare the measured curves with the synthetic stack's known
noise-free organ means (:func:`unetlib.data.synthetic.true_organ_means`).
"""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pytest
import tifffile
from helpers import ORGAN_STACK, run_main

from unetlib.core.config import MotionConfig, QuantifyConfig, SplitConfig
from unetlib.core.errors import InputError, OutputError, ParameterError, UnetlibWarning
from unetlib.core.io import read_csv
from unetlib.data.body import body_mask
from unetlib.data.organs import DEFAULT_COLORS, Organ, OrganTable
from unetlib.data.synthetic import true_organ_means
from unetlib.data.timing import cycle_interval, recorded_frame_interval
from unetlib.runs.run import load_run
from unetlib.study.kinetics import summarize_curve
from unetlib.study.measure import flag_area_jumps, measure_cycle
from unetlib.study.quantify import (
    INTENSITY_FIELDS,
    SUMMARY_FIELDS,
    quantify_stack,
    read_intensities,
)

ORGANS = ("liver", "kidney", "bladder")  # values 1, 2, 3 (order of unetlib.data.synthetic.ORGANS)
CYCLES, LASERS = ORGAN_STACK.cycles, ORGAN_STACK.lasers
ORGAN_STACK_SHAPE = (ORGAN_STACK.height, ORGAN_STACK.width)
SECONDS_PER_CYCLE = ORGAN_STACK.frame_interval_s * LASERS  # 2.5 s/frame x 4 lasers = 10 s
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def number(text: str) -> float:
    return float(text) if text != "" else math.nan


def organ_table(*names: str) -> OrganTable:
    return OrganTable(organs=tuple(Organ(value=index, name=name, color=DEFAULT_COLORS[index - 1])
                                   for index, name in enumerate(names, start=1)),
                      explicit_colors=True)


def write_imagej(path, frames, **metadata):
    """An ImageJ TIFF of ``frames`` (TYX by default) with the given timing metadata."""
    tifffile.imwrite(path, frames, imagej=True, metadata={"axes": "TYX", **metadata})
    return path


@pytest.fixture(scope="module")
def run(organ_run):
    """The session's organ run, loaded once for this module."""
    return load_run(organ_run["run"])


@pytest.fixture(scope="module")
def frames(organ_run) -> np.ndarray:
    """The organ stack's 64 interleaved frames, in memory."""
    return tifffile.imread(organ_run["stack"])


@pytest.fixture(scope="module")
def quantified(organ_run, run, tmp_path_factory):
    """The organ stack quantified once with default settings: (StackResult, its rows)."""
    result = quantify_stack(run, organ_run["stack"], tmp_path_factory.mktemp("quantified"))
    return result, read_intensities(result.out_dir)


def by_key(rows):
    """Rows indexed by (cycle, laser, organ)."""
    return {(int(row["cycle"]), int(row["laser"]), row["organ"]): row for row in rows}


# --- end to end: recovery of the known curves ---------------------------------------------

def measured_means(rows) -> np.ndarray:
    """The ``mean`` column as an array of shape (cycles, lasers, organs)."""
    measured = np.full((CYCLES, LASERS, len(ORGANS)), np.nan)
    for row in rows:
        measured[int(row["cycle"]), int(row["laser"]) - 1, ORGANS.index(row["organ"])] = \
            float(row["mean"])
    return measured


def correlation(a, b) -> float:
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.slow
def test_quantify_recovers_the_known_organ_curves(quantified):
    _, rows = quantified
    truth = true_organ_means(ORGAN_STACK)  # (cycles, lasers, organs)
    measured = measured_means(rows)
    assert np.isfinite(measured).all()
    relative = np.abs(measured - truth) / truth
    for index, organ in enumerate(ORGANS):
        # Measured when written: mean 1.0/0.9/2.1 %, max 2.8/4.2/4.5 % (liver/kidney/bladder).
        # The session's small model varies with its training: models trained on an AVX2-only
        # CPU put the kidney 10 % off in the dim first cycle of lasers 2 and 4, and the
        # bladder 3.2 % off on average. A cycle measured on the wrong organ or a cycle late
        # is off by 30 % or more.
        assert relative[:, :, index].mean() < 0.05, organ
        assert relative[:, :, index].max() < 0.15, organ
        # Shape: in laser 1, the frame the masks are segmented on, r >= 0.997 when written.
        assert correlation(measured[:, 0, index], truth[:, 0, index]) > 0.99, organ
        for laser in range(LASERS):
            # The synthetic organs breathe between the frames of a cycle, and one mask per
            # cycle (from laser 1) measures all four: even the true laser-1 mask reaches only
            # r = 0.957 for the small kidney in laser 4 (measured 0.962; liver 0.982, bladder
            # 0.985). A curve one cycle late gives r <= 0.88 for the kidney.
            r = correlation(measured[:, laser, index], truth[:, laser, index])
            assert r > 0.93, (organ, laser + 1, r)


def test_each_cycle_records_the_body_and_the_model_s_uncertainty_which_noise_raises(
        quantified, run, frames, tmp_path):
    result, rows = quantified
    cycles = read_csv(result.out_dir / "cycles.csv")
    assert [int(row["cycle"]) for row in cycles] == list(range(CYCLES))
    assert [row["time_s"] for row in cycles] == [row["time_s"] for row in rows
                                                 if row["laser"] == "1" and row["organ"] == ORGANS[0]]
    clean = np.array([float(row["entropy"]) for row in cycles])
    assert np.all((clean >= 0) & (clean < 0.3)) and all(int(row["body_px"]) > 0 for row in cycles)
    noisy = frames.astype(np.float64)
    noisy[::LASERS] += np.random.default_rng(0).normal(0, 600, noisy[::LASERS].shape)
    stack = write_imagej(tmp_path / "noisy.tif", np.clip(noisy, 0, 65535).astype(np.uint16),
                         finterval=ORGAN_STACK.frame_interval_s)
    unsure = quantify_stack(run, stack, tmp_path / "out")
    entropy = np.array([float(row["entropy"]) for row in read_csv(unsure.out_dir / "cycles.csv")])
    assert entropy.mean() > 1.5 * clean.mean(), (entropy.mean(), clean.mean())


def test_a_dark_frame_is_subtracted_from_what_is_measured_and_recorded(quantified, run,
                                                                       organ_run, tmp_path):
    result, rows = quantified
    dark = tmp_path / "dark.tif"
    tifffile.imwrite(dark, np.full(ORGAN_STACK_SHAPE, ORGAN_STACK.offset_counts, np.uint16))
    corrected = quantify_stack(run, organ_run["stack"], tmp_path / "out",
                               QuantifyConfig(dark=str(dark)))
    raw, dark_rows = by_key(rows), by_key(read_intensities(corrected.out_dir))
    for key, row in dark_rows.items():
        assert row["area_px"] == raw[key]["area_px"]  # the masks do not change
        assert float(row["mean"]) == pytest.approx(float(raw[key]["mean"]) - ORGAN_STACK.offset_counts,
                                                   rel=1e-5)  # the CSV's 6 digits
    record = json.loads((corrected.out_dir / "quantify.json").read_text())
    assert record["counts"] == "camera counts, dark-subtracted"
    assert record["calibration"]["dark"]["sha256"]
    assert json.loads((result.out_dir / "quantify.json").read_text())["counts"].startswith("raw")
    # the same folder with another dark frame is other results: refused without --force
    tifffile.imwrite(dark, np.full(ORGAN_STACK_SHAPE, 100, np.uint16))
    with pytest.raises(OutputError, match="holds results of another run, stack or settings"):
        quantify_stack(run, organ_run["stack"], tmp_path / "out", QuantifyConfig(dark=str(dark)))


def test_quantify_refuses_corrections_that_do_not_fit_in_one_line(organ_run, tmp_path, capsys):
    def quantify(*options):
        return run_main(capsys, "-q", "quantify", organ_run["run"], organ_run["stack"],
                        "--out", tmp_path / "out", *options)

    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros(ORGAN_STACK_SHAPE, np.uint16))
    refused = quantify("--flat", str(flat))  # unusable for any stack: before any work
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith(f"error: {flat}: has pixels that are not positive")
    assert not (tmp_path / "out").exists()
    dark = tmp_path / "dark.tif"
    tifffile.imwrite(dark, np.zeros((10, 10), np.uint16))
    failed = quantify("--dark", str(dark))  # does not fit this stack: the stack fails
    assert failed.returncode == 1, failed.stderr
    assert failed.stderr.strip() == (
        f"error: {dark}: has dark frames of 10x10 pixels, the acquisition "
        f"{ORGAN_STACK.height}x{ORGAN_STACK.width}. Give a dark frame taken with the same "
        "camera settings.")


def test_quantify_curves_match_a_perfect_mask_of_each_frame(quantified, organ_run, frames):
    """Segmentation and motion alone: the same noisy frames measured through each frame's
    own true masks (the organs breathe between the lasers of a cycle)."""
    _, rows = quantified
    measured = measured_means(rows)
    truth_labels = tifffile.imread(organ_run["root"] / "truth.tif")
    cycles = frames.reshape(CYCLES, LASERS, *frames.shape[-2:]).astype(np.float64)
    masks = truth_labels.reshape(CYCLES, LASERS, *frames.shape[-2:])
    reference = np.array([[[cycles[cycle, laser][masks[cycle, laser] == value].mean()
                            for value in range(1, len(ORGANS) + 1)]
                           for laser in range(LASERS)] for cycle in range(CYCLES)])
    relative = np.abs(measured - reference) / reference
    for index, organ in enumerate(ORGANS):
        # When written: mean 0.3/0.7/2.1 %, max 1.1/3.0/4.1 %, every r >= 0.996. Models
        # trained on an AVX2-only CPU: max 11 % (the kidney's first cycle) and r 0.96 for
        # the kidney in laser 4; a curve one cycle late gives r <= 0.88.
        assert relative[:, :, index].mean() < 0.05, organ
        assert relative[:, :, index].max() < 0.15, organ
        for laser in range(LASERS):
            r = correlation(measured[:, laser, index], reference[:, laser, index])
            assert r > 0.94, (organ, laser + 1, r)


def test_masks_follow_the_organs_into_the_other_lasers_unless_told_not_to(quantified, run,
                                                                          organ_run, tmp_path):
    _, rows = quantified
    moves = {int(row["laser"]): set() for row in rows}
    for row in rows:
        moves[int(row["laser"])].add((int(row["shift_y"]), int(row["shift_x"]), float(row["scale"])))
    assert moves[1] == {(0, 0, 1.0)}  # the segmented laser keeps the model's masks
    assert any(move != (0, 0, 1.0) for laser in (2, 3, 4) for move in moves[laser])
    reach = round(MotionConfig().max_shift * ORGAN_STACK.height)
    assert all(abs(dy) <= 2 * reach and abs(dx) <= 2 * reach
               for laser in (2, 3, 4) for dy, dx, _ in moves[laser])
    still = quantify_stack(run, organ_run["stack"], tmp_path,
                           QuantifyConfig(motion=MotionConfig(enabled=False)))
    unmoved = read_intensities(still.out_dir)
    assert {(row["shift_y"], row["shift_x"], row["scale"]) for row in unmoved} == {("0", "0", "1")}
    # Unmoved, every laser's area is the segmented mask's; moved, the areas follow the organs.
    assert len({(row["cycle"], row["organ"], row["area_px"]) for row in unmoved}) == \
        CYCLES * len(ORGANS)


def test_quantify_writes_one_row_per_cycle_laser_organ_on_the_recorded_time_axis(quantified):
    result, rows = quantified
    assert not result.skipped and result.cycles == CYCLES and result.flagged == 0
    assert result.out_dir.name == "stack"
    with open(result.intensities, newline="") as handle:
        assert handle.readline().strip().split(",") == list(INTENSITY_FIELDS)
    assert len(rows) == CYCLES * LASERS * len(ORGANS)
    assert set(by_key(rows)) == {(cycle, laser, organ) for cycle in range(CYCLES)
                                 for laser in range(1, LASERS + 1) for organ in ORGANS}
    for row in rows:
        # The ImageJ finterval is per frame: 2.5 s x 4 interleaved lasers = 10 s per cycle.
        assert float(row["time_s"]) == int(row["cycle"]) * SECONDS_PER_CYCLE
        assert int(row["area_px"]) > 0
    assert {row["qc"] for row in rows} == {"ok"}


def test_quantify_writes_labels_summary_figure_and_record(quantified):
    result, rows = quantified
    labels = tifffile.imread(result.labels)
    with tifffile.TiffFile(result.labels) as tif:
        assert len(tif.pages) == CYCLES
    assert labels.shape == (CYCLES, ORGAN_STACK.height, ORGAN_STACK.width)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    # The label images are the masks the segmented laser was measured through; the other
    # lasers' masks are these, moved (test_masks_follow_the_organs_into_the_other_lasers…).
    for row in rows:
        if row["laser"] != "1":
            continue
        value = ORGANS.index(row["organ"]) + 1
        assert int(row["area_px"]) == np.count_nonzero(labels[int(row["cycle"])] == value)

    summary = read_csv(result.summary)
    with open(result.summary, newline="") as handle:
        assert handle.readline().strip().split(",") == list(SUMMARY_FIELDS)
    assert len(summary) == len(ORGANS) * LASERS
    assert {(row["organ"], row["laser"]) for row in summary} == {
        (organ, str(laser)) for organ in ORGANS for laser in range(1, LASERS + 1)}
    keyed = by_key(rows)
    for row in summary:
        assert row["stack"] == "stack" and row["cycles"] == str(CYCLES)
        curve = [float(keyed[(cycle, int(row["laser"]), row["organ"])]["mean"])
                 for cycle in range(CYCLES)]
        assert float(row["peak"]) == pytest.approx(max(curve), rel=1e-5)
        assert float(row["time_to_peak_s"]) == int(np.argmax(curve)) * SECONDS_PER_CYCLE

    assert result.figure.read_bytes()[:8] == PNG_SIGNATURE
    # The figure draws a curve for every organ, in the colour organs.csv gives it.
    from PIL import Image

    with Image.open(result.figure) as picture:
        pixels = np.asarray(picture.convert("RGB")).reshape(-1, 3).astype(int)
    for organ in read_csv(result.out_dir / "organs.csv"):
        colour = np.array([int(organ["color"][i:i + 2], 16) for i in (1, 3, 5)])
        near = np.count_nonzero(np.abs(pixels - colour).max(axis=1) <= 24)
        assert near > 200, (organ["name"], organ["color"], near)
    record = json.loads((result.out_dir / "quantify.json").read_text())
    assert record["cycles"] == CYCLES and record["qc_flagged"] == 0
    assert record["request"]["config"]["model_input"] == [1]
    assert [row["name"] for row in read_csv(result.out_dir / "organs.csv")] == list(ORGANS)


def test_sbr_is_mean_over_body_background_and_organs_outshine_the_body(quantified):
    _, rows = quantified
    for row in rows:
        assert float(row["sbr"]) == pytest.approx(
            float(row["mean"]) / float(row["background_mean"]), rel=3e-5)
    laser1 = [row for row in rows if row["laser"] == "1"]
    assert len(laser1) == CYCLES * len(ORGANS)
    for row in laser1:
        assert float(row["background_mean"]) < float(row["mean"]), row
    # One background per cycle and laser, shared by its organs.
    for cycle in range(CYCLES):
        for laser in range(1, LASERS + 1):
            backgrounds = {row["background_mean"] for row in rows
                           if row["cycle"] == str(cycle) and row["laser"] == str(laser)}
            assert len(backgrounds) == 1


def test_hyperstack_timing_is_per_time_point_and_gives_the_same_curves(quantified, run, frames,
                                                                      tmp_path):
    _, rows = quantified
    hyper = write_imagej(tmp_path / "hyper.tif",
                         frames.reshape(CYCLES, LASERS, *frames.shape[-2:]),
                         axes="TCYX", finterval=SECONDS_PER_CYCLE)
    result = quantify_stack(run, hyper, tmp_path / "out")
    hyper_rows = read_intensities(result.out_dir)
    assert [float(row["time_s"]) for row in hyper_rows[::LASERS * len(ORGANS)]] == [
        cycle * SECONDS_PER_CYCLE for cycle in range(CYCLES)]
    assert hyper_rows == rows


# --- re-runs ------------------------------------------------------------------------------

def test_rerun_skips_other_settings_refused_and_force_redoes(organ_run, run, tmp_path):
    out = tmp_path / "out"
    first = quantify_stack(run, organ_run["stack"], out)
    intensities = first.intensities
    written = intensities.stat().st_mtime_ns
    content = intensities.read_bytes()

    again = quantify_stack(run, organ_run["stack"], out)
    assert again.skipped and again.out_dir == first.out_dir and again.cycles == CYCLES
    assert intensities.stat().st_mtime_ns == written

    with pytest.raises(OutputError, match="--force") as error:
        quantify_stack(run, organ_run["stack"], out, QuantifyConfig(interval_s=5.0))
    assert str(first.out_dir) in str(error.value)
    assert intensities.stat().st_mtime_ns == written and intensities.read_bytes() == content
    assert (first.out_dir / "quantify.json").is_file()

    forced = quantify_stack(run, organ_run["stack"], out, QuantifyConfig(interval_s=5.0,
                                                                         force=True))
    assert not forced.skipped
    assert [float(row["time_s"]) for row in read_intensities(forced.out_dir)] == [
        int(row["cycle"]) * 5.0 for row in read_intensities(forced.out_dir)]
    assert json.loads((forced.out_dir / "quantify.json").read_text())[
        "request"]["config"]["interval_s"] == 5.0
    assert not [path for path in forced.out_dir.iterdir() if path.name.startswith(".")]


# --- timing -------------------------------------------------------------------------------

def test_interval_overrides_the_recorded_timing(organ_run, tmp_path):
    # The run given as its folder (loaded by quantify_stack itself).
    result = quantify_stack(organ_run["run"], organ_run["stack"], tmp_path / "out",
                            QuantifyConfig(interval_s=7.0))
    rows = read_intensities(result.out_dir)
    assert {float(row["time_s"]) - int(row["cycle"]) * 7.0 for row in rows} == {0.0}


def test_stack_without_timing_needs_an_interval(run, frames, tmp_path):
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, frames)
    assert recorded_frame_interval(plain) is None
    with pytest.raises(InputError, match="--interval") as error:
        quantify_stack(run, plain, tmp_path / "out")
    assert str(plain) in str(error.value)
    assert not (tmp_path / "out" / "plain" / "intensities.csv").exists()
    assert not (tmp_path / "out").exists()

    result = quantify_stack(run, plain, tmp_path / "out", QuantifyConfig(interval_s=3.0))
    rows = read_intensities(result.out_dir)
    assert len(rows) == CYCLES * LASERS * len(ORGANS)
    assert {float(row["time_s"]) - int(row["cycle"]) * 3.0 for row in rows} == {0.0}


def test_recorded_frame_interval_reads_imagej_with_its_time_unit(tmp_path):
    frames = np.zeros((3, 8, 8), np.uint16)
    assert recorded_frame_interval(write_imagej(tmp_path / "s.tif", frames, finterval=2.5,
                                                tunit="s")) == 2.5
    assert recorded_frame_interval(write_imagej(tmp_path / "sec.tif", frames, finterval=2.5,
                                                tunit="sec")) == 2.5
    assert recorded_frame_interval(write_imagej(tmp_path / "default.tif", frames,
                                                finterval=4.0)) == 4.0
    assert recorded_frame_interval(write_imagej(tmp_path / "ms.tif", frames, finterval=250,
                                                tunit="ms")) == pytest.approx(0.25)
    assert recorded_frame_interval(write_imagej(tmp_path / "min.tif", frames, finterval=0.5,
                                                tunit="min")) == pytest.approx(30.0)
    # A unit it does not know is no timing at all, rather than a guessed one.
    assert recorded_frame_interval(write_imagej(tmp_path / "odd.tif", frames, finterval=2.0,
                                                tunit="fortnights")) is None


@pytest.mark.parametrize("increment, unit, seconds", [(0.5, "s", 0.5), (250.0, "ms", 0.25)])
def test_recorded_frame_interval_reads_ome_time_increment(tmp_path, increment, unit, seconds):
    path = tmp_path / "stack.ome.tif"
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint16), ome=True,
                     metadata={"axes": "TYX", "TimeIncrement": increment,
                               "TimeIncrementUnit": unit})
    with tifffile.TiffFile(path) as tif:  # what tifffile actually wrote
        assert tif.is_ome and not tif.imagej_metadata
        written = re.search(r'TimeIncrement="([^"]+)"', tif.ome_metadata)
        assert written and float(written.group(1)) == increment
        assert f'TimeIncrementUnit="{unit}"' in tif.ome_metadata
    assert recorded_frame_interval(path) == pytest.approx(seconds)


def test_recorded_frame_interval_is_none_for_a_plain_tiff_or_a_non_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((3, 8, 8), np.uint16))
    assert recorded_frame_interval(tmp_path / "plain.tif") is None
    (tmp_path / "text.tif").write_text("not a tiff")
    assert recorded_frame_interval(tmp_path / "text.tif") is None


def test_cycle_interval_scales_interleaved_frames_not_hyperstack_time_points(tmp_path):
    path = write_imagej(tmp_path / "s.tif", np.zeros((8, 8, 8), np.uint16), finterval=2.5)
    assert cycle_interval(path, lasers=4, hyperstack=False) == 10.0
    assert cycle_interval(path, lasers=3, hyperstack=False) == 7.5
    assert cycle_interval(path, lasers=4, hyperstack=True) == 2.5
    assert cycle_interval(path, lasers=4, hyperstack=False, interval_s=6.0) == 6.0
    with pytest.raises(ParameterError, match="interval"):
        cycle_interval(path, lasers=4, hyperstack=False, interval_s=0.0)
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((8, 8, 8), np.uint16))
    with pytest.raises(InputError, match="--interval"):
        cycle_interval(tmp_path / "plain.tif", lasers=4, hyperstack=False)


# --- bad inputs ---------------------------------------------------------------------------

def test_model_input_of_the_wrong_length_is_a_parameter_error(organ_run, run, tmp_path):
    with pytest.raises(ParameterError, match=r"model_input=1,2 is invalid.*1-channel"):
        quantify_stack(run, organ_run["stack"], tmp_path / "out",
                       QuantifyConfig(model_input=(1, 2)))
    assert not (tmp_path / "out").exists()


def test_model_input_laser_the_stack_lacks_is_refused(organ_run, run, tmp_path):
    with pytest.raises(InputError, match=r"has lasers 1 to 4.*laser\(s\) 7") as error:
        quantify_stack(run, organ_run["stack"], tmp_path / "out", QuantifyConfig(model_input=(7,)))
    assert str(organ_run["stack"]) in str(error.value)
    assert not (tmp_path / "out").exists()


def test_incomplete_last_cycle_is_refused_unless_dropped(run, frames, tmp_path):
    stack = write_imagej(tmp_path / "cut.tif", frames[:4 * 5 + 2],
                         finterval=ORGAN_STACK.frame_interval_s)
    with pytest.raises(InputError, match="--drop-incomplete") as error:
        quantify_stack(run, stack, tmp_path / "out")
    assert "22 frames" in str(error.value) and "2 left over" in str(error.value)
    assert not (tmp_path / "out").exists()

    with pytest.warns(UnetlibWarning, match="incomplete laser cycle"):
        result = quantify_stack(run, stack, tmp_path / "out",
                                QuantifyConfig(drop_incomplete=True))
    assert result.cycles == 5
    rows = read_intensities(result.out_dir)
    assert len(rows) == 5 * LASERS * len(ORGANS)
    assert max(int(row["cycle"]) for row in rows) == 4
    assert tifffile.imread(result.labels).shape[0] == 5


def test_offset_frames_before_the_first_cycle_are_not_an_incomplete_cycle(run, frames, tmp_path):
    # Two frames before laser 1, then 5 whole cycles: nothing left over, nothing to refuse.
    stack = write_imagej(tmp_path / "late.tif", np.concatenate([frames[-2:], frames[:20]]),
                         finterval=ORGAN_STACK.frame_interval_s)
    result = quantify_stack(run, stack, tmp_path / "out",
                            QuantifyConfig(split=SplitConfig(offset=2)))
    assert result.cycles == 5


def test_unknown_background_organ_lists_the_run_organs(organ_run, run, tmp_path):
    with pytest.raises(ParameterError, match="liver, kidney, bladder") as error:
        quantify_stack(run, organ_run["stack"], tmp_path / "out",
                       QuantifyConfig(background="spleen"))
    assert "background='spleen' is invalid" in str(error.value)
    assert not (tmp_path / "out").exists()


def test_organ_background_is_that_organs_mean(organ_run, run, tmp_path):
    result = quantify_stack(run, organ_run["stack"], tmp_path / "out",
                            QuantifyConfig(background="liver"))
    rows = read_intensities(result.out_dir)
    keyed = by_key(rows)
    for row in rows:
        liver = keyed[(int(row["cycle"]), int(row["laser"]), "liver")]
        assert float(row["background_mean"]) == pytest.approx(float(liver["mean"]), rel=1e-9)
    assert {float(row["sbr"]) for row in rows if row["organ"] == "liver"} == {1.0}


def test_a_file_where_the_results_folder_goes_is_an_output_error(organ_run, run, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stack").write_text("mine")
    with pytest.raises(OutputError, match="not a folder") as error:
        quantify_stack(run, organ_run["stack"], tmp_path / "out")
    assert str(tmp_path / "out" / "stack") in str(error.value)
    assert (tmp_path / "out" / "stack").read_text() == "mine"
    assert os.listdir(tmp_path / "out") == ["stack"]


def test_output_inside_a_file_is_an_output_error(organ_run, run, tmp_path):
    (tmp_path / "blocker").write_text("mine")
    with pytest.raises(OutputError, match="is a file"):
        quantify_stack(run, organ_run["stack"], tmp_path / "blocker" / "out")
    assert (tmp_path / "blocker").read_text() == "mine"


def test_output_in_a_read_only_folder_is_an_output_error(organ_run, run, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: file permissions do not stop root from writing")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="writable"):
            quantify_stack(run, organ_run["stack"], locked / "out")
        assert os.listdir(locked) == []
    finally:
        locked.chmod(0o755)


# --- QC and kinetics end to end -------------------------------------------------------------

@pytest.fixture(scope="module")
def blank_first_cycle(run, frames, tmp_path_factory):
    """The organ stack with a blank (constant) model-input frame in cycle 0, quantified."""
    root = tmp_path_factory.mktemp("blank_first_cycle")
    blank = frames.copy()
    blank[0] = ORGAN_STACK.offset_counts  # cycle 0, laser 1: what the model sees
    stack = write_imagej(root / "blank.tif", blank, finterval=ORGAN_STACK.frame_interval_s)
    result = quantify_stack(run, stack, root / "out")
    return result, read_intensities(result.out_dir), read_csv(result.summary)


def test_a_failed_cycle_is_flagged_and_left_out_of_the_summary(blank_first_cycle):
    result, rows, summary = blank_first_cycle
    assert {row["qc"] for row in rows if row["cycle"] == "0"} <= {"absent", "area_jump"}
    assert {row["qc"] for row in rows if row["cycle"] == "0"} != {"ok"}
    assert {row["qc"] for row in rows if row["cycle"] != "0"} == {"ok"}
    assert result.flagged == len(ORGANS)
    assert {row["cycles"] for row in summary} == {str(CYCLES - 1)}


def test_time_to_peak_counts_from_the_first_cycle_even_when_it_is_flagged(blank_first_cycle):
    _, rows, summary = blank_first_cycle
    keyed = by_key(rows)
    for row in summary:
        curve = [number(keyed[(cycle, int(row["laser"]), row["organ"])]["mean"])
                 if keyed[(cycle, int(row["laser"]), row["organ"])]["qc"] == "ok" else math.nan
                 for cycle in range(CYCLES)]
        assert float(row["time_to_peak_s"]) == int(np.nanargmax(curve)) * SECONDS_PER_CYCLE, row


# --- CLI ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_quantify_writes_results_and_gathered_tables(organ_run, tmp_path, capsys):
    out = tmp_path / "study"
    result = run_main(capsys, "-q", "quantify", organ_run["run"], organ_run["stack"],
                      "--out", out)
    assert result.returncode == 0, result.stderr
    assert str(out / "stack") in result.stdout
    assert "Traceback" not in result.stderr
    summary = read_csv(out / "summary.csv")
    assert len(summary) == len(ORGANS) * LASERS
    assert {row["stack"] for row in summary} == {"stack"}
    # The gathered table is the stack's own plus the run that measured it.
    assert {row["run"] for row in summary} == {str(organ_run["run"])}
    assert [{k: v for k, v in row.items() if k != "run"} for row in summary] == read_csv(
        out / "stack" / "summary.csv")
    stacks = read_csv(out / "stacks.csv")
    assert [(row["stack"], row["status"], row["cycles"]) for row in stacks] == [
        (str(organ_run["stack"]), "finished", str(CYCLES))]
    assert len(read_intensities(out / "stack")) == CYCLES * LASERS * len(ORGANS)


@pytest.mark.slow
def test_cli_quantify_bad_model_input_is_one_error_line(organ_run, tmp_path, capsys):
    out = tmp_path / "study"
    result = run_main(capsys, "-q", "quantify", organ_run["run"], organ_run["stack"],
                      "--out", out, "--model-input", "1,2")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--model-input 1,2 is invalid" in errors[0]
    assert "Traceback" not in result.stderr
    assert not (out / "stack" / "intensities.csv").exists()


# --- measurements without a model ---------------------------------------------------------

def test_flag_area_jumps_flags_a_doubled_area_and_an_absent_organ():
    areas = np.full((12, 3), 100.0)
    areas[:, 1] += np.arange(12)  # a slow drift is not a jump
    areas[5, 0] = 200.0
    areas[:, 2] = 0.0
    flags = flag_area_jumps(areas, window=9, tolerance=0.3)
    assert flags.shape == (12, 3)
    assert flags[5, 0] == "area_jump"
    assert set(flags[:, 2]) == {"absent"}
    expected_ok = np.ones((12, 3), bool)
    expected_ok[5, 0] = False
    expected_ok[:, 2] = False
    assert np.array_equal(flags == "ok", expected_ok)


def test_flag_area_jumps_flags_a_single_absent_cycle_only():
    areas = np.full((7, 1), 50.0)
    areas[3, 0] = 0.0
    flags = flag_area_jumps(areas, window=3, tolerance=0.3)
    assert list(flags[:, 0]) == ["ok", "ok", "ok", "absent", "ok", "ok", "ok"]


def test_absent_cycles_do_not_make_their_neighbours_look_like_jumps():
    # The organ leaves the field of view for the last three cycles: the ones before keep
    # their area and must stay "ok" (the absent cycles pulled cycle 2's running median
    # to 49.5 and flagged it).
    areas = np.array([[100.0], [101.0], [99.0], [0.0], [0.0], [0.0]])
    flags = flag_area_jumps(areas, window=7, tolerance=0.3)
    assert list(flags[:, 0]) == ["ok", "ok", "ok", "absent", "absent", "absent"]


def hand_made_cycle():
    """Two lasers of 4 x 4 pixels: organ 1 on four pixels, organ 2 on one, organ 3 absent."""
    labels = np.array([[1, 1, 0, 0],
                       [1, 1, 0, 2],
                       [0, 0, 0, 0],
                       [0, 0, 0, 0]], np.uint8)
    background = np.zeros((4, 4), bool)
    background[3, :3] = True
    laser1 = np.array([[10, 20, 0, 0],
                       [30, 40, 0, 7],
                       [0, 0, 0, 0],
                       [1, 2, 3, 999]], np.uint16)
    laser2 = laser1 * 3
    laser2[3, :3] = 5
    return np.stack([laser1, laser2]), labels, background


def test_measure_cycle_gives_exact_statistics():
    frames, labels, background = hand_made_cycle()
    result = measure_cycle(frames, labels, organ_table("a", "b", "c"), background)
    assert result.shape == (2, 3, 6) and result.dtype == np.float64
    # area, mean, median, p95 (linear interpolation), integrated, background mean
    np.testing.assert_allclose(result[0, 0], [4, 25, 25, 38.5, 100, 2])
    np.testing.assert_allclose(result[0, 1], [1, 7, 7, 7, 7, 2])
    np.testing.assert_allclose(result[1, 0], [4, 75, 75, 115.5, 300, 5])
    np.testing.assert_allclose(result[1, 1], [1, 21, 21, 21, 21, 5])
    for laser, back in ((0, 2.0), (1, 5.0)):
        assert result[laser, 2, 0] == 0 and result[laser, 2, 5] == back
        assert np.isnan(result[laser, 2, 1:5]).all()


def test_measure_cycle_leaves_non_finite_pixels_out():
    frames, labels, background = hand_made_cycle()
    frames = frames.astype(np.float32)
    frames[0, 0, 0] = np.nan  # organ 1 of laser 1 keeps 20, 30, 40
    frames[0, 3, 0] = np.inf  # background of laser 1 keeps 2, 3
    frames[1, 1, 3] = np.nan  # organ 2's only pixel in laser 2
    result = measure_cycle(frames, labels, organ_table("a", "b"), background)
    assert np.isfinite(result[0, 0]).all()
    np.testing.assert_allclose(result[0, 0, 1:], [30, 30, 39, 90, 2.5])
    np.testing.assert_allclose(result[0, 1, 1:], [7, 7, 7, 7, 2.5])
    np.testing.assert_allclose(result[1, 0, 1:], [75, 75, 115.5, 300, 5])
    assert np.isnan(result[1, 1, 1:5]).all() and result[1, 1, 5] == 5


def test_body_mask_finds_the_body_around_a_much_brighter_organ():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :128]
    body = ((yy - 48) / 30) ** 2 + ((xx - 64) / 45) ** 2 < 1
    organ = ((yy - 45) / 8) ** 2 + ((xx - 55) / 10) ** 2 < 1
    image = rng.normal(100, 10, body.shape) + 400 * body + 5000 * organ

    def iou(mask):
        return np.count_nonzero(mask & body) / np.count_nonzero(mask | body)

    found = body_mask(image, organ)
    assert found.shape == body.shape and found.dtype == bool
    assert iou(found) > 0.95
    assert found[organ].all()
    # The scene is the hard case: without the organs, Otsu separates organ from body.
    assert iou(body_mask(image)) < 0.5
    # Channels are averaged; a plain body on its own is found without help.
    plain = rng.normal(100, 10, body.shape) + 400 * body
    assert iou(body_mask(np.stack([plain, plain], axis=-1))) > 0.95


def test_summarize_curve_recovers_a_known_half_life():
    times = np.arange(0, 401, 10.0)
    values = 100 + 400 * np.exp(-np.log(2) * times / 120)
    curve = summarize_curve(times, values)
    assert curve.points == times.size
    assert curve.half_life_s == pytest.approx(120, rel=0.01)
    assert curve.half_life_r2 > 0.999
    assert curve.plateau == pytest.approx(100, rel=0.01)
    assert curve.peak == pytest.approx(500) and curve.time_to_peak_s == 0
    assert curve.auc == pytest.approx(np.trapezoid(values, times))


def test_summarize_curve_gives_no_half_life_for_a_rising_curve():
    times = np.arange(0, 401, 10.0)
    curve = summarize_curve(times, 5 + 2 * times)
    assert math.isnan(curve.half_life_s) and math.isnan(curve.half_life_r2)
    assert curve.time_to_peak_s == 400 and curve.peak == 805


def test_summarize_curve_uses_only_the_finite_points():
    times = np.arange(0, 401, 10.0)
    values = 100 + 400 * np.exp(-np.log(2) * times / 120)
    gappy = values.copy()
    gappy[[3, 7, 20]] = np.nan
    curve = summarize_curve(times, gappy)
    keep = np.isfinite(gappy)
    assert curve.points == times.size - 3
    assert curve.auc == pytest.approx(np.trapezoid(values[keep], times[keep]))
    assert curve.half_life_s == pytest.approx(120, rel=0.01)
    assert summarize_curve(times, np.full(times.shape, np.nan)).points == 0


def test_time_to_peak_is_measured_from_the_first_cycle_when_that_point_is_missing():
    times = np.arange(0, 200, 10.0)
    values = 100 + 400 * (1 - np.exp(-times / 30)) * np.exp(-times / 300)
    peak_time = times[np.argmax(values)]
    assert summarize_curve(times, values).time_to_peak_s == peak_time
    values[0] = np.nan
    assert summarize_curve(times, values).time_to_peak_s == peak_time
