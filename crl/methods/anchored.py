"""Quadratic anchor penalties, the base of EWC (``ewc.py``), online EWC (``online_ewc.py``) and L2 (``l2.py``).

All three keep, for finished tasks, a copy of the shared parameters (the anchor ``theta*``) and a per-parameter
importance ``F``, and add to the TD loss (Kirkpatrick et al. 2017, eq. 3, one term per earlier task):

    lambda / 2 * sum_t sum_i F_{t,i} (theta_i - theta*_{t,i})^2

* ``ewc``: ``F_t`` is the diagonal Fisher of task ``t`` (:mod:`crl.methods.fisher`), one anchor per task ("separate").
* ``online-ewc``: one running Fisher ``F* <- gamma F* + F_new`` and one anchor, the latest parameters; the penalty
  weighs them with ``gamma F*`` (Schwarz et al. 2018, "Progress & Compress", online EWC).
* ``l2``: ``F = 1``: every weight protected equally, the baseline that shows what the Fisher buys.

A task is the agent's task id (``TaskInfo.task_id``), never the true game: under ``--task-id fmn`` the agent knows
only the ids it inferred, so two games it took for one share an anchor, and a game it names differently on a
revisit has one anchor per id.

Only ``q_net.shared_named_parameters()`` are anchored: per-game biases and gains (``task_modulation``) are trained
only while their game is active and are outside the penalty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch as th

from agents.method import HookContext, Method, MethodParams, TaskInfo, param

ONLINE = "online"  # key of online EWC's single anchor (task ids are ints)
AnchorKey = int | str  # a task id, or ONLINE


def flatten(tensors: Iterator[th.Tensor] | list[th.Tensor]) -> th.Tensor:
    """All tensors as one flat vector (differentiable: the penalty's gradient flows back to each parameter)."""
    return th.cat([t.reshape(-1) for t in tensors])


@dataclass
class Anchor:
    """One quadratic term: ``importance`` (flat, or a scalar for L2) and the anchored flat parameters."""

    importance: th.Tensor
    params: th.Tensor


@dataclass
class FoldedQuadratic:
    """``sum_t sum_i F_ti (x_i - a_ti)^2`` folded into one quadratic form ``sum_i A_i (x_i - m_i)^2 + K``.

    With ``A = sum_t F_t``, ``m = sum_t F_t a_t / A`` and ``K = sum_t sum_i F_ti (a_ti - m_i)^2`` this is the same
    function of ``x`` (and so the same gradient ``2 sum_t F_t (x - a_t)``), at the cost of one term instead of one
    per task. ``m`` is written as ``a_0 + sum_t (F_t / A)(a_t - a_0)`` so that a single anchor is reproduced exactly
    (the penalty is exactly 0 there).
    """

    precision: th.Tensor
    center: th.Tensor
    offset: th.Tensor

    @classmethod
    def fold(cls, anchors: list[Anchor]) -> "FoldedQuadratic":
        precision = sum(a.importance for a in anchors)
        safe = th.where(precision > 0, precision, th.ones_like(precision))
        reference = anchors[0].params
        center = reference + sum(
            th.where(precision > 0, a.importance / safe, 0.0) * (a.params - reference) for a in anchors
        )
        offset = sum((a.importance * (a.params - center).square()).sum() for a in anchors)
        return cls(precision, center, offset)

    def __call__(self, x: th.Tensor) -> th.Tensor:
        return (self.precision * (x - self.center).square()).sum() + self.offset


class AnchoredPenalty(Method):
    """Base of the three methods: stores anchors after task blocks and turns them into the loss penalty.

    Anchors are keyed by the agent's task id. Revisits: a task keeps one anchor; finishing it again replaces its
    importance and anchor with ones measured at the new parameters (the pair describes one point of the loss
    surface). While a task trains, its own anchor is left out of the penalty: its own data protects it, and its old
    anchor would only hold it back.
    """

    @dataclass
    class Params(MethodParams):
        lambda_: float = param(1.0, "strength of the penalty (its factor lambda / 2)", low=0)
        min_task_steps: int = param(0, "env steps on a game before it is anchored (EWC paper: 5M)", low=0)

    def __init__(self, params: MethodParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.param_names: list[str] = []
        self.anchors: dict[AnchorKey, Anchor] = {}
        self.active_task: int | None = None
        self._folded: FoldedQuadratic | None = None

    # --- what subclasses choose ----------------------------------------------------------------------
    def importance(self, ctx: HookContext, task: TaskInfo, names: list[str]) -> th.Tensor:
        """Per-parameter importance of ``task``, flat in the order of ``names`` (or a scalar for all)."""
        raise NotImplementedError  # abstract: EWC measures a Fisher, L2 returns 1

    def store(self, task: TaskInfo, anchor: Anchor) -> None:
        """Keep ``anchor`` as the finished task's term (separate anchors: replaces that task's previous one)."""
        self.anchors[task.task_id] = anchor

    def penalized(self) -> list[Anchor]:
        """The terms in the penalty now: every anchored task except the one being trained."""
        return [a for key, a in self.anchors.items() if key != self.active_task]

    # --- hooks ---------------------------------------------------------------------------------------
    def before_task(self, ctx: HookContext, task: TaskInfo) -> None:
        self.active_task = task.task_id
        self._folded = None

    def after_task(self, ctx: HookContext, task: TaskInfo) -> None:
        steps = ctx.task_steps
        if steps == 0 or steps < self.params.min_task_steps:
            return
        named = list(ctx.q_net.shared_named_parameters())
        names = [n for n, _ in named]
        if self.param_names and names != self.param_names:
            raise ValueError("the Q-network's shared parameters changed since the first anchor was stored")
        self.param_names = names
        importance = self.importance(ctx, task, names).detach()
        params = flatten(p for _, p in named).detach().clone()
        self.store(task, Anchor(importance, params))
        self._folded = None

    def penalty(self, ctx: HookContext) -> th.Tensor | None:
        if self._folded is None:
            terms = self.penalized()
            if not terms:
                return None
            self._folded = FoldedQuadratic.fold(terms)
        theta = flatten(p for _, p in ctx.q_net.shared_named_parameters())
        return 0.5 * self.params.lambda_ * self._folded(theta)

    # --- persistence ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "param_names": list(self.param_names),
            "anchors": {key: {"importance": a.importance, "params": a.params} for key, a in self.anchors.items()},
            "active_task": self.active_task,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "active_task" not in state:
            raise ValueError("this agent's anchors are keyed by game name (saved before they were keyed by task id); "
                             "it cannot be continued with this version")
        self.param_names = list(state["param_names"])
        self.anchors = {key: Anchor(a["importance"], a["params"]) for key, a in state["anchors"].items()}
        self.active_task = state["active_task"]
        self._folded = None

    def to(self, device: th.device) -> "AnchoredPenalty":
        self.anchors = {k: Anchor(a.importance.to(device), a.params.to(device)) for k, a in self.anchors.items()}
        self._folded = None
        return self
