"""The closing lines of ``crl train`` in plain words: what each game reached in its own block, what was left of it
at the end, and how that compares with random play.

A retention matrix is exact but easy to misread; these sentences say what a newcomer wants to know first, and the
numbers behind them are the matrix's own (``R[i, j]``: mean evaluation return on game ``j`` after block ``i``).
"""

from __future__ import annotations

from collections.abc import Sequence


def describe_game(game: str, own: float, final: float | None, random: float | None, own_cut: int = 0,
                  final_cut: int = 0) -> str:
    """One sentence for one game; ``final`` is None when the game's own block was the last one. ``own_cut`` /
    ``final_cut``: evaluation episodes that ``eval.max_steps`` ended before the game did; such a score is a lower
    bound, so it is not called learned nor compared with (full-episode) random play."""
    parts = [f"{game}: {own:.1f} after its own block"]
    if own_cut or final_cut:
        parts.append(f"{'' if final is None else f', {final:.1f} at the end'} (evaluation episodes cut by "
                     "eval.max_steps: a lower bound, so no comparison with random play is made")
        return "".join(parts) + ")."
    gained = None if random is None else own - random
    if random is not None:
        verdict = "learned" if gained > 0.5 * max(abs(random), 1.0) else "barely above random play" if gained > 0 else "no better than random play"
        parts.append(f" (random play: {random:.1f}; {verdict})")
    if final is None:
        return "".join(parts) + "; its block was the last, so nothing came after it to forget."
    parts.append(f", {final:.1f} at the end")
    if gained is not None and gained > 0:
        kept = (final - random) / gained
        if kept < 0.5:
            parts.append(f": forgot {min(1.0, 1.0 - kept):.0%} of what it had gained over random play")
        elif kept < 1.0:
            parts.append(f": kept {max(kept, 0.0):.0%} of what it had gained over random play")
        else:
            parts.append(": kept all of it")
    return "".join(parts) + "."


def retention_in_words(
    games: Sequence[str], retention: Sequence[Sequence[float]], trained_at: Sequence[int],
    random_scores: dict[str, float | None], cut: Sequence[Sequence[int]] | None = None,
) -> list[str]:
    """A sentence per trained game: its return after its first block, at the end, and random play's (``cut``: per
    block and game, the evaluation episodes ``eval.max_steps`` cut)."""
    cut = cut if cut is not None else [[0] * len(games) for _ in retention]
    lines = []
    last = len(retention) - 1
    for column, game in enumerate(games):
        blocks = [i for i, c in enumerate(trained_at) if c == column]
        if not blocks:
            continue
        first = blocks[0]
        final = None if first == last else retention[last][column]
        lines.append(describe_game(game, retention[first][column], final, random_scores.get(game),
                                   cut[first][column], 0 if final is None else cut[last][column]))
    return lines
