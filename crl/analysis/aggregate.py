"""Scores aggregated over runs x games with rliable (Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of
the Statistical Precipice"): the interquartile mean (IQM), mean and optimality gap with 95% stratified-bootstrap
intervals, the probability of improvement of one method over another, and performance profiles.

Each method's scores are a (runs x games) matrix: one row per run (seed), one column per game, the same games in
every matrix. The bootstrap is stratified: a resample draws runs with replacement within each game, so every game
keeps its weight. Everything is computed by rliable; this module only fixes its randomness and packs its answers.

rliable draws its resamples from NumPy's global generator (``np.random.choice``: its ``random_state`` argument does
not reach them), so each call here seeds that generator with ``SEED`` and puts its state back afterwards. Each group is
bootstrapped on its own, so its interval depends on its scores alone, not on which other groups are reported: the
same scores give the same numbers, byte for byte. Resamples are kept modest so a report stays fast (rliable's default
is 50,000): ``REPS`` for the aggregates and the profiles, and fewer, ``POI_REPS``, for the probability of improvement,
whose statistic runs a Mann-Whitney U test per game in every resample (a few milliseconds each).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator, Mapping

import numpy as np
from rliable import library, metrics

from crl.analysis.stats import CONFIDENCE

REPS = 2_000
POI_REPS = 500
SEED = 0
AGGREGATES = ("iqm", "mean", "optimality_gap")  # what aggregate_estimates returns per group, in this order
N_TAUS = 41  # points of a performance profile's threshold grid


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95% stratified-bootstrap interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Profile:
    """A performance profile: at each threshold tau, the fraction of runs x games scoring above it, with its band."""

    fraction: list[float]
    low: list[float]
    high: list[float]

    def as_dict(self) -> dict[str, list[float]]:
        return asdict(self)


@contextmanager
def seeded(seed: int = SEED) -> Iterator[None]:
    """NumPy's global generator seeded with ``seed`` inside the block (rliable resamples with it), restored after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _aggregates(scores: np.ndarray) -> np.ndarray:
    """rliable's IQM, mean and optimality gap (below 1, the normalized score's reference level) of one matrix."""
    return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores),
                     metrics.aggregate_optimality_gap(scores)])


def _interval_estimates(scores: np.ndarray | list[np.ndarray], func, reps: int,
                        seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rliable's stratified-bootstrap estimate of ``func`` over one group's scores: (points, lows, highs), 1-D each."""
    with seeded(seed):
        points, intervals = library.get_interval_estimates({"_": scores}, func, reps=reps,
                                                           confidence_interval_size=CONFIDENCE)
    low, high = np.asarray(intervals["_"], dtype=float).reshape(2, -1)
    return np.atleast_1d(np.asarray(points["_"], dtype=float)), low, high


def aggregate_estimates(scores: Mapping[str, np.ndarray], reps: int | None = None,
                        seed: int = SEED) -> dict[str, dict[str, Estimate]]:
    """Per group: the IQM (mean of the middle 50% of its runs x games scores), the mean and the optimality gap, each
    with its 95% stratified-bootstrap interval (``reps`` resamples; None: ``REPS``)."""
    reps = reps or REPS
    out = {}
    for name, matrix in scores.items():
        points, low, high = _interval_estimates(np.asarray(matrix, dtype=float), _aggregates, reps, seed)
        out[name] = {key: Estimate(float(points[i]), float(low[i]), float(high[i])) for i, key in enumerate(AGGREGATES)}
    return out


def probability_of_improvement(scores: Mapping[str, np.ndarray], baseline: str, reps: int | None = None,
                               seed: int = SEED) -> dict[str, Estimate]:
    """Per group other than ``baseline``: P(X > baseline), the probability that a run of the group scores above a run
    of the baseline on a game, averaged over games (0.5: neither is better), with its 95% interval (the two groups'
    runs resampled independently, within each game; ``reps`` resamples, None: ``POI_REPS``)."""
    reps = reps or POI_REPS
    reference = np.asarray(scores[baseline], dtype=float)
    out = {}
    for name, matrix in scores.items():
        if name == baseline:
            continue
        points, low, high = _interval_estimates([np.asarray(matrix, dtype=float), reference],
                                                metrics.probability_of_improvement, reps, seed)
        out[name] = Estimate(float(points[0]), float(low[0]), float(high[0]))
    return out


def tau_grid(scores: Mapping[str, np.ndarray], n: int = N_TAUS) -> np.ndarray:
    """Thresholds for performance profiles: from the lowest score (or 0) to the highest (or 1, the reference level)."""
    values = np.concatenate([np.ravel(m) for m in scores.values()])
    return np.linspace(min(0.0, float(values.min())), max(1.0, float(values.max())), n)


def performance_profiles(scores: Mapping[str, np.ndarray], taus: np.ndarray, reps: int | None = None,
                         seed: int = SEED) -> dict[str, Profile]:
    """Per group, rliable's score distribution over ``taus``: the fraction of runs x games scoring above each tau
    (non-increasing in tau), with its pointwise 95% stratified-bootstrap band (``reps`` resamples; None: ``REPS``)."""
    reps = reps or REPS
    out = {}
    for name, matrix in scores.items():
        with seeded(seed):
            profiles, bands = library.create_performance_profile({"_": np.asarray(matrix, dtype=float)}, taus,
                                                                  reps=reps, confidence_interval_size=CONFIDENCE)
        low, high = np.asarray(bands["_"], dtype=float)
        out[name] = Profile([float(v) for v in profiles["_"]], low.tolist(), high.tolist())
    return out
