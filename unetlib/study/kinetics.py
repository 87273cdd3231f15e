"""What a time--intensity curve says: peak, time to peak, area under the curve, half-life.

One curve is an organ's mean intensity in one laser over the cycles of an acquisition.
Clearance after the peak is summarised by a mono-exponential with a plateau,
``y(t) = plateau + amplitude * exp(-ln 2 * (t - t0) / half_life)``, fitted by least
squares (``scipy.optimize.curve_fit``) to the clearance phase, and reported
with its coefficient of determination so a poor fit is visible. A curve that does not
decay (still rising, flat, too few points after its peak) or whose half-life the data do
not determine (relative standard error above 50 %) gets no half-life rather than a
meaningless one; the relative standard error is reported beside every half-life.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

# The clearance phase starts where the curve has fallen this share of the way from its
# peak to its lowest later value: around the peak uptake still competes with clearance,
# and a rounded top fitted as an exponential gives half-lives too long (measured on the
# synthetic kidney, whose clearance half-life is 173 s: 286-331 s from the peak on,
# 181-191 s from this point on).
CLEARANCE_START = 0.1
# Fewer points in the clearance phase than this cannot support a three-parameter fit.
MIN_FIT_POINTS = 5
# A decay smaller than this share of the peak is noise, not clearance.
MIN_DECAY_FRACTION = 0.05
# A half-life whose standard error exceeds this share of it is not determined by the data
# (typically a decay much slower than the time observed: a slow decay to zero then fits
# as well as a fast one to a plateau).
MAX_RELATIVE_ERROR = 0.5


@dataclass(frozen=True)
class CurveSummary:
    """Summary of one curve (NaN where a value does not exist).

    Attributes
    ----------
    points : int
        Cycles the summary used (flagged cycles left out).
    peak : float
        Highest value.
    time_to_peak_s : float
        Time of the peak, from the first cycle (``times[0]``, kept or not).
    auc : float
        Area under the curve (trapezoids over the kept points), value x seconds.
    half_life_s : float
        Clearance half-life after the peak; NaN where the curve does not decay.
    half_life_r2 : float
        Coefficient of determination of that fit (1 is perfect).
    half_life_rel_se : float
        Standard error of the half-life as a share of it (from the fit's covariance).
    plateau : float
        Level the fitted clearance tends to.
    """

    points: int
    peak: float
    time_to_peak_s: float
    auc: float
    half_life_s: float
    half_life_r2: float
    half_life_rel_se: float
    plateau: float


def summarize_curve(times: np.ndarray, values: np.ndarray) -> CurveSummary:
    """Peak, time to peak, AUC and clearance half-life of one curve.

    Parameters
    ----------
    times : ndarray of shape (N,)
        Seconds, increasing.
    values : ndarray of shape (N,)
        The curve; NaN entries (flagged or absent cycles) are left out.

    Examples
    --------
    >>> import numpy as np
    >>> times = np.arange(6) * 10.0
    >>> curve = summarize_curve(times, np.array([1.0, 5.0, 9.0, 6.0, 4.0, 3.0]))
    >>> curve.peak, curve.time_to_peak_s
    (9.0, 20.0)
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    first = float(times[0]) if times.size else math.nan  # the acquisition's start
    keep = np.isfinite(values) & np.isfinite(times)
    times, values = times[keep], values[keep]
    if values.size == 0:
        return CurveSummary(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan,
                            math.nan)
    peak_index = int(np.argmax(values))
    auc = float(np.trapezoid(values, times)) if values.size > 1 else math.nan
    tail = values[peak_index:]
    start = peak_index + int(np.argmax(tail <= tail[0] - CLEARANCE_START * (tail[0] - tail.min())))
    half_life, r2, relative_error, plateau = fit_clearance(times[start:] - times[start],
                                                           values[start:])
    return CurveSummary(points=int(values.size), peak=float(values[peak_index]),
                        time_to_peak_s=float(times[peak_index] - first), auc=auc,
                        half_life_s=half_life, half_life_r2=r2,
                        half_life_rel_se=relative_error, plateau=plateau)


def fit_clearance(times: np.ndarray, values: np.ndarray) -> tuple[float, float, float, float]:
    """Fit ``plateau + amplitude * exp(-ln2 * t / half_life)`` to a decaying tail.

    Parameters
    ----------
    times : ndarray
        Seconds since the start of the clearance phase (starting at 0).
    values : ndarray
        The curve in its clearance phase.

    Returns
    -------
    (half_life_s, r2, relative_standard_error, plateau)
        NaN for all when the tail is too short, does not decay, the fit fails, or the
        half-life's relative standard error exceeds :data:`MAX_RELATIVE_ERROR`.
    """
    from scipy.optimize import OptimizeWarning, curve_fit

    nothing = (math.nan, math.nan, math.nan, math.nan)
    if values.size < MIN_FIT_POINTS:
        return nothing
    peak, low = float(values.max()), float(values.min())
    if peak <= 0 or (peak - low) < MIN_DECAY_FRACTION * peak:
        return nothing
    span = float(times[-1] - times[0])
    if span <= 0:
        return nothing

    def model(t, plateau, amplitude, rate):
        return plateau + amplitude * np.exp(-rate * t)

    guess = (low, peak - low, 3.0 / span)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            (plateau, amplitude, rate), covariance = curve_fit(
                model, times, values, p0=guess, bounds=([0.0, 0.0, 1e-12], [np.inf, np.inf, np.inf]),
                maxfev=5000)
    except (RuntimeError, ValueError):
        return nothing
    fitted = model(times, plateau, amplitude, rate)
    residual = float(np.sum((values - fitted) ** 2))
    total = float(np.sum((values - values.mean()) ** 2))
    r2 = 1.0 - residual / total if total > 0 else math.nan
    relative_error = float(np.sqrt(covariance[2, 2]) / rate)
    if (amplitude < MIN_DECAY_FRACTION * peak or not math.isfinite(relative_error)
            or relative_error > MAX_RELATIVE_ERROR):
        return nothing
    return float(math.log(2.0) / rate), r2, relative_error, float(plateau)
