"""``crl report``: turn run directories into what a paper shows: figures, metric tables, seed statistics.

Runs are grouped by their resolved configuration minus the seed (and run_dir, device): a group is one configuration
over several seeds, and several groups are several methods (or parameter settings) side by side on the same game
sequence. Every metric comes from :mod:`crl.analysis.metrics` applied to each run's retention matrix; :mod:`crl.analysis.stats`
aggregates each over the seeds of a group. Runs still going or stopped early are reported as far as they got and
marked partial. Normalized scores are the game family's (:mod:`crl.analysis.normalization`: HNS for Atari, DQN-normalized
for MinAtar); metric keys, figure names and labels are derived from it. See docs/report.md for the outputs and the
definitions.

The CLI imports this module to build its parser for every command, so matplotlib and scipy (seconds to import)
come in through crl.analysis.plots and crl.analysis.stats only inside the functions that draw or aggregate.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from crl.analysis import metrics

from crl.run import rundir
from crl.run.config import flatten
from crl.methods import METHODS, section_name
from crl.analysis.normalization import Normalization, normalization_of
from crl.run.sequence import TaskSequence

IGNORED_CONFIG_KEYS = ("seed", "run_dir", "device")


def summary_metrics(norm: Normalization) -> tuple[tuple[str, str], ...]:
    """(key in a run's metrics, table label): the keys of metrics.summarize plus the forward transfer added here,
    the normalized ones named after ``norm`` (``average_final_hns`` / ``average_final_dqn_normalized``, ...)."""
    return (
        ("average_final_return", "Final average return"),
        (f"average_final_{norm.key}", f"Final average {norm.short}"),
        ("average_forgetting", "Average forgetting (return)"),
        ("backward_transfer", "Backward transfer (return)"),
        ("average_forward_transfer", f"Forward transfer (clipped-{norm.short} AUC)"),
        (f"total_clipped_{norm.key}", f"Total clipped {norm.short}"),
    )


def per_game_fields(norm: Normalization) -> dict[str, str]:
    """Per-game metrics of the report's table (key in a run's metrics -> column name)."""
    return {"after_last_block_return": "return after its last block", "final_return": "final return", f"final_{norm.key}": f"final {norm.short}", "forgetting": "forgetting"}


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
        refills=sum(map(replay_refilled, rundir.read_jsonl(path / rundir.RESUMES))),
    )


def replay_refilled(resume: dict[str, Any]) -> bool:
    """Whether a logged resume continued a block without its replay buffers (logs before the field: by its note)."""
    if "replay_refilled" in resume:
        return bool(resume["replay_refilled"])
    return "refills its buffer" in str(resume.get("note", ""))


def _finished_metrics(path: Path) -> dict[str, Any] | None:
    """metrics.json of a finished run; None while it is missing (run going or stopped early) or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and "retention_matrix" in data else None


# --- per-run metrics ---------------------------------------------------------------------------------


def block_curve(run: Run, block: int, game: str, span: float) -> tuple[np.ndarray, np.ndarray]:
    """Clipped normalized score (the family's, in [0, 1]) of ``game`` evaluated during ``block``, against steps since
    the block started, up to ``span``."""
    start, key = run.blocks[block]["start_step"], run.normalization.key
    points = [(r["step"] - start, min(max(r[key], 0.0), 1.0)) for r in run.evals
              if r.get("block") == block and r["game"] == game and r.get(key) is not None
              and r["step"] - start <= span]
    steps, values = zip(*points) if points else ((), ())
    return np.array(steps, dtype=float), np.array(values, dtype=float)


def references_by_game(references: list[Run]) -> dict[str, list[Run]]:
    """Single-game reference runs by the game they train."""
    by_game: dict[str, list[Run]] = {}
    for ref in references:
        by_game.setdefault(ref.games[0], []).append(ref)
    return by_game


