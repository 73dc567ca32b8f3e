"""Progressive neural networks (Rusu et al. 2016) as a continual-learning method.

All the work is structural and lives in ``agents.networks.progressive_q.ProgressiveQNetwork``: a new game gets a new
column, earlier columns are frozen (a revisit trains only its column's Q head by default), and the agent rebuilds
its optimizer over the new trainable set. Nothing is added to the loss. The method chooses that network and
reports its size, which grows quadratically with the number of columns because each new column's adapters read
from all earlier ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.networks.progressive_q import REVISITS, WIDTHS
from agents.method import HookContext, Method, MethodParams, TaskInfo, param


class Progressive(Method):
    """One Q-network column per game, earlier columns frozen, lateral adapters from all earlier columns."""

    name = "progressive"
    summary = "Progressive neural networks"
    paper = 'Rusu et al. 2016, "Progressive neural networks"'

    @dataclass
    class Params(MethodParams):
        width: str = param("dqn", "column widths: dqn (the game family's DQN widths: 32-64-64 maps and 512 units on "
                           "Atari, 16 maps and 128 units on MinAtar) or paper (12 maps per conv, 256 units: the "
                           "paper's Atari columns)", choices=WIDTHS)
        adapters: bool = param(True, "lateral connections from earlier columns (false: independent columns)")
        alpha_init: float = param(0.1, "start value of the adapters' learned scalars (the paper chose among 1, 0.1 "
                                  "and 0.01)", low=0, low_open=True)
        revisit: str = param("head", "what a revisited game trains once later columns read its column: head (only its "
                             "Q head and the head's adapter: no game is forgotten) or column (the whole column and its "
                             "adapters: later games' Q-values drift)", choices=REVISITS)

    def __init__(self, params: MethodParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.column_params: list[int] = []

    def q_network_spec(self, network: dict[str, Any]) -> dict[str, Any]:
        """Columns take their sizes from ``progressive.width``; the ``network`` section's sizes do not apply."""
        if network.get("task_modulation"):
            raise ValueError("progressive columns are per-task already; network.task_modulation must be false")
        if network.get("activation", "relu") != "relu" or network.get("layer_norm"):
            raise ValueError("progressive columns are ReLU networks without layer norm; network.activation and "
                             "network.layer_norm do not apply")
        p = self.params
        return {"kind": "progressive", "width": p.width, "adapters": p.adapters, "alpha_init": p.alpha_init,
                "revisit": p.revisit}

    def before_task(self, ctx: HookContext, task: TaskInfo) -> None:
        self.column_params = ctx.q_net.column_parameter_counts()

    def scalars(self) -> dict[str, float]:
        if not self.column_params:
            return {}
        figures = {f"progressive/params_column_{k}": float(n) for k, n in enumerate(self.column_params)}
        figures["progressive/columns"] = float(len(self.column_params))
        figures["progressive/params_total"] = float(sum(self.column_params))
        return figures
