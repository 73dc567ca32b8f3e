"""Reading run directories into records: a :class:`Run` per directory (its configuration, evaluations, retention
matrix, planned blocks, resumes that refilled a replay buffer), checked so that bad input is one line naming the path.
See docs/report.md for the run-directory contract.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from crl.analysis.normalization import Normalization, normalization_of
from crl.run import rundir
from crl.run.sequence import TaskSequence


class BadInput(Exception):
    """Input the report cannot use; the message is one line naming the path and what is wrong."""


# --- reading a run directory -------------------------------------------------------------------------


@dataclass
class Run:
    """One training run as read from its directory (see the run-directory contract in docs/report.md)."""

    path: Path
    config: dict[str, Any]
    evals: list[dict[str, Any]]
    retention: np.ndarray  # (finished blocks, games): mean return on each game after each finished block
    blocks: list[dict[str, Any]]  # every planned block: block, cycle, game, start_step, end_step
    has_metrics_file: bool
    refills: int = 0  # resumes mid-block without the saved replay buffers: that block refilled its buffer
    plasticity: list[dict[str, Any]] = field(default_factory=list)  # plasticity.jsonl (none: measures were off)

    @property
    def games(self) -> list[str]:
        return list(self.config["games"])

    @property
    def normalization(self) -> Normalization:
        """The normalized score of the run's game family."""
        return normalization_of(self.games)

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    @property
    def sequence(self) -> tuple[str, ...]:
        """The game of every planned block, in training order."""
        return tuple(b["game"] for b in self.blocks)

    @property
    def blocks_finished(self) -> int:
        return self.retention.shape[0]

    @property
    def partial(self) -> bool:
        return self.blocks_finished < len(self.blocks) or not self.has_metrics_file

    @property
    def trained_at(self) -> list[int]:
        """Column of the game trained in each finished block."""
        return [self.games.index(b["game"]) for b in self.blocks[: self.blocks_finished]]

    def status(self) -> str:
        status = "complete" if not self.partial else f"partial: {self.blocks_finished}/{len(self.blocks)} blocks finished"
        if self.refills:
            status += f"; resumed mid-block {self.refills}x, replay buffer refilled"
        return status


def read_retention(path: Path, games: list[str]) -> np.ndarray:
    """The rows of retention.csv as a (finished blocks, games) array in the column order of ``games``."""
    if not path.is_file():
        return np.zeros((0, len(games)))
    header, rows = rundir.read_retention(path)
    if sorted(header) != sorted(games):
        raise BadInput(f"{path}: columns {','.join(header)} do not match the config's games {','.join(games)}")
    order = [header.index(g) for g in games]
    return np.array([[row[j] for j in order] for row in rows]).reshape(len(rows), len(games))


def planned_blocks(config: dict[str, Any], logged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every block of the run: as blocks.jsonl logged it, else as planned from the config's sequence and budget."""
    by_index = {int(b["block"]): b for b in logged}
    sequence = TaskSequence(tuple(config["games"]), int(config["steps_per_game"]), int(config.get("cycles", 1)))
    blocks: list[dict[str, Any]] = []
    for block in sequence.blocks:
        start = blocks[-1]["end_step"] if blocks else 0
        planned = {"block": block.index, "cycle": block.cycle, "game": block.game, "task_index": block.task_id,
                   "start_step": start, "end_step": start + block.steps}
        blocks.append({**planned, **by_index.get(block.index, {})})
    return blocks


def load_run(path: str | Path) -> Run:
    """Read a run directory; raises :class:`BadInput` when it is not a run or has no evaluation yet."""
    path = Path(path)
    config_path = path / rundir.CONFIG
    if not config_path.is_file():
        raise BadInput(f"{path} is not a run directory (no config.yaml)")
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as err:
        raise BadInput(f"{config_path} is not valid YAML ({err.__class__.__name__})") from err
    if not isinstance(config, dict):
        raise BadInput(f"{config_path} does not hold a configuration mapping")
    for key in ("games", "method", "steps_per_game"):
        if key not in config:
            raise BadInput(f"{config_path} lacks the key {key!r}")
    if not isinstance(config["games"], list) or not config["games"]:
        raise BadInput(f"{config_path}: 'games' must be a non-empty list")
    try:
        normalization_of(config["games"])
    except ValueError as err:
        raise BadInput(f"{config_path}: {err}") from err
    evals = rundir.read_jsonl(path / rundir.EVALS)
    if not evals:
        raise BadInput(f"{path} has no evaluations yet (evals.jsonl is missing or empty)")
    finished = _finished_metrics(path / rundir.METRICS)
    retention = read_retention(path / rundir.RETENTION, list(config["games"]))
    if finished is not None:  # full precision (retention.csv holds 6 significant digits)
        retention = np.array(finished["retention_matrix"], dtype=float).reshape(-1, len(config["games"]))
    return Run(
        path=path,
        config=config,
        evals=sorted(evals, key=lambda r: r["step"]),
        retention=retention,
        blocks=planned_blocks(config, rundir.read_jsonl(path / rundir.BLOCKS)),
        has_metrics_file=finished is not None,
        refills=sum(bool(resume["replay_refilled"]) for resume in rundir.read_jsonl(path / rundir.RESUMES)),
        plasticity=sorted(rundir.read_jsonl(path / rundir.PLASTICITY), key=lambda r: r["step"]),
    )


def _finished_metrics(path: Path) -> dict[str, Any] | None:
    """metrics.json of a finished run; None while it is missing (run going or stopped early) or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and "retention_matrix" in data else None


def load_inputs(run_dirs: list[str], reference_dirs: list[str]) -> tuple[list[Run], list[Run], list[str]]:
    """Every run and reference run, plus one error line per bad input."""
    errors: list[str] = []
    runs, references = [], []
    seen: set[Path] = set()
    for target, dirs in ((runs, run_dirs), (references, reference_dirs)):
        for d in dirs:
            resolved = Path(d).resolve()
            if resolved in seen:
                errors.append(f"{d} is given twice")
                continue
            seen.add(resolved)
            try:
                target.append(load_run(d))
            except BadInput as err:
                errors.append(str(err))
    if runs:
        sequence = runs[0].sequence
        for run in runs[1:]:
            if run.sequence != sequence:
                errors.append(f"{run.path} trains {','.join(run.sequence)}, not the sequence of {runs[0].path} "
                              f"({','.join(sequence)}): report runs of one game sequence together")
    for ref in references:
        if len(set(ref.games)) != 1:
            errors.append(f"reference run {ref.path} trains {len(set(ref.games))} games; a reference trains one")
        elif runs and ref.games[0] not in runs[0].games:
            errors.append(f"reference run {ref.path} trains {ref.games[0]}, which is not in the sequence")
    return runs, references, errors
