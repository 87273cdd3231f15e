"""The demo's stand-in annotation: only ever written into the demo's own data folders."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from unetlib.app.demo import annotate_demo, demo_test_truth
from unetlib.core.config import PickConfig, SyntheticConfig
from unetlib.core.errors import InputError
from unetlib.core.io import read_csv, read_image
from unetlib.data.dataset import check_pairs
from unetlib.data.frames import pick_frames
from unetlib.data.synthetic import write_synthetic_stack

SMALL = SyntheticConfig(cycles=6, height=48, width=64)


@pytest.fixture
def demo_dir(tmp_path):
    demo = tmp_path / "demo"
    write_synthetic_stack(demo / "stack.tif", SMALL, truth_path=demo / "truth.tif")
    return demo


@pytest.mark.parametrize("organs", [False, True])
def test_the_demo_folder_is_annotated_from_its_truth(demo_dir, organs):
    data = demo_dir / "data1d"
    picked = pick_frames(demo_dir / "stack.tif", data, PickConfig(count=3)).cycles
    pick_frames(demo_dir / "stack.tif", data, PickConfig(count=2, subset="test",
                                                         exclude=tuple(picked)))
    written = annotate_demo(data, demo=True, organs=organs)
    assert [path.name for path in written] == ["0.png", "1.png", "2.png"]
    # Each mask is the truth of the stack frame it was picked from: organ values, or 0/1.
    labels = tifffile.imread(demo_dir / "truth.tif")
    for row, path in zip(read_csv(data / "train" / "frames.csv"), written):
        expected = labels[int(row["stack_frames"].split()[0])]
        mask = np.asarray(read_image(path))
        np.testing.assert_array_equal(mask, expected if organs else (expected > 0))
        assert mask.max() == (3 if organs else 1)
    report = check_pairs(data)
    assert report.ok and (report.organs is not None) == organs
    truth = demo_test_truth(data, demo_dir / "truth1d", demo=True, organs=organs)
    assert sorted(path.name for path in truth.iterdir()) == ["0.png", "1.png"]
    assert annotate_demo(data, demo=True, organs=organs) == written  # repeating is a no-op


def test_demo_switched_off_writes_nothing(demo_dir, tmp_path):
    data = tmp_path / "mine"
    pick_frames(demo_dir / "stack.tif", data, PickConfig(count=2))
    assert annotate_demo(data, demo=False) == []
    assert not (data / "train" / "masks").exists()
    assert demo_test_truth(data, "", demo=False) is None


def test_a_user_folder_is_never_annotated_with_demo_masks(demo_dir, tmp_path):
    """A user's data folder placed where the demo truth is found is still refused:
    its frames did not come from the demo stack."""
    other = tmp_path / "other"
    write_synthetic_stack(other / "stack.tif", SyntheticConfig(cycles=6, height=48, width=64,
                                                               seed=5))
    data = demo_dir / "users_data"
    pick_frames(other / "stack.tif", data, PickConfig(count=2))
    with pytest.raises(InputError, match="was not picked from the demo stack"):
        annotate_demo(data, demo=True)
    assert not (data / "train" / "masks").exists()
    with pytest.raises(InputError, match="is not a demo data folder"):
        annotate_demo(tmp_path / "elsewhere", demo=True)


def test_the_demo_fails_when_a_score_misses_its_target(tmp_path):
    """`make demo` exits non-zero on any of these lines: a broken training must not pass."""
    from unetlib.app.demo import DemoConfig, DemoResult

    config = DemoConfig()
    result = DemoResult(stack=tmp_path / "stack.tif", split_dir=tmp_path / "split",
                        test_dice={"1d": 0.95, "3d": 0.97}, quantify_dir=tmp_path / "q",
                        organ_dice={"3d": {"liver": 0.99, "kidney": 0.97, "bladder": 0.96}},
                        curve_errors={"liver": {"mean_error": 0.01, "max_error": 0.02}})
    assert result.failures(config) == []
    result.organ_dice["3d"]["kidney"] = 0.85
    result.test_dice["1d"] = 0.5
    result.curve_errors["bladder"] = {"mean_error": 0.08, "max_error": 0.2}
    curves, dice = result.failures(config)
    assert curves.endswith("further than 5 % from the truth: bladder 8.0 %.")
    assert "below the demo target 0.90: data1d foreground 0.500, data3d kidney 0.850." in dice
