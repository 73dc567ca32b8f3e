"""Reading run directories into records: a :class:`Run` per directory (its configuration, evaluations, retention
matrix, planned blocks, resumes that refilled a replay buffer), checked so that bad input is one line naming the path.
See docs/report.md for the run-directory contract.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from crl.analysis.normalization import Normalization, normalization_of
from crl.run import rundir
from crl.run.sequence import JOINT, TaskSequence


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
    def joint(self) -> bool:
        """A multi-task run: one joint block trains every game at once (``multitask: true``)."""
        return bool(self.config.get("multitask"))

    @property
    def sequence(self) -> tuple[str, ...]:
        """The game of every planned block, in training order (a joint block's: its games joined with ``+``)."""
        return tuple(b["game"] for b in self.blocks)

    @property
    def blocks_finished(self) -> int:
        return self.retention.shape[0]

    @property
    def partial(self) -> bool:
        return self.blocks_finished < len(self.blocks) or not self.has_metrics_file

    @property
    def trained_at(self) -> list[int | list[int]]:
        """Column of the game trained in each finished block (a joint block's: the list of every column)."""
        columns = [[self.games.index(g) for g in b["game"].split(JOINT)] for b in self.blocks[: self.blocks_finished]]
        return [c if self.joint else c[0] for c in columns]

    def status(self) -> str:
        status = "complete" if not self.partial else f"partial: {self.blocks_finished}/{len(self.blocks)} blocks finished"
        if self.refills:
            status += f"; resumed mid-block {self.refills}x, replay buffer refilled"
        return status


def read_text(path: Path) -> str:
    """A record file's text; one that is not UTF-8 (binary garbage) is bad input naming it."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadInput(f"{path} is not text (byte {err.start} is not UTF-8): not a record crl wrote") from err


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# what every record of a JSON-lines file must hold: key -> (check, what it must be); None values allowed where
# a run writes them (a score without a reference is null)
EVAL_FIELDS = {"step": (_is_int, "an integer"), "block": (_is_int, "an integer"), "game": (lambda v: isinstance(v, str), "a game name"),
               "mean_return": (lambda v: v is None or _is_number(v), "a number")}
BLOCK_FIELDS = {"block": (lambda v: _is_int(v) and v >= 0, "a block index"), "game": (lambda v: isinstance(v, str), "a game name"),
                "start_step": (_is_int, "an integer"), "end_step": (_is_int, "an integer")}


def read_records(path: Path, fields: dict[str, tuple[Any, str]]) -> list[dict[str, Any]]:
    """Every complete record of a JSON-lines file, each checked to hold ``fields``: a record that does not is bad
    input naming the file, the line and what is wrong. A torn last line (a crash mid-write) is skipped."""
    if not path.is_file():
        return []
    lines = read_text(path).splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):  # torn by a crash: the run rewrites it
                continue
            raise BadInput(f"{path}, line {number}: not JSON ({err.msg})") from err
        if not isinstance(record, dict):
            raise BadInput(f"{path}, line {number}: a record must be a JSON object, got {line.strip()[:40]}")
        for key, (ok, what) in fields.items():
            if key not in record:
                raise BadInput(f"{path}, line {number}: no {key!r}")
            if not ok(record[key]):
                raise BadInput(f"{path}, line {number}: {key!r} must be {what}, got {record[key]!r}")
        records.append(record)
    return records


def read_retention(path: Path, games: list[str]) -> np.ndarray:
    """The rows of retention.csv as a (finished blocks, games) array in the column order of ``games``; a row that is
    short, long or not numbers is bad input naming the line."""
    if not path.is_file():
        return np.zeros((0, len(games)))
    rows = list(csv.reader(read_text(path).splitlines()))
    if not rows:
        return np.zeros((0, len(games)))
    header = rows[0][1:]
    for number, row in enumerate(rows[1:], 2):
        if len(row) != len(rows[0]):
            raise BadInput(f"{path}, line {number}: {len(row)} cells, the header has {len(rows[0])}")
        try:
            [float(v) for v in row[1:]]
        except ValueError as err:
            raise BadInput(f"{path}, line {number}: {err}") from err
    rows = [[float(v) for v in row[1:]] for row in rows[1:]]
    if sorted(header) != sorted(games):
        raise BadInput(f"{path}: columns {','.join(header)} do not match the config's games {','.join(games)}")
    order = [header.index(g) for g in games]
    return np.array([[row[j] for j in order] for row in rows]).reshape(len(rows), len(games))


def planned_blocks(config: dict[str, Any], logged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every block of the run: as blocks.jsonl logged it, else as planned from the config's sequence and budget."""
    by_index = {int(b["block"]): b for b in logged}
    sequence = TaskSequence(tuple(config["games"]), int(config["steps_per_game"]), int(config.get("cycles", 1)),
                            joint=bool(config["multitask"]))
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
        config = yaml.safe_load(read_text(config_path))
    except yaml.YAMLError as err:
        raise BadInput(f"{config_path} is not valid YAML ({err.__class__.__name__})") from err
    if not isinstance(config, dict):
        raise BadInput(f"{config_path} does not hold a configuration mapping")
    for key in ("games", "method", "steps_per_game"):
        if key not in config:
            raise BadInput(f"{config_path} lacks the key {key!r}")
    if not isinstance(config["games"], list) or not config["games"]:
        raise BadInput(f"{config_path}: 'games' must be a non-empty list")
    config.setdefault("multitask", False)  # a run written before the key trained its games in turn
    if not isinstance(config["multitask"], bool):
        raise BadInput(f"{config_path}: 'multitask' must be true or false, got {config['multitask']!r}")
    try:
        normalization_of(config["games"])
    except ValueError as err:
        raise BadInput(f"{config_path}: {err}") from err
    evals = read_records(path / rundir.EVALS, EVAL_FIELDS)
    if not evals:
        raise BadInput(f"{path} has no evaluations yet (evals.jsonl is missing or empty)")
    finished = _finished_metrics(path / rundir.METRICS)
    retention = read_retention(path / rundir.RETENTION, list(config["games"]))
    if finished is not None:  # full precision (retention.csv holds 6 significant digits)
        retention = _retention_matrix(path / rundir.METRICS, finished["retention_matrix"], len(config["games"]))
    blocks = read_records(path / rundir.BLOCKS, BLOCK_FIELDS)
    # the one block of a multi-task run trains every game at once: its game is theirs joined
    allowed = [JOINT.join(config["games"])] if config["multitask"] else config["games"]
    for number, block in enumerate(blocks, 1):
        if block["game"] not in allowed:
            raise BadInput(f"{path / rundir.BLOCKS}, line {number}: game {block['game']!r} is not "
                           f"{'the joint block of' if config['multitask'] else 'one of'} the config's games "
                           f"{','.join(config['games'])}")
    return Run(
        path=path,
        config=config,
        evals=sorted(evals, key=lambda r: r["step"]),
        retention=retention,
        blocks=planned_blocks(config, blocks),
        has_metrics_file=finished is not None,
        refills=sum(resume["replay_refilled"] for resume in read_records(
            path / rundir.RESUMES, {"replay_refilled": (lambda v: isinstance(v, bool), "true or false")})),
        plasticity=sorted(read_records(path / rundir.PLASTICITY, {"step": (_is_int, "an integer")}),
                          key=lambda r: r["step"]),
    )


def _retention_matrix(path: Path, matrix: Any, n_games: int) -> np.ndarray:
    """metrics.json's retention matrix as a (blocks, games) array; another shape or non-numbers are bad input."""
    try:
        array = np.array(matrix, dtype=float)
    except (TypeError, ValueError) as err:
        raise BadInput(f"{path}: retention_matrix is not a matrix of numbers ({err})") from err
    if array.ndim != 2 or array.shape[1] != n_games:
        raise BadInput(f"{path}: retention_matrix has shape {list(array.shape)}, expected [blocks, {n_games}] "
                       "(one column per game)")
    return array


def _finished_metrics(path: Path) -> dict[str, Any] | None:
    """metrics.json of a finished run; None while it is missing (run going or stopped early) or unreadable."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return data if isinstance(data, dict) and "retention_matrix" in data else None


def layout_run(runs: list[Run]) -> Run:
    """The run whose blocks a report lays its figures and sequence out by: the first that trains its games in turn
    (a multi-task run's one joint block shows no sequence), else the first."""
    return next((run for run in runs if not run.joint), runs[0])


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
        first = layout_run(runs)
        for run in runs:
            if run.joint and run.games != first.games:
                errors.append(f"{run.path} trains {','.join(run.games)} jointly, not the games of {first.path} "
                              f"({','.join(first.games)}): report runs of one game sequence together")
            elif not run.joint and run.sequence != first.sequence:
                errors.append(f"{run.path} trains {','.join(run.sequence)}, not the sequence of {first.path} "
                              f"({','.join(first.sequence)}): report runs of one game sequence together")
    for ref in references:
        if len(set(ref.games)) != 1:
            errors.append(f"reference run {ref.path} trains {len(set(ref.games))} games; a reference trains one")
        elif runs and ref.games[0] not in runs[0].games:
            errors.append(f"reference run {ref.path} trains {ref.games[0]}, which is not in the sequence")
    return runs, references, errors