def forward_transfers(run: Run, references: dict[str, list[Run]]) -> dict[str, float]:
    """Per game with a reference: Continual World's FT of the game's first block against the reference runs.

    The reference area is the mean over the reference runs (seeds) of their area over the same number of steps.
    NaN for a game whose first block has not finished or whose curves have no normalized score.
    """
    out = {}
    for game, refs in references.items():
        first = next((b for b, block in enumerate(run.blocks) if block["game"] == game), None)
        if first is None or first >= run.blocks_finished:
            out[game] = math.nan
            continue
        span = run.blocks[first]["end_step"] - run.blocks[first]["start_step"]
        auc = metrics.area_under_curve(*block_curve(run, first, game, span))
        ref_aucs = [metrics.area_under_curve(*block_curve(ref, 0, game, span)) for ref in refs]
        ref_aucs = [a for a in ref_aucs if np.isfinite(a)]
        out[game] = metrics.forward_transfer(auc, float(np.mean(ref_aucs))) if ref_aucs else math.nan
    return out


def run_metrics(run: Run, references: dict[str, list[Run]]) -> dict[str, Any]:
    """``metrics.summarize`` over the finished blocks, plus forward transfer when references are given."""
    if run.blocks_finished == 0:
        out: dict[str, Any] = {key: None for key, _ in summary_metrics(run.normalization)}
    else:
        out = metrics.summarize(run.retention, run.games, run.trained_at)
    if references:
        ft = forward_transfers(run, references)
        finite = [v for v in ft.values() if np.isfinite(v)]
        out["forward_transfer"] = {g: (v if np.isfinite(v) else None) for g, v in ft.items()}
        out["average_forward_transfer"] = float(np.mean(finite)) if finite else None
    else:
        out["average_forward_transfer"] = None
    return out


def cut_episodes(run: Run) -> dict[str, dict[str, list[int]]]:
    """Per game ``[cut, played]`` episodes: ``final`` in the evaluation behind the last retention row, ``all`` over
    every evaluation. A cut episode was ended by ``eval.max_steps`` before the game ended, so its return is a lower
    bound of the full episode's (evals.jsonl's ``cut_episodes``; runs written before it count none)."""
    out: dict[str, dict[str, list[int]]] = {"final": {}, "all": {}}
    last = run.blocks_finished - 1
    for r in run.evals:
        counts = (int(r.get("cut_episodes") or 0), int(r.get("episodes") or 0))
        scopes = ["all"] + (["final"] if r.get("final") and r.get("block") == last else [])
        for scope in scopes:
            total = out[scope].setdefault(r["game"], [0, 0])
            total[0] += counts[0]
            total[1] += counts[1]
    return out


# --- grouping ----------------------------------------------------------------------------------------


@dataclass
class Group:
    """Runs of one configuration (seeds), with a label that tells it apart from the other groups."""

    label: str
    config: dict[str, Any]
    runs: list[Run]

    @property
    def method(self) -> str:
        return str(self.config["method"])

    def method_params(self) -> dict[str, Any]:
        return dict(self.config.get(section_name(self.method)) or {})


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """What identifies a configuration across seeds: the resolved config minus seed, run_dir, device, and the
    parameter sections of methods the run does not use (the resolved config holds one per registered method)."""
    unused = {section_name(m) for m in METHODS} - {section_name(str(config["method"]))}
    return {k: v for k, v in config.items() if k not in IGNORED_CONFIG_KEYS and k not in unused}


def group_runs(runs: list[Run]) -> list[Group]:
    """Groups in order of first appearance, labelled by method plus the settings that set them apart.

    A setting shows in a label when another group of the same method has the same key with another value
    (``ewc.lambda_=400``), so the labels read like the ``--set`` options that tell a method's groups apart; the
    method's name tells it from the others.
    """
    grouped: dict[str, list[Run]] = {}
    for run in runs:
        grouped.setdefault(json.dumps(identity(run.config), sort_keys=True, default=str), []).append(run)
    flat = [flatten(identity(rs[0].config)) for rs in grouped.values()]
    groups: list[Group] = []
    for i, (config, rs) in enumerate(zip(flat, grouped.values())):
        same_method = [other for other in flat if other["method"] == config["method"]]
        differing = [k for k in config
                     if k != "method" and any(k in other and other[k] != config[k] for other in same_method)]
        label = str(config["method"]) + (f" ({', '.join(f'{k}={config[k]}' for k in differing)})" if differing else "")
        if any(g.label == label for g in groups):
            label += f" #{i + 1}"
        groups.append(Group(label, rs[0].config, rs))
    return groups


# --- summaries -----------------------------------------------------------------------------------------


