"""``report.html``: a study's results in one self-contained file for a lab notebook.

Figures are embedded as PNG data, tables are plain HTML, and a methods paragraph names
every choice the numbers depend on (baseline, AUC rule, terminal-phase rule, time grid,
test, interval, multiplicity correction, reference group) and the software versions, so the
file can be attached and read without this package.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import math
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import scipy
from matplotlib.figure import Figure

from unetlib import __version__
from unetlib.core.config import StudyConfig
from unetlib.core.io import atomic_path
from unetlib.study.sheet import StudySheet
from unetlib.viz.study_figures import plot_group_curves, plot_parameter_dots

__all__ = ["methods_text", "write_report"]

TRUST_COLUMNS = ("mouse", "group", "stack", "cycles", "flagged_fraction", "mean_entropy", "note")
COMPARE_COLUMNS = ("organ", "laser", "parameter", "group", "reference_mean", "reference_sd",
                   "reference_n", "group_mean", "group_sd", "group_n", "ratio", "ratio_low",
                   "ratio_high", "p", "p_holm", "note")


def figure_png(figure: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def methods_text(sheet: StudySheet, config: StudyConfig, reference: str, time_step_s: float,
                 comparisons: int, window_s: float) -> str:
    """The methods paragraph: every choice behind the numbers, in words."""
    baseline = ("Each curve was baseline-corrected: F0 is the mean of the organ's mean "
                "intensity over the cycles before the injection (injection_s of the study sheet), "
                "QC-flagged cycles excluded, and ΔF = F − F0 is analysed against the time since "
                "the injection." if sheet.has_injection else
                "The study sheet gives no injection times: the raw mean intensity F is analysed "
                "against the time from each acquisition's first frame (no baseline correction).")
    auc = ("the linear trapezoidal rule" if config.auc == "linear" else
           "the linear-up/log-down trapezoidal rule (logarithmic where the curve falls between "
           "two positive values)")
    test = ("a two-sided Welch t-test (unequal variances)" if config.test == "welch" else
            "a two-sided Mann-Whitney U test")
    return (
        f"Organ masks were segmented cycle by cycle with the study's U-Net run and applied to "
        f"every laser's frame; cycles whose organ area jumped against the running median were "
        f"flagged by quality control and left out. {baseline} Per mouse, organ and laser "
        f"(non-compartmental analysis, one value per mouse): the peak and its time; the area "
        f"under the curve to the last cycle by {auc}, and over the window every mouse was "
        f"observed for, 0 to {window_s:g} s (compared between groups: mice injected later "
        f"are observed for less time); the terminal phase by log-linear "
        f"least-squares fits of the last {config.min_terminal_points} or more points after the "
        f"peak (the peak excluded) above the limit of quantification (10 SD of the baseline "
        f"cycles; 0 without 3 of them or without injection times), choosing among fits with a negative slope those "
        f"within {config.adj_r2_factor:g} of the best adjusted R² and among them the one with "
        f"the most points (the rule of PKNCA), giving λz, the half-life ln 2/λz and the AUC "
        f"extrapolated to infinity (AUC + last value/λz). Group curves are the mean, SD and SEM "
        f"over mice on a common time grid of {time_step_s:g} s (each mouse's cycles matched to "
        f"the nearest grid point). Each group was compared with the reference group "
        f"'{reference}' by the ratio of group means with its {config.confidence:.0%} confidence "
        f"interval (Fieller's theorem, Welch-Satterthwaite degrees of freedom) and {test}; "
        f"p-values were adjusted by Holm's method over the family of all {comparisons} "
        f"comparisons in the table. Groups of one mouse are shown but not tested; no test is "
        f"made per time point. Software: unetlib {__version__}, Python "
        f"{platform.python_version()}, NumPy {np.__version__}, SciPy {scipy.__version__}, "
        f"Matplotlib {matplotlib.__version__}.")


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return html.escape(str(value))


def _table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(column)}</th>" for column in columns)
    body = "".join("<tr>" + "".join(f"<td>{_format(row.get(column, ''))}</td>"
                                    for column in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_report(path: str | Path, sheet: StudySheet, config: StudyConfig, *, reference: str,
                 nca: Sequence[dict], groups: Sequence[dict], comparisons: Sequence[dict],
                 left_out: dict[str, str], time_step_s: float,
                 curves_png: bytes | None = None, trust: Sequence[dict] = (),
                 cautions: Sequence[str] = ()) -> Path:
    """Write ``report.html`` (atomically) and return its path.

    ``curves_png``: the group curves already drawn (they are also saved beside the report).
    """
    signal = "dF" if sheet.has_injection else "F"
    lasers = sorted({int(row["laser"]) for row in nca})
    curves_png = curves_png or figure_png(plot_group_curves(groups, sheet.groups, signal=signal))
    parameters = list(dict.fromkeys(row["parameter"] for row in comparisons))
    dots = "".join(
        f"<h3>{html.escape(parameter)}, laser {laser}</h3>"
        + _image(figure_png(plot_parameter_dots(nca, sheet.groups, parameter, laser=laser)),
                 f"{parameter} per mouse, laser {laser}")
        for parameter in parameters for laser in lasers)
    counts = {group: sum(1 for row in {(r["mouse"], r["group"]) for r in nca} if row[1] == group)
              for group in sheet.groups}
    left = ("<p>Left out of every table:</p><ul>" + "".join(
        f"<li>{html.escape(mouse)}: {html.escape(why)}</li>" for mouse, why in left_out.items())
        + "</ul>") if left_out else "<p>Every mouse of the sheet is in the analysis.</p>"
    warned = ("<ul>" + "".join(f"<li>{html.escape(caution)}</li>" for caution in cautions)
              + "</ul>") if cautions else "<p>No mouse stands out from the others.</p>"
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Study {html.escape(sheet.path.name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:12px;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}th{{background:#f3f3f3}}
img{{max-width:100%}}</style></head><body>
<h1>Study {html.escape(sheet.path.name)}</h1>
<p>{html.escape(str(sheet.path.resolve()))} · {created} · mice per group: {html.escape(
        ', '.join(f'{group} {count}' for group, count in counts.items()))} · reference group:
{html.escape(reference)}</p>
{left}
<h2>Where to trust the model</h2>
<p>Per mouse, worst first: the share of organ-cycles quality control flagged, and the model's
mean uncertainty on the stack (normalised entropy of its probabilities inside the body, 0 to 1).</p>
{warned}
{_table(trust, TRUST_COLUMNS)}
<h2>Methods</h2>
<p>{html.escape(methods_text(sheet, config, reference, time_step_s, len(comparisons),
                             float(nca[0]["window_s"]) if nca else math.nan))}</p>
<h2>Group curves</h2>
{_image(curves_png, "group mean and SD curves")}
<h2>Comparisons with {html.escape(reference)}</h2>
{_table(comparisons, COMPARE_COLUMNS)}
<h2>One value per mouse</h2>
{dots}
<h2>Per mouse (nca.csv)</h2>
{_table(nca, list(nca[0]) if nca else [])}
</body></html>
"""
    path = Path(path)
    with atomic_path(path, overwrite=True) as temporary:
        Path(temporary).write_text(document, encoding="utf-8")
    return path
