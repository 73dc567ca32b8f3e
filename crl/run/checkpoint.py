"""Resume checkpoints: the agent, the method, the trainer's position and RNG states in one verifiable file.

A resume point is ``checkpoints/resume-<step>.zip`` (the agent's zip, ``ContinualDQN.load``-able, with the trainer's
state added as ``trainer_state.pt``), optionally ``resume-<step>.replay.pkl`` (the replay buffers), and
``resume-<step>.sha256`` listing the SHA-256 of each. Files are written atomically (temporary file, fsync, rename) and
the checksum file last, so a resume point without a matching checksum file is incomplete or corrupt. After each new
point, the newest ``keep`` points that *verify* are kept and every other point is deleted (a corrupt or incomplete
point never counts towards ``keep``, so it can never push out the last good one). A write that fails (a full disk)
leaves no temporary or half-written files behind.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import random
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

from crl.run.rundir import atomic_write

TRAINER_STATE = "trainer_state.pt"
_RESUME = re.compile(r"^resume-(\d+)\.zip$")


class CheckpointError(Exception):
    """No usable resume checkpoint; the message says why."""


@dataclass
class ResumePoint:
    step: int
    zip_path: Path

    @property
    def replay_path(self) -> Path:
        return self.zip_path.with_name(f"resume-{self.step}.replay.pkl")

    @property
    def checksum_path(self) -> Path:
        return self.zip_path.with_name(f"resume-{self.step}.sha256")

    def files(self) -> list[Path]:
        return [p for p in (self.zip_path, self.replay_path, self.checksum_path) if p.exists()]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def rng_state(agent: Any) -> dict[str, Any]:
    """Python, NumPy, torch and the agent's action-space RNG states."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": th.get_rng_state(),
        "cuda": th.cuda.get_rng_state_all() if th.cuda.is_available() else None,
        "action_space": agent.action_space.np_random.bit_generator.state,
    }


def set_rng_state(agent: Any, state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    th.set_rng_state(state["torch"])
    if state.get("cuda") is not None and th.cuda.is_available():
        th.cuda.set_rng_state_all(state["cuda"])
    agent.action_space.np_random.bit_generator.state = state["action_space"]


def save_resume_point(directory: Path, agent: Any, trainer_state: dict[str, Any], with_replay: bool, keep: int = 2) -> ResumePoint:
    """Write a complete resume point for ``agent.num_timesteps``, then prune (see :func:`prune`).

    If a write fails (a full disk), the point's temporary and unverified files are removed and the error raised.
    """
    point = ResumePoint(agent.num_timesteps, directory / f"resume-{agent.num_timesteps}.zip")
    state = dict(trainer_state, rng=rng_state(agent), replay_saved=with_replay)
    blob = io.BytesIO()
    th.save(state, blob)
    try:
        agent.save(point.zip_path, extra_files={TRAINER_STATE: blob.getvalue()})
        sums = {point.zip_path.name: sha256(point.zip_path)}
        if with_replay:
            buffers = {"current": agent.replay_buffer, "per_task": agent._task_buffers}
            atomic_write(point.replay_path, pickle.dumps(buffers, protocol=pickle.HIGHEST_PROTOCOL))
            sums[point.replay_path.name] = sha256(point.replay_path)
        atomic_write(point.checksum_path, "".join(f"{digest}  {name}\n" for name, digest in sums.items()))
    except BaseException:
        discard_incomplete(point)
        raise
    prune(directory, keep)
    return point


def discard_incomplete(point: ResumePoint) -> None:
    """Delete ``point``'s temporary files, and its files too unless they verify (a write that did not finish)."""
    for path in (point.zip_path, point.replay_path, point.checksum_path):
        path.with_name(path.name + ".tmp").unlink(missing_ok=True)
    if verify(point) is not None:
        for path in point.files():
            path.unlink(missing_ok=True)


def prune(directory: Path, keep: int) -> list[ResumePoint]:
    """Keep the newest ``keep`` resume points that verify; delete every other one (older good points, and corrupt
    or incomplete ones, wherever they are). Returns the points kept."""
    kept: list[ResumePoint] = []
    for point in resume_points(directory):
        if len(kept) < keep and verify(point) is None:
            kept.append(point)
            continue
        for path in point.files():
            path.unlink(missing_ok=True)
    return kept


def discard_unusable(directory: Path) -> list[tuple[ResumePoint, str]]:
    """Delete every resume point that does not verify (a point is not one until its checksum file is written and
    matches) and every orphan (a checksum file or replay pickle without its zip, a temporary file); returns the points
    deleted, with why. Only safe while holding the run's lock."""
    directory = Path(directory)
    bad = [(point, problem) for point in resume_points(directory) if (problem := verify(point)) is not None]
    for point, _ in bad:
        for path in point.files():
            path.unlink(missing_ok=True)
    steps = {point.step for point in resume_points(directory)}
    for path in directory.glob("resume-*"):
        m = re.match(r"^resume-(\d+)\.", path.name)
        if path.name.endswith(".tmp") or (m and int(m.group(1)) not in steps):
            path.unlink(missing_ok=True)
    return bad


def resume_points(directory: Path) -> list[ResumePoint]:
    """All resume points in ``directory``, newest first (complete or not)."""
    points = [ResumePoint(int(m.group(1)), p) for p in Path(directory).glob("resume-*.zip") if (m := _RESUME.match(p.name))]
    return sorted(points, key=lambda p: p.step, reverse=True)


# (point's files: name, size, mtime) -> verify's answer; pruning after every save then hashes each point only once
_verified: dict[tuple[tuple[str, int, int], ...], str | None] = {}


def verify(point: ResumePoint) -> str | None:
    """None if the point is complete and intact, else the reason it is not."""
    try:
        key = tuple((p.name, (st := p.stat()).st_size, st.st_mtime_ns) for p in point.files())
    except FileNotFoundError:  # deleted meanwhile
        return "incomplete (a file is missing)"
    if key not in _verified:
        _verified[key] = _verify(point)
    return _verified[key]


def _verify(point: ResumePoint) -> str | None:
    if not point.checksum_path.exists():
        return "incomplete (no checksum file)"
    try:
        lines = point.checksum_path.read_text().splitlines()
        expected = dict(reversed(line.split("  ", 1)) for line in lines if line)
    except (UnicodeDecodeError, ValueError):
        return "its checksum file is damaged"
    if point.zip_path.name not in expected:
        return f"its checksum file does not list {point.zip_path.name}"
    for name, digest in expected.items():
        path = point.zip_path.with_name(name)
        if not path.exists():
            return f"{name} is missing"
        if sha256(path) != digest:
            return f"{name} does not match its checksum (truncated or corrupted)"
    return None


def newest_good(directory: Path, warn: Any = print) -> ResumePoint:
    """The newest resume point that verifies; each bad newer one is named through ``warn``."""
    for point in resume_points(directory):
        problem = verify(point)
        if problem is None:
            return point
        warn(f"checkpoint {point.zip_path} is unusable: {problem}; trying the previous one")
    raise CheckpointError(f"no usable checkpoint in {directory}")


def load_trainer_state(point: ResumePoint) -> dict[str, Any]:
    with zipfile.ZipFile(point.zip_path) as archive:
        return th.load(io.BytesIO(archive.read(TRAINER_STATE)), map_location="cpu", weights_only=False)


def load_replay(point: ResumePoint) -> dict[str, Any]:
    with open(point.replay_path, "rb") as f:
        return pickle.load(f)
