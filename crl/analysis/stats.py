"""Statistics over seeds: mean with a 95% bootstrap confidence interval, and the interquartile mean.

Reporting follows Agarwal et al. 2021 ("Deep RL at the Edge of the Statistical Precipice"): percentile bootstrap
confidence intervals over independent runs, and the interquartile mean (IQM, the mean of the middle 50% of runs) as a
robust point estimate once there are enough runs for it to differ from the mean. The bootstrap itself is
``scipy.stats.bootstrap``; resampling uses a fixed generator so that a report is reproducible.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 10_000
MIN_SEEDS_FOR_IQM = 5


@dataclass(frozen=True)
class SeedStatistic:
    """One metric over the seeds of a group; ``None`` where a figure cannot be computed (see ``note``)."""

    n: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    iqm: float | None = None
    iqm_ci_low: float | None = None
    iqm_ci_high: float | None = None
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def interquartile_mean(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Mean of the values between the 25th and 75th percentile (25% trimmed from each end)."""
    return stats.trim_mean(values, 0.25, axis=axis)


def bootstrap_interval(
    values: np.ndarray, statistic=np.mean, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of ``statistic`` over axis 0 (seeds); needs at least two rows.

    ``values`` may be 2-D (seeds x points on a curve): every column gets its own interval in one call.
    """
    result = stats.bootstrap(
        (np.asarray(values, dtype=float),),
        statistic,
        axis=0,
        vectorized=True,
        method="percentile",
        confidence_level=confidence,
        n_resamples=n_resamples,
        rng=np.random.default_rng(seed),
    )
    return result.confidence_interval.low, result.confidence_interval.high


def seed_statistic(values, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES) -> SeedStatistic:
    """Mean over seeds with its bootstrap interval, plus the IQM with 5 or more seeds; NaN/None values are skipped."""
    x = np.array([v for v in values if v is not None], dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return SeedStatistic(0, None, None, None, note="no value")
    mean = float(np.mean(x))
    if n == 1:
        return SeedStatistic(1, mean, None, None, note="1 seed: no interval")
    low, high = bootstrap_interval(x, np.mean, confidence, n_resamples)
    if n < MIN_SEEDS_FOR_IQM:
        return SeedStatistic(n, mean, float(low), float(high), note=f"{n} seeds: no IQM (needs {MIN_SEEDS_FOR_IQM})")
    iqm_low, iqm_high = bootstrap_interval(x, interquartile_mean, confidence, n_resamples)
    iqm = float(interquartile_mean(x))
    return SeedStatistic(n, mean, float(low), float(high), iqm, float(iqm_low), float(iqm_high))


def seed_band(
    curves: np.ndarray, confidence: float = CONFIDENCE, n_resamples: int = 2_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean curve and its pointwise bootstrap band over seeds (rows); columns with a missing seed get no band.

    Returns ``(mean, low, high)``; ``low``/``high`` are NaN where fewer than two seeds have a value in every row of
    the column, so a plot leaves the band out there instead of pretending.
    """
    curves = np.asarray(curves, dtype=float)
    finite = np.isfinite(curves)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column has a NaN mean, as it should
        mean = np.nanmean(curves, axis=0)
    low = np.full(curves.shape[1], math.nan)
    high = np.full(curves.shape[1], math.nan)
    complete = finite.all(axis=0)
    if curves.shape[0] >= 2 and complete.any():
        low[complete], high[complete] = bootstrap_interval(curves[:, complete], np.mean, confidence, n_resamples)
    return mean, low, high


def student_t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Mean +- t(n-1) * s / sqrt(n): the small-sample interval for a handful of seeds, where a percentile bootstrap
    over 2 seeds is only their range; needs at least two values."""
    x = np.asarray(values, dtype=float)
    if np.ptp(x) == 0:  # identical values: scipy's interval would be NaN, and the interval is the point
        return float(x[0]), float(x[0])
    low, high = stats.t.interval(confidence, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    return float(low), float(high)


def format_statistic(s: SeedStatistic, digits: int = 2) -> str:
    """``mean [low, high]`` for a table cell, with the IQM when present; ``n/a`` when there is no value."""
    if s.mean is None:
        return "n/a"
    text = f"{s.mean:.{digits}f}"
    if s.n == 1:
        text += " (1 seed: no interval)"
    if s.ci_low is not None:
        text += f" [{s.ci_low:.{digits}f}, {s.ci_high:.{digits}f}]"
    if s.iqm is not None:
        text += f"; IQM {s.iqm:.{digits}f} [{s.iqm_ci_low:.{digits}f}, {s.iqm_ci_high:.{digits}f}]"
    return text
