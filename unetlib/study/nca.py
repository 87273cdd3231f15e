"""Non-compartmental analysis (NCA) of one organ's curve: one value per parameter per mouse.

The rules are the ones pharmacokinetics agreed on, as PKNCA documents them, so a reviewer
can check them without reading this code:

- **Baseline.** With an injection time, F0 is the mean of the curve over the cycles before
  it (QC-flagged cycles left out) and the curve becomes ΔF = F - F0 against the time since
  the injection; the cycles before it are not used further. Without one, the raw curve
  against acquisition time, F0 empty.
- **Peak** ΔF and its time (the first, if the maximum repeats).
- **AUC** from the injection (or the first cycle) to the last cycle: trapezoids
  (``linear``), or logarithmic trapezoids where the curve falls between two positive
  values (``linear-up-log-down``). Mice injected at different times of acquisitions of
  one length are observed for different times after the injection, so the AUC over a
  common **window** (0 to the shortest observation of the study) is what groups are
  compared on; the curve is interpolated linearly at the window's end.
- **Terminal phase**: log-linear least-squares fits of the last 3, 4, ... points after the
  peak (the peak itself excluded) that lie above the limit of quantification, 10 standard
  deviations of the baseline cycles (0 without 3 baseline cycles): a tail sunk in the
  camera's noise would otherwise decide the half-life (PKNCA drops such points, "below
  the limit of quantification", the same way); among the fits with a negative slope, those
  whose adjusted R² is within ``adj_r2_factor`` of the best, the one with the most points.
  λz is minus its slope, the half-life ln 2 / λz, AUC∞ = AUC + ΔF_last / λz. A curve without
  such a fit gets no half-life and says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CurveNCA", "TerminalPhase", "area_under_curve", "baseline_corrected", "curve_nca",
           "limit_of_quantification", "terminal_phase"]


@dataclass(frozen=True)
class TerminalPhase:
    """The chosen log-linear fit of a curve's last points (NaN where none exists).

    Attributes
    ----------
    lambda_z : float
        Terminal rate constant, 1/s.
    half_life_s : float
    r2_adj : float
        Adjusted coefficient of determination of the fit.
    points : int
        Points in the fit (0 without one).
    first_s, last_s : float
        Times of the first and last point of the fit.
    reason : str
        Empty when determined; else why not (for the table).
    """

    lambda_z: float
    half_life_s: float
    r2_adj: float
    points: int
    first_s: float
    last_s: float
    reason: str = ""


@dataclass(frozen=True)
class CurveNCA:
    """The NCA parameters of one curve; see the module docstring for each rule."""

    f0: float
    baseline_points: int
    loq: float
    points: int
    peak: float
    time_of_peak_s: float
    auc: float
    auc_window: float
    auc_inf: float
    terminal: TerminalPhase


def baseline_corrected(times: np.ndarray, values: np.ndarray, flagged: np.ndarray,
                       injection_s: float | None) -> tuple[np.ndarray, np.ndarray, float, int]:
    """The curve after the injection as ΔF = F - F0 against the time since the injection.

    Parameters
    ----------
    times : ndarray of shape (N,)
        Seconds from the acquisition's first frame, increasing.
    values : ndarray of shape (N,)
        F: NaN where the organ was absent.
    flagged : ndarray of shape (N,), bool
        QC-flagged cycles: left out of F0 and of the curve.
    injection_s : float or None
        None: the raw curve against acquisition time, F0 NaN.

    Returns
    -------
    (times, delta, f0, baseline_points)
        Times from the injection (cycles at or after it), ΔF there (NaN where flagged),
        F0 (NaN when no clean cycle precedes the injection) and the cycles F0 averaged.

    Examples
    --------
    >>> import numpy as np
    >>> times = np.array([0.0, 10.0, 20.0, 30.0])
    >>> t, delta, f0, used = baseline_corrected(times, np.array([2.0, 4.0, 9.0, 6.0]),
    ...                                         np.zeros(4, bool), injection_s=15.0)
    >>> t.tolist(), delta.tolist(), f0, used
    ([5.0, 15.0], [6.0, 3.0], 3.0, 2)
    """
    times = np.asarray(times, dtype=np.float64)
    clean = np.where(np.asarray(flagged, bool), np.nan, np.asarray(values, dtype=np.float64))
    if injection_s is None:
        return times, clean, math.nan, 0
    before = times < injection_s
    baseline = clean[before][np.isfinite(clean[before])]
    f0 = float(baseline.mean()) if baseline.size else math.nan
    return times[~before] - injection_s, clean[~before] - f0, f0, int(baseline.size)


def limit_of_quantification(times: np.ndarray, values: np.ndarray, flagged: np.ndarray,
                            injection_s: float | None) -> float:
    """10 standard deviations (ddof=1) of the clean cycles before the injection: the
    smallest ΔF told apart from the camera's and the mouse's own fluctuation. 0 (no limit)
    with fewer than 3 such cycles or without an injection time.

    Examples
    --------
    >>> import numpy as np
    >>> limit_of_quantification(np.arange(6.0), np.array([9.0, 11.0, 10.0, 50, 40, 30]),
    ...                         np.zeros(6, bool), injection_s=2.5)
    10.0
    """
    if injection_s is None:
        return 0.0
    before = (np.asarray(times, np.float64) < injection_s) & ~np.asarray(flagged, bool)
    baseline = np.asarray(values, np.float64)[before]
    baseline = baseline[np.isfinite(baseline)]
    return float(10.0 * baseline.std(ddof=1)) if baseline.size >= 3 else 0.0


def area_under_curve(times: np.ndarray, values: np.ndarray, method: str = "linear") -> float:
    """Area under ``values`` over ``times`` (finite points only), value x seconds.

    ``linear``: trapezoids. ``linear-up-log-down``: where the curve falls between two
    positive values, the area of the exponential through them,
    ``(c1 - c2) / ln(c1 / c2) * dt``; trapezoids elsewhere.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.array([0.0, 10.0, 20.0])
    >>> area_under_curve(t, np.array([0.0, 8.0, 4.0]))
    100.0
    >>> round(area_under_curve(t, np.array([0.0, 8.0, 4.0]), "linear-up-log-down"), 3)
    97.708
    """
    keep = np.isfinite(times) & np.isfinite(values)
    t, c = np.asarray(times, np.float64)[keep], np.asarray(values, np.float64)[keep]
    if t.size < 2:
        return math.nan
    dt, c1, c2 = np.diff(t), c[:-1], c[1:]
    areas = dt * (c1 + c2) / 2.0
    if method == "linear-up-log-down":
        falling = (c2 < c1) & (c2 > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_areas = dt * (c1 - c2) / np.log(c1 / c2)
        areas = np.where(falling, log_areas, areas)
    elif method != "linear":
        raise ValueError(f"method={method!r} is not 'linear' or 'linear-up-log-down'")
    return float(areas.sum())


def terminal_phase(times: np.ndarray, values: np.ndarray, *, min_points: int = 3,
                   adj_r2_factor: float = 1e-4, loq: float = 0.0) -> TerminalPhase:
    """The terminal log-linear phase of a curve after its peak, chosen as PKNCA does.

    Parameters
    ----------
    times, values : ndarray of shape (N,)
        The curve (ΔF after an injection, or F); non-finite points are left out, and so
        are points <= 0, whose logarithm does not exist.
    min_points : int
        Fewest last points of a fit.
    adj_r2_factor : float
        Fits within this of the best adjusted R² are equally good; the longest wins.
    loq : float
        Limit of quantification: points at or below it are left out (and always those <= 0).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(8) * 30.0
    >>> curve = np.r_[0.0, 10.0, 10.0 * np.exp(-np.log(2) / 60.0 * (t[2:] - 30.0))]
    >>> phase = terminal_phase(t, curve)
    >>> round(phase.half_life_s, 6), phase.points, round(phase.r2_adj, 6)
    (60.0, 6, 1.0)
    """
    t = np.asarray(times, np.float64)
    c = np.asarray(values, np.float64)
    keep = np.isfinite(t) & np.isfinite(c)
    t, c = t[keep], c[keep]
    if c.size == 0:
        return _no_terminal_phase("no measured points")
    after = np.arange(c.size) > int(np.argmax(c))
    above = c > max(loq, 0.0)
    t, c = t[after & above], c[after & above]
    if c.size < min_points:
        where = f"above the limit of quantification {loq:.4g}" if loq > 0 else "positive"
        return _no_terminal_phase(f"{c.size} points after the peak {where}, fewer than "
                                  f"{min_points}")
    fits = []
    log_c = np.log(c)
    for count in range(min_points, c.size + 1):
        x, y = t[-count:], log_c[-count:]
        slope, intercept = np.polyfit(x, y, 1)
        residual = float(np.sum((y - (slope * x + intercept)) ** 2))
        total = float(np.sum((y - y.mean()) ** 2))
        r2 = 1.0 - residual / total if total > 0 else 1.0
        r2_adj = 1.0 - (1.0 - r2) * (count - 1) / (count - 2)
        if slope < 0:
            fits.append((r2_adj, count, float(-slope), float(x[0]), float(x[-1])))
    if not fits:
        return _no_terminal_phase("the curve does not fall after its peak")
    best = max(fit[0] for fit in fits)
    r2_adj, count, lambda_z, first, last = max(
        (fit for fit in fits if fit[0] >= best - adj_r2_factor), key=lambda fit: fit[1])
    return TerminalPhase(lambda_z=lambda_z, half_life_s=math.log(2.0) / lambda_z,
                         r2_adj=r2_adj, points=count, first_s=first, last_s=last)


def curve_nca(times: np.ndarray, values: np.ndarray, flagged: np.ndarray,
              injection_s: float | None, *, auc_method: str = "linear", min_points: int = 3,
              adj_r2_factor: float = 1e-4, window_s: float | None = None) -> CurveNCA:
    """Every NCA parameter of one organ x laser curve of one mouse.

    Parameters
    ----------
    times, values, flagged, injection_s
        As :func:`baseline_corrected`.
    auc_method, min_points, adj_r2_factor
        As :func:`area_under_curve` and :func:`terminal_phase`.
    window_s : float, optional
        The end of the common AUC window (seconds after the injection, or from the first
        cycle); None: the last cycle.
    """
    t, delta, f0, baseline_points = baseline_corrected(times, values, flagged, injection_s)
    loq = limit_of_quantification(times, values, flagged, injection_s)
    measured = np.isfinite(delta)
    if injection_s is not None and np.isnan(f0):
        terminal = _no_terminal_phase("no clean cycle before the injection for F0")
        return CurveNCA(f0, 0, loq, int(measured.sum()), math.nan, math.nan, math.nan,
                        math.nan, math.nan, terminal)
    if not measured.any():
        return CurveNCA(f0, baseline_points, loq, 0, math.nan, math.nan, math.nan, math.nan,
                        math.nan, _no_terminal_phase("no measured points"))
    peak_index = int(np.nanargmax(delta))
    auc = area_under_curve(t, delta, auc_method)
    auc_window = auc if window_s is None else area_under_curve(
        *_up_to(t[measured], delta[measured], window_s), auc_method)
    terminal = terminal_phase(t, delta, min_points=min_points, adj_r2_factor=adj_r2_factor,
                              loq=loq)
    last = delta[measured][-1]
    auc_inf = auc + last / terminal.lambda_z if terminal.points and last > 0 else math.nan
    return CurveNCA(f0=f0, baseline_points=baseline_points, loq=loq, points=int(measured.sum()),
                    peak=float(delta[peak_index]), time_of_peak_s=float(t[peak_index]),
                    auc=auc, auc_window=auc_window, auc_inf=float(auc_inf), terminal=terminal)


def _up_to(times: np.ndarray, values: np.ndarray, end: float) -> tuple[np.ndarray, np.ndarray]:
    """The curve up to ``end``, with a point interpolated at ``end`` when it lies between two
    samples (NaN when the curve stops before it)."""
    if times.size == 0 or times[-1] < end - 1e-9:
        return np.array([]), np.array([])
    keep = times <= end
    if np.isclose(times[keep][-1], end):
        return times[keep], values[keep]
    return np.r_[times[keep], end], np.r_[values[keep], np.interp(end, times, values)]


def _no_terminal_phase(reason: str) -> TerminalPhase:
    return TerminalPhase(math.nan, math.nan, math.nan, 0, math.nan, math.nan, reason)
