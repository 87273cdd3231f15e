"""Figures of a study: each group's mean curve with its spread, and one dot per mouse.

Built from the rows of ``groups.csv`` and ``nca.csv`` (:mod:`unetlib.study.analysis`), so
they can be redrawn from the files alone. Groups get the colours of matplotlib's default
cycle in the sheet's order, the same in every figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from unetlib.viz.plots import new_figure

__all__ = ["GROUP_COLOURS", "plot_group_curves", "plot_parameter_dots"]

GROUP_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f")
PARAMETER_LABELS = {"peak": "peak", "time_of_peak_s": "time of peak (s)", "auc": "AUC",
                    "auc_window": "AUC over the common window",
                    "auc_inf": "AUC to infinity", "half_life_s": "half-life (s)",
                    "f0": "F0", "mean_sbr": "mean SBR"}


def _colour(groups: Sequence[str], group: str) -> str:
    return GROUP_COLOURS[list(groups).index(group) % len(GROUP_COLOURS)]


def plot_group_curves(rows: Sequence[dict], groups: Sequence[str], *,
                      lasers: Sequence[int] | None = None, signal: str = "dF") -> Figure:
    """Group mean ± SD of the curves: one panel per organ (columns) and laser (rows).

    Parameters
    ----------
    rows : sequence of dict
        Rows of ``groups.csv``.
    groups : sequence of str
        The groups in the sheet's order (their colours).
    lasers : sequence of int, optional
        The lasers shown (default: every laser of the table).
    signal : str
        What the curves are, for the axis label (``dF`` after an injection, ``F`` raw).

    Examples
    --------
    >>> rows = [{"group": g, "organ": "kidney", "laser": 1, "time_s": t, "n": 3, "mean": m,
    ...          "sd": 1.0} for g, t, m in (("a", 0, 5.0), ("a", 10, 3.0), ("b", 0, 8.0))]
    >>> figure = plot_group_curves(rows, ["a", "b"])
    >>> [ax.get_title() for ax in figure.axes]
    ['kidney · laser 1']
    """
    lasers = sorted(set(lasers) if lasers else {int(row["laser"]) for row in rows})
    organs = list(dict.fromkeys(row["organ"] for row in rows))
    figure, axes = new_figure(len(lasers), max(1, len(organs)), panel_inches=2.6, aspect=0.75)
    for row_index, laser in enumerate(lasers):
        for column, organ in enumerate(organs):
            ax = axes[row_index, column]
            for group in groups:
                own = [row for row in rows if row["group"] == group and row["organ"] == organ
                       and int(row["laser"]) == laser]
                if not own:
                    continue
                times = np.array([float(row["time_s"]) for row in own])
                mean = np.array([float(row["mean"]) for row in own])
                sd = np.array([float(row["sd"]) if row["sd"] not in ("", None) else np.nan
                               for row in own], dtype=np.float64)
                colour = _colour(groups, group)
                ax.plot(times, mean, color=colour, linewidth=1.3,
                        label=f"{group} (n={max(int(row['n']) for row in own)})")
                ax.fill_between(times, mean - sd, mean + sd, color=colour, alpha=0.2, linewidth=0)
            ax.axhline(0.0, color="0.6", linewidth=0.6)
            ax.set_title(f"{organ} · laser {laser}", fontsize=9)
            ax.tick_params(labelsize=7)
            if column == 0:
                ax.set_ylabel(f"{signal}, mean ± SD", fontsize=8)
            if row_index == len(lasers) - 1:
                ax.set_xlabel("time since injection (s)" if signal == "dF" else "time (s)",
                              fontsize=8)
    if rows:
        axes[0, -1].legend(fontsize=7, frameon=False)
    return figure


def plot_parameter_dots(rows: Sequence[dict], groups: Sequence[str], parameter: str, *,
                        laser: int) -> Figure:
    """One dot per mouse for ``parameter`` of one laser, per group, a panel per organ.

    The bar is the group mean; the dots are spread sideways so that mice with equal values
    stay visible.

    Parameters
    ----------
    rows : sequence of dict
        Rows of ``nca.csv``.
    groups : sequence of str
        The groups in the sheet's order.
    parameter : str
        A column of ``nca.csv`` (``auc``, ``peak``, ``half_life_s`` ...).
    laser : int
    """
    own = [row for row in rows if int(row["laser"]) == laser]
    organs = list(dict.fromkeys(row["organ"] for row in own))
    figure, axes = new_figure(1, max(1, len(organs)), panel_inches=2.2, aspect=1.0)
    rng = np.random.default_rng(0)
    for ax, organ in zip(axes[0], organs):
        for position, group in enumerate(groups):
            values = np.array([float(row[parameter]) for row in own
                               if row["organ"] == organ and row["group"] == group
                               and row[parameter] not in ("", None)], dtype=np.float64)
            values = values[np.isfinite(values)]
            if not values.size:
                continue
            colour = _colour(groups, group)
            spread = rng.uniform(-0.12, 0.12, values.size)
            ax.plot(position + spread, values, "o", color=colour, markersize=4, alpha=0.85)
            ax.plot([position - 0.25, position + 0.25], [values.mean()] * 2, color=colour,
                    linewidth=2)
        ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_title(f"{organ} · laser {laser}", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    axes[0, 0].set_ylabel(PARAMETER_LABELS.get(parameter, parameter), fontsize=8)
    return figure
