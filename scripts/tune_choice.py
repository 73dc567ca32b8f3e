"""The tuning stage's choice rule on a sweep's records: per method, each swept value's score and the value chosen.

The rule (benchmarks/minatar-tune.yaml, stated before its runs): per method, the value with the highest final average
DQN-normalized score (``average_final_dqn_normalized`` of each run's metrics.json) averaged over the validation
seeds, except that the smallest value within 0.02 of the best wins. "Smallest" is the parameter's value in numeric
order (grid order for a non-numeric grid), not its position in the spec; the means are compared unrounded. A value
chosen at an edge of its grid (its lowest or highest value) is reported as such; the first table shows the trend
across the grid.

The seeds and grids come from DIR/spec.yaml (``axes.seed``, ``method_axes``), the runs from DIR/sweep.json (matched
by their overrides, not their names) and a run is finished when DIR/runs/<name>/metrics.json exists. A method that
lacks a finished run for some value and seed is reported incomplete and gets no choice: the rule averages over every
seed. A method with no swept parameter, or several, gets a row per combination and no choice either.

    python scripts/tune_choice.py benchmarks/results/minatar/tune

Exit status 2, with one line, when DIR is not a sweep's records (no or unreadable spec.yaml or sweep.json, no runs).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crl.report.records import BadInput
from crl.run import config as config_mod
from crl.sweep import spec as spec_mod
from crl.sweep import state as state_mod

TOLERANCE = 0.02  # the smallest value whose mean is within this of the best wins
SCORE = "average_final_dqn_normalized"


@dataclass
class Row:
    """One (method, combination of swept values): its score on each seed (None: no finished run)."""

    method: str
    params: list[str]
    values: tuple[Any, ...]
    scores: list[float | None]

    @property
    def mean(self) -> float | None:
        """The mean over every seed; None unless every seed has a finished run."""
        finished = [s for s in self.scores if s is not None]
        return sum(finished) / len(finished) if len(finished) == len(self.scores) else None


@dataclass
class Choice:
    """A method's outcome under the rule: the chosen row, or why there is none."""

    chosen: Row | None
    best: Row | None
    edge: str  # "lowest", "highest", "only value" or "no" (empty without a choice)
    reason: str  # without a choice: why not


