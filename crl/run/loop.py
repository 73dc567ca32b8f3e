"""The trainer's loop: walks the task sequence, trains the agent on each block, evaluates every game.

For each block: ``agent.set_task`` (method.before_task) -> ``agent.learn`` in segments that end at resume checkpoints,
with the step callbacks (training scalars, periodic evaluations, progress, stop signals) -> ``agent.end_task``
(method.after_task) -> evaluate every game (one row of the retention matrix) -> checkpoint. At the end:
``metrics.json`` and ``model.zip``. Each checkpoint and the run's end also update the attempt's cost in
``usage.json`` (:class:`crl.run.rundir.UsageRecord`). What it writes is the :class:`Recorder`'s, what a resume point
holds :mod:`crl.run.resume_point`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch as th
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from agents import ContinualDQN
from crl.analysis import metrics
from crl.run.config import RunConfig
from crl.run import checkpoint as ckpt
from crl.run import config as config_mod
from crl.run import rundir, seeds
from crl.run.evaluation import GameEvaluation, evaluate_games
from crl.methods import TaskInfo
from crl.run.seeds import derive_seed
from crl.run.sequence import Block, TaskSequence
from crl.task_inference.fmn import ForgetMeNot
from crl.run import resume_point
from crl.run.agent import build_agent, resolve_device, set_torch_threads
from crl.run.callbacks import (EvaluateEvery, LogEpisodeReturns, LogTraining, ObserveFrames, ShowProgress,
                                    StopOnSignal, TrainingDiverged)
from crl.run.console import Progress, StopSignals, TrainingInterrupted
from crl.run.plasticity import PlasticityProbes
from crl.run.recording import Recorder
from crl.run.state import RunState
from crl.run.task_identity import is_right, probe_task_id
from envs import make_joint_vec_env, make_vec_env


def task_sequence(cfg: RunConfig) -> TaskSequence:
    """The run's blocks: the games in turn, or all of them in one joint block (``multitask``), each block's steps
    rounded up to whole rollouts of ``n_envs x train_freq`` steps, the unit in which the agent collects (so
    ``blocks.jsonl`` can say where a block ends)."""
    return TaskSequence(tuple(cfg.games), cfg.steps_per_game, cfg.cycles, joint=cfg.multitask,
                        unit=cfg.n_envs * cfg.agent.train_freq)


def block_steps(cfg: RunConfig) -> int:
    """The env steps a block really trains (:func:`task_sequence`)."""
    return task_sequence(cfg).block_steps


def task_ids_by_column(trained_at: list[int | list[int]], task_ids: list[int]) -> dict[int, int]:
    """Game column -> the agent's task id of the game's latest finished block (a joint block's id for each of its
    columns)."""
    return {column: task_id for entry, task_id in zip(trained_at, task_ids) for column in metrics.block_columns(entry)}


class ContinualTrainer:
    """Runs one continual-learning experiment described by a resolved config into ``run_dir``."""

    def __init__(self, cfg: RunConfig, run_dir: Path) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.checkpoints = self.run_dir / rundir.CHECKPOINTS
        self.games: list[str] = list(cfg.games)
        self.sequence = task_sequence(cfg)
        self.blocks = self.sequence.blocks
        self.device = resolve_device(cfg.device)
        set_torch_threads(cfg.torch_threads, self.device)
        self.state = RunState(next_eval=cfg.eval.every)
        self.recorder = Recorder(self.run_dir, cfg)
        self.signals = StopSignals()
        self.agent: ContinualDQN | None = None
        self.usage: rundir.UsageRecord | None = None  # this attempt's record in usage.json, from run() on
        # task_id: fmn -> the Forget-Me-Not process names each block's task from its frames
        self.task_identity = ForgetMeNot(cfg.fmn) if cfg.task_id == "fmn" else None
        p = cfg.plasticity
        self.probes = PlasticityProbes(p.probe_size, cfg.seed) if p.measure else None

    # --- the loop ------------------------------------------------------------------------------------------
    def run(self, resume_step: int | None = None) -> dict[str, Any]:
        """Train every remaining block; ``resume_step`` purges TensorBoard events logged after that step."""
        state = self.state
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.usage = rundir.UsageRecord(self.run_dir, "fresh" if resume_step is None else "resume", resume_step or 0)
        self.recorder.open(resume_step)
        done = sum(b.steps for b in self.blocks[: state.block_index]) + state.block_done
        progress = Progress(self.sequence.total_steps, done)
        summary, outcome = None, "failed"
        try:
            with self.signals:
                while state.block_index < len(self.blocks):
                    self.train_block(self.blocks[state.block_index], progress)
                    state.block_index += 1
                    state.block_done = 0
                    if state.block_index == len(self.blocks):  # metrics and hparams before the final point, so
                        summary = self.recorder.summary(state, self.agent.num_timesteps)  # a resume from it has them
                    point = self.save_checkpoint()
                    # A signal in a block's last segment stops here, after end_task: a checkpoint taken between the
                    # last training step and end_task would resume with the block's replay gone (without
                    # --checkpoint-replay) and nothing left to refill it, so EWC's Fisher would have no samples.
                    if self.signals.signum is not None and state.block_index < len(self.blocks):
                        raise TrainingInterrupted(self.signals.signum, point.zip_path)
            if summary is None:  # resumed from the final point: metrics.json again, the hparams are logged
                summary = self.recorder.summary(state, self.agent.num_timesteps, hparams=False)
            self.check_finite("saving model.zip")
            self.agent.save(self.run_dir / rundir.MODEL)
            outcome = "finished"
        except TrainingInterrupted:
            outcome = "stopped"
            raise
        finally:
            progress.close()
            self.recorder.close()
            self.end_usage(outcome)
        return summary

    def train_block(self, block: Block, progress: Progress) -> None:
        """Train ``block`` from ``state.block_done`` on, in segments that end at checkpoints; then end its task."""
        state = self.state
        env = self.make_env(block, state.block_done)
        if self.agent is None:
            self.agent = build_agent(self.cfg, env, self.device)
            if self.probes is not None:
                self.probes.start(self.agent)
        agent = self.agent
        start = agent.num_timesteps - state.block_done
        if state.block_done == 0:
            self.start_task(block, env, start)
        every = self.cfg.checkpoint.every
        while state.block_done < block.steps:
            if env is None:  # each segment starts from its own seed, so a resumed segment replays exactly
                env = self.make_env(block, state.block_done)
            if agent.env is not env:
                if agent.env is not None:
                    agent.env.close()
                agent.set_env(env)
            segment_end = min(block.steps, (state.block_done // every + 1) * every) if every else block.steps
            callbacks = self.step_callbacks(block, start + block.steps, progress)
            agent.learn(segment_end - state.block_done, callback=callbacks, reset_num_timesteps=False)
            state.block_done = agent.num_timesteps - start
            env = None
            if state.block_done >= block.steps:
                break  # a stop signal during the last segment waits for the block's end (see run)
            if self.signals.signum is not None:
                raise TrainingInterrupted(self.signals.signum, self.save_checkpoint().zip_path)
            self.save_checkpoint()
        if agent.num_timesteps != start + block.steps:  # a resume after a signal mid-rollout ends off the grid
            self.recorder.block_ended_at(agent.num_timesteps)
        self.end_task(block)

    def start_task(self, block: Block, env: Any, start_step: int) -> None:
        """Name the block's task, record the block, and tell the agent (method.before_task)."""
        agent = self.agent
        task_id = self.task_id_of(block, env)
        self.recorder.block_started(block, task_id, start_step)
        self.state.n_block_records += 1
        first_visit = task_id >= len(agent.task_steps) or agent.task_steps[task_id] == 0
        agent.set_task(TaskInfo(task_id, block.game, block.index, block.cycle, first_visit, seed=self.cfg.seed))

    def end_task(self, block: Block) -> None:
        """End the block's task (method.after_task), evaluate every game into a retention row, snapshot the agent."""
        agent, state = self.agent, self.state
        agent.end_task()
        state.trained_at.append(block.trained_at)  # the game's column (every column for a joint block)
        state.task_ids.append(agent.current_task.task_id)
        results = self.evaluate(block, final=True)
        state.retention.append([r.mean for r in results])
        state.retention_cut.append([r.cut_episodes for r in results])
        self.recorder.block_finished(state, agent.num_timesteps, agent.method.scalars())
        self.check_finite(f"saving task-{block.index}.zip")
        agent.save(self.checkpoints / f"task-{block.index}.zip")

    def step_callbacks(self, block: Block, end_step: int, progress: Progress) -> BaseCallback:
        """What runs at each training step of ``block`` (ending at ``end_step``), in this order."""
        callbacks: list[BaseCallback] = [] if self.task_identity is None else [ObserveFrames(self.task_identity)]
        callbacks.append(LogEpisodeReturns(self.recorder, block.game))
        callbacks.append(LogTraining(self.recorder, self.state, self.cfg.log_every,
                                     self.cfg.on_divergence == "stop", block.game))
        if self.cfg.eval.every:
            callbacks.append(EvaluateEvery(lambda: self.evaluate(block, final=False), self.state,
                                           self.cfg.eval.every, end_step))
        callbacks.append(ShowProgress(progress, f"block {block.index + 1}/{len(self.blocks)}: {block.game}"))
        callbacks.append(StopOnSignal(self.signals))
        return CallbackList(callbacks)

    def make_env(self, block: Block, block_done: int) -> Any:
        """The training envs of ``block`` from ``block_done`` steps in, seeded from (run seed, block, step)."""
        seed = derive_seed(self.cfg.seed, seeds.TRAINING_ENV, block.index, block_done)
        options = config_mod.env_options(self.cfg, block.games[0])  # one family: the same options for every game
        if block.joint:  # the envs split evenly over the games, each game played exactly as alone
            return make_joint_vec_env(list(block.games), n_envs=self.cfg.n_envs, seed=seed, **options)
        return make_vec_env(block.game, n_envs=self.cfg.n_envs, seed=seed, **options)

    # --- resume --------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> ckpt.ResumePoint:
        """A resume point at the agent's step; TensorBoard's events up to it are on disk first (a resume purges only
        the events after it)."""
        self.check_finite("writing a checkpoint")
        self.recorder.flush()
        point = resume_point.save(self.checkpoints, self.agent, self.state, self.task_identity, self.probes, self.cfg)
        self.usage.write(self.agent.num_timesteps)  # the CPU time up to here survives a kill from now on
        return point

    def end_usage(self, outcome: str) -> None:
        """Close this attempt's record in usage.json; a failed write is raised only if the run finished (a run that
        is failing anyway keeps its own error)."""
        step = self.agent.num_timesteps if self.agent is not None else self.usage.attempt["from_step"]
        try:
            self.usage.write(step, outcome)
        except OSError:
            if outcome == "finished":
                raise

    def restore(self, point: ckpt.ResumePoint, warn: Callable[[str], None] = print) -> bool:
        """Continue from ``point``: agent, run state, RNG states, records made exactly the checkpoint's (a repair
        is named through ``warn``).

        Returns whether the replay buffers were restored.
        """
        self.state, self.agent, replay_restored, records = resume_point.restore(point, self.device,
                                                                                self.task_identity, self.probes)
        resume_point.trim_records(self.run_dir, self.games, self.state, records, warn)
        return replay_restored

    def check_finite(self, before: str) -> None:
        """Stop a run whose weights are not finite before it records or saves anything as if it were healthy (the
        loss is checked only every ``log_every`` steps); one device sync."""
        params = list(self.agent.policy.parameters())
        if not bool(th.stack([th.isfinite(p).all() for p in params]).all()):
            raise TrainingDiverged(f"training diverged by step {self.agent.num_timesteps}: the network's weights are "
                                   f"not finite (found before {before})")

    # --- task ids ------------------------------------------------------------------------------------------
    def task_id_of(self, block: Block, env: Any) -> int:
        """The block's task id: given (oracle), or named by FMN from probe steps of ``env`` (``task_id: fmn``)."""
        if self.task_identity is None:
            return block.task_id
        task = probe_task_id(self.task_identity, env)
        correct = is_right(task, block.task_id, task_ids_by_column(self.trained_at, self.task_ids))
        self.recorder.task_probe(correct, self.task_identity.num_tasks, self.agent.num_timesteps)
        return task

    def trained_task_ids(self) -> dict[int, int]:
        """Game column -> the agent's task id of the game's latest block, for every game trained so far (the block
        in progress included)."""
        ids = task_ids_by_column(self.trained_at, self.task_ids)
        if self.agent.current_task is not None and self.block_index < len(self.blocks):
            for column in metrics.block_columns(self.blocks[self.block_index].trained_at):
                ids[column] = self.agent.current_task.task_id
        return ids

    def task_id_for(self, game_index: int) -> int:
        """The task id game ``game_index`` is evaluated with: the one the agent used (given or inferred) when it
        last trained the game; before that (zero-shot) the current task's."""
        return self.trained_task_ids().get(game_index, self.agent.current_task.task_id)

    def evaluate(self, block: Block, final: bool) -> list[GameEvaluation]:
        """Evaluate every game during ``block`` (``final``: at its end) and record the results."""
        agent = self.agent
        self.check_finite("an evaluation")
        current = agent.current_task.task_id
        trained = self.trained_task_ids()
        results = evaluate_games(agent, self.cfg, [self.task_id_for(g) for g in range(len(self.games))],
                                 candidate_task_ids=sorted(set(trained.values()) | {current}))
        self.recorder.evaluation(block, agent.num_timesteps, current, results, trained, final)
        self.state.n_evaluations += 1
        self.state.n_eval_records += len(results)
        if self.probes is not None:
            self.measure_plasticity(block)
        return results

    def measure_plasticity(self, block: Block) -> None:
        """The plasticity measures at an evaluation: the network's, and each probed game's (played with the task id
        it is evaluated with); the block's game gets its probe batch at its first evaluation with enough replay."""
        agent = self.agent
        if not block.joint:  # a joint block's replay mixes the games: no batch of one game to draw from it
            self.probes.draw(block.task_id, agent)
        task_ids = {g: self.task_id_for(g) for g in range(len(self.games))}
        network, games = self.probes.measure(agent, task_ids, agent.num_timesteps)
        self.recorder.plasticity(block, agent.num_timesteps, network, {self.games[g]: m for g, m in games.items()})
        self.state.n_plasticity_records += 1

    # --- the run state, as callers read it -----------------------------------------------------------------
    @property
    def block_index(self) -> int:
        return self.state.block_index

    @property
    def block_done(self) -> int:
        return self.state.block_done

    @property
    def retention(self) -> list[list[float]]:
        return self.state.retention

    @property
    def trained_at(self) -> list[int | list[int]]:
        return self.state.trained_at

    @property
    def task_ids(self) -> list[int]:
        return self.state.task_ids
