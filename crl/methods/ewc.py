"""Elastic weight consolidation (``--method ewc``, Kirkpatrick et al. 2017): one diagonal Fisher and anchor per task.

The quadratic penalty it shares with online EWC and L2 is :mod:`crl.methods.anchored`; the Fisher is
:mod:`crl.methods.fisher`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch as th
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from crl.methods.fisher import FISHER_TYPES, diagonal_fisher
from crl.methods.anchored import ONLINE, AnchoredPenalty, AnchorKey, flatten
from agents.method import HookContext, MethodParams, TaskInfo, override, param, seed_of


def replay_minibatches(
    sample: Callable[[int, th.Generator], ReplayBufferSamples], batches: int, batch_size: int, generator: th.Generator
) -> Iterator[tuple[th.Tensor, th.Tensor]]:
    """``batches`` minibatches ``(observations, actions)`` drawn by ``sample`` (``HookContext.sample``: uniform over the
    task's replay) with ``generator``, one at a time as the Fisher consumes them."""
    for _ in range(batches):
        minibatch = sample(batch_size, generator)
        yield minibatch.observations, minibatch.actions


class EWC(AnchoredPenalty):
    """Elastic weight consolidation (Kirkpatrick et al. 2017), one Fisher and anchor per task.

    Defaults follow the paper's Atari agent: lambda 400, Fisher from 100 minibatches of 32 from the task's replay.
    The minibatches and the sampled actions come from generators seeded by (run seed, block), not from the global
    RNGs, so an EWC run and a fine-tuning run of the same seed draw the same everything else.
    """

    name = "ewc"
    summary = "Elastic weight consolidation, with the paper's per-game biases and gains (`network.task_modulation`)"
    paper = "Kirkpatrick et al. 2017, PNAS"

    @dataclass
    class Params(AnchoredPenalty.Params):
        lambda_: float = override(AnchoredPenalty.Params, "lambda_", 400.0)
        fisher_batches: int = param(100, "replay minibatches the Fisher is measured on", low=1)
        fisher_batch_size: int = param(32, "transitions per Fisher minibatch", low=1)
        fisher_type: str = param("true", "true: actions drawn from the softmax policy; empirical: replayed actions",
                                 choices=FISHER_TYPES)
        temperature: float = param(1.0, "of the softmax over Q-values whose Fisher is measured", low=0, low_open=True)
        normalize: bool = param(False, "divide each game's Fisher by its maximum")

    def __init__(self, params: MethodParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.fisher_stats: dict[AnchorKey, tuple[float, float]] = {}

    def importance(self, ctx: HookContext, task: TaskInfo, names: list[str]) -> th.Tensor:
        """The task's diagonal Fisher, from minibatches of its replay buffer (the agent's current one), drawn with
        generators of the Fisher's own seeded by (run seed, block)."""
        p = self.params
        seed = seed_of(task.seed, task.block)
        indices = th.Generator().manual_seed(seed)
        batches = replay_minibatches(ctx.sample, p.fisher_batches, p.fisher_batch_size, indices)
        actions = th.Generator(device=ctx.device).manual_seed(seed)
        fisher = diagonal_fisher(ctx.q_net, names, batches, p.temperature,
                                 p.fisher_type, actions)  # type: ignore[arg-type]
        flat = flatten(fisher[n] for n in names)
        self.record(task.task_id, flat)
        if p.normalize and flat.max() > 0:
            flat = flat / flat.max()
        return flat

    def record(self, key: AnchorKey, fisher: th.Tensor) -> None:
        self.fisher_stats[key] = (float(fisher.mean()), float(fisher.max()))

    def scalars(self) -> dict[str, float]:
        """``ewc/fisher_{mean,max}/task_<id>`` per anchored task (``.../online`` for the running Fisher)."""
        out = {}
        for key, (mean, largest) in self.fisher_stats.items():
            name = key if key == ONLINE else f"task_{key}"
            out[f"ewc/fisher_mean/{name}"] = mean
            out[f"ewc/fisher_max/{name}"] = largest
        return out

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "fisher_stats": {k: list(v) for k, v in self.fisher_stats.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.fisher_stats = {k: (float(v[0]), float(v[1])) for k, v in state["fisher_stats"].items()}
