"""What a resume point holds of the run, besides the agent: the trainer's :class:`RunState`, the task-identity
model's state and the configuration's fingerprint; saving one, restoring the run from one, and trimming the records
the interrupted attempt wrote after it.

A resume point (:mod:`crl.run.checkpoint`) also stores the agent, every RNG state and optionally the replay buffers.
Every training segment starts its environments from a seed derived from (run seed, block, step), so a run resumed
from a point (with its replay buffers) continues exactly as the uninterrupted run would have. How a run continues
(``crl train --resume``) is the command line's: :mod:`crl.cli.resume`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import torch as th

from agents import ContinualDQN
from crl.run.config import RunConfig
from crl.run import checkpoint as ckpt
from crl.run import rundir
from crl.task_inference.fmn import ForgetMeNot
from crl.run.plasticity import PlasticityProbes
from crl.run.state import RunState

def save(checkpoints: Path, agent: ContinualDQN, state: RunState, task_identity: ForgetMeNot | None,
         probes: PlasticityProbes | None, cfg: RunConfig) -> ckpt.ResumePoint:
    """A resume point at the agent's step: the agent, ``state``, the task-identity model, the plasticity probes, RNG
    states (and the replay buffers if ``checkpoint.replay``); the oldest points beyond ``checkpoint.keep`` go."""
    saved = dataclasses.asdict(state)
    if task_identity is not None:
        saved["task_identity"] = task_identity.state_dict()
    if probes is not None:
        saved["plasticity"] = probes.state_dict()
    saved["fingerprint"] = rundir.fingerprint(cfg)  # a resume checks the configuration against it
    saved["records"] = {name: record_lines(checkpoints.parent / name, count) for name, count in record_counts(state)}
    # the losses of the last gradient step: the first training scalars after a resume are logged from them
    saved["last_losses"] = {k: v.item() for k, v in agent.last_losses.items()}
    c = cfg.checkpoint
    return ckpt.save_resume_point(checkpoints, agent, saved, c.replay, c.keep)


def restore(point: ckpt.ResumePoint, device: str, task_identity: ForgetMeNot | None,
            probes: PlasticityProbes | None) -> tuple[RunState, ContinualDQN, bool, dict[str, bytes]]:
    """The run state and the agent of ``point``, with the RNG states set and ``task_identity`` and ``probes``
    loaded. Mid-block, the agent continues its task (without ``before_task`` again) with the replay buffers if they
    were saved.

    Returns (state, agent, whether the replay buffers were restored, the records the point holds).
    """
    saved = ckpt.load_trainer_state(point)
    needed = [f.name for f in dataclasses.fields(RunState)] + ["rng", "replay_saved", "records", "last_losses"]
    needed += ["task_identity"] * (task_identity is not None) + ["plasticity"] * (probes is not None)
    missing = [key for key in needed if key not in saved]
    if missing:
        raise ckpt.CheckpointError(f"checkpoint {point.zip_path} lacks {', '.join(missing)}: another version of crl "
                                   "wrote it; start the run again")
    state = RunState(**{f.name: saved[f.name] for f in dataclasses.fields(RunState)})
    if task_identity is not None:
        task_identity.load_state_dict(saved["task_identity"])
    if probes is not None:
        probes.load_state_dict(saved["plasticity"])
    agent = ContinualDQN.load(point.zip_path, device=device)
    agent.last_losses = {k: th.tensor(v, device=agent.device) for k, v in saved["last_losses"].items()}
    ckpt.set_rng_state(agent, saved["rng"])
    if state.block_done > 0:
        agent.resume_task(ckpt.load_replay(point) if saved["replay_saved"] else None)
    return state, agent, saved["replay_saved"], saved["records"]


def record_counts(state: RunState) -> list[tuple[str, int]]:
    """The record files a resume point accounts for, with how many lines of each belong to it."""
    return [(rundir.EVALS, state.n_eval_records), (rundir.BLOCKS, state.n_block_records),
            (rundir.PLASTICITY, state.n_plasticity_records)]


def record_lines(path: Path, count: int) -> bytes:
    """The first ``count`` lines of ``path`` (all it has if fewer; nothing if it is missing)."""
    return b"".join(path.read_bytes().splitlines(keepends=True)[:count]) if path.is_file() else b""


def trim_records(run_dir: Path, games: list[str], state: RunState, records: dict[str, bytes],
                 warn: Callable[[str], None]) -> None:
    """Make the records exactly what the checkpoint holds (``records``: each file's lines when it was saved): drop
    what the interrupted attempt wrote after it, and restore lines lost or changed since (named through ``warn``),
    so a resumed run never continues onto records that disagree with its state. ``retention.csv`` is rewritten."""
    for name, count in record_counts(state):
        path, want = run_dir / name, records[name]
        if record_lines(path, count) != want:
            warn(f"{path} did not hold the {count} records of the checkpoint (lost or changed since it was "
                 "written); restored them from the checkpoint")
        if want or path.exists():
            rundir.atomic_write(path, want)
    rundir.write_retention(run_dir / rundir.RETENTION, games, state.retention)
