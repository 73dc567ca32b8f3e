"""ReDo (``--method redo``): recycle dormant units (Sokar et al. 2023, "The dormant neuron phenomenon in deep
reinforcement learning")."""

from __future__ import annotations

from dataclasses import dataclass

import torch as th

from agents.method import HookContext, Method, MethodParams, param
from agents.plasticity import dormant_scores


class ReDo(Method):
    """Every ``every`` gradient steps, score each hidden unit on a replay minibatch (Eq. 1: its mean |activation|
    over the layer's mean) and recycle the tau-dormant ones: fresh incoming weights, zero bias, zero outgoing weights,
    and the optimizer moments of all of them reset."""

    name = "redo"
    summary = "ReDo: recycle dormant units (a plasticity intervention)"
    paper = 'Sokar et al. 2023, "The dormant neuron phenomenon in deep reinforcement learning"'
    network_kinds = ("conv",)

    @dataclass
    class Params(MethodParams):
        tau: float = param(0.025, "a unit is dormant when its score is at most tau", low=0)
        every: int = param(1000, "gradient steps between recycling passes", low=1)
        batch_size: int = param(256, "replay transitions a pass scores the units on", low=1)

    def __init__(self, params: MethodParams | dict | None = None) -> None:
        super().__init__(params)
        self.steps = 0
        self.recycled = 0  # units recycled over the run

    def after_gradient_step(self, ctx: HookContext) -> None:
        self.steps += 1
        if self.steps % self.params.every:
            return
        batch = ctx.sample(self.params.batch_size)
        with th.no_grad():
            activations = ctx.q_net.activations(batch.observations, per_unit=True)
        dormant = [dormant_scores(h) <= self.params.tau for h in activations]
        if not any(d.any() for d in dormant):
            return
        fresh, changed = ctx.fresh_parameters(), {}
        for layer, units in enumerate(dormant):
            if units.any():
                ctx.q_net.reinitialize_units(layer, units, fresh, changed)
                self.recycled += int(units.sum())
        ctx.weights_changed(changed, reset_optimizer=True)

    def scalars(self) -> dict[str, float]:
        return {"redo/recycled_units": float(self.recycled)}

    def state_dict(self) -> dict:
        return {"steps": self.steps, "recycled": self.recycled}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.recycled = state["steps"], state["recycled"]
