"""The continual-learning method interface: a small object that hooks into the agent's training loop.

The agent (``agents.ContinualDQN``) owns the DQN loop; a method only

* chooses the Q-network (``q_network_spec``: a declarative spec, so SB3 can rebuild it on load),
* reacts to task boundaries (``before_task`` / ``after_task``: compute a Fisher, freeze a column, ...),
* adds a term to the loss (``penalty``: called once per gradient step inside ``ContinualDQN.train``),
* optionally sees every transition the agent collects (``on_transition``: to keep a sample of a task's experience),
* saves and restores its own state (``state_dict`` / ``load_state_dict``, stored inside the agent's zip).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch as th

if TYPE_CHECKING:  # the agent imports nothing from crl; methods only need its type for hints
    from agents.dqn import ContinualDQN


@dataclass(frozen=True)
class TaskInfo:
    """Where the sequence is: ``task_id`` is the agent's id of the task (given: the game's index in the sequence;
    inferred: whatever the task-inference process named it); ``game`` is the true game, for logs only; ``seed`` is
    the run's seed, so a method's own random draws (a Fisher's samples) are reproducible per (seed, block)."""

    task_id: int
    game: str
    block: int = 0
    cycle: int = 0
    first_visit: bool = True
    seed: int = 0


@dataclass
class MethodParams:
    """Base of each method's parameters; subclasses add fields and check ranges in ``validate``."""

    def validate(self) -> None:
        """Raise ValueError naming the parameter when a value is out of range."""


class Method:
    """Fine-tuning: no protection against forgetting. Every other method subclasses this."""

    name: ClassVar[str] = "finetune"
    Params: ClassVar[type[MethodParams]] = MethodParams

    def __init__(self, params: MethodParams | dict[str, Any] | None = None) -> None:
        if params is None:
            params = self.Params()
        elif isinstance(params, dict):
            params = self.Params(**params)
        params.validate()
        self.params = params

    # --- hooks ---------------------------------------------------------------------------------------
    def q_network_spec(self, network: dict[str, Any]) -> dict[str, Any]:
        """The Q-network to build: ``{"kind": ..., **kwargs}`` for ``agents.networks.build_q_network``."""
        return {"kind": "conv", **network}

    def before_task(self, agent: "ContinualDQN", task: TaskInfo) -> None:
        """Called after the agent switched to ``task`` and before it trains on it."""

    def after_task(self, agent: "ContinualDQN", task: TaskInfo) -> None:
        """Called after a task block's training, with that task's replay buffer still in place."""

    def on_transition(
        self,
        agent: "ContinualDQN",
        obs: np.ndarray,
        next_obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        dones: np.ndarray,
    ) -> None:
        """Called after every vector-env step with its transitions, one row per env, for ``agent.current_task``.

        ``next_obs`` is the real last observation where an episode ended (not the reset one that follows), and
        ``dones`` marks true terminations only: a time-limit cut is not an end (its value is bootstrapped, as in the
        replay buffer). The arrays are the agent's: copy what you keep. Replay and distillation sample from here.
        """

    def penalty(self, agent: "ContinualDQN") -> th.Tensor | None:
        """Regularization term added to the TD loss at every gradient step (None: nothing to add)."""
        return None

    def scalars(self) -> dict[str, float]:
        """Figures to log to TensorBoard at task boundaries (tag -> value)."""
        return {}

    # --- persistence ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue, as tensors and plain Python values."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def to(self, device: th.device) -> "Method":
        """Move stored tensors to ``device`` (called when the agent is built or loaded)."""
        return self

    def params_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.params)


class FineTune(Method):
    """The baseline that forgets: train on each game in turn with no penalty."""

    name = "finetune"
