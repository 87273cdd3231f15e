"""The hard multi-organ benchmark: its data folder, its held-out frames, its Dice."""

from __future__ import annotations

import numpy as np
import pytest

from unetlib.app.organ_benchmark import make_hard_benchmark, organ_dice
from unetlib.core.io import read_image

SMALL = dict(train_mice=2, unseen_mice=1, frames_per_mouse=6, cycles=12, height=127,
             width=159, study_seed=3)


@pytest.mark.parametrize("held_out", [3, 4])
def test_held_out_frames_of_the_training_mice_are_never_annotated_ones(tmp_path, held_out):
    bench = make_hard_benchmark(tmp_path, held_out_per_mouse=held_out, **SMALL)
    frames = sorted((bench.data_dir / "train" / "frames").glob("*.png"))
    assert len(frames) == 12 and (bench.data_dir / "organs.csv").is_file()
    annotated = [np.asarray(read_image(path)) for path in frames]
    seen = [group for group in bench.held_out if group.seen]
    assert [group.mouse for group in seen] == [0, 1]
    for group in bench.held_out:
        assert len(group.cycles) == held_out == len(group.images) == len(group.labels)
    for group in seen:
        for image in group.images:
            assert not any(np.array_equal(image, frame) for frame in annotated)
    assert [group.seen for group in bench.held_out] == [True, True, False]


def test_binary_benchmark_annotates_the_union_of_the_organs(tmp_path):
    bench = make_hard_benchmark(tmp_path, held_out_per_mouse=2, binary=True, **SMALL)
    assert not (bench.data_dir / "organs.csv").exists()
    assert list(bench.organs.names) == ["foreground"]
    mask = np.asarray(read_image(bench.data_dir / "train" / "masks" / "0.png"))
    assert set(np.unique(mask)) == {0, 1}
    assert set(np.unique(bench.held_out[0].labels)) == {0, 1}


def test_organ_dice_leaves_out_frames_without_the_organ():
    prediction = np.array([[1, 1, 0], [2, 0, 0]])
    truth = np.array([[1, 0, 0], [2, 2, 0]])
    assert organ_dice(prediction, truth, 1) == pytest.approx(2 / 3)
    assert organ_dice(prediction, truth, 2) == pytest.approx(2 / 3)
    assert np.isnan(organ_dice(prediction, truth, 3))
