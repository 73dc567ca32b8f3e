"""Plasticity diagnostics of a run: a fixed probe batch per game, the network's initial weights, and the measures
taken on them at every evaluation (``plasticity.jsonl``, TensorBoard ``plasticity/...``).

A game's probe batch is ``plasticity.probe_size`` observations drawn, with a generator of its own, from the game's
replay buffer at the first evaluation of its first block that finds the buffer full enough; it is kept (and
checkpointed) for the whole run, so every later measure of the game looks at the same inputs. Nothing here runs
between evaluations, and nothing draws from the RNGs that training uses: a run with the measures on trains exactly
like one with them off.
"""

from __future__ import annotations

from typing import Any

import torch as th

from agents import ContinualDQN
from agents.frame_buffer import sample_with
from agents.method import seed_of
from agents.plasticity import (
    DORMANT_TAUS,
    dormant_scores,
    effective_rank,
    feature_norm,
    rms,
    rms_distance,
    stable_rank,
)

PROBE_STREAM = 0x70726F62  # separates the probe draws from other streams seeded by the run seed
GRADIENT_STREAM = 0x67726164


def network_measures(agent: ContinualDQN, initial: dict[str, th.Tensor], batch_size: int, seed: int,
                     step: int) -> dict[str, float]:
    """Measures of the whole network: RMS weight, RMS distance from the initial weights (shared parameters), and the
    norm of the TD loss's gradient on a replay minibatch of the current game (drawn from a generator of its own)."""
    shared = dict(agent.q_net.shared_named_parameters())
    out = {}
    if shared:  # progressive columns share nothing
        out["weight_rms"] = rms(shared.values())
        out["weight_distance"] = rms_distance([shared[n] for n in initial], initial.values())
    if agent.replay_buffer is not None and agent.replay_buffer.size() > 0:
        generator = th.Generator().manual_seed(seed_of(seed, step, GRADIENT_STREAM))
        batch = sample_with(agent.replay_buffer, batch_size, generator)
        params = list(agent.q_net.trainable_parameters())
        grads = th.autograd.grad(agent.td_loss(batch), params, allow_unused=True)
        out["grad_norm"] = float(th.sqrt(sum(g.double().pow(2).sum() for g in grads if g is not None)))
    return out


def probe_measures(agent: ContinualDQN, observations: th.Tensor, task_id: int) -> dict[str, float]:
    """Measures of one game's probe batch: dormant fractions at each tau, over all hidden units and per layer
    (Sokar et al. 2023), and effective rank, stable rank and norm of the penultimate features."""
    q_net = agent.q_net
    with th.no_grad():
        units = q_net.activations(observations.to(agent.device), task_id=task_id, per_unit=True)
        features = q_net.activations(observations.to(agent.device), task_id=task_id)[-1]
    scores = [dormant_scores(h) for h in units]
    pooled = th.cat(scores)
    out: dict[str, float] = {}
    for tau in DORMANT_TAUS:
        out[f"dormant_{tau:g}"] = float((pooled <= tau).float().mean())
        for name, s in zip(q_net.hidden_layer_names(), scores):
            out[f"dormant_{tau:g}/{name}"] = float((s <= tau).float().mean())
    out["effective_rank"] = effective_rank(features)
    out["stable_rank"] = float(stable_rank(features))
    out["feature_norm"] = feature_norm(features)
    return out


class PlasticityProbes:
    """The probe batches (by game column) and the initial weights; :meth:`measure` is called at each evaluation."""

    def __init__(self, probe_size: int, seed: int) -> None:
        self.probe_size = probe_size
        self.seed = seed
        self.batches: dict[int, th.Tensor] = {}  # game column -> uint8 observations, on the CPU
        self.initial: dict[str, th.Tensor] = {}

    def start(self, agent: ContinualDQN) -> None:
        """Keep the network's initial shared weights (once, before any training)."""
        if not self.initial:
            self.initial = {n: p.detach().cpu().clone() for n, p in agent.q_net.shared_named_parameters()}

    def draw(self, column: int, agent: ContinualDQN) -> None:
        """Draw ``column``'s probe batch from the current replay buffer, unless it has one or the buffer holds fewer
        than ``probe_size`` transitions."""
        buffer = agent.replay_buffer
        if column in self.batches or buffer is None or buffer.size() * buffer.n_envs < self.probe_size:
            return
        generator = th.Generator().manual_seed(seed_of(self.seed, column, PROBE_STREAM))
        self.batches[column] = sample_with(buffer, self.probe_size, generator).observations.cpu().clone()

    def measure(self, agent: ContinualDQN, task_ids: dict[int, int], step: int) -> tuple[dict[str, float],
                                                                                          dict[int, dict[str, float]]]:
        """The network's measures, and each probed game's (by column, played as ``task_ids[column]``)."""
        network = network_measures(agent, self.initial, self.probe_size, self.seed, step)
        if not hasattr(agent.q_net, "activations"):
            return network, {}
        games = {c: probe_measures(agent, obs, task_ids[c]) for c, obs in sorted(self.batches.items())
                 if c in task_ids}
        return network, games

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "initial": self.initial}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches, self.initial = dict(state["batches"]), dict(state["initial"])