def group_statistics(per_run: list[dict[str, Any]], norm: Normalization) -> dict[str, Any]:
    """Each summary metric over the runs of a group (a run without a value is left out of n)."""
    from crl.analysis.stats import seed_statistic

    return {key: seed_statistic([m.get(key) for m in per_run]) for key, _ in summary_metrics(norm)}


def build_summary(groups: list[Group], references: list[Run]) -> dict[str, Any]:
    """Everything summary.json holds: per group its runs' metrics and their seed statistics."""
    from crl.analysis.stats import CONFIDENCE

    refs = references_by_game(references)
    out_groups = []
    for group in groups:
        per_run = [{"run": str(r.path), "seed": r.seed, "status": r.status(), "partial": r.partial,
                    "blocks_finished": r.blocks_finished, "blocks_planned": len(r.blocks),
                    "metrics": run_metrics(r, refs), "cut_episodes": cut_episodes(r)} for r in group.runs]
        stats = group_statistics([p["metrics"] for p in per_run], group.runs[0].normalization)
        out_groups.append({
            "label": group.label,
            "method": group.method,
            "method_params": group.method_params(),
            "n_runs": len(group.runs),
            "partial": any(r.partial for r in group.runs),
            "statistics": {key: s.as_dict() for key, s in stats.items()},
            "runs": per_run,
        })
    first = groups[0].runs[0]
    return {
        "games": first.games,
        "sequence": list(first.sequence),
        "confidence": CONFIDENCE,
        "reference_runs": [str(r.path) for r in references],
        "groups": out_groups,
    }


