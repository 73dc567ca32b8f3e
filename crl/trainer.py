"""The trainer: walks the task sequence, trains the agent on each block, evaluates every game, records it all.

For each block: ``agent.set_task`` (method.before_task) -> ``agent.learn`` in segments that end at resume checkpoints,
with a callback that logs training scalars and runs the periodic evaluations -> ``agent.end_task``
(method.after_task) -> evaluate every game (one row of the retention matrix) -> checkpoint. At the end:
``metrics.json`` and ``model.zip``.

Every segment starts its environments from a seed derived from (run seed, block, step), and a resume checkpoint stores
every RNG state, so a run resumed from a checkpoint (with its replay buffers) continues exactly as the uninterrupted
run would have.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from torch.utils.tensorboard import SummaryWriter

from agents import ContinualDQN
from crl import checkpoint as ckpt
from crl import config as config_mod
from crl import metrics, plots, rundir, seeds
from crl.evaluation import GameEvaluation, play_episodes
from crl.normalization import normalization_of, normalized_score
from crl.seeds import derive_seed
from crl.methods import TaskInfo, make_method, section_name
from crl.sequence import Block, TaskSequence
from crl.task_inference.entropy import infer_task_id
from crl.task_inference.fmn import ForgetMeNot
from envs import make_vec_env


class TrainingInterrupted(Exception):
    """A stop signal arrived; a checkpoint was written. ``exit_status`` is 128 + the signal number."""

    def __init__(self, signum: int, checkpoint_path: Path) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}; checkpoint {checkpoint_path}")
        self.exit_status = 128 + signum
        self.checkpoint_path = checkpoint_path


class TrainingDiverged(Exception):
    """A non-finite loss or Q-value; the message names the step and the game."""


def resolve_device(device: str) -> str:
    return ("cuda" if th.cuda.is_available() else "cpu") if device == "auto" else device


def set_torch_threads(threads: int, device: str) -> None:
    """``threads`` > 0: that many; 0: one on the CPU, where the emulator's threads need the other cores (a second
    torch thread waiting for a busy core made a training step 10x slower on 2 cores, docs/performance.md)."""
    if threads > 0:
        th.set_num_threads(threads)
    elif device == "cpu":
        th.set_num_threads(1)


def build_agent(cfg: dict[str, Any], env: Any, device: str) -> ContinualDQN:
    """A ``ContinualDQN`` configured from the resolved config's ``agent``, ``network`` and method sections."""
    a = cfg["agent"]
    if a["optimizer"] == "rmsprop":  # torch has no fused RMSprop; foreach is its multi-tensor kernel
        optimizer = dict(optimizer_class=th.optim.RMSprop, optimizer_kwargs={
            "alpha": a["rmsprop_alpha"], "eps": a["optimizer_eps"], "momentum": 0.0, "foreach": True})
    else:  # fused Adam: one kernel for all parameters (8x faster than the per-parameter loop on CPU)
        optimizer = dict(optimizer_class=th.optim.Adam, optimizer_kwargs={"eps": a["optimizer_eps"], "fused": True})
    method = make_method(cfg["method"], cfg.get(section_name(cfg["method"])))
    network = dict(cfg["network"])
    return ContinualDQN(
        env,
        method=method,
        network=network,
        replay=a["replay"],
        double_q=a["double_q"],
        exploration_steps=a["exploration_steps"],
        reset_optimizer=a["reset_optimizer"],
        skip_nonfinite=cfg["on_divergence"] == "skip",
        policy_kwargs={"network": method.q_network_spec(network), **optimizer},
        learning_rate=a["learning_rate"],
        buffer_size=a["buffer_size"],
        learning_starts=a["learning_starts"],
        batch_size=a["batch_size"],
        gamma=a["gamma"],
        train_freq=a["train_freq"],
        gradient_steps=cfg["n_envs"] if a["gradient_steps"] < 0 else a["gradient_steps"],
        target_update_interval=a["target_update_interval"],
        exploration_initial_eps=a["exploration_initial_eps"],
        exploration_final_eps=a["exploration_final_eps"],
        max_grad_norm=a["max_grad_norm"],
        seed=derive_seed(cfg["seed"], seeds.AGENT),  # SB3 also seeds the env with it: keep it below ALE's limit
        device=device,
    )


