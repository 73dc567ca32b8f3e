"""Rendering a report: summary.csv, the figures (matplotlib, imported only here and only when drawing) and
report.md, from the groups and the summary :mod:`crl.report.compute` made.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

import numpy as np

from crl.analysis.normalization import Normalization, normalization_of
from crl.report.compute import MIN_RUNS_FOR_AGGREGATE, Group, mean_retention, per_game_fields, summary_metrics
from crl.report.records import layout_run


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
    for row in _aggregate_csv_rows(summary["aggregate"]):
        writer.writerow(row)
    return buf.getvalue()


def _aggregate_csv_rows(aggregate: dict[str, Any]) -> list[dict[str, Any]]:
    """summary.csv's rows of the aggregate over runs x games (see :func:`aggregate_section`): the mean and the IQM in
    their columns; the optimality gap and the probability of improvement in the mean's."""
    score, rows = aggregate["score"], []
    for label, g in aggregate["groups"].items():
        over = f"over {g['runs']} runs x {g['games']} games, stratified bootstrap (rliable)"
        rows.append({"group": label, "metric": f"aggregate_{score}", "n": g["runs"], "mean": g["mean"]["value"],
                     "ci_low": g["mean"]["low"], "ci_high": g["mean"]["high"], "iqm": g["iqm"]["value"],
                     "iqm_ci_low": g["iqm"]["low"], "iqm_ci_high": g["iqm"]["high"], "note": over})
        gap = g["optimality_gap"]
        rows.append({"group": label, "metric": f"optimality_gap_{score}", "n": g["runs"], "mean": gap["value"],
                     "ci_low": gap["low"], "ci_high": gap["high"], "note": over})
    for label, e in aggregate["probability_of_improvement"].items():
        rows.append({"group": label, "metric": "probability_of_improvement", "n": aggregate["groups"][label]["runs"],
                     "mean": e["value"], "ci_low": e["low"], "ci_high": e["high"],
                     "note": f"P({label} > {aggregate['baseline']}) in the mean column"})
    return rows


# --- figures -----------------------------------------------------------------------------------------


def sequential(groups: list[Group]) -> list[Group]:
    """The groups that train their games in turn: all but the multi-task references, whose one joint block has a
    one-row retention matrix (their final evaluation, in the per-game tables) and no block to box."""
    return [g for g in groups if not g.runs[0].joint]


def figures(groups: list[Group], summary: dict[str, Any]) -> dict[str, Any]:
    """The report's figures by file name."""
    from crl.analysis import plots

    first = layout_run([g.runs[0] for g in groups])
    key = first.normalization.key
    records = {g.label: [r.evals for r in g.runs] for g in groups}
    out = {"curves.png": plots.method_curves(records, first.games, first.blocks)}
    retention = []
    for g in sequential(groups):
        seeds = f"{len(g.runs)} seed{'s' if len(g.runs) > 1 else ''}"
        retention.append((f"{g.label} — mean over {seeds}", mean_retention(g.runs)))
    if retention:
        trained_at = [first.games.index(game) for game in first.sequence]
        out["retention.png"] = plots.retention_grid(retention, first.games, trained_at)
    out[f"total_{key}.png"] = plots.total_clipped_curves(records, first.games, first.blocks)
    measured = {g.label: [r.plasticity for r in g.runs] for g in groups if any(r.plasticity for r in g.runs)}
    if measured:
        out["plasticity.png"] = plots.plasticity_curves(measured, first.blocks)
    aggregate = summary["aggregate"]
    if aggregate["groups"]:
        label = f"final {first.normalization.short}"
        out["aggregate_iqm.png"] = plots.aggregate_intervals(aggregate["groups"], label)
        out["performance_profile.png"] = plots.performance_profiles(aggregate["taus"],
                                                                    aggregate["performance_profiles"], label,
                                                                    aggregate["baseline"])
    return out


# --- report.md ---------------------------------------------------------------------------------------


