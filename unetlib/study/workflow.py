"""One command for a study: quantify every stack of the sheet not yet quantified, then
analyse the whole study (``python -m unetlib study``).

``<out>/stacks/<stem>/`` holds each stack's quantification (as ``quantify`` writes it;
finished stacks of the same run and settings are skipped), ``<out>/`` the analysis
(:mod:`unetlib.study.analysis`). A stack that fails is reported and left out of the
analysis; the others finish.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from unetlib.core.config import QuantifyConfig, StudyConfig
from unetlib.core.errors import InputError, ParameterError, UnetlibError, describe
from unetlib.core.locking import output_lock
from unetlib.data.stack import load_stack
from unetlib.data.timing import cycle_interval
from unetlib.study.analysis import StudyAnalysis, analyse_study
from unetlib.study.sheet import StudySheet, read_study_sheet

__all__ = ["StudyRun", "run_study"]

STACKS_FOLDER = "stacks"


@dataclass(frozen=True)
class StudyRun:
    """A study's quantification outcomes and its analysis."""

    quantified: object  # unetlib.study.cluster.StudyResult
    analysis: StudyAnalysis


def run_study(sheet_path: str | os.PathLike[str], run_path: str | os.PathLike[str],
              out_dir: str | os.PathLike[str], quantify: QuantifyConfig | None = None,
              config: StudyConfig | None = None, *, workers: int = 1,
              scheduler: str | None = None, progress: bool = True) -> StudyRun:
    """Quantify the sheet's stacks with ``run_path`` into ``<out>/stacks``, then analyse.

    Parameters
    ----------
    sheet_path : path-like
        ``study.csv`` (:func:`unetlib.study.sheet.read_study_sheet`).
    run_path : path-like
        A run folder written by ``train``.
    out_dir : path-like
    quantify : QuantifyConfig
        Lasers, offset, interval, ... as for ``quantify``.
    config : StudyConfig
        The analysis' settings (reference group, test, AUC rule).
    workers, scheduler, progress
        As :func:`unetlib.study.cluster.quantify_study`.

    Raises
    ------
    InputError, ParameterError
        A bad sheet or setting: before any stack is read.
    """
    sheet = read_study_sheet(sheet_path)
    config = (config or StudyConfig()).validate()
    if config.reference is not None and config.reference not in sheet.groups:
        raise ParameterError(describe(sheet.path, f"has no group {config.reference!r} (its "
                                      f"groups: {', '.join(sheet.groups)})",
                                      "Give --reference one of them."))
    quantify = quantify or QuantifyConfig()
    _check_injections(sheet, quantify)
    # lazy: TensorFlow (and Dask) load only once the sheet and settings are found good.
    from unetlib.study.cluster import quantify_study

    out_dir = Path(out_dir)
    with output_lock(out_dir):
        quantified = quantify_study(run_path, [mouse.stack for mouse in sheet.mice],
                                    out_dir / STACKS_FOLDER, quantify,
                                    workers=workers, scheduler=scheduler, progress=progress)
        failed = {str(outcome.stack): outcome.message for outcome in quantified.failed}
        analysis = analyse_study(sheet, out_dir / STACKS_FOLDER, out_dir, config, failed=failed)
    return StudyRun(quantified=quantified, analysis=analysis)


def _check_injections(sheet: StudySheet, config: QuantifyConfig) -> None:
    """Refuse an injection after its stack's last cycle before anything is quantified.

    A stack that cannot be read here is left to quantification, which reports it as that
    stack's failure while the others finish.
    """
    for mouse in sheet.mice:
        if mouse.injection_s is None:
            continue
        try:
            stack = load_stack(mouse.stack, config.split)
            interval = cycle_interval(stack.path, lasers=stack.lasers, hyperstack=stack.hyperstack,
                                      interval_s=config.interval_s)
        except UnetlibError:
            continue
        last = (stack.cycles - 1) * interval
        if mouse.injection_s > last:
            raise InputError(describe(sheet.path, f"mouse {mouse.mouse}: injection_s="
                                      f"{mouse.injection_s:g} lies after the last cycle of "
                                      f"{mouse.stack.name} ({last:g} s)", "Give the seconds from "
                                      "the first frame to the injection."))
