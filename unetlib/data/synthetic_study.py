"""A synthetic study: mice in groups, each its own acquisition, with a known group effect.

Every mouse is a synthetic acquisition (:mod:`unetlib.data.synthetic`) with its own noise,
its own lie in the frame, its own injection cycle and its own uptake and clearance in every
organ (a spread between mice); one group takes up more dye in one organ. The study sheet
records the truth beside each mouse (``true_uptake``: that organ's uptake factor), so an
analysis can be checked against what was put in.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from unetlib.core.config import SyntheticStudyConfig
from unetlib.core.io import refuse_existing, write_csv
from unetlib.data.phantom import organs_of
from unetlib.data.synthetic import hard_mouse, write_synthetic_stack

__all__ = ["SHEET_FIELDS", "study_mice", "write_synthetic_study"]

SHEET_FIELDS = ("stack", "mouse", "group", "injection_s", "true_uptake")


def study_mice(config: SyntheticStudyConfig) -> list[dict]:
    """Every mouse of the study: its name, group, acquisition config and injection time."""
    config.validate()
    rng = np.random.default_rng([config.seed, 7321])
    effect_group, effect_organ, factor = config.effect
    organs = [organ.name for organ in organs_of(config.mouse)]
    mice = []
    for group, count in config.groups:
        for _ in range(count):
            index = len(mice)
            changes = []
            for organ in organs:
                uptake = float(rng.normal(1.0, config.between_mice))
                clearance = float(rng.normal(1.0, config.between_mice))
                if group == effect_group and organ == effect_organ:
                    uptake *= factor
                changes.append((organ, max(uptake, 0.1), max(clearance, 0.1)))
            injection = int(rng.integers(config.injection_cycles[0], config.injection_cycles[1] + 1))
            settings = {"seed": config.seed * 1000 + index, "injection_cycle": float(injection),
                        "dye_changes": tuple(changes)}
            if config.mouse.preset == "hard":
                base = {field.name: getattr(config.mouse, field.name)
                        for field in dataclasses.fields(config.mouse)
                        if field.name not in ("preset", "seed", "pose_shift", "pose_angle_degrees",
                                              "pose_scale", "max_count", "read_noise")}
                acquisition = hard_mouse(index, study_seed=config.seed, **{**base, **settings})
            else:
                shift = tuple(float(value) for value in rng.uniform(-0.02, 0.02, 2))
                acquisition = dataclasses.replace(config.mouse, organ_shift=shift,
                                                  organ_scale=float(rng.uniform(0.95, 1.05)),
                                                  **settings).validate()
            cycle_s = acquisition.frame_interval_s * acquisition.lasers
            mice.append({"mouse": f"mouse{index + 1}", "group": group, "config": acquisition,
                         "injection_s": injection * cycle_s,
                         "true_uptake": dict((name, up) for name, up, _ in changes)[effect_organ]})
    return mice


def write_synthetic_study(out_dir: str | os.PathLike[str],
                          config: SyntheticStudyConfig | None = None, *,
                          overwrite: bool = False) -> Path:
    """Write every mouse's stack and ``study.csv`` into ``out_dir``; return the sheet's path.

    Examples
    --------
    >>> import tempfile
    >>> from unetlib.core.config import SyntheticConfig, SyntheticStudyConfig
    >>> small = SyntheticStudyConfig(groups=(("a", 1), ("b", 1)), effect=("b", "kidney", 2.0),
    ...                              mouse=SyntheticConfig(cycles=8, height=48, width=64),
    ...                              injection_cycles=(2, 3))
    >>> sheet = write_synthetic_study(tempfile.mkdtemp(), small)
    >>> sheet.read_text().splitlines()[0]
    'stack,mouse,group,injection_s,true_uptake'
    """
    config = (config or SyntheticStudyConfig()).validate()
    out_dir = Path(out_dir)
    mice = study_mice(config)
    sheet = out_dir / "study.csv"
    refuse_existing([sheet, *(out_dir / f"{mouse['mouse']}.tif" for mouse in mice)],
                    overwrite=overwrite)
    rows = []
    for mouse in mice:
        stack = out_dir / f"{mouse['mouse']}.tif"
        write_synthetic_stack(stack, mouse["config"], overwrite=overwrite)
        rows.append({"stack": stack.name, "mouse": mouse["mouse"], "group": mouse["group"],
                     "injection_s": f"{mouse['injection_s']:g}",
                     "true_uptake": f"{mouse['true_uptake']:.4f}"})
    write_csv(sheet, rows, SHEET_FIELDS, overwrite=overwrite)
    return sheet
