"""Tests of unetlib.inference.uncertainty: the score, the choice, and pick-frames --method uncertain."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

from unetlib.app.cli import main
from unetlib.core.config import PickConfig, PipelineConfig, SplitConfig, TrainConfig, model_preset
from unetlib.core.errors import ParameterError
from unetlib.core.io import read_csv, read_image
from unetlib.data.stack import load_stack
from unetlib.inference.uncertainty import (
    choose_uncertain,
    mean_entropy,
    pick_frames,
    uncertainty_scores,
)
from unetlib.runs.run import load_run
from unetlib.runs.train import train


def test_mean_entropy_is_one_for_a_coin_toss_and_zero_for_certainty():
    assert mean_entropy(np.full((4, 5), 0.5)) == pytest.approx(1.0)
    assert mean_entropy(np.zeros((4, 5))) == pytest.approx(0.0, abs=1e-9)
    assert mean_entropy(np.full((4, 5, 4), 0.25)) == pytest.approx(1.0)
    p = 0.9  # binary entropy of 0.9 in bits
    assert mean_entropy(np.full((2, 2), p)) == pytest.approx(
        -(p * np.log2(p) + (1 - p) * np.log2(1 - p)))


def test_mean_entropy_averages_inside_the_region_only():
    probabilities = np.zeros((4, 4))
    probabilities[:, :2] = 0.5
    region = np.zeros((4, 4), bool)
    region[:, :2] = True
    assert mean_entropy(probabilities, region) == pytest.approx(1.0)
    assert mean_entropy(probabilities) == pytest.approx(0.5)


def test_the_most_uncertain_cycles_are_chosen_apart_from_each_other():
    cycles = list(range(10))
    scores = [0.1, 0.2, 0.5, 0.9, 0.8, 0.3, 0.1, 0.7, 0.0, 0.2]
    assert choose_uncertain(cycles, scores, 3, gap=1) == [3, 4, 7]
    # 4 and 2 are within 2 cycles of 3: the next most uncertain far enough is 7, then 5.
    assert choose_uncertain(cycles, scores, 3, gap=2) == [3, 7, 5]
    # A gap too wide for the count fills up by score alone.
    assert choose_uncertain(cycles, scores, 3, gap=20) == [3, 4, 7]


@pytest.fixture
def picked_data(organ_run, tmp_path):
    """A copy of the organ run's data folder (8 annotated 1-laser frames of a 16-cycle stack)."""
    data = tmp_path / "data"
    shutil.copytree(organ_run["root"] / "data", data)
    return data


def _split():
    return SplitConfig()


