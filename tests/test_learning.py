"""The default organ recipe still learns: a small case of the hard synthetic benchmark.

Frames of the hard preset (four organs, a thin spleen, a small bladder, texture, breathing,
drift, vignetting, low light): 12 annotated laser-1 frames from 2 mice, scored on held-out
frames of those mice and of a mouse the model never saw. ``train`` runs with its defaults
for organ data (the network it chooses by task) and fewer steps than a real run. Each
organ must reach its floor: a change of default that leaves an organ unlearnt fails here,
not in a scientist's curves.
"""

from __future__ import annotations

import pytest

from unetlib.app.organ_benchmark import make_hard_benchmark, score_run
from unetlib.core.config import PipelineConfig, TrainConfig
from unetlib.runs.train import train

pytestmark = pytest.mark.slow

# The budget is a third of a real run's (400 steps of batch 8 on 128-pixel patches), so the
# small organs are still learning: measured (AMD EPYC, AVX-512, 2 cores, CPU family 25), Dice
# on held-out frames of the training mice / the unseen mouse, with today's defaults (the
# outline-weighted loss, the "organs" augmentation, organ holes filled, the kept model
# corrected for the patches' class frequencies x0.75), seed 0: liver 0.996 / 0.995, kidney
# 0.410 / 0.404, spleen 0.886 / 0.865, bladder 0.609 / 0.562; seed 1: 0.995 / 0.996, 0.298 /
# 0.357, 0.961 / 0.972, 0.485 / 0.493. The same trainings uncorrected (last.keras): kidney
# 0.518 / 0.497 and 0.382 / 0.434, the other organs within 0.02; an earlier training of seed
# 0 uncorrected had kidney 0.731 / 0.823: at a third of the budget the kidney is the
# noisiest organ, whatever the recipe, and the correction, which trims every organ's
# uncertain rim, trims most where the model is least sure. Half-size frames or 96-pixel
# patches at this budget left the bladder or the kidney unlearnt (Dice 0.0-0.16), so the
# case is full size. The floors catch an organ that is no longer learnt at this budget
# (unlearnt: 0.00-0.16), with room for the spread between seeds, runs and machines.
FLOORS = {"seen": {"liver": 0.90, "kidney": 0.20, "spleen": 0.60, "bladder": 0.25},
          "unseen": {"liver": 0.90, "kidney": 0.20, "spleen": 0.60, "bladder": 0.25}}


@pytest.fixture(scope="module")
def hard_case(tmp_path_factory):
    return make_hard_benchmark(tmp_path_factory.mktemp("hard"), train_mice=2, unseen_mice=1,
                               frames_per_mouse=6, held_out_per_mouse=3, study_seed=5)


def test_default_organ_recipe_reaches_every_organs_floor_on_seen_and_unseen_mice(
        hard_case, tmp_path):
    config = TrainConfig(epochs=8, steps_per_epoch=50,
                         pipeline=PipelineConfig(patch_size=128, batch_size=8, seed=0))
    result = train(hard_case.data_dir, tmp_path / "run", config, verbose=0)
    assert result.run_dir.is_dir()
    scores = score_run(tmp_path / "run", hard_case)
    below = {f"{group} {organ}: {scores[group][organ]:.3f} < {floor}"
             for group, floors in FLOORS.items() for organ, floor in floors.items()
             if not scores[group][organ] >= floor}
    assert not below, f"organs below their floor: {sorted(below)} (all scores: {scores})"