def block_steps(cfg: dict[str, Any]) -> int:
    """The env steps a block really trains: ``steps_per_game`` rounded up to whole rollouts of ``n_envs x
    train_freq`` steps, the unit in which the agent collects (so ``blocks.jsonl`` can say where a block ends)."""
    unit = cfg["n_envs"] * cfg["agent"]["train_freq"]
    return -(-cfg["steps_per_game"] // unit) * unit


def upgrade_state(state: dict[str, Any], blocks: list[Block]) -> dict[str, Any]:
    """A resume state written before game columns and task ids were kept apart (no ``task_ids``; its
    ``trained_at`` held the agent's task ids): the ids move to ``task_ids`` and ``trained_at`` gets the columns."""
    if "task_ids" in state:
        return state
    ids = list(state["trained_at"])
    return {**state, "task_ids": ids, "trained_at": [b.task_id for b in blocks[: len(ids)]]}


class Progress:
    """One status line on stderr: redrawn in place on a terminal, a line every ~10% otherwise."""

    def __init__(self, total_steps: int, done: int = 0) -> None:
        self.total, self.first = total_steps, done
        self.tty = sys.stderr.isatty()
        self.start = time.time()
        self.last_draw = 0.0
        self.last_decile = -1

    def update(self, done: int, label: str) -> None:
        now = time.time()
        decile = int(10 * done / max(self.total, 1))
        if self.tty and now - self.last_draw < 0.5 and done < self.total:
            return
        if not self.tty and decile == self.last_decile:
            return
        self.last_draw, self.last_decile = now, decile
        width = 30
        filled = int(width * min(done, self.total) / max(self.total, 1))
        rate = (done - self.first) / max(now - self.start, 1e-9)
        eta = f"{(self.total - done) / rate / 60:.1f} min" if rate > 0 else "?"
        line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} steps  {rate:.0f} steps/s  eta {eta}  {label}"
        sys.stderr.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


