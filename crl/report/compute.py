"""What a report computes from records: each run's metrics (:mod:`crl.analysis.metrics` on its retention matrix,
forward transfer against reference runs), runs grouped by configuration minus the seed, each group's seed
statistics (:mod:`crl.analysis.stats`, imported where it aggregates: scipy takes seconds to import), and the final
normalized score aggregated over runs x games with rliable (:mod:`crl.analysis.aggregate`, imported likewise).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from crl.analysis import metrics
from crl.analysis.normalization import Normalization
from crl.methods import METHODS, method_sections, section_name
from crl.report.records import Run, layout_run
from crl.run.config import flatten

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
        cut = cut_episodes(run)["final"]
        out = metrics.summarize(run.retention, run.games, run.trained_at, [cut.get(g, [0, 0])[0] for g in run.games])
    if references:
        ft = forward_transfers(run, references)
        finite = [v for v in ft.values() if np.isfinite(v)]
        out["forward_transfer"] = {g: (v if np.isfinite(v) else None) for g, v in ft.items()}
        out["average_forward_transfer"] = float(np.mean(finite)) if finite else None
    else:
        out["average_forward_transfer"] = None
    return out


def plasticity_rows(run: Run, references: dict[str, list[Run]]) -> list[dict[str, Any]]:
    """The plasticity view (Abbas et al. 2023): per finished block, how quickly and how far the agent learned the
    block's game, next to a fresh network's learning of it over the same steps (the single-game references).

    ``auc``: mean clipped normalized score over the block (Continual World's area); ``final``: the clipped normalized
    score at the block's end. ``fresh_*``: the same of the references (mean over their seeds; None without any).
    ``visit``: 1 for the game's first block, 2 for its second, ... A multi-task run has no rows: its joint block
    learns every game at once over all the steps, no visit of one game to set against a fresh network's."""
    rows: list[dict[str, Any]] = []
    visits: dict[str, int] = {}
    for b in range(0 if run.joint else run.blocks_finished):
        game = run.blocks[b]["game"]
        visits[game] = visits.get(game, 0) + 1
        span = run.blocks[b]["end_step"] - run.blocks[b]["start_step"]
        auc, final = _learning(run, b, game, span)
        fresh = [_learning(ref, 0, game, span) for ref in references.get(game, []) if ref.blocks_finished]
        rows.append({"block": b, "game": game, "visit": visits[game], "auc": _finite(auc), "final": _finite(final),
                     "fresh_auc": _mean_finite([a for a, _ in fresh]),
                     "fresh_final": _mean_finite([f for _, f in fresh])})
    return rows


def _learning(run: Run, block: int, game: str, span: float) -> tuple[float, float]:
    """(area under the clipped normalized curve, its last value) of ``game`` over the first ``span`` steps of
    ``block``: both runs are read on the same steps since their blocks began."""
    steps, values = block_curve(run, block, game, span)
    return metrics.area_under_curve(steps, values), (float(values[-1]) if len(values) else math.nan)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _mean_finite(values: list[float]) -> float | None:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def plasticity_by_visit(rows_per_run: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per visit, over the games and then the seeds: the agent's learning (``auc``, ``final``), a fresh network's,
    and the gap (agent minus fresh: below 0, the continual agent learns its game worse than a fresh network)."""
    from crl.analysis.stats import seed_statistic

    out = []
    for visit in sorted({r["visit"] for rows in rows_per_run for r in rows}):
        per_seed: dict[str, list[float | None]] = {k: [] for k in ("auc", "fresh_auc", "auc_gap", "final", "final_gap")}
        for rows in rows_per_run:
            mine = [r for r in rows if r["visit"] == visit]
            for key in ("auc", "final"):
                own = [r[key] for r in mine if r[key] is not None]
                gap = [r[key] - r[f"fresh_{key}"] for r in mine if r[key] is not None and r[f"fresh_{key}"] is not None]
                per_seed[key].append(float(np.mean(own)) if own else None)
                per_seed[f"{key}_gap"].append(float(np.mean(gap)) if gap else None)
            fresh = [r["fresh_auc"] for r in mine if r["fresh_auc"] is not None]
            per_seed["fresh_auc"].append(float(np.mean(fresh)) if fresh else None)
        out.append({"visit": visit, **{k: seed_statistic(v).as_dict() for k, v in per_seed.items()}})
    return out


def later_visits_auc_gap(rows_per_run: list[list[dict[str, Any]]], game: str | None = None) -> dict[str, Any]:
    """The AUC gap averaged over every block after a game's first visit (of ``game`` only, when given), per run, then
    over runs: one number for "does the continual agent learn its games worse than a fresh network once it has seen
    them" (below 0: yes)."""
    from crl.analysis.stats import seed_statistic

    per_run = []
    for rows in rows_per_run:
        gaps = [r["auc"] - r["fresh_auc"] for r in rows
                if r["visit"] >= 2 and (game is None or r["game"] == game)
                and r["auc"] is not None and r["fresh_auc"] is not None]
        per_run.append(float(np.mean(gaps)) if gaps else None)
    return seed_statistic(per_run).as_dict()


def later_visits_auc_gap_by_game(rows_per_run: list[list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """``later_visits_auc_gap`` of each game alone: a loss on one game can hide in the average over games."""
    games = list(dict.fromkeys(r["game"] for rows in rows_per_run for r in rows))
    return {game: later_visits_auc_gap(rows_per_run, game) for game in games}


PLASTICITY_MEASURES = ("dormant_0", "dormant_0.025", "dormant_0.1", "effective_rank", "stable_rank", "feature_norm")
NETWORK_MEASURES = ("weight_rms", "weight_distance", "grad_norm")


def plasticity_at_block_ends(run: Run) -> list[dict[str, Any]]:
    """Per finished block, the plasticity record of its last evaluation: the network's measures, and under
    ``games`` the per-game ones of every game probed by then (empty when the run did not measure)."""
    out = []
    for b in range(run.blocks_finished):
        last = [r for r in run.plasticity if r["block"] == b]
        if not last:
            continue
        record = last[-1]
        out.append({"block": b, "step": record["step"], **{k: record["network"].get(k) for k in NETWORK_MEASURES},
                    "games": {game: {k: measures.get(k) for k in PLASTICITY_MEASURES}
                              for game, measures in record["games"].items()}})
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
        sections = method_sections(self.method)
        if len(sections) == 1:
            return dict(self.config.get(sections[0]) or {})
        return {f"{s}.{k}": v for s in sections for k, v in (self.config.get(s) or {}).items()}


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """What identifies a configuration across seeds: the resolved config minus seed, run_dir, device, and the
    parameter sections of methods the run does not use (the resolved config holds one per registered method)."""
    unused = {section_name(m) for m in METHODS} - set(method_sections(str(config["method"])))
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
                    "metrics": run_metrics(r, refs), "cut_episodes": cut_episodes(r),
                    "plasticity_blocks": plasticity_rows(r, refs),
                    "plasticity_measures": plasticity_at_block_ends(r)} for r in group.runs]
        stats = group_statistics([p["metrics"] for p in per_run], group.runs[0].normalization)
        out_groups.append({
            "label": group.label,
            "method": group.method,
            "multitask": group.runs[0].joint,
            "method_params": group.method_params(),
            "n_runs": len(group.runs),
            "partial": any(r.partial for r in group.runs),
            "statistics": {key: s.as_dict() for key, s in stats.items()},
            "plasticity_by_visit": plasticity_by_visit([p["plasticity_blocks"] for p in per_run]),
            "later_visits_auc_gap": later_visits_auc_gap([p["plasticity_blocks"] for p in per_run]),
            "later_visits_auc_gap_by_game": later_visits_auc_gap_by_game([p["plasticity_blocks"] for p in per_run]),
            "runs": per_run,
        })
    first = layout_run([g.runs[0] for g in groups])
    return {
        "games": first.games,
        "sequence": list(first.sequence),
        "confidence": CONFIDENCE,
        "reference_runs": [str(r.path) for r in references],
        "groups": out_groups,
        "aggregate": aggregate_summary(out_groups, first.games, first.normalization),
    }


def mean_retention(runs: list[Run]) -> np.ndarray:
    """Retention matrix averaged over runs, over the blocks every run finished."""
    rows = min(r.blocks_finished for r in runs)
    return np.mean([r.retention[:rows] for r in runs], axis=0).reshape(rows, len(runs[0].games))


# --- aggregate over runs x games (rliable) ---------------------------------------------------------------

MIN_RUNS_FOR_AGGREGATE = 2  # a bootstrap over runs needs two of them
BASELINE_METHOD = "finetune"  # the probability of improvement is each group's over fine-tuning


def final_score_matrices(groups: list[dict[str, Any]], games: list[str],
                         norm: Normalization) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per summary group with 2+ complete runs, its (runs x games) final normalized scores (each run's
    ``final_<key>`` metric), over the games that every such run has a score for (a game without reference scores,
    or whose final evaluation had cut episodes, has none); and those games. Partial runs are left out: their last
    scores are not final."""
    runs = {g["label"]: [r["metrics"] for r in g["runs"] if not r["partial"]] for g in groups}
    runs = {label: per_run for label, per_run in runs.items() if len(per_run) >= MIN_RUNS_FOR_AGGREGATE}
    key = f"final_{norm.key}"
    scored = [game for game in games
              if all((m.get(key) or {}).get(game) is not None for per_run in runs.values() for m in per_run)]
    matrices = {label: np.array([[m[key][game] for game in scored] for m in per_run], dtype=float)
                for label, per_run in runs.items()}
    return matrices, scored


def aggregate_summary(groups: list[dict[str, Any]], games: list[str], norm: Normalization) -> dict[str, Any]:
    """summary.json's ``aggregate``: the final normalized score over runs x games per group (Agarwal et al. 2021,
    with rliable): IQM, mean and optimality gap with 95% stratified-bootstrap intervals, the probability of
    improvement over the fine-tuning group, performance profiles. ``skipped`` / ``poi_skipped`` say why a part is
    missing (then it is empty)."""
    matrices, scored = final_score_matrices(groups, games, norm)
    out: dict[str, Any] = {
        "score": f"final_{norm.key}", "games": scored if matrices else [],
        "left_out": [g["label"] for g in groups if g["label"] not in matrices],
        "groups": {}, "baseline": None, "probability_of_improvement": {}, "taus": [], "performance_profiles": {},
        "skipped": "", "poi_skipped": "",
    }
    if not matrices:
        out["skipped"] = f"no group has {MIN_RUNS_FOR_AGGREGATE} or more complete runs to bootstrap over"
        return out
    if not scored:
        out["skipped"] = f"no game has a final {norm.short} in every complete run"
        return out
    from crl.analysis import aggregate

    out.update(reps=aggregate.REPS, poi_reps=aggregate.POI_REPS, seed=aggregate.SEED)
    for label, estimates in aggregate.aggregate_estimates(matrices).items():
        out["groups"][label] = {"runs": len(matrices[label]), "games": len(scored),
                                **{key: e.as_dict() for key, e in estimates.items()}}
    taus = aggregate.tau_grid(matrices)
    out["taus"] = taus.tolist()
    out["performance_profiles"] = {label: p.as_dict() for label, p in
                                   aggregate.performance_profiles(matrices, taus).items()}
    # the baseline fine-tunes in turn: the multi-task reference fine-tunes too, but is the upper bound, not the base
    baseline_of = {g["label"]: g["method"] == BASELINE_METHOD and not g.get("multitask") for g in groups}
    baseline = next((label for label in matrices if baseline_of[label]), None)
    if baseline is None:
        joint = any(g.get("multitask") for g in groups if g["label"] in matrices)
        out["poi_skipped"] = (f"no {BASELINE_METHOD} group with {MIN_RUNS_FOR_AGGREGATE} or more complete runs to "
                              "compare against" + (" (the multi-task reference is no baseline)" if joint else ""))
    elif len(matrices) == 1:
        out["poi_skipped"] = f"no group besides {baseline} to compare with it"
    else:
        out["baseline"] = baseline
        out["probability_of_improvement"] = {
            label: e.as_dict() for label, e in aggregate.probability_of_improvement(matrices, baseline).items()}
    return out

