"""Quadratic anchor penalties: EWC, online EWC and L2.

All three keep, for finished tasks, a copy of the shared parameters (the anchor ``theta*``) and a per-parameter
importance ``F``, and add to the TD loss (Kirkpatrick et al. 2017, eq. 3, one term per earlier task):

    lambda / 2 * sum_t sum_i F_{t,i} (theta_i - theta*_{t,i})^2

* ``ewc``: ``F_t`` is the diagonal Fisher of task ``t`` (:mod:`crl.fisher`), one anchor per task ("separate").
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
from typing import Any, Callable, Iterator

import torch as th
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from crl.fisher import FISHER_TYPES, diagonal_fisher
from crl.methods.base import HookContext, Method, MethodParams, TaskInfo, override, param, seed_of

ONLINE = "online"  # key of online EWC's single anchor (task ids are ints)
AnchorKey = int | str  # a task id, or ONLINE


def flatten(tensors: Iterator[th.Tensor] | list[th.Tensor]) -> th.Tensor:
    """All tensors as one flat vector (differentiable: the penalty's gradient flows back to each parameter)."""
    return th.cat([t.reshape(-1) for t in tensors])


def replay_minibatches(
    sample: Callable[[int, th.Generator], ReplayBufferSamples], batches: int, batch_size: int, generator: th.Generator
) -> Iterator[tuple[th.Tensor, th.Tensor]]:
    """``batches`` minibatches ``(observations, actions)`` drawn by ``sample`` (``HookContext.sample``: uniform over the
    task's replay) with ``generator``, one at a time as the Fisher consumes them."""
    for _ in range(batches):
        minibatch = sample(batch_size, generator)
        yield minibatch.observations, minibatch.actions


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


class EWC(AnchoredPenalty):
    """Elastic weight consolidation (Kirkpatrick et al. 2017), one Fisher and anchor per task.

    Defaults follow the paper's Atari agent: lambda 400, Fisher from 100 minibatches of 32 from the task's replay.
    The minibatches and the sampled actions come from generators seeded by (run seed, block), not from the global
    RNGs, so an EWC run and a fine-tuning run of the same seed draw the same everything else.
    """

    name = "ewc"
    summary = "Elastic weight consolidation, with the paper's per-game biases and gains (`network.task_modulation`)"
    paper = "Kirkpatrick et al. 2017, PNAS"

    @dataclass
    class Params(AnchoredPenalty.Params):
        lambda_: float = override(AnchoredPenalty.Params, "lambda_", 400.0)
        fisher_batches: int = param(100, "replay minibatches the Fisher is measured on", low=1)
        fisher_batch_size: int = param(32, "transitions per Fisher minibatch", low=1)
        fisher_type: str = param("true", "true: actions drawn from the softmax policy; empirical: replayed actions",
                                 choices=FISHER_TYPES)
        temperature: float = param(1.0, "of the softmax over Q-values whose Fisher is measured", low=0, low_open=True)
        normalize: bool = param(False, "divide each game's Fisher by its maximum")

    def __init__(self, params: MethodParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.fisher_stats: dict[AnchorKey, tuple[float, float]] = {}

    def importance(self, ctx: HookContext, task: TaskInfo, names: list[str]) -> th.Tensor:
        """The task's diagonal Fisher, from minibatches of its replay buffer (the agent's current one), drawn with
        generators of the Fisher's own seeded by (run seed, block)."""
        p = self.params
        seed = seed_of(task.seed, task.block)
        indices = th.Generator().manual_seed(seed)
        batches = replay_minibatches(ctx.sample, p.fisher_batches, p.fisher_batch_size, indices)
        actions = th.Generator(device=ctx.device).manual_seed(seed)
        fisher = diagonal_fisher(ctx.q_net, names, batches, p.temperature,
                                 p.fisher_type, actions)  # type: ignore[arg-type]
        flat = flatten(fisher[n] for n in names)
        self.record(task.task_id, flat)
        if p.normalize and flat.max() > 0:
            flat = flat / flat.max()
        return flat

    def record(self, key: AnchorKey, fisher: th.Tensor) -> None:
        self.fisher_stats[key] = (float(fisher.mean()), float(fisher.max()))

    def scalars(self) -> dict[str, float]:
        """``ewc/fisher_{mean,max}/task_<id>`` per anchored task (``.../online`` for the running Fisher)."""
        out = {}
        for key, (mean, largest) in self.fisher_stats.items():
            name = key if key == ONLINE else f"task_{key}"
            out[f"ewc/fisher_mean/{name}"] = mean
            out[f"ewc/fisher_max/{name}"] = largest
        return out

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "fisher_stats": {k: list(v) for k, v in self.fisher_stats.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.fisher_stats = {k: (float(v[0]), float(v[1])) for k, v in state["fisher_stats"].items()}


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
