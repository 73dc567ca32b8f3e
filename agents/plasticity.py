"""Plasticity measures: can the network still learn? Pure functions of activations, features and weights.

* :func:`dormant_scores` / :func:`dormant_fraction`: Sokar et al. 2023 ("The dormant neuron phenomenon in deep
  reinforcement learning", ReDo), Eq. 1.
* :func:`effective_rank`: Roy & Vetterli 2007, exp of the entropy of the normalized singular values.
* :func:`stable_rank`: Kumar et al. 2021 ("Implicit under-parameterization"), ``srank_delta``.
* :func:`feature_norm`, :func:`rms`, :func:`rms_distance`: the weight and feature magnitudes of Lyle et al.

The run records them on a fixed probe batch per game; the ReDo and continual-backprop methods use the scores.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch as th

DORMANT_TAUS = (0.0, 0.025, 0.1)  # dead units (tau = 0) and ReDo's two thresholds


def unit_activity(activations: th.Tensor) -> th.Tensor:
    """Mean |activation| of each unit over the batch (and the spatial positions of a conv layer): ``E_x |h_i(x)|``.

    ``activations``: ``(batch, units)`` or ``(batch, channels, height, width)``."""
    a = activations.detach().abs().float()
    return a.mean(dim=(0, 2, 3)) if a.dim() == 4 else a.mean(dim=0)


def dormant_scores(activations: th.Tensor) -> th.Tensor:
    """ReDo's score per unit (Sokar et al. 2023, Eq. 1): ``s_i = E_x|h_i(x)| / (1/H sum_k E_x|h_k(x)|)``.

    A layer whose units are all silent scores 0 everywhere (every unit dormant at every tau)."""
    activity = unit_activity(activations)
    mean = activity.mean()
    return activity / mean if mean > 0 else th.zeros_like(activity)


def dormant_fraction(activations: th.Tensor, tau: float) -> float:
    """Fraction of the layer's units that are tau-dormant: score <= tau (tau = 0: units that never fire)."""
    return float((dormant_scores(activations) <= tau).float().mean())


def _singular_values(features: th.Tensor) -> th.Tensor:
    return th.linalg.svdvals(features.detach().double().flatten(1))


def effective_rank(features: th.Tensor) -> float:
    """``exp(H(p))`` with ``p = sigma / sum(sigma)`` over the singular values of the ``(batch, dim)`` features
    (Roy & Vetterli 2007): 1 for a rank-1 matrix, ``k`` for ``k`` equal singular values; 0 for all-zero features."""
    sigma = _singular_values(features)
    total = sigma.sum()
    if total <= 0:
        return 0.0
    p = sigma / total
    p = p[p > 0]
    return float(th.exp(-(p * p.log()).sum()))


def stable_rank(features: th.Tensor, delta: float = 0.01) -> int:
    """``srank_delta`` (Kumar et al. 2021): the fewest singular values whose sum holds ``1 - delta`` of the total."""
    sigma = _singular_values(features)
    total = sigma.sum()
    if total <= 0:
        return 0
    cumulative = th.cumsum(sigma, 0) / total
    return int((cumulative < 1 - delta).sum()) + 1


def feature_norm(features: th.Tensor) -> float:
    """Mean L2 norm of the feature vectors of a batch."""
    return float(features.detach().float().flatten(1).norm(dim=1).mean())


def rms(tensors: Iterable[th.Tensor]) -> float:
    """Root mean square over every entry of ``tensors`` (the weights' magnitude)."""
    squares, count = 0.0, 0
    for t in tensors:
        squares += float(t.detach().double().pow(2).sum())
        count += t.numel()
    return (squares / count) ** 0.5 if count else 0.0


def rms_distance(tensors: Iterable[th.Tensor], initial: Iterable[th.Tensor]) -> float:
    """Root mean square of ``theta - theta_0`` entry by entry: how far the weights moved from their initial values."""
    return rms(t.detach() - t0.to(t.device) for t, t0 in zip(tensors, initial, strict=True))
