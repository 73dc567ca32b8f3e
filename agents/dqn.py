"""``ContinualDQN``: a stable-baselines3 DQN that knows which task it is on.

What it adds to SB3's DQN, and nothing more:

* a task-conditioned Q-network chosen by the continual-learning method (``method.q_network_spec``);
* ``set_task`` / ``end_task`` at task-block boundaries: switch the network to the task, set up the replay buffer
  (fresh, shared or one per task), restart the task's own epsilon timer, rebuild the optimizer when the trainable
  parameters changed, and call the method's ``before_task`` / ``after_task`` hooks;
* ``method.penalty(ctx)`` added to the TD loss at every gradient step (optionally Double DQN targets); every hook gets
  a ``HookContext`` (:meth:`ContinualDQN.hook_context`), never the agent;
* per-environment epsilon-greedy exploration (SB3 draws one coin for the whole batch);
* ``save``/``load`` that round-trip the method (by its registered name), its state, its generator and the task
  structure, written atomically.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.type_aliases import ReplayBufferSamples, Schedule
from stable_baselines3.dqn.policies import DQNPolicy

from agents.composition import build_method, is_buildable
from agents.method import FineTune, HookContext, Method, TaskInfo, seed_of
from agents.networks import TaskQNetwork, build_q_network
from agents.frame_buffer import FrameReplayBuffer, sample_with

METHOD_FILE = "continual_method.pt"  # not .pth: SB3 loads every .pth in the zip as weights
GENERATOR_STREAM = 0x686F6F6B  # separates the hooks' generator from other streams seeded by (seed, block)


class BufferTap:
    """Stands in for the replay buffer in SB3's ``_store_transition``: passes ``add`` on and keeps what it got."""

    def __init__(self, buffer: ReplayBuffer) -> None:
        self.buffer = buffer
        self.added: tuple[Any, ...] = ()

    def add(self, *transition: Any) -> None:
        self.added = transition  # (obs, next_obs, actions, rewards, dones, infos)
        self.buffer.add(*transition)


class ContinualQPolicy(DQNPolicy):
    """SB3 ``DQNPolicy`` whose Q-networks are built from a declarative spec (``policy_kwargs["network"]``)."""

    q_net: TaskQNetwork
    q_net_target: TaskQNetwork

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        network: dict[str, Any] | None = None,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        **_unused: Any,
    ) -> None:
        self.network = dict(network or {"kind": "conv"})
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            normalize_images=False,
        )

    def make_q_net(self) -> TaskQNetwork:
        return build_q_network(self.observation_space, self.action_space, self.network).to(self.device)

    def rebuild_optimizer(self, learning_rate: float, keep_state: bool = True) -> None:
        """A new optimizer over the online network's current trainable parameters.

        With ``keep_state``, every parameter that stays trainable keeps its optimizer state (Adam moments, RMSprop
        square averages, step counts); newly trainable ones start fresh; frozen ones leave the optimizer.
        """
        previous = self.optimizer
        self.optimizer = self.optimizer_class(
            list(self.q_net.trainable_parameters()), lr=learning_rate, **self.optimizer_kwargs
        )
        if keep_state:
            for param in self.optimizer.param_groups[0]["params"]:
                if param in previous.state:
                    self.optimizer.state[param] = previous.state[param]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return dict(super()._get_constructor_parameters(), network=self.network)


