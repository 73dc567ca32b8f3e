"""Shrink and perturb (``--method shrink-perturb``): at each task switch, ``theta <- lambda theta + sigma theta_fresh``
(Ash & Adams 2020, "On warm-starting neural network training")."""

from __future__ import annotations

from dataclasses import dataclass

import torch as th

from agents.method import HookContext, Method, MethodParams, TaskInfo, param


class ShrinkPerturb(Method):
    """Before every block but the first, shrink the shared weights by ``shrink`` and add ``noise`` times a fresh
    initialization of them; the target network follows. Per-task biases and gains are left alone."""

    name = "shrink-perturb"
    summary = "shrink and perturb the weights at each task switch (a plasticity intervention)"
    paper = 'Ash & Adams 2020, "On warm-starting neural network training"'
    network_kinds = ("conv",)

    @dataclass
    class Params(MethodParams):
        shrink: float = param(0.4, "lambda: the factor the weights are shrunk by", low=0, high=1)
        noise: float = param(0.001, "sigma: the scale of the fresh initialization added", low=0)

    def before_task(self, ctx: HookContext, task: TaskInfo) -> None:
        if task.block == 0:
            return
        fresh, changed = ctx.fresh_parameters(), {}
        with th.no_grad():
            for name, p in ctx.q_net.shared_named_parameters():
                p.mul_(self.params.shrink).add_(fresh[name], alpha=self.params.noise)
                changed[p] = None
        ctx.weights_changed(changed, reset_optimizer=False, sync_target=True)
