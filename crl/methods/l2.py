"""L2 anchors (``--method l2``): EWC's penalty with every importance 1, the baseline that shows what the Fisher buys."""

from __future__ import annotations

from dataclasses import dataclass

import torch as th

from crl.methods.anchored import AnchoredPenalty
from agents.method import HookContext, TaskInfo, override


class L2(AnchoredPenalty):
    """L2 anchors: ``lambda/2 * sum_t ||theta - theta*_t||^2``, EWC with ``F = 1``."""

    name = "l2"
    summary = "L2 to the previous weights"
    paper = "EWC with F = 1 (the baseline of Kirkpatrick et al. 2017)"

    @dataclass
    class Params(AnchoredPenalty.Params):
        lambda_: float = override(AnchoredPenalty.Params, "lambda_", 0.01)

    def importance(self, ctx: HookContext, task: TaskInfo, names: list[str]) -> th.Tensor:
        return th.ones((), device=ctx.device)
