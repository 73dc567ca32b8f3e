"""Known answers for the plasticity measures (agents/plasticity.py) on hand-built activations and networks."""

from __future__ import annotations

import pytest
import torch as th
from torch import nn

from agents.plasticity import (
    dormant_fraction,
    dormant_scores,
    effective_rank,
    feature_norm,
    rms,
    rms_distance,
    stable_rank,
)


def test_a_unit_whose_weights_are_zeroed_is_dormant_at_every_tau() -> None:
    layer = nn.Linear(5, 4)
    with th.no_grad():
        layer.weight[2].zero_()
        layer.bias[2] = 0.0
    h = th.relu(layer(th.randn(64, 5, generator=th.Generator().manual_seed(0))))
    scores = dormant_scores(h)
    assert scores[2] == 0
    for tau in (0.0, 0.025, 0.1):
        assert (scores <= tau)[2]


def test_scores_are_activity_over_the_layer_mean() -> None:
    h = th.tensor([[1.0, 3.0, 0.0, -4.0], [1.0, 1.0, 0.0, 0.0]])  # E|h| = 1, 2, 0, 2; layer mean 1.25
    assert th.allclose(dormant_scores(h), th.tensor([0.8, 1.6, 0.0, 1.6]))
    assert dormant_fraction(h, 0.0) == 0.25
    assert dormant_fraction(h, 0.9) == 0.5


def test_conv_scores_average_over_positions_and_an_all_silent_layer_is_all_dormant() -> None:
    h = th.zeros(8, 3, 5, 5)
    h[:, 0, 2, 2] = 25.0  # channel 0: mean over positions 1; channel 1: 1 (spread); channel 2: silent
    h[:, 1] = 1.0
    assert th.allclose(dormant_scores(h), th.tensor([1.5, 1.5, 0.0]))
    assert dormant_fraction(th.zeros(8, 3, 5, 5), 0.0) == 1.0


def test_effective_rank_of_rank_one_and_of_equal_singular_values() -> None:
    g = th.Generator().manual_seed(1)
    rank_one = th.randn(32, 1, generator=g) @ th.randn(1, 16, generator=g)
    assert effective_rank(rank_one) == pytest.approx(1.0, abs=1e-6)
    assert effective_rank(th.eye(6) * 3.0) == pytest.approx(6.0)
    assert effective_rank(th.zeros(4, 4)) == 0.0


def test_stable_rank_counts_the_singular_values_holding_99_percent() -> None:
    features = th.diag(th.tensor([100.0, 0.5, 0.4, 0.1]))  # cumulative 0.990, 0.995, 0.999, 1
    assert stable_rank(features, 0.01) == 1
    assert stable_rank(features, 0.001) == 3
    assert stable_rank(th.eye(5)) == 5
    assert stable_rank(th.zeros(3, 3)) == 0


def test_feature_norm_and_weight_magnitudes() -> None:
    assert feature_norm(th.tensor([[3.0, 4.0], [0.0, 0.0]])) == pytest.approx(2.5)
    assert rms([th.full((2, 2), 2.0), th.full((4,), -2.0)]) == pytest.approx(2.0)
    assert rms_distance([th.ones(3)], [th.zeros(3)]) == pytest.approx(1.0)
    assert rms_distance([th.ones(3)], [th.ones(3)]) == 0.0
    with pytest.raises(ValueError):
        rms_distance([th.ones(3), th.ones(2)], [th.ones(3)])
