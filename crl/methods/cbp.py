"""Continual backprop (``--method cbp``): keep replacing the least useful mature units with fresh ones (Dohare et
al. 2024, "Loss of plasticity in deep continual learning", Nature)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch as th

from agents.method import HookContext, Method, MethodParams, param
from agents.plasticity import unit_activity


class ContinualBackprop(Method):
    """After every gradient step, update each hidden unit's running contribution utility on the step's minibatch,
    ``u <- eta u + (1 - eta) E|h_i| sum_k |w_ki|`` (its mean |activation| times its outgoing weights' magnitude),
    and replace, per layer, ``replacement_rate`` of the units older than ``maturity`` steps (fractions accumulate):
    the ones of lowest bias-corrected utility ``u / (1 - eta^age)`` get fresh incoming weights, zero bias, zero
    outgoing weights, utility 0 and age 0."""

    name = "cbp"
    summary = "continual backprop: replace low-utility units (a plasticity intervention)"
    paper = 'Dohare et al. 2024, "Loss of plasticity in deep continual learning" (Nature)'
    network_kinds = ("conv",)

    @dataclass
    class Params(MethodParams):
        replacement_rate: float = param(1e-4, "fraction of a layer's mature units replaced per gradient step", low=0,
                                        high=1)
        decay: float = param(0.99, "eta: decay of the running utility", low=0, high=1)
        maturity: int = param(10_000, "gradient steps a unit is protected after it is (re)initialized", low=0)

    def __init__(self, params: MethodParams | dict | None = None) -> None:
        super().__init__(params)
        self.utility: list[th.Tensor] = []
        self.age: list[th.Tensor] = []
        self.owed: list[float] = []  # fractional replacements accumulated per layer
        self.replaced = 0

    def after_gradient_step(self, ctx: HookContext) -> None:
        with th.no_grad():
            activations = ctx.q_net.activations(ctx.batch.observations, per_unit=True)
            if not self.utility:
                self.utility = [th.zeros(h.shape[1], device=h.device) for h in activations]
                self.age = [th.zeros(h.shape[1], dtype=th.long, device=h.device) for h in activations]
                self.owed = [0.0] * len(activations)
            fresh, changed = None, {}
            for layer, h in enumerate(activations):
                contribution = unit_activity(h) * ctx.q_net.outgoing_magnitude(layer)
                self.utility[layer].mul_(self.params.decay).add_(contribution, alpha=1 - self.params.decay)
                self.age[layer] += 1
                mature = self.age[layer] > self.params.maturity
                self.owed[layer] += self.params.replacement_rate * int(mature.sum())
                count = math.floor(self.owed[layer])
                if count == 0:
                    continue
                self.owed[layer] -= count
                corrected = self.utility[layer] / (1 - self.params.decay ** self.age[layer].double()).float()
                utility = th.where(mature, corrected, th.full_like(corrected, math.inf))
                units = th.zeros_like(mature)
                units[th.argsort(utility)[:count]] = True
                fresh = ctx.fresh_parameters() if fresh is None else fresh
                ctx.q_net.reinitialize_units(layer, units, fresh, changed)
                self.utility[layer][units] = 0.0
                self.age[layer][units] = 0
                self.replaced += count
        if changed:
            ctx.weights_changed(changed, reset_optimizer=True)

    def scalars(self) -> dict[str, float]:
        return {"cbp/replaced_units": float(self.replaced)}

    def state_dict(self) -> dict[str, Any]:
        return {"utility": self.utility, "age": self.age, "owed": self.owed, "replaced": self.replaced}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.utility, self.age = list(state["utility"]), list(state["age"])
        self.owed, self.replaced = list(state["owed"]), state["replaced"]

    def to(self, device: th.device) -> "ContinualBackprop":
        self.utility = [u.to(device) for u in self.utility]
        self.age = [a.to(device) for a in self.age]
        return self
