"""Experience replay across tasks (``--method replay``), optionally with CLEAR's behavioural cloning.

While a game trains, a reservoir keeps a uniform sample of ``per_task`` of its block's transitions (Vitter 1985;
reservoir replay in continual RL: Isele & Cosgun 2018). While later games train, every gradient step draws a separate
minibatch of ``batch_size`` stored transitions of earlier games and adds

    weight * TD(stored minibatch) + bc_weight * KL( softmax(Q_stored(s) / T) || softmax(Q(s, task) / T) )

where each stored transition is evaluated with its own game's task id (online network, target network and Double DQN
action choice alike: ``ContinualDQN.td_loss(data, task_id)``), targets come from the current target network, and
the second term (CLEAR, Rolnick et al. 2019; off by default) clones the agent's behaviour at the end of the stored
game's block, its Q-values on the stored observations, with :func:`crl.methods.distill.distillation_loss`.

Storage is uint8 like the agent's replay: an observation that is a frame stack whose next observation is the same
stack shifted by one frame (Atari) is stored as the stack plus the one new frame; anything else (MinAtar's object
planes) as the observation and the whole next observation. The choice is made from the data, per stored transition
set (see :meth:`Replay.on_transition`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from crl.methods import register
from crl.methods.base import Method, MethodParams, TaskInfo
from crl.methods.distill import LOSSES, distillation_loss, teacher_q_values
from crl.methods.memory import Reservoir, sample_by_task

if TYPE_CHECKING:
    from agents.dqn import ContinualDQN

RNG_STREAM = 0x7265706C  # separates this method's random stream from others seeded by (seed, block)


def shifted(obs: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    """Per transition: is ``next_obs`` ``obs`` moved on by one frame (all but its newest frame are ``obs``'s last)?"""
    n = len(obs)
    return (next_obs[:, :-1] == obs[:, 1:]).reshape(n, -1).all(axis=1)


@register
class Replay(Method):
    """Rehearse a reservoir sample of every earlier game's transitions, each with its own task id.

    A revisited game's sample is replaced by the new block's at the block's end; while a game trains its own stored
    sample is left out (its own replay buffer covers it).
    """

    name = "replay"

    @dataclass
    class Params(MethodParams):
        per_task: int = 5_000  # transitions stored per game (a uniform sample of its latest block)
        batch_size: int = 32  # stored transitions per gradient step (a minibatch of its own, see docs/replay.md)
        weight: float = 1.0  # of the stored transitions' TD loss
        bc_weight: float = 0.0  # CLEAR's behavioural cloning on the stored transitions (0: off)
        bc_temperature: float = 0.01  # of both softmaxes in the cloning KL
        bc_loss: str = "kl"  # kl | mse

        def validate(self) -> None:
            if self.per_task < 1:
                raise ValueError(f"per_task must be >= 1, got {self.per_task}")
            if self.batch_size < 1:
                raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
            if self.weight < 0:
                raise ValueError(f"weight must be >= 0, got {self.weight}")
            if self.bc_weight < 0:
                raise ValueError(f"bc_weight must be >= 0, got {self.bc_weight}")
            if self.bc_temperature <= 0:
                raise ValueError(f"bc_temperature must be > 0, got {self.bc_temperature}")
            if self.bc_loss not in LOSSES:
                raise ValueError(f"bc_loss must be one of {', '.join(LOSSES)}, got {self.bc_loss!r}")

    def __init__(self, params: MethodParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        # task id -> stored transitions: "obs", "next" (1 new frame or the whole next obs), "action", "reward",
        # "done", and with bc_weight > 0 the teacher's Q-values "q"
        self.memories: dict[int, Reservoir] = {}
        self.block: Reservoir | None = None  # the sample of the block being trained
        self.active_task: int | None = None
        self.rng: np.random.Generator | None = None
        self.device = th.device("cpu")
        self._sums = {"td_loss": th.zeros(()), "bc_loss": th.zeros(())}
        self._steps = 0

    # --- hooks ---------------------------------------------------------------------------------------
    def before_task(self, agent: "ContinualDQN", task: TaskInfo) -> None:
        self.active_task = task.task_id
        self.rng = np.random.default_rng([task.seed, task.block, RNG_STREAM])
        self.block = Reservoir(self.params.per_task, self.device)
        self._sums = {k: th.zeros((), device=self.device) for k in self._sums}
        self._steps = 0

    def on_transition(self, agent: "ContinualDQN", obs: np.ndarray, next_obs: np.ndarray, actions: np.ndarray,
                      rewards: np.ndarray, dones: np.ndarray) -> None:
        """Offer the step's transitions to the block's reservoir; store the kept ones compactly.

        The next observation is stored as one frame while every stored transition's next observation is its
        observation shifted by one frame; the first one that is not switches the sample to whole next observations
        (the stored ones are rebuilt, losslessly).
        """
        if self.block is None:
            return
        items, slots = self.block.select(len(obs), self.rng)
        if len(items) == 0:
            return
        obs, next_obs = np.asarray(obs)[items], np.asarray(next_obs)[items]
        stack = obs.shape[1]
        stored_next = self.block.fields.get("next")
        one_frame = obs.ndim == 4 and stack > 1 and bool(shifted(obs, next_obs).all())  # (n, stack, H, W)
        if stored_next is None:
            whole = not one_frame
        else:
            whole = stored_next.shape[1] == stack
            if not whole and not one_frame:  # switch to whole next observations, rebuilding the stored ones
                self.block.set_field("next", th.cat([self.block.fields["obs"][:, 1:], stored_next], dim=1))
                whole = True
        self.block.write(slots, {
            "obs": obs,
            "next": next_obs if whole else next_obs[:, -1:],
            "action": np.asarray(actions).reshape(-1, 1)[items].astype(np.int64),
            "reward": np.asarray(rewards, dtype=np.float32).reshape(-1, 1)[items],
            "done": np.asarray(dones, dtype=np.float32).reshape(-1, 1)[items],
        })

    def after_task(self, agent: "ContinualDQN", task: TaskInfo) -> None:
        if self.block is None or len(self.block) == 0:
            return
        memory = self.block.trimmed()
        if self.params.bc_weight > 0:
            memory.set_field("q", teacher_q_values(agent, memory.fields["obs"], task.task_id))
        self.memories[task.task_id] = memory
        self.block = None

    def penalty(self, agent: "ContinualDQN") -> th.Tensor | None:
        sizes = {t: len(m) for t, m in self.memories.items() if t != self.active_task}
        groups = sample_by_task(self.rng, sizes, self.params.batch_size) if sizes else []
        if not groups:
            return None
        p = self.params
        td = th.zeros((), device=agent.device)
        bc = th.zeros((), device=agent.device)
        for task_id, slots in groups:
            data, q_teacher = self.samples(task_id, slots, agent.device)
            share = len(slots) / p.batch_size
            td = td + share * agent.td_loss(data, task_id=task_id)
            if p.bc_weight > 0:
                q = agent.q_net(data.observations, task_id=task_id)
                bc = bc + share * distillation_loss(q, q_teacher, p.bc_temperature, p.bc_loss)
        self._sums["td_loss"] = self._sums["td_loss"].to(td.device) + td.detach()
        self._sums["bc_loss"] = self._sums["bc_loss"].to(bc.device) + bc.detach()
        self._steps += 1
        return p.weight * td + p.bc_weight * bc if p.bc_weight > 0 else p.weight * td

    def samples(self, task_id: int, slots: np.ndarray, device: th.device) -> tuple[ReplayBufferSamples, th.Tensor | None]:
        """Stored transitions ``slots`` of ``task_id`` as a replay minibatch on ``device``, and their stored Q-values."""
        stored = {k: v.to(device) for k, v in self.memories[task_id].gather(slots).items()}
        obs, next_part = stored["obs"], stored["next"]
        next_obs = next_part if next_part.shape[1] == obs.shape[1] else th.cat([obs[:, 1:], next_part], dim=1)
        data = ReplayBufferSamples(obs, stored["action"], next_obs, stored["done"], stored["reward"])
        return data, stored.get("q")

    def scalars(self) -> dict[str, float]:
        out = {
            "replay/memory_bytes": float(sum(m.nbytes for m in self.memories.values())),
            "replay/stored_transitions": float(sum(len(m) for m in self.memories.values())),
        }
        if self.memories:
            out["replay/bytes_per_transition"] = float(next(iter(self.memories.values())).bytes_per_item)
        if self._steps:
            out["replay/td_loss"] = float(self._sums["td_loss"]) / self._steps
            if self.params.bc_weight > 0:
                out["replay/bc_loss"] = float(self._sums["bc_loss"]) / self._steps
        return out

    # --- persistence ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "memories": {t: m.state_dict() for t, m in self.memories.items()},
            "block": None if self.block is None else self.block.state_dict(),
            "active_task": self.active_task,
            "rng": None if self.rng is None else self.rng.bit_generator.state,
            "sums": {k: float(v) for k, v in self._sums.items()},
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
        self._sums = {k: th.tensor(v, device=self.device) for k, v in state["sums"].items()}
        self._steps = int(state["steps"])

    def to(self, device: th.device) -> "Replay":
        self.device = th.device(device)
        for memory in [*self.memories.values(), *([self.block] if self.block is not None else [])]:
            memory.to(self.device)
        self._sums = {k: v.to(self.device) for k, v in self._sums.items()}
        return self
