"""What runs at each training step inside ``agent.learn``: one SB3 callback per purpose, chained in a
``CallbackList``. Each is given what it reads and writes (the recorder, the run's schedules in a :class:`RunState`,
the progress line, the stop signals, the evaluation to run); none reads or writes the trainer."""

from __future__ import annotations

from typing import Callable

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from crl.task_inference.fmn import ForgetMeNot
from crl.run.console import Progress, StopSignals
from crl.run.recording import Recorder
from crl.run.state import RunState


class TrainingDiverged(Exception):
    """A non-finite loss or Q-value; the message names the step and the game."""


class ObserveFrames(BaseCallback):
    """The task-identity model keeps learning from what the agent sees (env 0)."""

    def __init__(self, task_identity: ForgetMeNot) -> None:
        super().__init__()
        self.task_identity = task_identity

    def _on_step(self) -> bool:
        self.task_identity.observe(self.locals["new_obs"][0])
        return True


class LogEpisodeReturns(BaseCallback):
    """The return of every training episode that ends, under its game's name: ``game``, or where the training envs
    play several games at once (a joint block's ``MixedVecEnv``), the game of the env the episode ended in."""

    def __init__(self, recorder: Recorder, game: str) -> None:
        super().__init__()
        self.recorder, self.game = recorder, game
        self.games: list[str] = []

    def _init_callback(self) -> None:
        env = self.training_env
        self.games = list(getattr(env, "games", None) or [self.game] * env.num_envs)  # wrappers pass .games on

    def _on_step(self) -> bool:
        for info, game in zip(self.locals.get("infos", []), self.games):
            if "episode" in info:
                self.recorder.episode_return(game, info["episode"]["r"], self.num_timesteps)
        return True


class LogTraining(BaseCallback):
    """Training scalars every ``every`` steps (``schedule.next_log``); with ``stop_on_divergence``, a non-finite loss
    stops the run (the last checkpoint is the last good state)."""

    def __init__(self, recorder: Recorder, schedule: RunState, every: int, stop_on_divergence: bool, game: str) -> None:
        super().__init__()
        self.recorder, self.schedule, self.every = recorder, schedule, every
        self.stop_on_divergence, self.game = stop_on_divergence, game

    def _on_step(self) -> bool:
        step = self.num_timesteps
        if step < self.schedule.next_log:
            return True
        self.schedule.next_log = step + self.every
        agent = self.model
        for name, value in agent.last_losses.items():
            value = value.item()
            if not np.isfinite(value) and self.stop_on_divergence:
                raise TrainingDiverged(f"training diverged at step {step} on {self.game}: {name} is {value}")
            self.recorder.training_loss(name, value, step)
        self.recorder.training_state(agent.exploration_rate, agent.current_task.task_id, agent.skipped_batches, step)
        return True


class EvaluateEvery(BaseCallback):
    """``evaluate()`` every ``every`` steps (``schedule.next_eval``), except at the block's ``end_step``, whose own
    evaluation covers it."""

    def __init__(self, evaluate: Callable[[], object], schedule: RunState, every: int, end_step: int) -> None:
        super().__init__()
        self.evaluate, self.schedule, self.every, self.end_step = evaluate, schedule, every, end_step

    def _on_step(self) -> bool:
        step = self.num_timesteps
        if step >= self.schedule.next_eval:
            self.schedule.next_eval = (step // self.every + 1) * self.every
            if step < self.end_step:
                self.evaluate()
        return True


class ShowProgress(BaseCallback):
    """The progress line, labelled with the block."""

    def __init__(self, progress: Progress, label: str) -> None:
        super().__init__()
        self.progress, self.label = progress, label

    def _on_step(self) -> bool:
        self.progress.update(self.num_timesteps, self.label)
        return True


class StopOnSignal(BaseCallback):
    """Ends ``learn`` after the step in which a stop signal arrived."""

    def __init__(self, signals: StopSignals) -> None:
        super().__init__()
        self.signals = signals

    def _on_step(self) -> bool:
        return self.signals.signum is None
