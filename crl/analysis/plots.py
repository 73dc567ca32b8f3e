"""Figures of continual-RL runs: evaluation curves over task blocks, retention heatmaps, total clipped score, and the
aggregates over runs x games that :mod:`crl.analysis.aggregate` computes with rliable (drawn here rather than with
rliable's plot_utils, which draws through pyplot and seaborn's global state).

Every function returns a matplotlib ``Figure`` drawn on the Agg canvas without pyplot (no display, no global
state), so the trainer can log it to TensorBoard and ``crl report`` can save it as PNG. Inputs are plain data:
evaluation records as written to evals.jsonl (step, game, mean_return, and the normalized score under its family's
key: hns for Atari, dqn_normalized for MinAtar) and blocks as in blocks.jsonl (block, game, start_step, end_step).
The normalized score's field and labels come from the games' family (:mod:`crl.analysis.normalization`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import EngFormatter

from crl.analysis.metrics import normalized_matrix, total_clipped
from crl.analysis.normalization import NORMALIZATIONS, normalization_of
from crl.analysis.stats import seed_band

Record = Mapping[str, Any]
FIELD_LABELS = {"mean_return": "episode return (game score)", **{n.key: n.label for n in NORMALIZATIONS.values()}}
BLOCK_SHADES = ("#f2f2f2", "#e4e4e4")
OWN_BLOCK_SHADE = "#fde7c8"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _colour(i: int) -> str | tuple[float, ...]:
    """Group ``i``'s colour: matplotlib's ten for the first ten groups, the light shades of tab20 for the next ten,
    and so on alternately; ``_dashes`` changes every ten groups too, so forty groups look different."""
    if (i // 10) % 2 == 0:
        return f"C{i % 10}"
    return colormaps["tab20"](2 * (i % 10) + 1)


def _dashes(i: int) -> str:
    """Group ``i``'s line style: solid, dashed, dotted, dash-dot, each for ten groups in turn."""
    return ("-", "--", ":", "-.")[(i // 10) % 4]


# --- curves --------------------------------------------------------------------------------------------


def _series(records: Sequence[Record], game: str, field: str) -> dict[float, float]:
    """step -> value of ``field`` for ``game`` (null values skipped; a repeated step keeps the last record)."""
    return {float(r["step"]): float(r[field]) for r in records if r["game"] == game and r.get(field) is not None}


def _total_clipped_series(records: Sequence[Record], games: Sequence[str], key: str) -> dict[float, float]:
    """step -> total clipped normalized score (field ``key``), at the steps where every game of the sequence has one."""
    by_step: dict[float, dict[str, float]] = {}
    for r in records:
        if r.get(key) is not None:
            by_step.setdefault(float(r["step"]), {})[r["game"]] = float(r[key])
    return {s: total_clipped(np.array([v[g] for g in games])) for s, v in by_step.items() if set(games) <= set(v)}


def _seed_matrix(series: Sequence[dict[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed series on the union of their steps: (steps, seeds x steps array with NaN where a seed lacks one)."""
    steps = np.array(sorted({s for one in series for s in one}))
    return steps, np.array([[one.get(s, np.nan) for s in steps] for one in series]).reshape(len(series), len(steps))


def _plot_seeds(ax, series: Sequence[dict[float, float]], i: int, label: str) -> None:
    """Group ``i``'s mean over seeds as a line with markers, and its 95% bootstrap band where 2+ seeds have every
    point."""
    steps, values = _seed_matrix(series)
    if len(steps) == 0:
        return
    mean, low, high = seed_band(values)
    ax.plot(steps, mean, color=_colour(i), linestyle=_dashes(i), marker="o", markersize=3, linewidth=1.5, label=label)
    if np.isfinite(low).any():
        ax.fill_between(steps, low, high, color=_colour(i), alpha=0.2, linewidth=0)


def _shade_blocks(ax, blocks: Sequence[Record], own_game: str | None = None, label: bool = True) -> None:
    """Shade each task block; blocks training ``own_game`` in orange; the trained game's name on top."""
    vertical = len(blocks) > 6
    for i, b in enumerate(blocks):
        shade = OWN_BLOCK_SHADE if b["game"] == own_game else BLOCK_SHADES[i % 2]
        ax.axvspan(b["start_step"], b["end_step"], color=shade, zorder=0, linewidth=0)
        if label:
            ax.text((b["start_step"] + b["end_step"]) / 2, 0.98, b["game"], transform=ax.get_xaxis_transform(),
                    ha="center", va="top", fontsize=7, color="#555555", rotation=90 if vertical else 0)
    if blocks:
        ax.set_xlim(blocks[0]["start_step"], blocks[-1]["end_step"])
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))


def _legend_label(label: str, n_seeds: int) -> str:
    return f"{label} ({n_seeds} seed{'s' if n_seeds != 1 else ''})"


PLASTICITY_PANELS = (
    ("dormant_0", "dead units (tau = 0)"), ("dormant_0.025", "dormant units (tau = 0.025)"),
    ("effective_rank", "effective rank of the features"), ("feature_norm", "feature norm"),
    ("weight_distance", "RMS distance from the initial weights"), ("grad_norm", "TD loss gradient norm"),
)


def _plasticity_series(records: Sequence[Record], measure: str) -> dict[float, float]:
    """step -> a plasticity measure: the network's, or a per-game one on the first game's probe, the one probe
    measured from the start (an average over the games probed by then would jump when a new probe joins)."""
    out = {}
    first = next(iter(records[0]["games"]), None) if records else None
    for r in records:
        if measure in r["network"]:
            out[float(r["step"])] = float(r["network"][measure])
        elif first is not None and r["games"].get(first, {}).get(measure) is not None:
            out[float(r["step"])] = float(r["games"][first][measure])
    return out


def plasticity_curves(records_by_label: Mapping[str, Sequence[Sequence[Record]]], blocks: Sequence[Record]) -> Figure:
    """The plasticity measures over training (plasticity.jsonl records of each seed), one panel per measure, every
    method's mean over its seeds with bands; shaded: task blocks."""
    fig = _figure(11, 2.3 * ((len(PLASTICITY_PANELS) + 1) // 2) + 0.8)
    axes = fig.subplots((len(PLASTICITY_PANELS) + 1) // 2, 2, squeeze=False, sharex=True).ravel()
    for ax, (measure, title) in zip(axes, PLASTICITY_PANELS):
        _shade_blocks(ax, blocks)
        for i, (label, runs) in enumerate(records_by_label.items()):
            _plot_seeds(ax, [_plasticity_series(recs, measure) for recs in runs], i,
                        _legend_label(label, len(runs)))
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.15)
        ax.grid(alpha=0.3)
    for ax in axes[-2:]:
        ax.set_xlabel("environment steps")
    handles, _ = axes[0].get_legend_handles_labels()  # none when the first measure has no value yet
    fig.legend(handles=handles, loc="outside lower center", ncol=max(1, min(len(handles), 4)), fontsize=9,
               frameon=False)
    fig.suptitle("Plasticity: units and features on the first game's fixed probe batch, weights and gradient of the "
                 "network (mean over seeds, 95% bootstrap band)")
    return fig


def method_curves(
    records_by_label: Mapping[str, Sequence[Sequence[Record]]],
    games: Sequence[str],
    blocks: Sequence[Record],
    fields: Sequence[str] | None = None,
) -> Figure:
    """One row per game, one column per field (default: return and the family's normalized score): every method's
    mean over its seeds, with bands.

    ``records_by_label`` maps a method label to the evaluation records of each of its seeds. A field no record
    has (normalized score of games without reference scores) gets no column.
    """
    if fields is None:
        fields = ("mean_return", normalization_of(games).key)
    all_records = [r for runs in records_by_label.values() for recs in runs for r in recs]
    fields = [f for f in fields if any(r.get(f) is not None for r in all_records)] or ["mean_return"]
    fig = _figure(5.5 * len(fields), 2.4 * len(games) + 0.8)
    axes = fig.subplots(len(games), len(fields), squeeze=False, sharex=True)
    for row, game in enumerate(games):
        for col, field in enumerate(fields):
            ax = axes[row, col]
            _shade_blocks(ax, blocks, own_game=game)
            for i, (label, runs) in enumerate(records_by_label.items()):
                series = [_series(recs, game, field) for recs in runs]
                _plot_seeds(ax, series, i, _legend_label(label, len(runs)))
            ax.set_title(f"{game}: {FIELD_LABELS.get(field, field)}", fontsize=10)
            ax.set_ylabel(FIELD_LABELS.get(field, field), fontsize=8)
            ax.margins(y=0.15)  # room for the block labels
            ax.grid(alpha=0.3)
        for col in range(len(fields)):
            axes[-1, col].set_xlabel("environment steps")
    handles, _ = axes[0, 0].get_legend_handles_labels()
    handles.append(Patch(color=OWN_BLOCK_SHADE, label="block training this panel's game"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=9, frameon=False)
    fig.suptitle("Evaluation during training (mean over seeds, 95% bootstrap band)")
    return fig


def return_curves(evals_records: Sequence[Record], games: Sequence[str], blocks: Sequence[Record], label: str = "run",
                  fields: Sequence[str] | None = None) -> Figure:
    """Evaluation curves of a single run (what the trainer logs at each task boundary)."""
    return method_curves({label: [evals_records]}, games, blocks, fields)


def total_clipped_curves(records_by_label: Mapping[str, Sequence[Sequence[Record]]], games: Sequence[str],
                         blocks: Sequence[Record]) -> Figure:
    """Total clipped normalized score (sum over games of min(score, 1); in HNS: Kirkpatrick et al. 2017, Fig. 3)
    against steps per method, in the games' family's normalization."""
    norm = normalization_of(games)
    fig = _figure(9, 4)
    ax = fig.subplots()
    _shade_blocks(ax, blocks)
    for i, (label, runs) in enumerate(records_by_label.items()):
        _plot_seeds(ax, [_total_clipped_series(recs, games, norm.key) for recs in runs], i,
                    _legend_label(label, len(runs)))
    ax.axhline(len(games), color="black", linestyle="--", linewidth=1,
               label=f"maximum ({len(games)} games at {norm.level})")
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"total clipped {norm.short}\n(sum over games)")
    ax.set_title(f"Total clipped {norm.label} (mean over seeds, 95% bootstrap band)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.set_ylim(top=1.12 * max(len(games), ax.get_ylim()[1]))  # room for the block labels above the maximum line
    fig.legend(loc="outside right center", fontsize=8, frameon=False)
    return fig


# --- aggregates over runs x games (rliable's numbers, drawn as its plots draw them) ------------------------------

AGGREGATE_PANELS = (("iqm", "IQM"), ("mean", "mean"), ("optimality_gap", "optimality gap"))


def aggregate_intervals(estimates: Mapping[str, Mapping[str, Mapping[str, float]]], score_label: str) -> Figure:
    """One panel per aggregate (IQM, mean, optimality gap), one row per group: its 95% interval as a bar and its
    point estimate as a tick, like rliable's ``plot_interval_estimates``. ``estimates[group][aggregate]`` holds
    ``value``, ``low`` and ``high`` (summary.json's ``aggregate.groups``)."""
    labels = list(estimates)
    fig = _figure(4.0 * len(AGGREGATE_PANELS), 0.45 * len(labels) + 1.4)
    axes = fig.subplots(1, len(AGGREGATE_PANELS), sharey=True, squeeze=False)[0]
    for ax, (key, title) in zip(axes, AGGREGATE_PANELS):
        for row, label in enumerate(labels):
            e = estimates[label][key]
            ax.barh(row, e["high"] - e["low"], left=e["low"], height=0.6, color=_colour(row), alpha=0.75)
            ax.vlines(e["value"], row - 0.3, row + 0.3, color="black", linewidth=2)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(score_label, fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(labels)), labels=labels, fontsize=8)
    axes[0].invert_yaxis()  # first group on top, as in the report's table
    fig.suptitle("Aggregates over runs x games (95% stratified-bootstrap intervals, rliable)", fontsize=10)
    return fig


PROFILES_IN_ONE_PANEL = 6  # more groups than this get a panel each: ten or more curves in one axes cannot be told apart


def performance_profiles(taus: Sequence[float], profiles: Mapping[str, Mapping[str, Sequence[float]]],
                         score_label: str, baseline: str | None = None) -> Figure:
    """Each group's performance profile (fraction of runs x games with a score above tau) against tau, with its 95%
    band, like rliable's ``plot_performance_profiles``. ``profiles[group]`` holds ``fraction``, ``low`` and ``high``
    on ``taus`` (summary.json's ``aggregate``). Up to ``PROFILES_IN_ONE_PANEL`` groups share one panel; more get one
    panel each, with ``baseline``'s curve dotted black in every other panel to read them against."""
    title = "Performance profiles (95% stratified-bootstrap bands, rliable)"
    if len(profiles) <= PROFILES_IN_ONE_PANEL:
        fig = _figure(7, 4.2)
        ax = fig.subplots()
        for i, (label, p) in enumerate(profiles.items()):
            _profile(ax, taus, p, i, label)
        _profile_axes(ax, score_label)
        ax.set_title(title, fontsize=10)
        fig.legend(loc="outside right center", fontsize=8, frameon=False)
        return fig
    columns = 4
    rows = -(-len(profiles) // columns)
    fig = _figure(3.0 * columns, 2.4 * rows + 0.5)
    axes = fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).ravel()
    for ax, (label, p) in zip(axes, profiles.items()):
        if baseline in profiles and label != baseline:
            ax.plot(taus, profiles[baseline]["fraction"], color="black", linewidth=1.2, linestyle=":", label=baseline)
        _profile(ax, taus, p, 0, label)  # its panel's one curve: one solid colour, never the baseline's
        ax.set_title(label, fontsize=8)
        ax.grid(alpha=0.3)
        ax.set_ylim(-0.02, 1.02)
    for ax in axes[len(profiles):]:
        ax.set_axis_off()
    for ax in axes[::columns]:
        ax.set_ylabel("fraction above tau", fontsize=8)
    for ax in axes[max(0, len(profiles) - columns):len(profiles)]:  # the lowest panel of each column
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.set_xlabel(f"{score_label} (tau)", fontsize=8)
    note = f"; dotted black: {baseline}" if baseline in profiles else ""
    fig.suptitle(f"{title}{note}", fontsize=10)
    return fig


def _profile(ax: Any, taus: Sequence[float], p: Mapping[str, Sequence[float]], i: int, label: str) -> None:
    ax.plot(taus, p["fraction"], color=_colour(i), linestyle=_dashes(i), linewidth=1.5, label=label)
    ax.fill_between(taus, p["low"], p["high"], color=_colour(i), alpha=0.15, linewidth=0)


def _profile_axes(ax: Any, score_label: str) -> None:
    ax.set_xlabel(f"{score_label} (tau)")
    ax.set_ylabel("fraction of runs x games above tau")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)


# --- retention heatmaps --------------------------------------------------------------------------------


def _row_labels(games: Sequence[str], trained_at: Sequence[int], task_ids: Sequence[int] | None,
                rows: int) -> list[str]:
    """``block: trained game``, plus the agent's task id where any block's id differs from its game's column."""
    shown = task_ids is not None and list(task_ids[:rows]) != list(trained_at[:rows])
    return [f"{i}: {games[trained_at[i]]}" + (f" (task {task_ids[i]})" if shown and i < len(task_ids) else "")
            for i in range(rows)]


def _draw_matrix(ax, M: np.ndarray, games: Sequence[str], trained_at: Sequence[int], fmt: str, per_column: bool,
                 title: str, task_ids: Sequence[int] | None = None) -> Any:
    """Annotated heatmap; colours scaled per game column when ``per_column`` (returns differ in scale by game).

    ``trained_at[i]`` is the column of the game trained in block ``i`` (boxed); ``task_ids`` the agent's ids.
    """
    M = np.asarray(M, dtype=float)
    finite = np.isfinite(M)
    if per_column:
        low = np.nanmin(np.where(finite, M, np.inf), axis=0)
        span = np.nanmax(np.where(finite, M, -np.inf), axis=0) - low
        colour = np.where(span > 0, (M - low) / np.where(span > 0, span, 1), 0.5)
        vmin, vmax = 0.0, 1.0
    else:
        colour = M
        vmin = min(0.0, float(np.min(M[finite]))) if finite.any() else 0.0
        vmax = max(1.0, float(np.max(M[finite]))) if finite.any() else 1.0
    cmap = colormaps["viridis"].with_extremes(bad="#d9d9d9")
    image = ax.imshow(np.ma.masked_invalid(colour), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    for i in range(M.shape[0]):
        for j in range(M.shape[1]):
            dark = finite[i, j] and (colour[i, j] - vmin) / (vmax - vmin) < 0.55
            text = format(M[i, j], fmt) if finite[i, j] else "n/a"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
        if i < len(trained_at):
            ax.add_patch(Rectangle((trained_at[i] - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_xticks(range(len(games)), labels=list(games), rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(M.shape[0]), labels=_row_labels(games, trained_at, task_ids, M.shape[0]), fontsize=8)
    ax.set_xlabel("evaluated game")
    ax.set_ylabel("after task block (trained game)")
    ax.set_title(title, fontsize=9)
    return image


def retention_grid(panels: Sequence[tuple[str, np.ndarray]], games: Sequence[str], trained_at: Sequence[int],
                   task_ids: Sequence[int] | None = None) -> Figure:
    """One row per (title, R) panel: the raw-return matrix and, for games with reference scores, the matrix in the
    games' family's normalized score (HNS for Atari, DQN-normalized for MinAtar).

    ``trained_at``: the game column trained in each block; ``task_ids`` (optional): the agent's task id of each
    block, shown in the row labels where it differs from the column.
    """
    if any(not 0 <= j < len(games) for j in trained_at):
        raise ValueError(f"trained_at must hold game columns in 0..{len(games) - 1}, got {list(trained_at)}")
    norm = normalization_of(games)
    normalized = [normalized_matrix(R, list(games)) for _, R in panels]
    with_normalized = any(np.isfinite(h).any() for h in normalized)
    n_cols = 2 if with_normalized else 1
    rows = max([np.shape(R)[0] for _, R in panels] + [1])
    fig = _figure(max(4.5, 1.0 * len(games) + 2.5) * n_cols, (0.42 * rows + 1.9) * len(panels))
    axes = fig.subplots(len(panels), n_cols, squeeze=False)
    for (title, R), H, row in zip(panels, normalized, axes):
        if np.shape(R)[0] == 0:
            for ax in row:
                ax.axis("off")
            row[0].text(0.5, 0.5, f"{title}: no finished task block yet", ha="center", va="center")
            continue
        _draw_matrix(row[0], R, games, trained_at, ".1f", True, f"{title}\nmean return (colour scaled per game)",
                     task_ids)
        if with_normalized:
            image = _draw_matrix(row[1], H, games, trained_at, ".2f", False, f"{title}\n{norm.name}", task_ids)
            fig.colorbar(image, ax=row[1], label=norm.short, fraction=0.05)
    fig.suptitle("Retention matrix: evaluation after each task block (red box: game trained in that block)",
                 fontsize=10)
    return fig


def retention_heatmap(R: np.ndarray, games: Sequence[str], trained_at: Sequence[int] | None = None,
                      title: str = "", task_ids: Sequence[int] | None = None) -> Figure:
    """The retention matrix of one run (rows: finished task blocks) as annotated heatmaps of return and the
    family's normalized score.

    ``trained_at[i]``: the column (index in ``games``) of the game trained in block ``i``, never a task-inference
    id; ``task_ids``: the agent's task id of each block, labelled where it differs.
    """
    R = np.asarray(R, dtype=float)
    trained_at = list(trained_at) if trained_at is not None else [i % len(games) for i in range(R.shape[0])]
    return retention_grid([(title or "run", R)], games, trained_at, task_ids)