class StopSignals:
    """SIGINT/SIGTERM ask the trainer to stop after the current step; a second signal exits at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum is not None:
            sys.stderr.write(f"\nsecond {signal.Signals(signum).name}: exiting now without a checkpoint\n")
            sys.stderr.flush()
            os._exit(128 + signum)
        self.signum = signum
        sys.stderr.write(f"\n{signal.Signals(signum).name}: finishing the current step and writing a checkpoint "
                         "(send it again to exit at once)\n")

    def __enter__(self) -> "StopSignals":
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class BlockCallback(BaseCallback):
    """Inside ``agent.learn``: training scalars and divergence checks every ``log_every`` steps, periodic
    evaluation, progress, and stopping on a signal."""

    def __init__(self, trainer: "ContinualTrainer", block: Block, end_step: int) -> None:
        super().__init__()
        self.trainer, self.block, self.end_step = trainer, block, end_step

    def _on_step(self) -> bool:
        t, step = self.trainer, self.num_timesteps
        if t.task_identity is not None:  # the frame models keep learning from what the agent sees (env 0)
            t.task_identity.observe(self.locals["new_obs"][0])
        for info in self.locals.get("infos", []):
            if "episode" in info:
                t.writer.add_scalar(f"train/{self.block.game}/episode_return", info["episode"]["r"], step)
        if step >= t.next_log:
            t.next_log = step + t.cfg["log_every"]
            t.log_training(self.block, step)
        if t.eval_every and step >= t.next_eval:
            t.next_eval = (step // t.eval_every + 1) * t.eval_every
            if step < self.end_step:  # the block-end evaluation covers the last step
                t.evaluate_all(self.block, final=False)
        t.progress.update(step, f"block {self.block.index + 1}/{len(t.blocks)}: {self.block.game}")
        return t.signals.signum is None


class ContinualTrainer:
    """Runs one continual-learning experiment described by a resolved config into ``run_dir``."""

    def __init__(self, cfg: dict[str, Any], run_dir: Path) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.checkpoints = self.run_dir / rundir.CHECKPOINTS
        self.games: list[str] = list(cfg["games"])
        self.sequence = TaskSequence(tuple(self.games), block_steps(cfg), cfg["cycles"])
        self.blocks = self.sequence.blocks
        self.device = resolve_device(cfg["device"])
        set_torch_threads(cfg["torch_threads"], self.device)
        self.eval_every = cfg["eval"]["every"]
        self.signals = StopSignals()
        # the trainer's position and history: everything a resume checkpoint stores besides the agent
        self.block_index = 0
        self.block_done = 0  # env steps done in the current block
        self.next_eval = self.eval_every
        self.next_log = 0
        self.retention: list[list[float]] = []
        # per finished block: the game's column (metrics, figures) and the agent's task id (given or inferred);
        # the two differ as soon as task inference names a game differently from its place in the sequence
        self.trained_at: list[int] = []
        self.task_ids: list[int] = []
        self.n_evaluations = 0
        self.n_eval_records = 0
        self.n_block_records = 0
        self.agent: ContinualDQN | None = None
        self.writer: SummaryWriter | None = None
        self.progress: Progress | None = None
        # task_id: fmn -> the Forget-Me-Not process names each block's task from its frames
        self.task_identity = ForgetMeNot(cfg["fmn"]) if cfg["task_id"] == "fmn" else None

    # --- state for resume checkpoints ----------------------------------------------------------------
    STATE_KEYS = ("block_index", "block_done", "next_eval", "next_log", "retention", "trained_at", "task_ids",
                  "n_evaluations", "n_eval_records", "n_block_records")

    def state(self) -> dict[str, Any]:
        state = {key: getattr(self, key) for key in self.STATE_KEYS}
        if self.task_identity is not None:
            state["task_identity"] = self.task_identity.state_dict()
        state["fingerprint"] = rundir.fingerprint(self.cfg)  # a resume checks the configuration against it
        return state

    def save_checkpoint(self) -> ckpt.ResumePoint:
        c = self.cfg["checkpoint"]
        return ckpt.save_resume_point(self.checkpoints, self.agent, self.state(), c["replay"], c["keep"])

    def restore(self, point: ckpt.ResumePoint) -> bool:
        """Continue from ``point``: agent, trainer position, RNG states, files trimmed to the checkpoint.

        Returns whether the replay buffers were restored.
        """
        state = upgrade_state(ckpt.load_trainer_state(point), self.blocks)
        for key in self.STATE_KEYS:
            setattr(self, key, state[key])
        if self.task_identity is not None:
            self.task_identity.load_state_dict(state["task_identity"])
        self.agent = ContinualDQN.load(point.zip_path, device=self.device)
        ckpt.set_rng_state(self.agent, state["rng"])
        self._trim_records()
        if self.block_done > 0:  # mid-block: continue the block without calling before_task again
            self.agent.resume_task(ckpt.load_replay(point) if state["replay_saved"] else None)
        return state["replay_saved"]

    def _trim_records(self) -> None:
        """Drop what the interrupted attempt wrote after the checkpoint (evaluations, block records)."""
        for name, count in ((rundir.EVALS, self.n_eval_records), (rundir.BLOCKS, self.n_block_records)):
            path = self.run_dir / name
            lines = path.read_text().splitlines(keepends=True)[:count] if path.exists() else []
            rundir.atomic_write(path, "".join(lines))
        rundir.write_retention(self.run_dir / rundir.RETENTION, self.games, self.retention)

    # --- the loop --------------------------------------------------------------------------------------
    def run(self, resume_step: int | None = None) -> dict[str, Any]:
        """Train every remaining block; ``resume_step`` purges TensorBoard events logged after that step."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        rundir.atomic_write(self.run_dir / rundir.CONFIG, config_mod.dump(self.cfg))
        purge = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(str(self.run_dir / rundir.TB), purge_step=purge)
        done_steps = sum(b.steps for b in self.blocks[: self.block_index]) + self.block_done
        self.progress = Progress(self.sequence.total_steps, done_steps)
        try:
            with self.signals:
                while self.block_index < len(self.blocks):
                    self.train_block(self.blocks[self.block_index])
                    self.block_index += 1
                    self.block_done = 0
                    point = self.save_checkpoint()
                    # A signal in a block's last segment stops here, after end_task: a checkpoint taken between the
                    # last training step and end_task would resume with the block's replay gone (without
                    # --checkpoint-replay) and nothing left to refill it, so EWC's Fisher would have no samples.
                    if self.signals.signum is not None and self.block_index < len(self.blocks):
                        raise TrainingInterrupted(self.signals.signum, point.zip_path)
            summary = metrics.summarize(np.array(self.retention), self.games, self.trained_at)
            summary["task_ids"] = list(self.task_ids)
            rundir.write_json(self.run_dir / rundir.METRICS, summary)
            self.log_hparams(summary)
            self.agent.save(self.run_dir / rundir.MODEL)
        finally:
            self.progress.close()
            self.writer.close()
        return summary

    def make_env(self, game: str, block_index: int, block_done: int) -> Any:
        seed = derive_seed(self.cfg["seed"], seeds.TRAINING_ENV, block_index, block_done)
        return make_vec_env(game, n_envs=self.cfg["n_envs"], seed=seed, **config_mod.env_options(self.cfg, game))

    def train_block(self, block: Block) -> None:
        env = self.make_env(block.game, block.index, self.block_done)
        if self.agent is None:
            self.agent = build_agent(self.cfg, env, self.device)
        agent = self.agent
        start = agent.num_timesteps - self.block_done
        if self.block_done == 0:
            task_id = self.task_id_of(block, env)
            rundir.append_jsonl(self.run_dir / rundir.BLOCKS, [{
                "block": block.index, "cycle": block.cycle, "game": block.game, "task_index": block.task_id,
                "task_id": task_id, "start_step": start, "end_step": start + block.steps,
            }])
            self.n_block_records += 1
            first_visit = task_id >= len(agent.task_steps) or agent.task_steps[task_id] == 0
            agent.set_task(TaskInfo(task_id, block.game, block.index, block.cycle, first_visit, seed=self.cfg["seed"]))
        every = self.cfg["checkpoint"]["every"]
        while self.block_done < block.steps:
            if env is None:  # each segment starts from its own seed, so a resumed segment replays exactly
                env = self.make_env(block.game, block.index, self.block_done)
            if agent.env is not env:
                if agent.env is not None:
                    agent.env.close()
                agent.set_env(env)
            segment_end = min(block.steps, (self.block_done // every + 1) * every) if every else block.steps
            agent.learn(segment_end - self.block_done, callback=BlockCallback(self, block, start + block.steps),
                        reset_num_timesteps=False)
            self.block_done = agent.num_timesteps - start
            env = None
            if self.block_done >= block.steps:
                break  # a stop signal during the last segment waits for the block's end (see run)
            if self.signals.signum is not None:
                raise TrainingInterrupted(self.signals.signum, self.save_checkpoint().zip_path)
            self.save_checkpoint()
        if agent.num_timesteps != start + block.steps:  # a resume after a signal mid-rollout ends off the grid
            rundir.update_last_jsonl(self.run_dir / rundir.BLOCKS, {"end_step": agent.num_timesteps})
        agent.end_task()
        self.trained_at.append(block.task_id)  # Block.task_id is the game's column in the sequence
        self.task_ids.append(agent.current_task.task_id)
        results = self.evaluate_all(block, final=True)
        self.retention.append([r.mean for r in results])
        rundir.write_retention(self.run_dir / rundir.RETENTION, self.games, self.retention)
        self.log_figures(agent.num_timesteps)
        for tag, value in agent.method.scalars().items():
            self.writer.add_scalar(tag, value, agent.num_timesteps)
        agent.save(self.checkpoints / f"task-{block.index}.zip")

    def log_figures(self, step: int) -> None:
        """The retention heatmap and the return curves so far, as TensorBoard images (at each task boundary)."""
        evals = rundir.read_jsonl(self.run_dir / rundir.EVALS)
        blocks = rundir.read_jsonl(self.run_dir / rundir.BLOCKS)
        self.writer.add_figure("report/retention", plots.retention_heatmap(
            np.array(self.retention), self.games, trained_at=self.trained_at, task_ids=self.task_ids), step)
        self.writer.add_figure("report/curves", plots.return_curves(evals, self.games, blocks), step)

    def log_hparams(self, summary: dict[str, Any]) -> None:
        """The configuration with the final metrics in TensorBoard's hparams plugin, in this run (not a new one)."""
        from torch.utils.tensorboard.summary import hparams

        params = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                  for k, v in config_mod.flatten(self.cfg).items() if k != "run_dir"}
        key = normalization_of(self.games).key  # hns (Atari) / dqn_normalized (MinAtar)
        names = ("average_final_return", f"average_final_{key}", "average_forgetting", "backward_transfer",
                 f"total_clipped_{key}")
        final = {f"hparams/{k}": summary[k] for k in names if summary[k] is not None}
        for summary_proto in hparams(params, final):
            self.writer.file_writer.add_summary(summary_proto)
        for tag, value in final.items():
            self.writer.add_scalar(tag, value, self.agent.num_timesteps)

    def task_id_of(self, block: Block, env: Any) -> int:
        """The block's task id: given (oracle), or inferred from its first frames (``task_id: fmn``).

        FMN watches random-action probe steps (not training steps) until a new game would have been confirmed.
        """
        fmn = self.task_identity
        if fmn is None:
            return block.task_id
        obs = env.reset()
        for _ in range(fmn.params.update_every * fmn.params.window * 3):
            task = fmn.observe(obs[0])
            obs, _, _, _ = env.step(np.random.randint(env.action_space.n, size=env.num_envs))
        # right: a revisited game gets the id it had before, a new game an id no other game has
        ids_of_columns = dict(zip(self.trained_at, self.task_ids))
        if block.task_id in ids_of_columns:
            correct = task == ids_of_columns[block.task_id]
        else:
            correct = task not in ids_of_columns.values()
        self.writer.add_scalar("task_inference/fmn_correct", float(correct), self.agent.num_timesteps)
        self.writer.add_scalar("task_inference/fmn_tasks", fmn.num_tasks, self.agent.num_timesteps)
        return task

    def log_training(self, block: Block, step: int) -> None:
        """Training scalars; a non-finite loss stops the run (the last checkpoint is the last good state)."""
        agent = self.agent
        for name, value in agent.last_losses.items():
            value = value.item()
            if not np.isfinite(value) and self.cfg["on_divergence"] == "stop":
                raise TrainingDiverged(f"training diverged at step {step} on {block.game}: {name} is {value}")
            self.writer.add_scalar(f"train/{name}", value, step)
        self.writer.add_scalar("train/epsilon", agent.exploration_rate, step)
        self.writer.add_scalar("train/task_index", agent.current_task.task_id, step)
        if agent.skipped_batches:
            self.writer.add_scalar("train/skipped_batches", agent.skipped_batches, step)

    # --- evaluation ------------------------------------------------------------------------------------
    def trained_task_ids(self) -> dict[int, int]:
        """Game column -> the agent's task id of the game's latest block, for every game trained so far (the block
        in progress included)."""
        ids = dict(zip(self.trained_at, self.task_ids))
        if self.agent.current_task is not None and self.block_index < len(self.blocks):
            ids[self.blocks[self.block_index].task_id] = self.agent.current_task.task_id
        return ids

    def task_id_for(self, game_index: int) -> int:
        """The task id game ``game_index`` is evaluated with: the one the agent used (given or inferred) when it
        last trained the game; before that (zero-shot) the current task's."""
        return self.trained_task_ids().get(game_index, self.agent.current_task.task_id)

    def evaluate_all(self, block: Block, final: bool) -> list[GameEvaluation]:
        """Evaluate every game of the sequence; log to evals.jsonl and TensorBoard."""
        ev, step = self.cfg["eval"], self.agent.num_timesteps
        self.n_evaluations += 1
        inferred = ev["task_id"] == "inferred"
        trained = self.trained_task_ids()
        candidates = sorted(set(trained.values()) | {self.agent.current_task.task_id})
        results = []
        for g, game in enumerate(self.games):
            # the same episodes (seeds, exploration coins) at every evaluation of a game: an unchanged policy
            # scores the same, so differences between evaluations are the agent's, not the evaluation's noise
            seed = derive_seed(self.cfg["seed"], seeds.EVALUATION_ENV, g)
            results.append(play_episodes(
                self.agent, game, self.task_id_for(g), ev["episodes"], ev["max_steps"], ev["epsilon"], seed,
                config_mod.env_options(self.cfg, game), infer_task=infer_task_id if inferred else None,
                candidate_task_ids=candidates))
        records = []
        normalized_values = []
        key = normalization_of(self.games).key  # the family's normalized score: hns (Atari), dqn_normalized (MinAtar)
        for g, r in enumerate(results):
            normalized = normalized_score(r.game, r.mean)
            normalized_values.append(normalized)
            records.append({
                "step": step, "block": block.index, "task_index": block.task_id,
                "task_id": self.agent.current_task.task_id, "trained_game": block.game, "game": r.game, "game_index": g,
                "eval_task_id": None if inferred else r.task_id,
                "mean_return": r.mean, "std_return": r.std, "episodes": len(r.returns), "cut_episodes": r.cut_episodes,
                key: None if np.isnan(normalized) else normalized, "final": final,
                **({"inferred_task_ids": r.inferred_task_ids} if inferred else {}),
            })
            self.writer.add_scalar(f"eval/{r.game}/return", r.mean, step)
            if not np.isnan(normalized):
                self.writer.add_scalar(f"eval/{r.game}/{key}", normalized, step)
        if inferred:  # only trained games have a right answer: the id the agent trained them under
            hits = [t == trained[g] for g, r in enumerate(results) if g in trained for t in r.inferred_task_ids or []]
            if hits:
                self.writer.add_scalar(f"{self.cfg['method']}/task_inference_accuracy", float(np.mean(hits)), step)
        rundir.append_jsonl(self.run_dir / rundir.EVALS, records)
        self.n_eval_records += len(records)
        known = np.array([h for h in normalized_values if not np.isnan(h)])
        if known.size:
            self.writer.add_scalar(f"eval/mean_{key}", float(known.mean()), step)
            self.writer.add_scalar(f"eval/total_clipped_{key}", metrics.total_clipped(known), step)
        self.writer.flush()
        return results