def test_uncertain_frames_are_added_after_the_annotated_ones_untouched(organ_run, picked_data):
    before = {path.relative_to(picked_data): path.read_bytes()
              for path in (picked_data / "train").rglob("*") if path.is_file()}
    rows_before = read_csv(picked_data / "train" / "frames.csv")
    config = PickConfig(count=2, method="uncertain", channels=1, run=str(organ_run["run"]))
    result = pick_frames(organ_run["stack"], picked_data, config, _split())

    assert [path.name for path in result.frames] == ["8.png", "9.png"]
    assert all(path.is_file() for path in result.frames + result.annotate)
    for name, content in before.items():  # frames, masks, previews: byte for byte
        if name.name != "frames.csv":
            assert (picked_data / name).read_bytes() == content, name
    rows = read_csv(picked_data / "train" / "frames.csv")
    assert [{k: row[k] for k in rows_before[0]} for row in rows[:8]] == rows_before
    annotated = {int(row["cycle"]) for row in rows_before}
    new = rows[8:]
    assert [int(row["cycle"]) for row in new] == result.cycles
    assert not set(result.cycles) & annotated
    assert all(row["picked_by"].startswith("uncertain ") and float(row["uncertainty"]) > 0
               for row in new)

    ranking = read_csv(picked_data / "train" / "uncertainty.csv")
    tested = {int(row["cycle"]) for row in read_csv(picked_data / "test" / "frames.csv")}
    assert len(tested) == 4  # the test frames are never offered for training
    assert sorted(int(row["cycle"]) for row in ranking) == sorted(set(range(16)) - annotated - tested)
    scores = [float(row["uncertainty"]) for row in ranking]
    assert scores == sorted(scores, reverse=True)
    gap = max(1, 16 // (3 * (2 + 8)))
    assert result.cycles == choose_uncertain([int(row["cycle"]) for row in ranking], scores, 2,
                                             gap=gap)
    assert {int(row["cycle"]) for row in ranking if row["chosen"] == "1"} == set(result.cycles)


def test_picking_again_with_the_same_model_adds_nothing(organ_run, picked_data):
    config = PickConfig(count=2, method="uncertain", channels=1, run=str(organ_run["run"]))
    first = pick_frames(organ_run["stack"], picked_data, config, _split())
    files = sorted(path.name for path in (picked_data / "train" / "frames").iterdir())
    again = pick_frames(organ_run["stack"], picked_data, config, _split())
    assert again.cycles == first.cycles
    assert sorted(path.name for path in (picked_data / "train" / "frames").iterdir()) == files
    assert len(read_csv(picked_data / "train" / "frames.csv")) == 10


@pytest.mark.slow
def test_the_ranking_changes_when_the_model_changes(organ_run, tmp_path):
    """A barely trained model is unsure everywhere and ranks the cycles otherwise."""
    stack = load_stack(organ_run["stack"], SplitConfig())
    lasers, cycles = (1,), list(range(16))
    trained = uncertainty_scores(load_run(organ_run["run"]), stack, cycles, lasers)
    config = TrainConfig(model=model_preset("small"), epochs=1, steps_per_epoch=2,
                         pipeline=PipelineConfig(batch_size=4, patch_size=64, val_fraction=0.25))
    train(organ_run["root"] / "data", tmp_path / "barely", config, verbose=0)
    barely = uncertainty_scores(load_run(tmp_path / "barely"), stack, cycles, lasers)
    assert barely.mean() > 2 * trained.mean(), (barely, trained)
    assert list(np.argsort(-trained)[:5]) != list(np.argsort(-barely)[:5])


def test_a_run_of_other_channels_is_refused(organ_run, picked_data):
    config = PickConfig(count=2, method="uncertain", channels=3, run=str(organ_run["run"]))
    with pytest.raises(ParameterError, match="takes 1-channel frames, not the 3-channel"):
        pick_frames(organ_run["stack"], picked_data, config, _split())
    assert len(read_csv(picked_data / "train" / "frames.csv")) == 8


def test_cli_uncertain_without_a_run_is_one_line(organ_run, tmp_path, capsys):
    code = main(["pick-frames", str(organ_run["stack"]), "--out", str(tmp_path / "d"),
                 "--method", "uncertain", "--count", "2"])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and "--run is missing" in error[0]
    assert "--method uncertain" in error[0]
    assert not (tmp_path / "d").exists()


def test_cli_uncertain_names_the_new_frames(organ_run, picked_data, capsys):
    code = main(["pick-frames", str(organ_run["stack"]), "--out", str(picked_data),
                 "--method", "uncertain", "--count", "2",
                 "--run", str(organ_run["run"])])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "(2 files: 8.png, 9.png)" in printed


def test_uncertain_picks_rank_the_cycles_of_every_mouse_and_come_from_the_least_known(
        organ_run, picked_data, tmp_path):
    """The run learnt mouse 1 (its stack); mouse 2 lies elsewhere, larger and dimmer."""
    from helpers import ORGAN_STACK

    from unetlib.data.synthetic import write_synthetic_stack

    other, _ = write_synthetic_stack(tmp_path / "mouse2.tif", replace(
        ORGAN_STACK, seed=9, organ_shift=(0.12, -0.1), organ_scale=1.25, organ_contrast=0.5))
    config = PickConfig(count=3, method="uncertain", channels=1, run=str(organ_run["run"]))
    result = pick_frames([organ_run["stack"], other], picked_data, config, _split())

    ranking = read_csv(picked_data / "train" / "uncertainty.csv")
    by_stack = {name: [float(row["uncertainty"]) for row in ranking if row["stack"] == name]
                for name in ("stack.tif", "mouse2.tif")}
    # every candidate of both mice: mouse 1 has 8 annotated and 4 test cycles
    assert len(by_stack["stack.tif"]) == 4 and len(by_stack["mouse2.tif"]) == 16
    assert np.mean(by_stack["mouse2.tif"]) > np.mean(by_stack["stack.tif"])
    assert result.stacks.count("mouse2.tif") >= 2, result.stacks
    rows = read_csv(picked_data / "train" / "frames.csv")[8:]
    assert [(row["stack"], int(row["cycle"])) for row in rows] == list(
        zip(result.stacks, result.cycles))
    for row in rows:  # each new frame is its stack's cycle
        stack = load_stack(organ_run["stack"] if row["stack"] == "stack.tif" else other)
        np.testing.assert_array_equal(
            read_image(picked_data / "train" / "frames" / row["file"]),
            stack.composite(int(row["cycle"]), (1,))[..., 0])


def test_choose_uncertain_keeps_the_gap_within_a_stack_only():
    candidates = [("a", 0), ("a", 1), ("b", 1), ("b", 5)]
    scores = [0.9, 0.85, 0.8, 0.1]
    # ("a", 1) is too close to ("a", 0); ("b", 1) is another mouse's cycle 1
    assert choose_uncertain(candidates, scores, 2, gap=3) == [("a", 0), ("b", 1)]
    assert choose_uncertain(candidates, scores, 3, gap=3) == [("a", 0), ("b", 1), ("b", 5)]
