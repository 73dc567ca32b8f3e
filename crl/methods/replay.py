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
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from agents.method import HookContext, MethodParams, TaskInfo, param
from crl.methods.distill import LOSSES, distillation_loss
from crl.methods.memory import MemoryParams, Rehearsal

RNG_STREAM = 0x7265706C  # separates this method's random stream from others seeded by (seed, block)


def shifted(obs: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    """Per transition: is ``next_obs`` ``obs`` moved on by one frame (all but its newest frame are ``obs``'s last)?"""
    n = len(obs)
    return (next_obs[:, :-1] == obs[:, 1:]).reshape(n, -1).all(axis=1)


class Replay(Rehearsal):
    """Rehearse a reservoir sample of every earlier game's transitions, each with its own task id.

    A revisited game's sample is replaced by the new block's at the block's end; while a game trains its own stored
    sample is left out (its own replay buffer covers it). Each memory holds "obs", "next" (1 new frame or the whole
    next obs), "action", "reward", "done", and with ``bc_weight > 0`` the teacher's Q-values "q".
    """

    name = "replay"
    summary = "Experience replay of earlier games (reservoir sample), optionally with behavioural cloning"
    paper = 'Rolnick et al. 2019, "Experience replay for continual learning" (CLEAR)'
    rng_stream = RNG_STREAM

    @dataclass
    class Params(MemoryParams):
        bc_weight: float = param(0.0, "CLEAR's behavioural cloning on the stored transitions (0: off)", low=0)
        bc_temperature: float = param(0.01, "of both softmaxes in the cloning KL", low=0, low_open=True)
        bc_loss: str = param("kl", "the cloning term: kl or mse (see distill.loss)", choices=LOSSES)

    def __init__(self, params: MethodParams | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self._sums = {"td_loss": th.zeros(()), "bc_loss": th.zeros(())}
        self._steps = 0

    @property
    def stores_teacher(self) -> bool:
        return self.params.bc_weight > 0

    # --- hooks ---------------------------------------------------------------------------------------
    def before_task(self, ctx: HookContext, task: TaskInfo) -> None:
        super().before_task(ctx, task)
        self._sums = {k: th.zeros((), device=self.device) for k in self._sums}
        self._steps = 0

    def on_transition(self, ctx: HookContext, obs: np.ndarray, next_obs: np.ndarray, actions: np.ndarray,
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

    def penalty(self, ctx: HookContext) -> th.Tensor | None:
        groups = self.draw()
        if not groups:
            return None
        p = self.params
        td = th.zeros((), device=ctx.device)
        bc = th.zeros((), device=ctx.device)
        for task_id, slots in groups:
            data, q_teacher = self.samples(task_id, slots, ctx.device)
            share = len(slots) / p.batch_size
            td = td + share * ctx.td_loss(data, task_id=task_id)
            if p.bc_weight > 0:
                q = ctx.q_net(data.observations, task_id=task_id)
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
        out = self.memory_scalars("replay", "transition")
        if self._steps:
            out["replay/td_loss"] = float(self._sums["td_loss"]) / self._steps
            if self.params.bc_weight > 0:
                out["replay/bc_loss"] = float(self._sums["bc_loss"]) / self._steps
        return out

    # --- persistence ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "sums": {k: float(v) for k, v in self._sums.items()}, "steps": self._steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._sums = {k: th.tensor(v, device=self.device) for k, v in state["sums"].items()}
        self._steps = int(state["steps"])

    def to(self, device: th.device) -> "Replay":
        super().to(device)
        self._sums = {k: v.to(self.device) for k, v in self._sums.items()}
        return self