class ContinualDQN(DQN):
    """DQN across a sequence of tasks; see the module docstring. Extra arguments:

    :param method: the continual-learning method (an ``agents.method.Method``); fine-tuning if None
    :param network: network options (e.g. ``{"task_modulation": True}``) passed to ``method.q_network_spec``
    :param replay: ``"fresh"`` (new buffer per block), ``"shared"`` (one buffer for the whole run) or
        ``"per-task"`` (one buffer per task, kept across revisits, as in the EWC paper)
    :param double_q: Double DQN targets (van Hasselt et al. 2016)
    :param exploration_steps: env steps of a task over which epsilon decays, after that task's warm-up
    :param reset_optimizer: start the optimizer afresh at every task switch; otherwise the state of every parameter
        that stays trainable is kept when the trainable set changes
    :param skip_nonfinite: drop a minibatch whose loss is NaN/inf instead of stepping (one device sync per step)
    """

    policy: ContinualQPolicy

    def __init__(
        self,
        env: Any,
        method: Method | None = None,
        network: dict[str, Any] | None = None,
        replay: str = "fresh",
        double_q: bool = False,
        exploration_steps: int = 250_000,
        reset_optimizer: bool = False,
        skip_nonfinite: bool = False,
        policy: type[ContinualQPolicy] | str = ContinualQPolicy,
        policy_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        method = FineTune() if method is None else method
        if replay not in ("fresh", "shared", "per-task"):
            raise ValueError(f"replay must be 'fresh', 'shared' or 'per-task', got {replay!r}")
        self.method = method
        self.method_generator = th.Generator()  # the hooks' random draws: seeded per block, saved with the method
        self.replay = replay
        self.double_q = double_q
        self.exploration_steps = exploration_steps
        self.reset_optimizer = reset_optimizer
        self.skip_nonfinite = skip_nonfinite
        self.skipped_batches = 0
        self.task_learning_starts = kwargs.get("learning_starts", 100)
        self.task_steps: list[int] = []  # env steps trained on each task id
        self.current_task: TaskInfo | None = None  # the block being trained
        self._task_buffers: dict[int, ReplayBuffer] = {}
        self.last_losses: dict[str, th.Tensor] = {}
        policy_kwargs = dict(policy_kwargs or {})
        if "network" in policy_kwargs:  # the spec is the method's to choose, from ``network``: one way to give it
            raise ValueError("give the network options as network=..., not policy_kwargs['network']: the method "
                             "turns them into the Q-network's spec")
        policy_kwargs["network"] = method.q_network_spec(dict(network or {}))
        kwargs.setdefault("replay_buffer_class", FrameReplayBuffer)  # one frame per transition, not two stacks
        super().__init__(policy, env, policy_kwargs=policy_kwargs, **kwargs)

    # --- setup and persistence -------------------------------------------------------------------------
    def _setup_model(self) -> None:
        super()._setup_model()
        self.set_logger(Logger(folder=None, output_formats=[]))  # the trainer writes TensorBoard itself
        if self.task_steps:  # loaded from a checkpoint: rebuild the task structure before the weights arrive
            for net in (self.q_net, self.q_net_target):
                net.grow_to(len(self.task_steps))
                net.set_task(self.current_task.task_id)
            self.policy.to(self.device)
            self.rebuild_optimizer()
        self.method.to(self.device)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "method", "method_generator", "_task_buffers", "last_losses"]

    def save(  # type: ignore[override]
        self, path: str | os.PathLike, exclude: Any = None, include: Any = None, extra_files: dict[str, bytes] | None = None
    ) -> None:
        """SB3's zip plus the method (its registered name, parameters, state and generator) and ``extra_files``;
        written to a temporary file, fsynced, renamed."""
        name = self.method.name
        if not is_buildable(self.method):
            raise ValueError(f"{type(self.method).__qualname__} is not a registered method (set its name): a saved "
                             "agent finds its method by name")
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        super().save(tmp, exclude=exclude, include=include)
        method_blob = io.BytesIO()
        th.save({"name": name, "params": self.method.params_dict(), "state": self.method.state_dict(),
                 "generator": self.method_generator.get_state()}, method_blob)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(METHOD_FILE, method_blob.getvalue())
            for name, data in (extra_files or {}).items():
                archive.writestr(name, data)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, env: Any = None, device: th.device | str = "auto", **kwargs: Any) -> "ContinualDQN":  # type: ignore[override]
        """Load an agent saved by :meth:`save`, its method and task structure included.

        The method is found by its saved name (:func:`agents.composition.build_method`: registered, or declared in
        the ``crl.methods`` entry-point group; a composed name by its components'), so nothing needs importing first. A zip that :meth:`save` did not write
        (a stock stable-baselines3 save, a damaged file), or one whose method no installed package provides, is a
        ValueError naming the file and what it lacks.
        """
        try:
            with zipfile.ZipFile(path) as archive:
                if METHOD_FILE not in archive.namelist():
                    raise ValueError(f"{path} is not a ContinualDQN save (it has no {METHOD_FILE}); a stock "
                                     "stable-baselines3 zip loads with its own class, e.g. stable_baselines3.DQN.load")
                blob = th.load(io.BytesIO(archive.read(METHOD_FILE)), map_location="cpu", weights_only=False)
        except zipfile.BadZipFile as e:
            raise ValueError(f"{path} is not a ContinualDQN save: {e}") from e
        if "method" in kwargs:  # the method and its state are part of the save
            raise ValueError(f"ContinualDQN.load takes no method=: {path} holds its own ({blob['name']!r}, with its "
                             "parameters and state); to go on with another method, build a new ContinualDQN with it "
                             "and load the weights into its policy")
        try:
            method = build_method(blob["name"], blob["params"])
        except ValueError as e:
            raise ValueError(f"{path} holds method {blob['name']!r}, which no installed package provides: {e}") from e
        method.load_state_dict(blob["state"])
        model = super().load(path, env=env, device=device, method=method, **kwargs)
        model.method_generator.set_state(blob["generator"])
        return model  # type: ignore[return-value]

    # --- task switching --------------------------------------------------------------------------------
    def set_task(self, task: TaskInfo) -> None:
        """Switch to ``task`` at the start of a task block."""
        if not isinstance(task, TaskInfo):
            raise TypeError(f"set_task takes a TaskInfo(task_id, game), got {task!r}")
        self.current_task = task
        while len(self.task_steps) <= task.task_id:
            self.task_steps.append(0)
        trainable_before = [id(p) for p in self.q_net.trainable_parameters()]
        grew = self.q_net.grow_to(task.task_id + 1)
        self.q_net.set_task(task.task_id)
        self.q_net_target.set_task(task.task_id)
        self.policy.to(self.device)
        if grew:
            self.q_net.update_target(self.q_net_target, 1.0)
        if self.reset_optimizer or trainable_before != [id(p) for p in self.q_net.trainable_parameters()]:
            self.rebuild_optimizer(keep_state=not self.reset_optimizer)
        self._switch_replay_buffer(task.task_id)
        self._start_warmup()
        self.method_generator.manual_seed(seed_of(task.seed, task.block, GENERATOR_STREAM))
        self.method.before_task(self.hook_context(), task)

    def resume_task(self, buffers: dict[str, Any] | None = None) -> None:
        """Continue the current task block after ``load``: restore saved replay buffers or start a fresh one.

        The method's ``before_task`` is not called again: its effects are part of the loaded state.
        """
        if buffers is not None:
            self.replay_buffer, self._task_buffers = buffers["current"], buffers["per_task"]
        else:
            self._switch_replay_buffer(self.current_task.task_id)
        self._start_warmup()

    def _start_warmup(self) -> None:
        """Learning (and greedy acting) starts once the task's buffer holds ``task_learning_starts`` transitions."""
        warmup_left = max(0, self.task_learning_starts - self.replay_buffer.size() * self.n_envs)
        self.learning_starts = self.num_timesteps + warmup_left
        self.exploration_rate = self.epsilon(self.current_task.task_id)

    def end_task(self) -> None:
        """Call at the end of a task block, while that block's replay buffer is still in place."""
        self._require_task("end_task")
        self.method.after_task(self.hook_context(), self.current_task)

    def set_env(self, env: Any, force_reset: bool = True) -> None:
        """SB3's ``set_env``, with a ValueError (SB3 asserts) when ``env`` has another number of environments."""
        if env.num_envs != self.n_envs:
            raise ValueError(f"set_env: the agent was built for {self.n_envs} environments, got {env.num_envs}; a "
                             "continual agent keeps its number of environments (and its game family) for the sequence")
        super().set_env(env, force_reset=force_reset)

    def _require_task(self, what: str) -> None:
        if self.current_task is None:
            raise RuntimeError(f"ContinualDQN.{what}() before set_task(): call agent.set_task(TaskInfo(task_id, game)) "
                               "first, at the start of each task block")

    def learn(self, *args: Any, **kwargs: Any) -> "ContinualDQN":  # type: ignore[override]
        """SB3's ``learn`` on the current task (set with :meth:`set_task` first)."""
        self._require_task("learn")
        return super().learn(*args, **kwargs)

    def hook_context(self, batch: ReplayBufferSamples | None = None) -> HookContext:
        """What the method's hooks see now: the online network, the current task and its steps, the device, the
        hooks' generator, a sampler over the current replay buffer, the TD loss, the minibatch just trained on
        (``after_gradient_step``), fresh initial weights and the one way to report weights a hook wrote."""
        task = self.current_task
        return HookContext(q_net=self.q_net, task=task, task_steps=self.task_steps[task.task_id], device=self.device,
                           generator=self.method_generator, sample=self.sample_replay, td_loss=self.td_loss,
                           batch=batch, fresh_parameters=self.fresh_parameters, weights_changed=self.weights_changed)

    def fresh_parameters(self) -> dict[str, th.Tensor]:
        """The named parameters of a newly initialized network like the online one (same spec, same tasks), its
        seed drawn from the hooks' generator; torch's global RNG is restored afterwards."""
        seed = int(th.randint(2**62, (1,), generator=self.method_generator))
        with th.random.fork_rng(devices=[]):
            th.default_generator.manual_seed(seed)  # the CPU generator only: CUDA's draws the minibatches
            network = build_q_network(self.observation_space, self.action_space, self.policy.network)
            network.grow_to(self.q_net.num_tasks)
        return {n: p.detach().to(self.device) for n, p in network.named_parameters()}

    def weights_changed(self, masks: dict[th.nn.Parameter, th.Tensor | None], reset_optimizer: bool = True,
                        sync_target: bool = False) -> None:
        """A hook wrote these entries of the online network (mask None: the whole parameter): zero their optimizer
        moments if asked, copy the online network to the target network if asked, and declare the change."""
        if reset_optimizer:
            state = self.policy.optimizer.state
            for param, mask in masks.items():
                for value in state.get(param, {}).values():
                    if th.is_tensor(value) and value.shape == param.shape:
                        value.zero_() if mask is None else value.masked_fill_(mask, 0)
        if sync_target:
            self.q_net.update_target(self.q_net_target, 1.0)
        self.q_net.parameters_changed()

    def sample_replay(self, batch_size: int, generator: th.Generator | None = None) -> ReplayBufferSamples:
        """``batch_size`` transitions uniform over the current replay buffer, drawn with ``generator`` (None: the
        hooks' generator), never with the global RNG."""
        return sample_with(self.replay_buffer, batch_size, self.method_generator if generator is None else generator)

    def rebuild_optimizer(self, keep_state: bool = True) -> None:
        self.policy.rebuild_optimizer(self.lr_schedule(self._current_progress_remaining), keep_state)

    def _new_replay_buffer(self) -> ReplayBuffer:
        return self.replay_buffer_class(  # type: ignore[misc]
            self.buffer_size,
            self.observation_space,
            self.action_space,
            device=self.device,
            n_envs=self.n_envs,
            optimize_memory_usage=self.optimize_memory_usage,
            **self.replay_buffer_kwargs,
        )

    def _switch_replay_buffer(self, task_id: int) -> None:
        if self.replay == "fresh":
            self.replay_buffer = self._new_replay_buffer()
        elif self.replay == "per-task":
            if task_id not in self._task_buffers:
                self._task_buffers[task_id] = self._new_replay_buffer()
            self.replay_buffer = self._task_buffers[task_id]

    # --- exploration -----------------------------------------------------------------------------------
    def epsilon(self, task_id: int) -> float:
        """Epsilon of ``task_id``'s own timer: initial during warm-up, then linear to final over exploration_steps."""
        steps = self.task_steps[task_id] - self.task_learning_starts
        fraction = min(max(steps / max(self.exploration_steps, 1), 0.0), 1.0)
        return self.exploration_initial_eps + fraction * (self.exploration_final_eps - self.exploration_initial_eps)

    def _on_step(self) -> None:
        """After every vector step: count the task's steps, update the target network and epsilon."""
        self._n_calls += 1
        task_id = self.current_task.task_id
        self.task_steps[task_id] += self.n_envs
        if self._n_calls % max(self.target_update_interval // self.n_envs, 1) == 0:
            self.q_net.update_target(self.q_net_target, self.tau)
        self.exploration_rate = self.epsilon(task_id)

    def predict(
        self,
        observation: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Greedy actions from one batched forward, each env replaced by a random action with prob. epsilon.

        The forward runs directly on the online network (SB3's ``policy.predict`` adds per-call checks and mode
        switches that cost as much as the small MinAtar network itself)."""
        obs = np.asarray(observation)
        single = obs.shape == self.observation_space.shape
        with th.no_grad():
            q_values = self.q_net(th.as_tensor(obs[None] if single else obs, device=self.device))
        actions = q_values.argmax(dim=1).cpu().numpy()
        if single:
            actions = actions[0]
        if not deterministic and self.exploration_rate > 0:
            actions = np.atleast_1d(actions)
            explore = np.random.rand(len(actions)) < self.exploration_rate
            actions = np.where(explore, np.random.randint(self.action_space.n, size=len(actions)), actions)
        return actions, state

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray,
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """SB3 stores the vector step; then ``method.on_transition`` sees the transitions the buffer was given (each
        ended episode's real terminal observation as its next observation), with time-limit cuts not counted as ends."""
        if not self.method.overrides("on_transition"):
            super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
            return
        tap = BufferTap(replay_buffer)
        super()._store_transition(tap, buffer_action, new_obs, reward, dones, infos)  # type: ignore[arg-type]
        obs, next_obs, actions, rewards, dones, infos = tap.added
        truncated = np.array([info.get("TimeLimit.truncated", False) for info in infos], dtype=bool)
        terminated = np.asarray(dones, dtype=bool) & ~truncated
        self.method.on_transition(self.hook_context(), obs, next_obs, actions, rewards, terminated)

    # --- learning --------------------------------------------------------------------------------------
    def td_loss(self, data: ReplayBufferSamples, task_id: int | None = None) -> th.Tensor:
        """Huber TD loss of a minibatch (Mnih et al. 2015), with Double DQN targets if enabled.

        ``task_id``: evaluate online and target network as that task (None: the current one), e.g. for stored
        transitions of an earlier game.
        """
        discounts = data.discounts if data.discounts is not None else self.gamma
        with th.no_grad():
            next_q = self.q_net_target(data.next_observations, task_id=task_id)
            if self.double_q:
                next_actions = self.q_net(data.next_observations, task_id=task_id).argmax(dim=1, keepdim=True)
                next_q = next_q.gather(1, next_actions)
            else:
                next_q = next_q.max(dim=1, keepdim=True).values
            target = data.rewards + (1 - data.dones) * discounts * next_q
        q = self.q_net(data.observations, task_id=task_id).gather(1, data.actions.long())
        return F.smooth_l1_loss(q, target)

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        self.policy.set_training_mode(True)
        optimizer = self.policy.optimizer
        self._update_learning_rate(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        with_penalty = self.method.overrides("penalty")
        with_after_step = self.method.overrides("after_gradient_step")
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            td_loss = self.td_loss(data)
            penalty = self.method.penalty(self.hook_context()) if with_penalty else None
            loss = td_loss if penalty is None else td_loss + penalty
            if self.skip_nonfinite and not th.isfinite(loss):
                self.skipped_batches += 1
                continue
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            th.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
            optimizer.step()
            self.q_net.parameters_changed()
            if with_after_step:
                self.method.after_gradient_step(self.hook_context(batch=data))
        self._n_updates += gradient_steps
        # kept as tensors: the trainer reads them at its logging interval, so no device sync per step
        self.last_losses = {"td_loss": td_loss.detach()}
        if penalty is not None:
            self.last_losses["penalty"] = penalty.detach()
