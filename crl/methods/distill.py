"""Policy distillation from stored teacher outputs (``--method distill``): learning without forgetting for DQN.

While a game trains, a reservoir keeps a uniform sample of the observations of its block; at the block's end the
agent's own Q-values on them are stored with them (the teacher's outputs, not a copy of the network). While later
games train, every gradient step adds, over a minibatch of stored observations of earlier games, each evaluated with
its own game's task id,

    weight * KL( softmax(Q_stored(s) / T) || softmax(Q(s, task) / T) )

(Rusu et al. 2016, "Policy distillation"; the same temperature on both sides as in Li & Hoiem 2016, "Learning
without forgetting"), or with ``loss: mse`` the mean squared error between the Q-values. :func:`distillation_loss`
is the one implementation of that term; ``replay``'s behavioural-cloning term (CLEAR) calls it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th
import torch.nn.functional as F

from crl.methods import register
from crl.methods.base import Method, MethodParams, TaskInfo
from crl.methods.memory import Reservoir, sample_by_task

if TYPE_CHECKING:
    from agents.dqn import ContinualDQN

LOSSES = ("kl", "mse")
TEACHER_CHUNK = 256  # observations per forward pass when the teacher's Q-values are computed
RNG_STREAM = 0x64697374  # separates this method's random stream from others seeded by (seed, block)


def distillation_loss(q: th.Tensor, q_teacher: th.Tensor, temperature: float, kind: str = "kl") -> th.Tensor:
    """Batch mean of ``KL(softmax(q_teacher / T) || softmax(q / T))`` (``kind="kl"``), or of the squared error
    ``(q - q_teacher)^2`` averaged over actions (``kind="mse"``, ``T`` unused). ``q``: (batch, actions)."""
    if kind == "mse":
        return F.mse_loss(q, q_teacher)
    if kind != "kl":
        raise ValueError(f"distillation loss must be one of {LOSSES}, got {kind!r}")
    log_student = F.log_softmax(q / temperature, dim=1)
    log_teacher = F.log_softmax(q_teacher / temperature, dim=1)
    return (log_teacher.exp() * (log_teacher - log_student)).sum(dim=1).mean()


@th.no_grad()
def teacher_q_values(agent: "ContinualDQN", observations: th.Tensor, task_id: int) -> th.Tensor:
    """The agent's Q-values on ``observations`` as task ``task_id`` (float32, same device), in chunks."""
    chunks = [agent.q_net(observations[i : i + TEACHER_CHUNK].to(agent.device), task_id=task_id).float()
              for i in range(0, len(observations), TEACHER_CHUNK)]
    return th.cat(chunks).to(observations.device)


@register
class Distill(Method):
    """Distil each earlier game's stored Q-values into the network, every game with its own task id.

    A revisited game's stored sample is replaced by the new block's at the block's end; while a game trains its own
    stored sample is left out (its own data protects it).
    """

    name = "distill"

    @dataclass
    class Params(MethodParams):
        per_task: int = 5_000  # observations (with their Q-values) stored per game
        batch_size: int = 32  # stored observations per gradient step (a minibatch of its own)
        weight: float = 1.0
        temperature: float = 0.01  # of both softmaxes (Rusu et al. 2016 sharpen the teacher with 0.01)
        loss: str = "kl"  # kl | mse

        def validate(self) -> None:
            if self.per_task < 1:
                raise ValueError(f"per_task must be >= 1, got {self.per_task}")
            if self.batch_size < 1:
                raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
            if self.weight < 0:
                raise ValueError(f"weight must be >= 0, got {self.weight}")
            if self.temperature <= 0:
                raise ValueError(f"temperature must be > 0, got {self.temperature}")
            if self.loss not in LOSSES:
                raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")

    def __init__(self, params: MethodParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.memories: dict[int, Reservoir] = {}  # task id -> stored observations ("obs") and Q-values ("q")
        self.block: Reservoir | None = None  # the sample of the block being trained
        self.active_task: int | None = None
        self.rng: np.random.Generator | None = None
        self.device = th.device("cpu")
        self._loss_sum = th.zeros(())
        self._steps = 0

    # --- hooks ---------------------------------------------------------------------------------------
    def before_task(self, agent: "ContinualDQN", task: TaskInfo) -> None:
        self.active_task = task.task_id
        self.rng = np.random.default_rng([task.seed, task.block, RNG_STREAM])
        self.block = Reservoir(self.params.per_task, self.device)
        self._loss_sum, self._steps = th.zeros((), device=self.device), 0

    def on_transition(self, agent: "ContinualDQN", obs: np.ndarray, next_obs: np.ndarray, actions: np.ndarray,
                      rewards: np.ndarray, dones: np.ndarray) -> None:
        if self.block is None:
            return
        items, slots = self.block.select(len(obs), self.rng)
        self.block.write(slots, {"obs": np.asarray(obs)[items]})

    def after_task(self, agent: "ContinualDQN", task: TaskInfo) -> None:
        if self.block is None or len(self.block) == 0:
            return
        memory = self.block.trimmed()
        memory.set_field("q", teacher_q_values(agent, memory.fields["obs"], task.task_id))
        self.memories[task.task_id] = memory
        self.block = None

    def penalty(self, agent: "ContinualDQN") -> th.Tensor | None:
        sizes = {t: len(m) for t, m in self.memories.items() if t != self.active_task}
        groups = sample_by_task(self.rng, sizes, self.params.batch_size) if sizes else []
        if not groups:
            return None
        p = self.params
        loss = th.zeros((), device=agent.device)
        for task_id, slots in groups:
            stored = self.memories[task_id].gather(slots)
            q = agent.q_net(stored["obs"].to(agent.device), task_id=task_id)
            share = len(slots) / p.batch_size
            loss = loss + share * distillation_loss(q, stored["q"].to(agent.device), p.temperature, p.loss)
        self._loss_sum = self._loss_sum.to(loss.device) + loss.detach()
        self._steps += 1
        return p.weight * loss

    def scalars(self) -> dict[str, float]:
        out = {
            "distill/memory_bytes": float(sum(m.nbytes for m in self.memories.values())),
            "distill/stored_observations": float(sum(len(m) for m in self.memories.values())),
        }
        if self.memories:
            out["distill/bytes_per_observation"] = float(next(iter(self.memories.values())).bytes_per_item)
        if self._steps:
            out[f"distill/{self.params.loss}"] = float(self._loss_sum) / self._steps
        return out

    # --- persistence ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "memories": {t: m.state_dict() for t, m in self.memories.items()},
            "block": None if self.block is None else self.block.state_dict(),
            "active_task": self.active_task,
            "rng": None if self.rng is None else self.rng.bit_generator.state,
            "loss_sum": float(self._loss_sum),
            "steps": self._steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memories = {int(t): Reservoir.from_state_dict(m, self.device) for t, m in state["memories"].items()}
        self.block = None if state["block"] is None else Reservoir.from_state_dict(state["block"], self.device)
        self.active_task = state["active_task"]
        self.rng = None
        if state["rng"] is not None:
            self.rng = np.random.default_rng()
            self.rng.bit_generator.state = state["rng"]
        self._loss_sum, self._steps = th.tensor(state["loss_sum"], device=self.device), int(state["steps"])

    def to(self, device: th.device) -> "Distill":
        self.device = th.device(device)
        for memory in [*self.memories.values(), *([self.block] if self.block is not None else [])]:
            memory.to(self.device)
        self._loss_sum = self._loss_sum.to(self.device)
        return self
