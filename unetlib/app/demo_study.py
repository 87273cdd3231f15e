"""A whole study on synthetic mice: what ``python -m unetlib demo-study`` and notebook 06 run.

The mice are demo acquisitions (:class:`unetlib.core.config.DemoStudyConfig`) in two
groups, each with its own noise, lie in the frame, injection time and spread of uptake and
clearance; the treated group takes up 1.6x the dye in the kidney. They are segmented with
the demo's organ model (``runs/rgb3d`` of ``make demo``, trained here when missing) and
analysed as any study (:func:`unetlib.study.workflow.run_study`). Since the truth is
known, the result says how close the analysis came: the kidney's ratio against the ratio
put in, and no effect in the other organs.

Layout under ``out_dir`` (the demo's folder, shared with ``make demo``)::

    runs/rgb3d/          the organ model (reused when finished)
    study/mice/          mouse1.tif ... and study.csv (written once)
    study/results/       the study's analysis (stacks/, nca.csv, compare.csv, report.html ...)
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetlib.core.config import DemoStudyConfig, QuantifyConfig, StudyConfig
from unetlib.core.io import read_csv
from unetlib.data.synthetic_study import TRUTH, ensure_synthetic_study, true_ratio
from unetlib.runs.run import load_run
from unetlib.study.nca import curve_nca
from unetlib.study.workflow import StudyRun, run_study

logger = logging.getLogger(__name__)

__all__ = ["DemoStudyResult", "ensure_demo_study", "perfect_mask_ratios", "run_demo_study"]


@dataclass(frozen=True)
class DemoStudyResult:
    """What the demo study wrote and how close it came to the truth.

    Attributes
    ----------
    sheet : Path
        The study sheet of the synthetic mice.
    run_dir : Path
        The organ model that segmented them.
    study : StudyRun
        Quantification outcomes and the analysis.
    true_ratio : float
        The treated group's mean kidney uptake over the control group's (as put in).
    kidney : list of dict
        ``compare.csv``'s kidney rows of the AUC over the common window, one per laser.
    perfect_mask : dict of int to float
        Per laser, the same ratio as a perfect mask on a noiseless camera would measure it
        (:func:`perfect_mask_ratios`): what the segmentation should reproduce.
    """

    sheet: Path
    run_dir: Path
    study: StudyRun
    true_ratio: float
    kidney: list[dict[str, Any]]
    perfect_mask: dict[int, float]

    def recovered_text(self) -> str:
        """One line per laser: the kidney's measured ratio, its interval and Holm p,
        against what a perfect mask measures, under the uptake ratio put in."""
        lines = [f"kidney AUC ratio treated / control (uptake put in: {self.true_ratio:.2f}):"]
        for row in self.kidney:
            perfect = f"a perfect mask: {self.perfect_mask.get(int(row['laser']), math.nan):.2f}"
            if not math.isfinite(row["ratio"]):
                lines.append(f"  laser {row['laser']}: no ratio ({row['note'] or 'no values'}); "
                             + perfect)
                continue
            interval = (f"[{row['ratio_low']:.2f}, {row['ratio_high']:.2f}]"
                        if math.isfinite(row["ratio_low"]) else "[no interval]")
            p_value = (f"Holm p = {row['p_holm']:.2g}" if math.isfinite(row["p_holm"])
                       else "no test")
            lines.append(f"  laser {row['laser']}: {row['ratio']:.2f} {interval}, {p_value}; "
                         + perfect)
        return "\n".join(lines)


def ensure_demo_study(study_dir: str | os.PathLike[str],
                      config: DemoStudyConfig = DemoStudyConfig()) -> Path:
    """The demo study's sheet in ``<study_dir>/mice``: the mice are written the first time
    and reused while they are the same study."""
    return ensure_synthetic_study(Path(study_dir) / "mice", config.study())


def ensure_demo_organ_run(out_dir: str | os.PathLike[str]) -> Path:
    """The demo's organ model ``<out_dir>/runs/rgb3d``, trained as ``make demo`` trains it
    when it is not there yet (a finished identical run is reused)."""
    # lazy: the demo's data and training import TensorFlow only when a model is missing.
    from unetlib.app.demo import DemoConfig, prepare_demo_data
    from unetlib.runs.train import train  # lazy, as above

    config = DemoConfig()
    data = prepare_demo_data(out_dir, config)
    run = train(data.data_dirs["3d"], Path(out_dir) / "runs" / "rgb3d", config.organ_train,
                verbose=2)
    return run.run_dir


def run_demo_study(out_dir: str | os.PathLike[str], run_dir: str | os.PathLike[str] | None = None,
                   config: DemoStudyConfig = DemoStudyConfig(), *, workers: int = 1,
                   progress: bool = True) -> DemoStudyResult:
    """Write the demo study, segment it, analyse it, and compare with the truth.

    Parameters
    ----------
    out_dir : path-like
        The demo's folder (see the module docstring).
    run_dir : path-like, optional
        A 3-laser organ model; None: ``<out_dir>/runs/rgb3d``, trained when missing.
    config : DemoStudyConfig
        How many mice and cycles.
    workers : int
        Local Dask workers quantifying the mice (1: in this process).
    """
    out_dir = Path(out_dir)
    if run_dir is not None:
        load_run(run_dir)  # a run that is none is refused before any mouse is written
    run_dir = Path(run_dir) if run_dir is not None else ensure_demo_organ_run(out_dir)
    sheet = ensure_demo_study(out_dir / "study", config)
    study = run_study(sheet, run_dir, out_dir / "study" / "results", QuantifyConfig(),
                      StudyConfig(), workers=workers, progress=progress)
    kidney = [row for row in study.analysis.comparisons
              if row["organ"] == "kidney" and row["parameter"] == "auc_window"]
    window = float(study.analysis.nca[0]["window_s"])
    return DemoStudyResult(sheet=sheet, run_dir=run_dir, study=study,
                           true_ratio=true_ratio(sheet, "treated", "control"), kidney=kidney,
                           perfect_mask=perfect_mask_ratios(sheet, "kidney", "treated", "control",
                                                            window_s=window))


def perfect_mask_ratios(sheet_path: str | os.PathLike[str], organ: str, group: str,
                        reference: str, *, window_s: float | None = None) -> dict[int, float]:
    """Per laser, the ratio of ``group``'s to ``reference``'s mean AUC of ΔF over the common
    window that a perfect mask on a noiseless camera would measure (``truth.csv`` beside
    the sheet, analysed with the same NCA rules as a study).

    Parameters
    ----------
    window_s : float, optional
        The common window after the injections (default: the shortest any mouse was
        observed for, as :func:`unetlib.study.analysis.common_window` takes it).
    """
    sheet_path = Path(sheet_path)
    mice = {row["mouse"]: row for row in read_csv(sheet_path)}
    curves: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for row in read_csv(sheet_path.parent / TRUTH):
        if row["organ"] == organ:
            curves.setdefault((row["mouse"], int(row["laser"])), []).append(
                (float(row["time_s"]), float(row["mean"])))
    if window_s is None:
        window_s = min(max(time for time, _ in points) - float(mice[mouse]["injection_s"])
                       for (mouse, _), points in curves.items())
    aucs: dict[tuple[str, int], list[float]] = {}
    for (mouse, laser), points in curves.items():
        times, means = (np.array(values) for values in zip(*sorted(points)))
        result = curve_nca(times, means, np.zeros(times.size, bool),
                           float(mice[mouse]["injection_s"]), window_s=window_s)
        aucs.setdefault((mice[mouse]["group"], laser), []).append(result.auc_window)
    lasers = sorted({laser for _, laser in aucs})
    return {laser: float(np.mean(aucs[(group, laser)]) / np.mean(aucs[(reference, laser)]))
            for laser in lasers}
