"""Online EWC (``--method online-ewc``, Schwarz et al. 2018, "Progress & Compress"): one running Fisher, decayed
by ``gamma`` per finished block, around the latest parameters."""

from __future__ import annotations

from dataclasses import dataclass

from crl.methods.anchored import ONLINE, Anchor
from agents.method import TaskInfo, override, param
from crl.methods.ewc import EWC


class OnlineEWC(EWC):
    """Online EWC (Schwarz et al. 2018): ``F* <- gamma F* + F_new``, anchor = parameters after the latest block.

    While task ``k`` trains, the penalty is ``lambda/2 * sum_i gamma F*_{k-1,i} (theta_i - theta*_{k-1,i})^2``: P&C's
    online EWC weighs the running Fisher by ``gamma`` in the penalty too (so the latest block's own Fisher enters
    with weight ``gamma``). Every finished block (a revisit too) is folded in; ``gamma < 1`` lets old blocks' terms
    fade so the penalty's strength stays bounded (at most ``gamma / (1 - gamma)`` block-Fishers). P&C normalise each
    Fisher, hence the defaults ``normalize=True`` and a lambda from their grid rather than EWC's 400.
    """

    name = "online-ewc"
    summary = "Online EWC (one decayed Fisher)"
    paper = 'Schwarz et al. 2018, "Progress & Compress"'

    @dataclass
    class Params(EWC.Params):
        lambda_: float = override(EWC.Params, "lambda_", 25.0)
        normalize: bool = override(EWC.Params, "normalize", True)
        gamma: float = param(0.95, "decay of the running Fisher per finished block", low=0, high=1, low_open=True)

    def store(self, task: TaskInfo, anchor: Anchor) -> None:
        previous = self.anchors.get(ONLINE)
        if previous is not None:
            anchor = Anchor(self.params.gamma * previous.importance + anchor.importance, anchor.params)
        self.anchors[ONLINE] = anchor
        self.record(ONLINE, anchor.importance)

    def penalized(self) -> list[Anchor]:
        """The running term scaled by ``gamma``: ``gamma F*_{k-1}`` around ``theta*_{k-1}``."""
        return [Anchor(self.params.gamma * a.importance, a.params) for a in self.anchors.values()]
