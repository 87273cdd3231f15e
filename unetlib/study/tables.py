"""A study's tables as plain text: what notebook 06 and ``demo-study`` print.

The CSV files (:mod:`unetlib.study.analysis`) hold every column; these keep the ones a
scientist reads first, aligned, with numbers rounded for reading, not for further use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["comparison_text", "trust_text"]


def _number(value: Any) -> str:
    """Three significant digits, whole numbers from 100 on (``-`` where there is none)."""
    if not _finite(value):
        return "-"
    number = float(value)
    return f"{number:.0f}" if abs(number) >= 100 else f"{number:.3g}"


def _aligned(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()
             for line in (header, *rows)]
    return "\n".join(lines)


def trust_text(rows: Sequence[dict[str, Any]]) -> str:
    """``trust.csv``'s rows (worst first), one line per mouse.

    Examples
    --------
    >>> print(trust_text([{"mouse": "m2", "group": "b", "cycles": 16, "flagged_fraction": 0.25,
    ...                    "mean_entropy": 0.0812, "note": "look"},
    ...                   {"mouse": "m1", "group": "a", "cycles": 16, "flagged_fraction": 0.0,
    ...                    "mean_entropy": 0.0301, "note": ""}]))
    mouse  group  cycles  flagged  mean entropy  note
    m2     b      16      25 %     0.081         look
    m1     a      16      0 %      0.030
    """
    table = [(str(row["mouse"]), str(row["group"]), str(row["cycles"]),
              f"{100 * float(row['flagged_fraction']):.0f} %",
              f"{float(row['mean_entropy']):.3f}" if _finite(row["mean_entropy"]) else "-",
              str(row.get("note", "")))
             for row in rows]
    return _aligned(("mouse", "group", "cycles", "flagged", "mean entropy", "note"), table)


def comparison_text(rows: Sequence[dict[str, Any]], parameter: str = "auc_window", *,
                    organs: Sequence[str] | None = None) -> str:
    """``compare.csv``'s rows of one parameter: per organ x laser x group, the means, the
    ratio to the reference with its interval, and the Holm-adjusted p.

    Examples
    --------
    >>> print(comparison_text([{"organ": "kidney", "laser": 1, "parameter": "peak",
    ...     "reference": "a", "group": "b", "reference_mean": 10.0, "reference_n": 3,
    ...     "group_mean": 16.0, "group_n": 3, "ratio": 1.6, "ratio_low": 1.4, "ratio_high": 1.8,
    ...     "p_holm": 0.0042, "note": ""}], "peak"))
    organ   laser  group vs a  mean a  mean b  n    ratio [95 % CI]     p (Holm)
    kidney  1      b           10      16      3/3  1.60 [1.40, 1.80]   0.0042
    """
    own = [row for row in rows if row["parameter"] == parameter
           and (organs is None or row["organ"] in organs)]
    if not own:
        return f"no comparison of {parameter}"
    reference = own[0]["reference"]
    table = []
    for row in own:
        if _finite(row["ratio"]):
            ratio = f"{float(row['ratio']):.2f}"
            ratio += (f" [{float(row['ratio_low']):.2f}, {float(row['ratio_high']):.2f}]"
                      if _finite(row["ratio_low"]) else " [-]")
        else:
            ratio = "-"
        p_value = (f"{float(row['p_holm']):.2g}" if _finite(row["p_holm"])
                   else row.get("note", "") or "-")
        table.append((str(row["organ"]), str(row["laser"]), str(row["group"]),
                      _number(row["reference_mean"]), _number(row["group_mean"]),
                      f"{row['reference_n']}/{row['group_n']}", ratio, p_value))
    return _aligned(("organ", "laser", f"group vs {reference}", f"mean {reference}",
                     "mean " + ("/".join(dict.fromkeys(str(r["group"]) for r in own))),
                     "n", "ratio [95 % CI]", "p (Holm)"), table)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
