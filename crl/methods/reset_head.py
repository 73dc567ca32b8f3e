"""Head resets (``--method reset-head``): re-initialize the last layer(s) at each task switch (Nikishin et al.
2022, "The primacy bias in deep reinforcement learning")."""

from __future__ import annotations

from dataclasses import dataclass

import torch as th

from agents.method import HookContext, Method, MethodParams, TaskInfo, param


class ResetHead(Method):
    """Before every block but the first, the last ``layers`` layers (1: the Q-value head; 2: and the dense layer
    below it) take fresh initial weights, their optimizer moments are reset and the target network follows."""

    name = "reset-head"
    summary = "reset the last layer(s) at each task switch (a plasticity intervention)"
    paper = 'Nikishin et al. 2022, "The primacy bias in deep reinforcement learning"'
    network_kinds = ("conv",)

    @dataclass
    class Params(MethodParams):
        layers: int = param(1, "layers reset, counted from the output", low=1, high=2)

    def before_task(self, ctx: HookContext, task: TaskInfo) -> None:
        if task.block == 0:
            return
        fresh, changed = ctx.fresh_parameters(), {}
        with th.no_grad():
            for name, p in ctx.q_net.last_layers_named_parameters(self.params.layers):
                p.copy_(fresh[name])
                changed[p] = None
        ctx.weights_changed(changed, reset_optimizer=True, sync_target=True)
