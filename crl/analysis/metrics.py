"""Continual-learning metrics over a retention matrix, with the game family's normalized score.

``R[i, j]`` is the mean evaluation return on game ``j`` after task block ``i`` (rows: blocks in training order,
columns: the games of the sequence). Games are trained in blocks; ``trained_at[i]`` is the column of the game
trained in block ``i``: its index in the sequence's games, never the agent's task id (an inferred id can be any
number, and two games can share one). The joint block of a multi-task run trains every game at once: its entry is
the list of their columns (:func:`block_columns`).

Normalized scores are the family's (:mod:`crl.analysis.normalization`): human-normalized (``hns``) for Atari,
DQN-normalized (``dqn_normalized``) for MinAtar; the keys of :func:`summarize` carry that name.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from crl.analysis.normalization import normalization_of, normalized_score


def block_columns(entry: int | Sequence[int]) -> tuple[int, ...]:
    """The game columns one block of ``trained_at`` trained: its game's, or every game of a joint block."""
    return tuple(int(j) for j in entry) if isinstance(entry, (list, tuple)) else (int(entry),)


def check_columns(R: np.ndarray, trained_at: list[int | list[int]]) -> None:
    """Raise ValueError unless ``trained_at`` holds the game columns of ``R`` trained in each block (at most one
    entry per row)."""
    n_blocks, n_games = np.shape(R)
    if len(trained_at) > n_blocks or any(not 0 <= j < n_games for entry in trained_at for j in block_columns(entry)):
        raise ValueError(f"trained_at must hold a game column in 0..{n_games - 1} for each of at most {n_blocks} "
                         f"blocks, got {list(trained_at)}")


def forgetting(R: np.ndarray, trained_at: list[int | list[int]]) -> np.ndarray:
    """Per game: best value after any block at or after the game was first trained, minus the final value.

    Chaudhry et al. 2018's forgetting, with the "best earlier value" taken over the blocks before the last one.
    NaN for games that were never trained before the final block (nothing to forget yet).
    """
    R = np.asarray(R, dtype=float)
    check_columns(R, trained_at)
    n_blocks, n_games = R.shape
    out = np.full(n_games, np.nan)
    for j in range(n_games):
        first = next((i for i, entry in enumerate(trained_at) if j in block_columns(entry)), None)
        if first is None or first >= n_blocks - 1:
            continue
        out[j] = np.max(R[first : n_blocks - 1, j]) - R[-1, j]
    return out


def backward_transfer(R: np.ndarray, trained_at: list[int | list[int]]) -> float:
    """Mean over games of (final value - value right after the game's last training block), Lopez-Paz & Ranzato 2017.

    Only games whose last block is not the final block count; NaN if there are none.
    Negative values mean forgetting.
    """
    R = np.asarray(R, dtype=float)
    check_columns(R, trained_at)
    last_block = {j: i for i, entry in enumerate(trained_at) for j in block_columns(entry)}
    diffs = [R[-1, j] - R[i, j] for j, i in last_block.items() if i < R.shape[0] - 1]
    return float(np.mean(diffs)) if diffs else math.nan


def after_last_block(R: np.ndarray, trained_at: list[int | list[int]]) -> np.ndarray:
    """Per game, the value right after the game's last training block (what backward transfer starts from); NaN
    for a game not trained yet."""
    R = np.asarray(R, dtype=float)
    check_columns(R, trained_at)
    out = np.full(R.shape[1], np.nan)
    for i, entry in enumerate(trained_at[: R.shape[0]]):
        for j in block_columns(entry):
            out[j] = R[i, j]
    return out


def total_clipped(scores: np.ndarray) -> float:
    """Sum over games of min(score, 1) of normalized scores, NaN left out: the EWC paper's Atari metric over HNS
    (at most the number of games)."""
    scores = np.asarray(scores, dtype=float)
    return float(np.sum(np.minimum(scores[~np.isnan(scores)], 1.0)))


total_clipped_hns = total_clipped  # the Atari name (Kirkpatrick et al. 2017 sum HNS)


