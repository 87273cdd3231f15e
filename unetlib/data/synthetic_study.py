"""A synthetic study: mice in groups, each its own acquisition, with a known group effect.

Every mouse is a synthetic acquisition (:mod:`unetlib.data.synthetic`) with its own noise,
its own lie in the frame, its own injection cycle and its own uptake and clearance in every
organ (a spread between mice); one group takes up more dye in one organ. The study sheet
records the truth beside each mouse (``true_uptake``: that organ's uptake factor), and
``truth.csv`` every organ's noise-free mean over its true pixels in every cycle and laser
(what a perfect mask would measure), so an analysis can be checked against what was put in.

The two truths differ where an organ is dimmer than the body around it before the dye
arrives: the phantom shows the brighter of body and organ, so the first part of the rise is
hidden there, which takes the same amount off every mouse's ΔF and inflates a ratio of
groups (the demo kidney in laser 3: uptake ratio 1.59, perfect-mask AUC ratio 2.03).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from unetlib.core.config import SyntheticStudyConfig, to_dict
from unetlib.core.io import read_csv, read_json, refuse_existing, write_csv, write_json
from unetlib.core.records import same_request
from unetlib.data.phantom import organs_of
from unetlib.data.synthetic import hard_mouse, write_synthetic_stack

__all__ = ["SHEET_FIELDS", "TRUTH", "ensure_synthetic_study", "study_mice", "true_ratio",
           "write_synthetic_study"]

SHEET_FIELDS = ("stack", "mouse", "group", "injection_s", "true_uptake")
TRUTH_FIELDS = ("mouse", "organ", "laser", "cycle", "time_s", "mean")
RECORD = "synthetic_study.json"
TRUTH = "truth.csv"


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
    """Write every mouse's stack, ``study.csv`` and ``truth.csv`` into ``out_dir``; return
    the sheet's path.

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
    refuse_existing([sheet, out_dir / TRUTH,
                     *(out_dir / f"{mouse['mouse']}.tif" for mouse in mice)], overwrite=overwrite)
    rows, truth = [], []
    for mouse in mice:
        stack = out_dir / f"{mouse['mouse']}.tif"
        acquisition = mouse["config"]
        means = np.empty((acquisition.cycles, acquisition.lasers, len(organs_of(acquisition))))
        write_synthetic_stack(stack, acquisition, overwrite=overwrite, means_out=means)
        rows.append({"stack": stack.name, "mouse": mouse["mouse"], "group": mouse["group"],
                     "injection_s": f"{mouse['injection_s']:g}",
                     "true_uptake": f"{mouse['true_uptake']:.4f}"})
        cycle_s = acquisition.frame_interval_s * acquisition.lasers
        truth += [{"mouse": mouse["mouse"], "organ": organ.name, "laser": laser + 1,
                   "cycle": cycle, "time_s": f"{cycle * cycle_s:g}",
                   "mean": f"{means[cycle, laser, number]:.4f}"}
                  for number, organ in enumerate(organs_of(acquisition))
                  for laser in range(acquisition.lasers) for cycle in range(acquisition.cycles)]
    write_csv(out_dir / TRUTH, truth, TRUTH_FIELDS, overwrite=overwrite)
    write_csv(sheet, rows, SHEET_FIELDS, overwrite=overwrite)
    return sheet


def ensure_synthetic_study(out_dir: str | os.PathLike[str],
                           config: SyntheticStudyConfig | None = None, *,
                           overwrite: bool = False) -> Path:
    """``study.csv`` of the synthetic study in ``out_dir``: written the first time, reused
    while ``synthetic_study.json`` there records the same study.

    Lets notebook 06 and ``demo-study`` be run again without writing the mice again.

    Raises
    ------
    OutputError
        ``out_dir`` holds another study's files (or other files of those names) and
        ``overwrite`` is off; nothing is written.
    """
    config = (config or SyntheticStudyConfig()).validate()
    out_dir = Path(out_dir)
    sheet, record = out_dir / "study.csv", out_dir / RECORD
    mice = [out_dir / row["stack"] for row in read_csv(sheet)] if sheet.is_file() else []
    if (not overwrite and record.is_file() and (out_dir / TRUTH).is_file() and mice
            and all(path.is_file() for path in mice)
            and same_request(to_dict(config), read_json(record))):
        return sheet
    refuse_existing([sheet, record], overwrite=overwrite)
    written = write_synthetic_study(out_dir, config, overwrite=overwrite)
    write_json(record, to_dict(config), overwrite=overwrite)
    return written


def true_ratio(sheet_path: str | os.PathLike[str], group: str, reference: str) -> float:
    """The ratio of ``group``'s to ``reference``'s mean true uptake in the effect organ, from a
    synthetic study's sheet (its ``true_uptake`` column): what an analysis should find.

    Examples
    --------
    >>> import tempfile
    >>> from unetlib.core.config import SyntheticConfig, SyntheticStudyConfig
    >>> small = SyntheticStudyConfig(groups=(("a", 1), ("b", 1)), effect=("b", "kidney", 2.0),
    ...                              mouse=SyntheticConfig(cycles=8, height=48, width=64),
    ...                              injection_cycles=(2, 3), between_mice=0.0)
    >>> true_ratio(write_synthetic_study(tempfile.mkdtemp(), small), "b", "a")
    2.0
    """
    rows = read_csv(sheet_path)
    mean = {name: float(np.mean([float(row["true_uptake"]) for row in rows
                                 if row["group"] == name])) for name in (group, reference)}
    return mean[group] / mean[reference]
