"""Group comparisons of per-mouse values: ratio to the reference group, a test, Holm.

One value per mouse (the summary-measures approach): the mouse is the unit of replication,
never the cycle, so no test is made per time point. Each parameter of each organ x laser is
compared between every group and the reference group with

- the **ratio of the group means** and its confidence interval by Fieller's theorem (two
  independent means with unequal variances; degrees of freedom of Welch-Satterthwaite), which
  stays correct when the reference mean is small; where the reference mean is not clearly
  non-zero the interval is unbounded and left empty, with the reason;
- a two-sided **Welch t-test** (``scipy.stats.ttest_ind(equal_var=False)``) or
  **Mann-Whitney U test** (``scipy.stats.mannwhitneyu``);
- **Holm's** step-down adjustment over the whole family of comparisons in the table, which
  controls the family-wise error rate without assuming independence (written here: scipy
  offers only the Benjamini-Hochberg false discovery rate, and statsmodels for one function
  would be a heavy dependency).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["Comparison", "compare_groups", "fieller_ratio", "holm"]


@dataclass(frozen=True)
class Comparison:
    """One group against the reference for one parameter (NaN where not computed)."""

    ratio: float
    ratio_low: float
    ratio_high: float
    statistic: float
    p: float
    note: str = ""


def fieller_ratio(reference: np.ndarray, group: np.ndarray,
                  confidence: float = 0.95) -> tuple[float, float, float, str]:
    """Ratio mean(group) / mean(reference) with its Fieller confidence interval.

    Returns
    -------
    (ratio, low, high, note)
        ``note`` says why the interval is missing (NaN) when it is.

    Examples
    --------
    >>> import numpy as np
    >>> ratio, low, high, note = fieller_ratio(np.array([9.0, 10.0, 11.0]), np.array([19.0, 20.0, 21.0]))
    >>> round(ratio, 3), round(low, 3), round(high, 3), note
    (2.0, 1.686, 2.42, '')
    """
    a, b = np.asarray(reference, np.float64), np.asarray(group, np.float64)
    mean_a, mean_b = float(a.mean()), float(b.mean())
    if mean_a == 0:
        return math.nan, math.nan, math.nan, "the reference mean is 0"
    ratio = mean_b / mean_a
    var_a, var_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = welch_df(a, b)
    if not math.isfinite(df):
        return ratio, math.nan, math.nan, "no spread in either group"
    t = float(stats.t.ppf(0.5 + confidence / 2.0, df))
    leading = mean_a ** 2 - t ** 2 * var_a
    if leading <= 0:
        return ratio, math.nan, math.nan, "the reference mean is not clearly non-zero: unbounded interval"
    root = math.sqrt(max(mean_a ** 2 * var_b + mean_b ** 2 * var_a - t ** 2 * var_a * var_b, 0.0))
    low, high = (mean_a * mean_b - t * root) / leading, (mean_a * mean_b + t * root) / leading
    return ratio, float(low), float(high), ""


def welch_df(a: np.ndarray, b: np.ndarray) -> float:
    """Welch-Satterthwaite degrees of freedom of two independent samples."""
    var_a, var_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    denominator = var_a ** 2 / (a.size - 1) + var_b ** 2 / (b.size - 1)
    return float((var_a + var_b) ** 2 / denominator) if denominator > 0 else math.nan


def compare_groups(reference: np.ndarray, group: np.ndarray, *, test: str = "welch",
                   confidence: float = 0.95) -> Comparison:
    """Compare one group's per-mouse values with the reference group's (NaN values left out).

    A group of fewer than 2 mice gets the ratio but no interval and no test, with the reason.

    Examples
    --------
    >>> import numpy as np
    >>> result = compare_groups(np.array([9.0, 10.0, 11.0]), np.array([19.0, 20.0, 21.0]))
    >>> round(result.ratio, 2), result.p < 0.001
    (2.0, True)
    >>> compare_groups(np.array([9.0, 10.0]), np.array([20.0])).note
    'a group of 1 mouse: no test'
    """
    a = np.asarray(reference, np.float64)
    b = np.asarray(group, np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    smallest = min(a.size, b.size)
    if smallest == 0:
        return Comparison(math.nan, math.nan, math.nan, math.nan, math.nan, "no values")
    if smallest < 2:
        ratio = float(b.mean() / a.mean()) if a.mean() != 0 else math.nan
        return Comparison(ratio, math.nan, math.nan, math.nan, math.nan,
                          f"a group of {smallest} mouse: no test")
    ratio, low, high, note = fieller_ratio(a, b, confidence)
    if test not in ("welch", "mannwhitney"):
        raise ValueError(f"test={test!r} is not 'welch' or 'mannwhitney'")
    if test == "welch" and np.ptp(a) == 0 and np.ptp(b) == 0:
        return Comparison(ratio, low, high, math.nan, math.nan, "no spread in either group")
    with warnings.catch_warnings():
        # Values alike to the last digits in a group (a time of peak at the same cycle)
        # make scipy warn of lost precision; the test is still the right one.
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        result = (stats.ttest_ind(b, a, equal_var=False) if test == "welch" else
                  stats.mannwhitneyu(b, a, alternative="two-sided"))
    return Comparison(ratio, low, high, float(result.statistic), float(result.pvalue), note)


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values of a family (NaN entries stay NaN and do not count).

    Examples
    --------
    >>> [round(p, 3) for p in holm([0.01, 0.04, 0.03, float("nan")])]
    [0.03, 0.06, 0.06, nan]
    """
    values = np.asarray(p_values, np.float64)
    adjusted = np.full(values.shape, np.nan)
    present = np.flatnonzero(np.isfinite(values))
    order = present[np.argsort(values[present], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, (order.size - rank) * values[index])
        adjusted[index] = min(running, 1.0)
    return adjusted.tolist()