def summary_csv(summary: dict[str, Any]) -> str:
    """summary.csv: one row per (group, metric) with the mean, its interval and the IQM."""
    buf = io.StringIO()
    fields = ["group", "metric", "n", "mean", "ci_low", "ci_high", "iqm", "iqm_ci_low", "iqm_ci_high", "note"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for group in summary["groups"]:
        for key, _ in summary_metrics(normalization_of(summary["games"])):
            s = group["statistics"][key]
            values = {f: ("" if s[f] is None else s[f]) for f in fields[2:]}
            writer.writerow({"group": group["label"], "metric": key, **values})
    return buf.getvalue()


# --- figures -----------------------------------------------------------------------------------------


def mean_retention(runs: list[Run]) -> np.ndarray:
    """Retention matrix averaged over runs, over the blocks every run finished."""
    rows = min(r.blocks_finished for r in runs)
    return np.mean([r.retention[:rows] for r in runs], axis=0).reshape(rows, len(runs[0].games))


def figures(groups: list[Group]) -> dict[str, Any]:
    """The report's figures by file name."""
    from crl.analysis import plots

    first = groups[0].runs[0]
    key = first.normalization.key
    records = {g.label: [r.evals for r in g.runs] for g in groups}
    retention = []
    for g in groups:
        seeds = f"{len(g.runs)} seed{'s' if len(g.runs) > 1 else ''}"
        retention.append((f"{g.label} — mean over {seeds}", mean_retention(g.runs)))
    trained_at = [first.games.index(game) for game in first.sequence]
    return {
        "curves.png": plots.method_curves(records, first.games, first.blocks),
        "retention.png": plots.retention_grid(retention, first.games, trained_at),
        f"total_{key}.png": plots.total_clipped_curves(records, first.games, first.blocks),
    }


# --- report.md ---------------------------------------------------------------------------------------


def markdown(groups: list[Group], summary: dict[str, Any]) -> str:
    """The human-readable report: configuration, runs, metric tables, figures."""
    from crl.analysis.stats import SeedStatistic, format_statistic

    first = groups[0].runs[0]
    cfg = first.config
    norm = first.normalization
    lines = [
        "# Continual RL report",
        "",
        f"Generated {datetime.now().isoformat(timespec='seconds')} by `crl report`.",
        "",
        "## Configuration",
        "",
        f"- Game sequence: {' → '.join(cfg['games'])}, {cfg.get('cycles', 1)} cycle(s) "
        f"({len(first.blocks)} task blocks of {cfg['steps_per_game']} environment steps)",
    ]
    for group in groups:
        params = ", ".join(f"{k}={v}" for k, v in group.method_params().items()) or "no parameters"
        lines.append(f"- **{group.label}**: method `{group.method}` ({params}); {len(group.runs)} run(s)")
    if summary["reference_runs"]:
        lines.append(f"- Single-game reference runs (forward transfer): {', '.join(summary['reference_runs'])}")
    lines += ["", "## Runs", "", "| group | run | seed | status |", "|---|---|---|---|"]
    for group in groups:
        for run in group.runs:
            lines.append(f"| {group.label} | `{run.path}` | {run.seed} | {run.status()} |")
    if any(r.partial for g in groups for r in g.runs):
        lines += ["", "Partial runs are reported over the blocks they finished; their metrics are not final."]

    with_ft = bool(summary["reference_runs"])
    shown = [(key, label) for key, label in summary_metrics(norm) if key != "average_forward_transfer" or with_ft]
    lines += ["", "## Metrics", "",
              "Mean over seeds [95% percentile-bootstrap interval]; the interquartile mean (IQM) with 5 or more seeds.",
              "", "| group | " + " | ".join(label for _, label in shown) + " | runs |",
              "|---|" + "---|" * (len(shown) + 1)]
    for g in summary["groups"]:
        cells = [format_statistic(SeedStatistic(**g["statistics"][key])) for key, _ in shown]
        label = g["label"] + (" (partial)" if g["partial"] else "")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {g['n_runs']} |")
    # the games the normalized averages really cover: those with a final score (the others have no reference scores)
    rated = [g for g in first.games if any((r["metrics"].get(f"final_{norm.key}") or {}).get(g) is not None
                                           for grp in summary["groups"] for r in grp["runs"])]
    unrated = [g for g in first.games if g not in rated]
    lines += ["", f"Final average {norm.short} and total clipped {norm.short} are over the games with "
              f"{norm.references}: " + (", ".join(rated) or "none")
              + (f" (not {', '.join(unrated)}: no reference scores)" if unrated else "") + "."]
    cut_groups = [g["label"] for g in summary["groups"] if any(_cut(g, game, "final")[0] for game in first.games)]
    if cut_groups:
        lines += ["", f"The final scores of {', '.join(cut_groups)} include episodes cut by `eval.max_steps` "
                      "(lower bounds of full-episode scores; see *Cut episodes* below)."]
    if not with_ft:
        lines += ["", "Forward transfer needs single-game reference runs: `crl report ... --reference RUN_DIR ...`."]

    per_game = per_game_fields(norm) | ({"forward_transfer": "forward transfer"} if with_ft else {})
    lines += ["", "### Per game (mean over seeds)", "", "One table per measure: a row per group, a column per game."]
    for field, name in per_game.items():
        lines += ["", f"**{name}**", "",
                  "| group | " + " | ".join(first.games) + " |", "|---|" + "---|" * len(first.games)]
        for g in summary["groups"]:
            cells = [_mean_cell([r["metrics"][field].get(game) for r in g["runs"] if r["metrics"].get(field)])
                     + (CUT_MARK if field.startswith("final_") and _cut(g, game, "final")[0] else "")
                     for game in first.games]
            lines.append(f"| {g['label']} | " + " | ".join(cells) + " |")
    lines += _cut_section(summary, first.games, cfg)

    lines += [
        "", "## Figures", "",
        f"Evaluation return and {norm.name} of every game over training; shaded: task blocks.", "",
        "![evaluation curves](curves.png)", "",
        "Retention matrix: row *i* = evaluation after task block *i*; boxed cells: the game trained in that block.", "",
        "![retention matrix](retention.png)", "",
        f"Total clipped {norm.short} (sum over games of min({norm.short}, 1)"
        + (f", {norm.total_source}" if norm.total_source else "") + ").", "",
        f"![total clipped {norm.short}](total_{norm.key}.png)", "",
        "## Definitions", "",
        f"- *{norm.name}*" + ("" if norm.name.startswith(norm.short) else f" ({norm.short})")
        + f": per game {norm.formula}, with the {norm.references} shipped in crl/data/ (sources in its README); "
        f"0 is random play, 1 is {norm.level}.",
        "- *Forgetting* (Chaudhry et al. 2018): per game, best return after any earlier block minus the final return.",
        "- *Backward transfer* (Lopez-Paz & Ranzato 2017): final return minus the return right after the game's last "
        "training block, averaged over games; negative means forgetting.",
        "- *Forward transfer* (Wolczyk et al. 2021, Continual World): (AUC − AUC_ref) / (1 − AUC_ref), "
        f"with AUC the time-average of the game's clipped {norm.short} (in [0, 1]) during its first block and AUC_ref "
        "that of single-game reference runs over the same number of steps.",
        f"- *Total clipped {norm.short}*: sum over games of min({norm.short}, 1) at the end of training.",
        "",
    ]
    return "\n".join(lines)


CUT_MARK = " †"


def _cut(group: dict[str, Any], game: str, scope: str) -> tuple[int, int]:
    """``(cut, played)`` episodes of ``game`` in ``scope`` ("final" or "all"), summed over the group's runs."""
    counts = [r["cut_episodes"][scope].get(game, [0, 0]) for r in group["runs"]]
    return sum(c for c, _ in counts), sum(n for _, n in counts)


def _cut_section(summary: dict[str, Any], games: list[str], cfg: dict[str, Any]) -> list[str]:
    """The report's note on episodes cut by ``eval.max_steps``; nothing when no episode was cut."""
    rows = [(g["label"], game, _cut(g, game, "final"), _cut(g, game, "all"))
            for g in summary["groups"] for game in games]
    rows = [row for row in rows if row[3][0]]
    if not rows:
        return []
    max_steps = (cfg.get("eval") or {}).get("max_steps")
    limit = "`eval.max_steps`" + (f" ({max_steps} agent steps)" if max_steps else "")
    lines = ["", "### Cut episodes", "",
             f"These scores come partly from evaluation episodes that {limit} "
             "ended before the game did: such a return is a lower bound of the full episode's, so the score, and "
             f"any forgetting or transfer computed from it, is not a full-episode figure. `{CUT_MARK.strip()}` in the "
             "per-game table: the final evaluation had cut episodes. Raise `--eval-max-steps` for full episodes.", "",
             "| group | game | cut in the final evaluation | cut in all evaluations |", "|---|---|---|---|"]
    for label, game, (final_cut, final_n), (all_cut, all_n) in rows:
        lines.append(f"| {label} | {game} | {final_cut} of {final_n} | {all_cut} of {all_n} |")
    return lines


def _mean_cell(values: list[float | None]) -> str:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return f"{np.mean(finite):.2f}" if finite else "n/a"


# --- output ------------------------------------------------------------------------------------------


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def default_out_dir(run_dirs: list[Path]) -> Path:
    """One run: RUN_DIR/report. Several: report-<timestamp> next to them (their common parent), else here."""
    if len(run_dirs) == 1:
        return run_dirs[0] / "report"
    parent = Path(os.path.commonpath([p.resolve() for p in run_dirs]))
    if parent == Path(parent.anchor):
        parent = Path.cwd()
    return parent / f"report-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``crl report``."""
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by `crl train`")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default: RUN_DIR/report for one run; for several, "
                             "report-<timestamp> in their common parent directory)")
    parser.add_argument("--reference", nargs="+", default=[], metavar="RUN_DIR",
                        help="single-game runs to measure forward transfer against (Continual World's AUC)")


def main(args: argparse.Namespace) -> int:
    """Write the report; on bad input print one line per problem on stderr, write nothing, return 2."""
    runs, references, errors = load_inputs(args.run_dirs, args.reference)
    out = args.out if args.out is not None else default_out_dir([Path(d) for d in args.run_dirs])
    if out.exists() and not out.is_dir():
        errors.append(f"--out {out} exists and is not a directory")
    if errors:
        for line in errors:
            print(f"crl report: error: {line}", file=sys.stderr)
        return 2

    groups = group_runs(runs)
    for group in groups:
        print(f"group {group.label!r}: " + ", ".join(f"{r.path} (seed {r.seed}, {r.status()})" for r in group.runs))
    summary = build_summary(groups, references)
    out.mkdir(parents=True, exist_ok=True)
    for name, fig in figures(groups).items():
        rundir.atomic_write(out / name, png_bytes(fig))
    rundir.atomic_write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    rundir.atomic_write(out / "summary.csv", summary_csv(summary))
    rundir.atomic_write(out / "report.md", markdown(groups, summary))
    print(f"report written to {out}")
    return 0