def summarize(R: np.ndarray, games: list[str], trained_at: list[int | list[int]],
              cut_final: list[int] | None = None) -> dict[str, object]:
    """The final metrics of a run, as written to ``metrics.json``.

    Normalized-score keys are named after the games' family (``crl.analysis.normalization``): ``final_hns``,
    ``average_final_hns``, ``total_clipped_hns`` for Atari; ``final_dqn_normalized``,
    ``average_final_dqn_normalized``, ``total_clipped_dqn_normalized`` for MinAtar. ``cut_final``: per game, the
    episodes of the final evaluation that ``eval.max_steps`` cut; a cut game's return is a lower bound, so it gets no
    normalized score (that would compare it with full-episode random and reference play).
    """
    R = np.asarray(R, dtype=float)
    key = normalization_of(games).key
    final = R[-1]
    cut_final = list(cut_final) if cut_final is not None else [0] * len(games)
    normalized = np.array([math.nan if cut else normalized_score(g, v) for g, v, cut in zip(games, final, cut_final)])
    forget = forgetting(R, trained_at)
    return {
        "games": list(games),
        "after_last_block_return": dict(zip(games, _nan_to_none(after_last_block(R, trained_at)))),
        "final_return": dict(zip(games, final.tolist())),
        f"final_{key}": dict(zip(games, _nan_to_none(normalized))),
        "average_final_return": float(np.mean(final)),
        f"average_final_{key}": _mean_or_none(normalized),
        "forgetting": dict(zip(games, _nan_to_none(forget))),
        "average_forgetting": _mean_or_none(forget),
        "backward_transfer": _nan_to_none([backward_transfer(R, trained_at)])[0],
        f"total_clipped_{key}": total_clipped(normalized),
        "retention_matrix": R.tolist(),
        "trained_at": list(trained_at),
        "cut_final_episodes": dict(zip(games, (int(c) for c in cut_final))),
    }


def _mean_or_none(values: np.ndarray) -> float | None:
    """Mean of the known (non-NaN) values; None when there are none."""
    known = np.asarray(values, dtype=float)
    known = known[~np.isnan(known)]
    return float(known.mean()) if known.size else None


def _nan_to_none(values) -> list[float | None]:
    """JSON has no NaN: missing values become null."""
    return [None if (v is None or (isinstance(v, float) and math.isnan(v))) else float(v) for v in np.asarray(values, dtype=float).tolist()]


def area_under_curve(steps, values) -> float:
    """Time-average of a curve sampled at ``steps``: trapezoidal area divided by the span (one point: its value).

    The ``AUC_i = (1/Δ) ∫ p_i(t) dt`` of Continual World (Wolczyk et al. 2021), for a curve known only at its
    evaluation points; NaN for an empty curve.
    """
    steps = np.asarray(steps, dtype=float)
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return math.nan
    if len(values) == 1 or steps[-1] == steps[0]:
        return float(np.mean(values))
    return float(np.trapezoid(values, steps) / (steps[-1] - steps[0]))


def forward_transfer(auc: float, reference_auc: float) -> float:
    """Continual World's forward transfer ``FT_i = (AUC_i - AUC_i^b) / (1 - AUC_i^b)`` (Wolczyk et al. 2021).

    Both areas are over scores in [0, 1] (success rate there; the clipped normalized score here): the gain over a
    single-task run, as a fraction of the room the reference left below 1. NaN when the reference is already at 1
    throughout.
    """
    if not reference_auc < 1.0:
        return math.nan
    return (auc - reference_auc) / (1.0 - reference_auc)


def normalized_matrix(R: np.ndarray, games: list[str]) -> np.ndarray:
    """The retention matrix in the family's normalized score: column ``j`` normalized with game ``j``'s reference
    scores (NaN: none)."""
    R = np.asarray(R, dtype=float)
    return np.array([[normalized_score(g, v) for g, v in zip(games, row)] for row in R]).reshape(R.shape)

