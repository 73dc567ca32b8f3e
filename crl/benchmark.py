"""What the benchmark scripts share: an agent walked through its first games, and a clock for timed work.

``scripts/bench_*.py`` build their agents from a resolved configuration exactly as ``crl train`` does, so a
benchmark measures the agent users train; they time only the work they name, with the device's queued work drained
at both ends so a GPU's asynchronous kernels are counted where they ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import torch as th

from agents import ContinualDQN
from crl.run.config import RunConfig
from crl.methods import TaskInfo
from crl.run.agent import build_agent
from crl.run.config import env_options
from envs import make_vec_env


def walk_tasks(
    cfg: RunConfig, device: str, last_env: Any = None, configure: Callable[[ContinualDQN], None] | None = None,
) -> Iterator[tuple[ContinualDQN, TaskInfo]]:
    """The agent ``cfg`` describes, pointed at each of ``cfg.games`` in turn.

    Yields ``(agent, task)`` once that game's env (seed ``cfg.seed + task_id``) has replaced the previous one,
    which is closed, and ``agent.set_task(task)`` has run; training and ``end_task`` are the caller's. ``configure``
    sees the new agent before its first task; ``last_env`` stands in for the last game's env (a caller that shares
    one env with another model).
    """
    games = cfg.games
    agent = None
    for task_id, game in enumerate(games):
        if last_env is not None and task_id == len(games) - 1:
            env = last_env
        else:
            env = make_vec_env(game, n_envs=cfg.n_envs, seed=cfg.seed + task_id, **env_options(cfg, game))
        if agent is None:
            agent = build_agent(cfg, env, device)
            if configure is not None:
                configure(agent)
        else:
            agent.env.close()
            agent.set_env(env)
        task = TaskInfo(task_id, game, block=task_id, seed=cfg.seed)
        agent.set_task(task)
        yield agent, task


def agent_with_stored_tasks(
    cfg: RunConfig, device: str, steps_per_task: int, last_env: Any = None,
    configure: Callable[[ContinualDQN], None] | None = None,
) -> ContinualDQN:
    """The agent after ``steps_per_task`` env steps and ``end_task`` on every game of ``cfg`` but the last, which
    is set as its current task, untrained (arguments as in :func:`walk_tasks`)."""
    last = len(cfg.games) - 1
    for agent, task in walk_tasks(cfg, device, last_env, configure):
        if task.task_id < last:
            agent.learn(steps_per_task, reset_num_timesteps=False)
            agent.end_task()
    return agent


class Stopwatch:
    """Wall-clock and process CPU seconds of a ``with`` block, ``device``'s queued work drained at both ends.

    CPU seconds count every thread of this process, the emulator's included: on a CPU shared with other jobs they
    are the steady figure, while wall-clock time also measures the neighbours. On a GPU the wall clock is the one.
    """

    def __init__(self, device: str | th.device) -> None:
        self.cuda = th.device(device).type == "cuda"
        self.seconds = self.cpu_seconds = 0.0

    def _drain(self) -> None:
        if self.cuda:
            th.cuda.synchronize()

    def __enter__(self) -> "Stopwatch":
        self._drain()
        self._start, self._cpu_start = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._drain()
        self.seconds = time.perf_counter() - self._start
        self.cpu_seconds = time.process_time() - self._cpu_start


def time_learning(model: Any, env_steps: int) -> dict[str, float]:
    """Rates of ``model.learn`` (any SB3 DQN) over ``env_steps`` more env steps: env steps per second, env steps
    per CPU-second of this process, gradient updates per second."""
    updates, start = model._n_updates, model.num_timesteps
    with Stopwatch(model.device) as clock:
        model.learn(env_steps, reset_num_timesteps=False)
    steps = model.num_timesteps - start  # learn rounds up to whole vector steps (and train_freq rounds, for SB3)
    return {
        "env_steps_per_s": steps / clock.seconds,
        "env_steps_per_cpu_s": steps / clock.cpu_seconds,
        "updates_per_s": (model._n_updates - updates) / clock.seconds,
    }
