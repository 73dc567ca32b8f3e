"""Policy distillation from stored teacher outputs (``--method distill``): learning without forgetting for DQN.

While a game trains, a reservoir keeps a uniform sample of the observations of its block; at the block's end the
agent's own Q-values on them are stored with them (the teacher's outputs, not a copy of the network). While later
games train, every gradient step adds, over a minibatch of stored observations of earlier games, each evaluated with
its own game's task id,

    weight * KL( softmax(Q_stored(s) / T) || softmax(Q(s, task) / T) )

(Rusu et al. 2016, "Policy distillation"; the same temperature on both sides as in Li & Hoiem 2016, "Learning
without forgetting"), or with ``loss: mse`` the mean squared error between the Q-values. :func:`distillation_loss`
is the one implementation of that term; ``replay``'s behavioural-cloning term (CLEAR) calls it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F

from agents.method import HookContext, MethodParams, TaskInfo, param
from crl.methods.memory import MemoryParams, Rehearsal

LOSSES = ("kl", "mse")
RNG_STREAM = 0x64697374  # separates this method's random stream from others seeded by (seed, block)


def distillation_loss(q: th.Tensor, q_teacher: th.Tensor, temperature: float, kind: str = "kl") -> th.Tensor:
    """Batch mean of ``KL(softmax(q_teacher / T) || softmax(q / T))`` (``kind="kl"``), or of the squared error
    ``(q - q_teacher)^2`` averaged over actions (``kind="mse"``, ``T`` unused). ``q``: (batch, actions)."""
    if kind == "mse":
        return F.mse_loss(q, q_teacher)
    if kind != "kl":
        raise ValueError(f"distillation loss must be one of {LOSSES}, got {kind!r}")
    log_student = F.log_softmax(q / temperature, dim=1)
    log_teacher = F.log_softmax(q_teacher / temperature, dim=1)
    return (log_teacher.exp() * (log_teacher - log_student)).sum(dim=1).mean()


class Distill(Rehearsal):
    """Distil each earlier game's stored Q-values into the network, every game with its own task id.

    A revisited game's stored sample is replaced by the new block's at the block's end; while a game trains its own
    stored sample is left out (its own data protects it). Each memory holds observations ("obs") and Q-values ("q").
    """

    name = "distill"
    summary = "Policy distillation from stored teacher Q-values (learning without forgetting)"
    paper = 'Rusu et al. 2016, "Policy distillation"; Li & Hoiem 2016, "Learning without forgetting"'
    rng_stream = RNG_STREAM

    @dataclass
    class Params(MemoryParams):
        temperature: float = param(0.01, "of both softmaxes (Rusu et al. 2016 sharpen the teacher with 0.01)",
                                   low=0, low_open=True)
        loss: str = param("kl", "kl: KL divergence of the softmaxes; mse: squared error of the Q-values",
                          choices=LOSSES)

    def __init__(self, params: MethodParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self._loss_sum = th.zeros(())
        self._steps = 0

    # --- hooks ---------------------------------------------------------------------------------------
    def before_task(self, ctx: HookContext, task: TaskInfo) -> None:
        super().before_task(ctx, task)
        self._loss_sum, self._steps = th.zeros((), device=self.device), 0

    def on_transition(self, ctx: HookContext, obs: np.ndarray, next_obs: np.ndarray, actions: np.ndarray,
                      rewards: np.ndarray, dones: np.ndarray) -> None:
        if self.block is None:
            return
        items, slots = self.block.select(len(obs), self.rng)
        self.block.write(slots, {"obs": np.asarray(obs)[items]})

    def penalty(self, ctx: HookContext) -> th.Tensor | None:
        groups = self.draw()
        if not groups:
            return None
        p = self.params
        loss = th.zeros((), device=ctx.device)
        for task_id, slots in groups:
            stored = self.memories[task_id].gather(slots)
            q = ctx.q_net(stored["obs"].to(ctx.device), task_id=task_id)
            share = len(slots) / p.batch_size
            loss = loss + share * distillation_loss(q, stored["q"].to(ctx.device), p.temperature, p.loss)
        self._loss_sum = self._loss_sum.to(loss.device) + loss.detach()
        self._steps += 1
        return p.weight * loss

    def scalars(self) -> dict[str, float]:
        out = self.memory_scalars("distill", "observation")
        if self._steps:
            out[f"distill/{self.params.loss}"] = float(self._loss_sum) / self._steps
        return out

    # --- persistence ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "loss_sum": float(self._loss_sum), "steps": self._steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._loss_sum, self._steps = th.tensor(state["loss_sum"], device=self.device), int(state["steps"])

    def to(self, device: th.device) -> "Distill":
        super().to(device)
        self._loss_sum = self._loss_sum.to(self.device)
        return self