def _key(value: Any) -> str:
    """A value as compared between the spec and sweep.json (1 and 1.0 differ, as they do in run names)."""
    return json.dumps(value, sort_keys=True, default=str)


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value: Any) -> str:
    """A value in a table cell."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_show(v) for v in value) + "]"
    else:
        text = str(value)
    return text.replace("|", "\\|")


def read_spec(records: Path) -> tuple[list[str], list[Any], dict[str, dict[str, list[Any]]]]:
    """(methods, seeds, method -> its swept parameters and their values in spec order) from ``records/spec.yaml``."""
    path = records / "spec.yaml"
    try:
        spec = spec_mod.load(path)
    except spec_mod.SpecError as e:
        raise BadInput(str(e)) from None
    axes = spec.get("axes")
    if not isinstance(axes, dict):
        raise BadInput(f"{path} has no axes")
    axes = config_mod.flatten(axes)
    methods, seeds = axes.get("method"), axes.get("seed")
    if not isinstance(methods, list) or not methods:
        raise BadInput(f"{path} has no axes.method list: the rule chooses per method")
    if not isinstance(seeds, list) or not seeds:
        raise BadInput(f"{path} has no axes.seed list: the rule averages over the seeds")
    shared = {k: v for k, v in axes.items() if k not in ("method", "seed")}
    method_axes = spec.get("method_axes") or {}
    if not isinstance(method_axes, dict):
        raise BadInput(f"{path}: method_axes must map a method to its axes")
    grids: dict[str, dict[str, list[Any]]] = {}
    for method in methods:
        own = method_axes.get(method) or {}
        if not isinstance(own, dict):
            raise BadInput(f"{path}: method_axes.{method} must map parameters to lists of values")
        grid = {**shared, **config_mod.flatten(own)}
        for param, values in grid.items():
            if not isinstance(values, list) or not values:
                raise BadInput(f"{path}: {param} of {method} must be a non-empty list of values")
        grids[str(method)] = grid
    return [str(m) for m in methods], seeds, grids


def read_rows(records: Path) -> tuple[list[Any], list[Row]]:
    """(the spec's seeds, a row per method and combination of its swept values in spec order, with its scores)."""
    methods, seeds, grids = read_spec(records)
    try:
        state = state_mod.load(records)
    except ValueError as e:
        reason = " ".join(str(e).split())
        raise BadInput(f"{records / state_mod.STATE} is unreadable ({reason})") from None
    if state is None:
        raise BadInput(f"{records / state_mod.STATE} does not exist: not a sweep's records")
    runs = {name: entry for name, entry in state["runs"].items() if entry.get("kind") == "run"}
    if not runs:
        raise BadInput(f"{records / state_mod.STATE} lists no runs")

    seed_index = {_key(s): i for i, s in enumerate(seeds)}
    rows: list[Row] = []
    by_key: dict[tuple[str, tuple[str, ...]], Row] = {}
    for method in methods:
        params = list(grids[method])
        for values in itertools.product(*grids[method].values()):
            row = Row(method, params, values, [None] * len(seeds))
            rows.append(row)
            by_key[(method, tuple(_key(v) for v in values))] = row

    found: dict[tuple[str, tuple[str, ...], int], str] = {}
    for name in sorted(runs):
        overrides = runs[name].get("overrides")
        if not isinstance(overrides, dict):
            raise BadInput(f"{records / state_mod.STATE}: run {name} has no overrides")
        method = str(overrides.get("method"))
        if method not in grids or _key(overrides.get("seed")) not in seed_index:
            continue  # not a run of this spec's grid
        combo = tuple(_key(overrides.get(p)) for p in grids[method])
        row = by_key.get((method, combo))
        if row is None:
            continue
        seed = seed_index[_key(overrides.get("seed"))]
        if (method, combo, seed) in found:
            raise BadInput(f"{records / state_mod.STATE}: runs {found[(method, combo, seed)]} and {name} have the "
                           "same settings")
        found[(method, combo, seed)] = name
        if state_mod.finished(records, name):
            row.scores[seed] = read_score(state_mod.run_dir(records, name) / "metrics.json")
    return seeds, rows


def read_score(path: Path) -> float:
    """The run's final average DQN-normalized score from its metrics.json."""
    try:
        score = json.loads(path.read_bytes().decode("utf-8"))[SCORE]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInput(f"{path} has no readable {SCORE} ({type(e).__name__})") from None
    if not _numeric(score) or not math.isfinite(score):
        raise BadInput(f"{path}: {SCORE} is {score!r}, not a finite number")
    return float(score)


def choose(rows: list[Row]) -> Choice:
    """The rule on one method's rows: the smallest value whose mean is within TOLERANCE of the best mean."""
    params = rows[0].params
    if len(params) != 1:
        swept = f"{len(params)} swept parameters ({', '.join(params)})" if params else "no swept parameter"
        return Choice(None, None, "", f"no rule: {swept}")
    finished = sum(s is not None for r in rows for s in r.scores)
    planned = sum(len(r.scores) for r in rows)
    if finished < planned:
        return Choice(None, None, "", f"incomplete: {finished} of {planned} runs")
    grid = [r.values[0] for r in rows]
    numeric = all(_numeric(v) for v in grid)
    order = sorted(range(len(rows)), key=lambda i: grid[i]) if numeric else list(range(len(rows)))
    means = [r.mean for r in rows if r.mean is not None]  # every row's: the method is complete
    best_mean = max(means)
    best = rows[next(i for i in order if means[i] == best_mean)]
    chosen_at = next(i for i in order if means[i] >= best_mean - TOLERANCE)
    if len(rows) == 1:
        edge = "only value"
    elif chosen_at == order[0]:
        edge = "lowest"
    elif chosen_at == order[-1]:
        edge = "highest"
    else:
        edge = "no"
    return Choice(rows[chosen_at], best, edge, "")


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _values(row: Row) -> str:
    if len(row.params) == 1:
        return _show(row.values[0])
    return ", ".join(f"{p}={_show(v)}" for p, v in zip(row.params, row.values)) or "none"


def tables(records: Path) -> list[str]:
    """The two markdown tables: every (method, value) with its scores, then each method's choice."""
    seeds, rows = read_rows(records)
    methods = list(dict.fromkeys(r.method for r in rows))
    choices = {m: choose([r for r in rows if r.method == m]) for m in methods}
    header = ["method", "parameter", "value", "seeds finished", f"score per seed ({', '.join(map(_show, seeds))})",
              "mean", "chosen"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        choice = choices[row.method]
        marks = [word for word, hit in (("chosen", row is choice.chosen), ("best", row is choice.best)) if hit]
        cells = [row.method, ", ".join(row.params) or "none", _values(row),
                 f"{sum(s is not None for s in row.scores)} of {len(seeds)}", ", ".join(_num(s) for s in row.scores),
                 _num(row.mean), ", ".join(marks)]
        lines.append("| " + " | ".join(cells) + " |")
    header = ["method", "parameter", "chosen", "mean", "at an edge of the grid"]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        choice, first = choices[method], next(r for r in rows if r.method == method)
        if choice.chosen is None:
            cells = [method, ", ".join(first.params) or "none", choice.reason, "", ""]
        else:
            cells = [method, first.params[0], _values(choice.chosen), _num(choice.chosen.mean), choice.edge]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, help="a sweep's records directory: spec.yaml, sweep.json, runs/")
    args = parser.parse_args(argv)
    try:
        print("\n".join(tables(args.records)))
    except BadInput as e:
        print(f"tune_choice: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