def markdown(groups: list[Group], summary: dict[str, Any]) -> str:
    """The human-readable report: configuration, runs, metric tables, figures."""
    from crl.analysis.stats import SeedStatistic, format_statistic

    first = layout_run([g.runs[0] for g in groups])
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
        + (f"of {cfg['steps_per_game']} environment steps per game, trained jointly in one block"
           if first.joint else f"({len(first.blocks)} task blocks of {cfg['steps_per_game']} environment steps)"),
    ]
    for group in groups:
        params = ", ".join(f"{k}={v}" for k, v in group.method_params().items()) or "no parameters"
        run = group.runs[0]
        how = (f"; the multi-task reference: every game at once in one block of {run.blocks[0]['end_step']} steps, "
               f"{run.config.get('n_envs')} envs split evenly over the games" if run.joint else "")
        lines.append(f"- **{group.label}**: method `{group.method}` ({params}); {len(group.runs)} run(s){how}")
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
    joint = [g.label for g in groups if g.runs[0].joint]
    if joint:
        lines += ["", f"{', '.join(joint)}: the multi-task reference, every game trained at once with the same "
                      "steps, the upper bound of what one shared network holds. It has one block, so forgetting, "
                      "backward and forward transfer and the plasticity view (which need a sequence of blocks) are "
                      "n/a for it; its final scores compare with the others' directly."]

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
    lines += aggregate_section(summary["aggregate"], norm)
    lines += _plasticity_section(groups, summary)

    lines += [
        "", "## Figures", "",
        f"Evaluation return and {norm.name} of every game over training; shaded: task blocks.", "",
        "![evaluation curves](curves.png)", "",
        *(["Retention matrix: row *i* = evaluation after task block *i*; boxed cells: the game trained in that block"
           + (" (multi-task references left out: one block, no sequence)" if joint else "") + ".", "",
           "![retention matrix](retention.png)", ""] if sequential(groups) else []),
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


def aggregate_section(aggregate: dict[str, Any], norm: Normalization) -> list[str]:
    """The final normalized score over runs x games (summary.json's ``aggregate``): IQM, mean and optimality gap per
    group, the probability of improvement over fine-tuning, and the figures; one line saying why when skipped."""
    lines = ["", "## Aggregate over runs x games (rliable)", ""]
    if aggregate["skipped"]:
        return lines + [f"Not computed: {aggregate['skipped']}."]
    lines += [f"The final {norm.short} of every complete run on every game ({', '.join(aggregate['games'])}) pooled "
              "per group, as Agarwal et al. 2021 recommend, computed with their library rliable: the interquartile "
              "mean (IQM, the mean of the middle 50% of runs x games; robust to an outlying run or game), the mean, "
              f"and the optimality gap (how far scores fall below 1, {norm.level}, on average). Intervals: 95% "
              "stratified bootstrap (runs resampled within each game; "
              f"{aggregate['reps']} resamples, seed {aggregate['seed']})."]
    if aggregate["left_out"]:
        lines += ["", f"Left out (fewer than {MIN_RUNS_FOR_AGGREGATE} complete runs): "
                      f"{', '.join(aggregate['left_out'])}."]
    lines += ["", "| group | runs | games | IQM | 95% CI | mean | 95% CI | optimality gap | 95% CI |",
              "|---|---|---|---|---|---|---|---|---|"]
    for label, g in aggregate["groups"].items():
        cells = [cell for key in ("iqm", "mean", "optimality_gap") for cell in _estimate_cells(g[key])]
        lines.append(f"| {label} | {g['runs']} | {g['games']} | " + " | ".join(cells) + " |")
    lines += ["", "![IQM, mean and optimality gap with 95% intervals](aggregate_iqm.png)", ""]
    baseline = aggregate["baseline"]
    if aggregate["poi_skipped"]:
        lines += [f"Probability of improvement not computed: {aggregate['poi_skipped']}."]
    else:
        lines += [f"Probability of improvement over {baseline}: P(X > {baseline}) is the probability that a run of X "
                  f"scores above a run of {baseline} on a game, averaged over the games; 0.5 means neither is better "
                  f"(95% interval: both groups' runs resampled independently within each game; "
                  f"{aggregate['poi_reps']} resamples).", "",
                  f"| group | P(X > {baseline}) | 95% CI |", "|---|---|---|"]
        for label, e in aggregate["probability_of_improvement"].items():
            lines.append(f"| {label} | " + " | ".join(_estimate_cells(e)) + " |")
    lines += ["", f"Performance profiles: the fraction of runs x games whose final {norm.short} exceeds tau, for each "
              "tau, with 95% stratified-bootstrap bands; a curve above another is better at every threshold.", "",
              "![performance profiles](performance_profile.png)"]
    return lines


def _estimate_cells(e: dict[str, float]) -> list[str]:
    """An rliable estimate's two table cells: the value and its interval."""
    return [f"{e['value']:.2f}", f"[{e['low']:.2f}, {e['high']:.2f}]"]


def _plasticity_section(groups: list[Group], summary: dict[str, Any]) -> list[str]:
    """Plasticity: each visit's learning next to a fresh network's, and the network's measures at block ends."""
    from crl.analysis.stats import SeedStatistic, format_statistic

    lines = ["", "## Plasticity", ""]
    if summary["reference_runs"]:
        lines += ["Learning of each block's game, by visit (1: the game's first block), over games then seeds: "
                  "*AUC* the block's mean clipped normalized score, *final* the score at its end; *gap*: minus a "
                  "fresh network's (the single-game references over the same steps); a gap below 0 means the "
                  "continual agent learns its game worse than a fresh network (Abbas et al. 2023).", "",
                  "| group | visit | AUC | fresh AUC | AUC gap | final | final gap |", "|---|---|---|---|---|---|---|"]
        for g in summary["groups"]:
            for v in g["plasticity_by_visit"]:
                cells = [format_statistic(SeedStatistic(**v[k])) for k in ("auc", "fresh_auc", "auc_gap", "final",
                                                                            "final_gap")]
                lines.append(f"| {g['label']} | {v['visit']} | " + " | ".join(cells) + " |")
        later = [g for g in summary["groups"] if g["later_visits_auc_gap"]["n"]]
        if later:
            lines += ["", "Later visits in one number: the AUC gap averaged over every block after a game's first, per "
                      "run, then over runs (below 0: once it has seen its games, the agent learns them worse than a "
                      "fresh network); then each game's alone, since a loss on one game can hide in the average.", "",
                      "| group | AUC gap, later visits |", "|---|---|"]
            lines += [f"| {g['label']} | {format_statistic(SeedStatistic(**g['later_visits_auc_gap']))} |"
                      for g in later]
            lines += ["", "| group | game | AUC gap, later visits |", "|---|---|---|"]
            lines += [f"| {g['label']} | {game} | {format_statistic(SeedStatistic(**stat))} |"
                      for g in later for game, stat in g["later_visits_auc_gap_by_game"].items() if stat["n"]]
    else:
        lines += ["The plasticity view (each visit's learning against a fresh network's) needs single-game "
                  "reference runs: `crl report ... --reference RUN_DIR ...`."]
    measured = [g for g in summary["groups"] if any(r["plasticity_measures"] for r in g["runs"])]
    if measured:
        lines += ["", "The network at the end of each block, on each game's fixed probe batch (mean over seeds): "
                  "dormant fractions at tau = 0 (dead), 0.025 and 0.1 (Sokar et al. 2023), effective rank (Roy & "
                  "Vetterli 2007) and srank (Kumar et al. 2021) of the penultimate features; and the network's "
                  "RMS distance of the weights from their initial values and the TD loss's gradient norm on the "
                  "block's game (the same on every probe's row). A game's probe joins at the end of its first "
                  "block.", "",
                  "![plasticity measures](plasticity.png)", "",
                  "| group | probe | block | dead | dormant 0.025 | dormant 0.1 | eff. rank | srank | "
                  "weight distance | grad norm |", "|---|---|---|---|---|---|---|---|---|---|"]
        per_game = ("dormant_0", "dormant_0.025", "dormant_0.1", "effective_rank", "stable_rank")
        network = ("weight_distance", "grad_norm")
        for g in measured:
            blocks = min(len(r["plasticity_measures"]) for r in g["runs"])
            ends = [[r["plasticity_measures"][b] for r in g["runs"]] for b in range(blocks)]
            probes = list(dict.fromkeys(game for per_block in ends for e in per_block for game in e["games"]))
            for game in probes:
                for per_run in ends:
                    if not any(game in e["games"] for e in per_run):
                        continue
                    cells = [_mean_cell([e["games"].get(game, {}).get(k) for e in per_run]) for k in per_game]
                    cells += [_mean_cell([e[k] for e in per_run]) for k in network]
                    lines.append(f"| {g['label']} | {game} | {per_run[0]['block'] + 1} | " + " | ".join(cells) + " |")
    return lines


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


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()
