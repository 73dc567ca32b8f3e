"""The math of a report, against hand-computed answers: continual-learning metrics and seed statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crl.analysis import metrics
from crl.analysis.stats import SeedStatistic, format_statistic, interquartile_mean, seed_band, seed_statistic

# Three games trained once each in order; rows: after block 0, 1, 2.
R = np.array([[10.0, 0.0, 5.0],
              [4.0, 8.0, 5.0],
              [2.0, 6.0, 9.0]])


# --- continual-learning metrics ------------------------------------------------------------------------


def test_forgetting_is_best_earlier_value_minus_final():
    # game 0: max(10, 4) - 2 = 8; game 1: max(8) - 6 = 2; game 2: trained in the last block -> NaN.
    np.testing.assert_allclose(metrics.forgetting(R, [0, 1, 2]), [8.0, 2.0, math.nan])


def test_backward_transfer_is_final_minus_just_after_last_training():
    # game 0: 2 - 10 = -8; game 1: 6 - 8 = -2; game 2 is the final block -> excluded. Mean: -5.
    assert metrics.backward_transfer(R, [0, 1, 2]) == pytest.approx(-5.0)


def test_backward_transfer_with_revisits_uses_the_last_visit():
    # Two games over two cycles: last visits are block 2 (game 0) and block 3 (game 1, the final block).
    R2 = np.array([[5.0, 0.0], [1.0, 4.0], [7.0, 3.0], [6.0, 9.0]])
    assert metrics.backward_transfer(R2, [0, 1, 0, 1]) == pytest.approx(6.0 - 7.0)
    # forgetting of game 0: best of blocks 0..2 = 7, final 6 -> 1; game 1: best of blocks 1..2 = 4, final 9 -> -5.
    np.testing.assert_allclose(metrics.forgetting(R2, [0, 1, 0, 1]), [1.0, -5.0])


def test_area_under_curve_is_the_time_average_of_the_trapezoids():
    # Areas: (0 + 2) / 2 * 1 + (2 + 2) / 2 * 2 = 5 over a span of 3.
    assert metrics.area_under_curve([0, 1, 3], [0.0, 2.0, 2.0]) == pytest.approx(5.0 / 3.0)
    assert metrics.area_under_curve([250], [0.4]) == pytest.approx(0.4)
    assert math.isnan(metrics.area_under_curve([], []))


def test_forward_transfer_is_continual_worlds_normalized_auc_gain():
    assert metrics.forward_transfer(0.6, 0.2) == pytest.approx(0.4 / 0.8)
    assert metrics.forward_transfer(0.1, 0.2) == pytest.approx(-0.1 / 0.8)
    assert metrics.forward_transfer(0.2, 0.2) == 0.0
    assert math.isnan(metrics.forward_transfer(0.5, 1.0))  # the reference left no room to gain
    assert math.isnan(metrics.forward_transfer(0.5, math.nan))


# --- seed statistics -----------------------------------------------------------------------------------


def test_one_seed_has_a_mean_and_says_there_is_no_interval():
    s = seed_statistic([3.0])
    assert s == SeedStatistic(1, 3.0, None, None, note="1 seed: no interval")
    assert format_statistic(s) == "3.00 (1 seed: no interval)"


def test_two_seed_percentile_interval_spans_the_resampled_means():
    # Resampling two values {1, 3}: the mean is 1, 2 or 3 with probabilities 1/4, 1/2, 1/4, so the
    # 2.5th and 97.5th percentiles of the bootstrap distribution are 1 and 3.
    s = seed_statistic([1.0, 3.0])
    assert (s.n, s.mean, s.ci_low, s.ci_high, s.iqm) == (2, 2.0, 1.0, 3.0, None)
    assert "no IQM" in s.note


def test_identical_seeds_give_a_zero_width_interval():
    s = seed_statistic([2.0, 2.0, 2.0])
    assert (s.mean, s.ci_low, s.ci_high) == (2.0, 2.0, 2.0)


def test_interval_width_matches_the_normal_approximation_for_many_seeds():
    x = np.random.default_rng(1).normal(0.0, 1.0, 400)
    s = seed_statistic(x)
    expected = 2 * 1.96 * x.std(ddof=1) / math.sqrt(len(x))
    assert s.ci_high - s.ci_low == pytest.approx(expected, rel=0.15)
    assert s.ci_low < s.mean < s.ci_high


def test_interquartile_mean_drops_a_quarter_from_each_end():
    assert interquartile_mean(np.array([1.0, 2.0, 3.0, 4.0, 100.0])) == pytest.approx(3.0)
    assert interquartile_mean(np.arange(1.0, 9.0)) == pytest.approx(4.5)  # mean of 3, 4, 5, 6


def test_five_seeds_add_the_iqm_with_its_interval():
    s = seed_statistic([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s.mean == pytest.approx(22.0) and s.iqm == pytest.approx(3.0)
    assert s.iqm_ci_low <= s.iqm <= s.iqm_ci_high
    assert s.note == ""
    assert "IQM 3.00" in format_statistic(s)


def test_missing_values_are_left_out():
    s = seed_statistic([1.0, None, math.nan, 3.0])
    assert (s.n, s.mean) == (2, 2.0)
    assert seed_statistic([None, math.nan]) == SeedStatistic(0, None, None, None, note="no value")
    assert format_statistic(seed_statistic([])) == "n/a"


def test_statistics_are_reproducible():
    x = [0.3, 1.2, 0.7, 2.2]
    assert seed_statistic(x) == seed_statistic(x)


def test_seed_band_has_no_band_where_a_seed_is_missing():
    mean, low, high = seed_band(np.array([[1.0, 2.0, math.nan], [3.0, 4.0, 5.0]]))
    np.testing.assert_allclose(mean, [2.0, 3.0, 5.0])
    np.testing.assert_allclose(low, [1.0, 2.0, math.nan])
    np.testing.assert_allclose(high, [3.0, 4.0, math.nan])
    mean, low, high = seed_band(np.array([[1.0, 2.0]]))  # one seed: the curve, no band
    np.testing.assert_allclose(mean, [1.0, 2.0])
    assert np.isnan(low).all() and np.isnan(high).all()
