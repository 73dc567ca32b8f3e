"""L2 Init (``--method l2-init``): regenerative regularization toward the initial weights (Kumar et al. 2023,
"Maintaining plasticity in continual learning via regenerative regularization")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch as th

from agents.method import HookContext, Method, MethodParams, TaskInfo, param


class L2Init(Method):
    """Adds ``lambda * ||theta - theta_0||^2`` over the shared weights, ``theta_0`` their values before the first
    block (kept in the method's state, so a resumed run pulls toward the same point)."""

    name = "l2-init"
    summary = "L2 Init: regularize toward the initial weights (a plasticity intervention)"
    paper = 'Kumar et al. 2023, "Maintaining plasticity in continual learning via regenerative regularization"'
    network_kinds = ("conv",)

    @dataclass
    class Params(MethodParams):
        lambda_: float = param(1e-3, "lambda: weight of the pull toward the initial weights", low=0)

    def __init__(self, params: MethodParams | dict | None = None) -> None:
        super().__init__(params)
        self.initial: dict[str, th.Tensor] = {}

    def before_task(self, ctx: HookContext, task: TaskInfo) -> None:
        if not self.initial:
            self.initial = {n: p.detach().clone() for n, p in ctx.q_net.shared_named_parameters()}

    def penalty(self, ctx: HookContext) -> th.Tensor | None:
        if not self.initial or self.params.lambda_ == 0:
            return None
        distance = sum((p - self.initial[n]).pow(2).sum() for n, p in ctx.q_net.shared_named_parameters())
        return self.params.lambda_ * distance

    def state_dict(self) -> dict[str, Any]:
        return {"initial": self.initial}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.initial = dict(state["initial"])

    def to(self, device: th.device) -> "L2Init":
        self.initial = {n: t.to(device) for n, t in self.initial.items()}
        return self
