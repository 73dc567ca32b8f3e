"""Diagonal Fisher information of a Q-network's softmax policy, from per-sample gradients.

EWC (Kirkpatrick et al. 2017, eq. 3) weighs each parameter by the diagonal of the Fisher information

    F_i = E_{s ~ D, a ~ p(.|s)} [ (d log p(a|s; theta) / d theta_i)^2 ],    p(.|s) = softmax(Q(s, .) / T).

The expectation is over samples, so each sample's gradient is squared before averaging: per-sample gradients come
from ``torch.func.vmap`` over ``torch.func.grad``. (Squaring a minibatch-mean gradient would estimate a different,
much smaller quantity.)

Two choices of the action:

* ``"true"`` (default): ``a`` is drawn from ``p(.|s)`` itself. This is the Fisher of the model's distribution, the
  expected Hessian of ``-log p`` that EWC's Laplace approximation needs; it is positive wherever the policy is
  uncertain, whatever the agent happened to do.
* ``"empirical"``: ``a`` is the action stored in the replay buffer. Cheaper to reason about, but those actions come
  from an epsilon-greedy behaviour policy, not from ``p``, and the empirical Fisher is a poor curvature estimate
  away from a maximum-likelihood fit (Kunstner et al. 2019, "Limitations of the empirical Fisher approximation").

The sampled actions come from a ``torch.Generator`` of the Fisher's own, never from the global RNG: a run that
computes Fishers (EWC) and one that does not (fine-tuning) then draw the same exploration and minibatches elsewhere,
so same-seed runs of the two stay paired.
"""

from __future__ import annotations

from typing import Iterable, Literal

import torch as th
from torch import nn
from torch.func import functional_call, grad, vmap

FisherType = Literal["true", "empirical"]
FISHER_TYPES: tuple[str, ...] = ("true", "empirical")


def per_sample_log_likelihood_grads(
    model: nn.Module, names: list[str], obs: th.Tensor, actions: th.Tensor, temperature: float = 1.0
) -> dict[str, th.Tensor]:
    """Gradient of ``log softmax(model(s) / T)[a]`` for each sample, w.r.t. the parameters ``names``.

    Returns ``{name: tensor of shape (batch, *param.shape)}``. Parameters not in ``names`` are held constant.
    """
    constants = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    wrt = {n: constants.pop(n) for n in names}

    def log_likelihood(params: dict[str, th.Tensor], x: th.Tensor, action: th.Tensor) -> th.Tensor:
        logits = functional_call(model, ({**constants, **params}, buffers), (x.unsqueeze(0),))
        log_probs = th.log_softmax(logits.squeeze(0) / temperature, dim=-1)
        return log_probs.gather(0, action.view(1)).squeeze(0)

    return vmap(grad(log_likelihood), in_dims=(None, 0, 0))(wrt, obs, actions.long().view(-1))


def diagonal_fisher(
    model: nn.Module,
    names: list[str],
    batches: Iterable[tuple[th.Tensor, th.Tensor]],
    temperature: float = 1.0,
    fisher_type: FisherType = "true",
    generator: th.Generator | None = None,
) -> dict[str, th.Tensor]:
    """Diagonal Fisher of the softmax policy over ``model``'s outputs, averaged over every sample of ``batches``.

    ``batches`` yields ``(observations, taken_actions)``; the taken actions are used only by the empirical Fisher.
    The true Fisher draws its actions with ``generator`` (on the model's device; None: a fresh one seeded 0), never
    with the global RNG.
    """
    if fisher_type not in FISHER_TYPES:
        raise ValueError(f"fisher_type must be one of {FISHER_TYPES}, got {fisher_type!r}")
    params = dict(model.named_parameters())
    total = {n: th.zeros_like(params[n], dtype=th.float32) for n in names}
    count = 0
    for obs, taken in batches:
        if fisher_type == "true":
            with th.no_grad():
                probs = th.softmax(model(obs) / temperature, dim=-1)
            if generator is None:
                generator = th.Generator(device=probs.device).manual_seed(0)
            actions = th.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            actions = taken.long().view(-1)
        grads = per_sample_log_likelihood_grads(model, names, obs, actions, temperature)
        for n, g in grads.items():
            total[n] += g.square().sum(dim=0)
        count += obs.shape[0]
    if count == 0:
        raise ValueError("diagonal_fisher needs at least one sample")
    return {n: t / count for n, t in total.items()}
