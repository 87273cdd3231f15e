"""A study's analysis: per-mouse NCA, group curves and group comparisons, from the
per-stack ``intensities.csv`` that :func:`unetlib.study.cluster.quantify_study` writes.

Into the study's output folder:

- ``nca.csv``: one row per mouse x organ x laser (:mod:`unetlib.study.nca`), with the
  sheet's own columns (dose, sex, ...) carried through;
- ``groups.csv``: mean, SD, SEM and n of each group's curve per organ x laser x time,
  the mice's cycles matched to a common time grid (see :func:`group_curves`);
- ``compare.csv``: every group against the reference group per organ x laser x
  parameter (:mod:`unetlib.study.compare`), Holm-adjusted over the whole table;
- ``trust.csv``: per mouse, worst first, the share of organ-cycles QC flagged and the
  model's mean uncertainty on the stack (:func:`trust_rows`); a mouse far from the
  study's others is named in the result's ``warnings`` (and ``study.json``, the report;
  the CLI prints them as warning lines);
- ``group_curves.png`` and ``report.html`` (:mod:`unetlib.study.report`: figures, tables and
  a methods paragraph in one self-contained file);
- ``study.json``: the settings, the time grid, the stacks left out and why; written
  last, so a folder without it holds no finished analysis.

A stack whose quantification failed is named in ``study.json`` and the returned result and
left out of every table, never silently.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetlib.core.config import StudyConfig, to_dict
from unetlib.core.errors import InputError, ParameterError, describe
from unetlib.core.io import atomic_path, read_csv, write_csv, write_json
from unetlib.study.compare import compare_groups, holm
from unetlib.study.nca import baseline_corrected, curve_nca
from unetlib.study.report import figure_png, write_report
from unetlib.study.results_folder import CYCLES_FILE, INTENSITIES_FILE, stack_output_dir
from unetlib.study.sheet import StudyMouse, StudySheet
from unetlib.viz.study_figures import plot_group_curves

__all__ = ["COMPARED_PARAMETERS", "StudyAnalysis", "analyse_study", "group_curves",
           "read_curves"]

NCA_FIELDS = ("f0", "baseline_cycles", "loq", "points", "peak", "time_of_peak_s", "auc",
              "auc_window", "window_s", "auc_inf",
              "half_life_s", "lambda_z", "terminal_r2_adj", "terminal_points",
              "terminal_first_s", "terminal_last_s", "terminal_note", "mean_sbr",
              "cycles_flagged")
COMPARED_PARAMETERS = ("peak", "time_of_peak_s", "auc_window", "auc_inf", "half_life_s")
GROUP_FIELDS = ("group", "organ", "laser", "time_s", "n", "mean", "sd", "sem")
TRUST_FIELDS = ("mouse", "group", "stack", "cycles", "organ_cycles", "flagged_fraction",
                "mean_entropy", "note")
# A mouse is "far from the others" beyond this many robust standard deviations (1.4826 x the
# median absolute deviation) and this factor above the study's median entropy (mice alike
# to the third digit must not make a hair's difference an outlier), or with more than this
# share of flagged organ-cycles and 3 times the study's median share.
OUTLIER_MADS = 3.0
OUTLIER_FACTOR = 1.5
FLAGGED_SHARE = 0.10
COMPARE_FIELDS = ("organ", "laser", "parameter", "reference", "group", "reference_mean",
                  "reference_sd", "reference_n", "group_mean", "group_sd", "group_n", "ratio",
                  "ratio_low", "ratio_high", "test", "statistic", "p", "p_holm", "note")


@dataclass(frozen=True)
class Curve:
    """One organ x laser curve of one stack, as ``intensities.csv`` holds it."""

    times: np.ndarray
    mean: np.ndarray
    sbr: np.ndarray
    flagged: np.ndarray


@dataclass(frozen=True)
class StudyAnalysis:
    """What :func:`analyse_study` computed and wrote.

    Attributes
    ----------
    out_dir : Path
    nca : list of dict
        Rows of ``nca.csv``.
    groups : list of dict
        Rows of ``groups.csv``.
    comparisons : list of dict
        Rows of ``compare.csv``.
    left_out : dict of str to str
        Mouse -> why it is in no table (its stack failed to quantify).
    trust : list of dict
        Rows of ``trust.csv``, worst first.
    warnings : list of str
        The mice whose numbers need a closer look, and what to do.
    time_step_s : float
        The common time grid's step.
    """

    out_dir: Path
    nca: list[dict[str, Any]]
    groups: list[dict[str, Any]]
    comparisons: list[dict[str, Any]]
    left_out: dict[str, str]
    time_step_s: float
    trust: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)


def read_curves(intensities: str | os.PathLike[str]) -> dict[tuple[str, int], Curve]:
    """``{(organ, laser): Curve}`` from one stack's ``intensities.csv``."""
    columns: dict[tuple[str, int], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for row in read_csv(intensities):
        curve = columns[(row["organ"], int(row["laser"]))]
        curve["times"].append(float(row["time_s"]))
        curve["mean"].append(_number(row["mean"]))
        curve["sbr"].append(_number(row["sbr"]))
        curve["flagged"].append(row["qc"] != "ok")
    return {key: Curve(times=np.array(c["times"]), mean=np.array(c["mean"]),
                       sbr=np.array(c["sbr"]), flagged=np.array(c["flagged"], bool))
            for key, c in columns.items()}


def analyse_study(sheet: StudySheet, quantify_dir: str | os.PathLike[str],
                  out_dir: str | os.PathLike[str], config: StudyConfig | None = None, *,
                  failed: dict[str, str] | None = None) -> StudyAnalysis:
    """Analyse a quantified study into ``out_dir`` (see the module docstring).

    Parameters
    ----------
    sheet : StudySheet
    quantify_dir : path-like
        Where each stack's ``<stem>/intensities.csv`` lies.
    out_dir : path-like
    config : StudyConfig
    failed : dict, optional
        Stack path -> error of stacks whose quantification failed (left out, named).

    Raises
    ------
    ParameterError
        ``config.reference`` names no group of the sheet.
    InputError
        No stack of the study was quantified, or a stack's injection lies after its last
        cycle.
    """
    config = (config or StudyConfig()).validate()
    groups = sheet.groups
    reference = config.reference if config.reference is not None else groups[0]
    if reference not in groups:
        raise ParameterError(describe(sheet.path, f"has no group {reference!r} (its groups: "
                                      f"{', '.join(groups)})", "Give --reference one of them."))
    failed = {Path(stack).resolve(): error for stack, error in (failed or {}).items()}
    curves, left_out = {}, {}
    for mouse in sheet.mice:
        intensities = stack_output_dir(quantify_dir, mouse.stack) / INTENSITIES_FILE
        if mouse.stack.resolve() in failed or not intensities.is_file():
            left_out[mouse.mouse] = failed.get(mouse.stack.resolve(), f"{intensities} is missing")
            continue
        curves[mouse.mouse] = read_curves(intensities)
        _check_injection(sheet, mouse, curves[mouse.mouse])
    if not curves:
        raise InputError(describe(sheet.path, "no stack of the study was quantified",
                                  "See the errors above, fix the stacks and run again."))
    window = common_window(sheet, curves)
    nca_rows = _nca_rows(sheet, curves, config, window)
    step = _time_step(curves)
    group_rows = group_curves(sheet, curves, step)
    compare_rows = _compare_rows(sheet, nca_rows, reference, config)
    # The mice to look at closer are part of the result (its ``warnings``, study.json, the
    # report); the CLI prints them as warning lines, a notebook beside the trust table.
    trust, cautions = trust_rows(sheet, quantify_dir, curves)
    out_dir = Path(out_dir)
    columns = ("mouse", "group", *sheet.extra_columns, "stack", "organ", "laser", "signal",
               *NCA_FIELDS)
    write_csv(out_dir / "nca.csv", nca_rows, columns, overwrite=True)
    write_csv(out_dir / "groups.csv", group_rows, GROUP_FIELDS, overwrite=True)
    write_csv(out_dir / "compare.csv", compare_rows, COMPARE_FIELDS, overwrite=True)
    write_csv(out_dir / "trust.csv", trust, TRUST_FIELDS, overwrite=True)
    curves_png = figure_png(plot_group_curves(group_rows, groups,
                                              signal="dF" if sheet.has_injection else "F"))
    with atomic_path(out_dir / "group_curves.png", overwrite=True) as temporary:
        Path(temporary).write_bytes(curves_png)
    write_report(out_dir / "report.html", sheet, config, reference=reference, nca=nca_rows,
                 groups=group_rows, comparisons=compare_rows, left_out=left_out,
                 time_step_s=step, curves_png=curves_png, trust=trust, cautions=cautions)
    write_json(out_dir / "study.json", {
        "sheet": str(sheet.path.resolve()), "config": to_dict(config), "reference": reference,
        "groups": groups, "time_step_s": step, "auc_window_s": window,
        "baseline": "F0 = mean before injection_s; dF = F - F0 against time since the injection"
        if sheet.has_injection else "none: raw F against acquisition time (no injection_s)",
        "mice": [mouse.mouse for mouse in sheet.mice if mouse.mouse in curves],
        "left_out": left_out, "warnings": cautions}, overwrite=True)
    return StudyAnalysis(out_dir=out_dir, nca=nca_rows, groups=group_rows,
                         comparisons=compare_rows, left_out=left_out, time_step_s=step,
                         trust=trust, warnings=cautions)


def trust_rows(sheet: StudySheet, quantify_dir: str | os.PathLike[str],
               curves: dict) -> tuple[list[dict[str, Any]], list[str]]:
    """Where to trust the model: per mouse, worst first, and the mice to look at.

    Per mouse: the share of its organ-cycles that QC flagged, and the model's uncertainty
    on its stack, the mean over cycles of the normalised entropy inside the body
    (``cycles.csv``). A mouse whose entropy lies more than :data:`OUTLIER_MADS` robust
    standard deviations and :data:`OUTLIER_FACTOR` times above the study's median (at least
    3 mice with entropy), or whose
    flagged share exceeds :data:`FLAGGED_SHARE` and 3 times the study's median, is named
    with what to do: its frames differ from what the model learnt, and a few annotated
    frames of that mouse fix that best.

    Returns
    -------
    (rows, warnings)
    """
    rows = []
    for mouse in sheet.mice:
        if mouse.mouse not in curves:
            continue
        flagged = [curve.flagged for curve in curves[mouse.mouse].values()]
        cycles = int(max(flags.size for flags in flagged))
        organ_cycles = cycles * len({organ for organ, _ in curves[mouse.mouse]})
        # QC flags an organ in a cycle for every laser alike: the share over all curves.
        share = float(np.mean(np.concatenate(flagged)))
        cycles_csv = stack_output_dir(quantify_dir, mouse.stack) / CYCLES_FILE
        entropy = math.nan
        note = ""
        if cycles_csv.is_file():
            values = np.array([_number(row["entropy"]) for row in read_csv(cycles_csv)])
            entropy = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
        else:
            note = "no cycles.csv (quantified by an older unetlib): quantify again with --force"
        rows.append({"mouse": mouse.mouse, "group": mouse.group, "stack": mouse.stack.name,
                     "cycles": cycles,
                     "organ_cycles": organ_cycles, "flagged_fraction": share,
                     "mean_entropy": entropy, "note": note})
    entropies = np.array([row["mean_entropy"] for row in rows], dtype=np.float64)
    shares = np.array([row["flagged_fraction"] for row in rows], dtype=np.float64)
    known = entropies[np.isfinite(entropies)]
    limit = math.inf
    if known.size >= 3:
        median = float(np.median(known))
        limit = max(median + OUTLIER_MADS * 1.4826 * float(np.median(np.abs(known - median))),
                    OUTLIER_FACTOR * median)
    share_limit = max(FLAGGED_SHARE, 3.0 * float(np.nanmedian(shares))) if rows else math.inf
    cautions = []
    for row in rows:
        reasons = []
        if row["mean_entropy"] > limit:
            reasons.append(f"the model is much less sure of it than of the others (mean entropy "
                           f"{row['mean_entropy']:.3f}, study median {np.median(known):.3f})")
        if row["flagged_fraction"] > share_limit:
            reasons.append(f"QC flagged {row['flagged_fraction']:.0%} of its organ-cycles")
        if reasons:
            row["note"] = "; ".join([*reasons, row["note"]]).strip("; ")
            cautions.append(f"{row['mouse']}: {' and '.join(reasons)}: annotate 2-3 frames of "
                            f"{row['mouse']} (pick-frames {row['stack']} --method uncertain "
                            "--run RUN) and fine-tune before trusting its numbers")
    rows.sort(key=lambda row: (-np.nan_to_num(row["mean_entropy"], nan=-1.0),
                               -np.nan_to_num(row["flagged_fraction"], nan=-1.0)))
    return rows, cautions


def _check_injection(sheet: StudySheet, mouse: StudyMouse, curves: dict) -> None:
    if mouse.injection_s is None:
        return
    last = max(float(np.max(curve.times)) for curve in curves.values())
    if mouse.injection_s > last:
        raise InputError(describe(sheet.path, f"mouse {mouse.mouse}: injection_s="
                                  f"{mouse.injection_s:g} lies after the stack's last cycle "
                                  f"({last:g} s)", "Give the seconds from the first frame to "
                                  "the injection."))


def common_window(sheet: StudySheet, curves: dict) -> float:
    """The time after the injection (or from the first frame) every mouse was observed for."""
    ends = []
    for mouse in sheet.mice:
        if mouse.mouse in curves:
            last = max(float(np.max(curve.times)) for curve in curves[mouse.mouse].values())
            ends.append(last - (mouse.injection_s or 0.0))
    return min(ends)


def _nca_rows(sheet: StudySheet, curves: dict, config: StudyConfig,
              window: float) -> list[dict[str, Any]]:
    rows = []
    for mouse in sheet.mice:
        if mouse.mouse not in curves:
            continue
        for (organ, laser), curve in sorted(curves[mouse.mouse].items(),
                                            key=lambda item: (item[0][1], item[0][0])):
            result = curve_nca(curve.times, curve.mean, curve.flagged, mouse.injection_s,
                               auc_method=config.auc, min_points=config.min_terminal_points,
                               adj_r2_factor=config.adj_r2_factor, window_s=window)
            kept = ~curve.flagged & np.isfinite(curve.sbr)
            if mouse.injection_s is not None:
                kept &= curve.times >= mouse.injection_s
            terminal = result.terminal
            rows.append({
                "mouse": mouse.mouse, "group": mouse.group, **mouse.extra,
                "stack": mouse.stack.name, "organ": organ, "laser": laser,
                "signal": "dF" if mouse.injection_s is not None else "F",
                "f0": result.f0, "baseline_cycles": result.baseline_points, "loq": result.loq,
                "points": result.points, "peak": result.peak,
                "time_of_peak_s": result.time_of_peak_s, "auc": result.auc,
                "auc_window": result.auc_window, "window_s": window,
                "auc_inf": result.auc_inf, "half_life_s": terminal.half_life_s,
                "lambda_z": terminal.lambda_z, "terminal_r2_adj": terminal.r2_adj,
                "terminal_points": terminal.points, "terminal_first_s": terminal.first_s,
                "terminal_last_s": terminal.last_s, "terminal_note": terminal.reason,
                "mean_sbr": float(curve.sbr[kept].mean()) if kept.any() else math.nan,
                "cycles_flagged": int(curve.flagged.sum())})
    return rows


def _time_step(curves: dict) -> float:
    """The common grid's step: the median interval between cycles over every mouse."""
    steps = [np.diff(np.unique(curve.times)) for mouse in curves.values()
             for curve in list(mouse.values())[:1]]
    steps = np.concatenate([step for step in steps if step.size]) if steps else np.array([])
    return float(np.median(steps)) if steps.size else 1.0


def group_curves(sheet: StudySheet, curves: dict, step: float) -> list[dict[str, Any]]:
    """Mean, SD, SEM and n of each group's curve on a common time grid.

    Each mouse's cycles are matched to the nearest point of a grid of ``step`` seconds
    (time since its injection, or since its first frame): a mouse's value at a grid point
    is the mean of its clean cycles there (usually one), and SD and SEM are over the mice
    (ddof=1), with n the mice that have a value. The curve is ΔF with injection times, F
    without.
    """
    values: dict[tuple[str, str, int, int], list[float]] = defaultdict(list)
    for mouse in sheet.mice:
        if mouse.mouse not in curves:
            continue
        for (organ, laser), curve in curves[mouse.mouse].items():
            times, signal, _, _ = _signal(curve, mouse.injection_s)
            grid = np.rint(times / step).astype(int)
            for point in np.unique(grid[np.isfinite(signal)]):
                values[(mouse.group, organ, laser, int(point))].append(
                    float(np.nanmean(signal[grid == point])))
    rows = []
    for (group, organ, laser, point), found in sorted(
            values.items(), key=lambda item: (sheet.groups.index(item[0][0]), item[0][2],
                                              item[0][1], item[0][3])):
        array = np.array(found)
        sd = float(array.std(ddof=1)) if array.size > 1 else math.nan
        rows.append({"group": group, "organ": organ, "laser": laser,
                     "time_s": round(point * step, 6), "n": array.size,
                     "mean": float(array.mean()), "sd": sd,
                     "sem": sd / math.sqrt(array.size) if array.size > 1 else math.nan})
    return rows


def _signal(curve: Curve, injection_s: float | None):
    return baseline_corrected(curve.times, curve.mean, curve.flagged, injection_s)


def _compare_rows(sheet: StudySheet, nca_rows: list[dict[str, Any]], reference: str,
                  config: StudyConfig) -> list[dict[str, Any]]:
    by_key: dict[tuple[str, int, str, str], list[float]] = defaultdict(list)
    for row in nca_rows:
        for parameter in COMPARED_PARAMETERS:
            by_key[(row["organ"], int(row["laser"]), parameter, row["group"])].append(
                float(row[parameter]))
    rows = []
    organs_lasers = sorted({(row["organ"], int(row["laser"])) for row in nca_rows},
                           key=lambda key: (key[1], key[0]))
    for organ, laser in organs_lasers:
        for parameter in COMPARED_PARAMETERS:
            base = np.array(by_key.get((organ, laser, parameter, reference), []))
            for group in sheet.groups:
                if group == reference:
                    continue
                other = np.array(by_key.get((organ, laser, parameter, group), []))
                result = compare_groups(base, other, test=config.test,
                                        confidence=config.confidence)
                rows.append({"organ": organ, "laser": laser, "parameter": parameter,
                             "reference": reference, "group": group,
                             **_describe("reference", base), **_describe("group", other),
                             **dataclasses.asdict(result),
                             "test": config.test})
    for row, adjusted in zip(rows, holm([row["p"] for row in rows]), strict=True):
        row["p_holm"] = adjusted
    return rows


def _describe(prefix: str, values: np.ndarray) -> dict[str, Any]:
    finite = values[np.isfinite(values)] if values.size else values
    return {f"{prefix}_mean": float(finite.mean()) if finite.size else math.nan,
            f"{prefix}_sd": float(finite.std(ddof=1)) if finite.size > 1 else math.nan,
            f"{prefix}_n": int(finite.size)}


def _number(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan
