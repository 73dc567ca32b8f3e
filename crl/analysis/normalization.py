"""Normalized scores per game family, each under a name that says what it is normalized against.

Atari: the human-normalized score (HNS), ``(score - random) / (human - random)``, with DQN Zoo's Atari-57 table.
MinAtar has no human reference; its scores are normalized against random play and a published DQN,
``(score - random) / (dqn - random)``: 0 is random play, 1 is the DQN of Young & Tian 2019 (see crl/data/README.md).

Everything that shows a normalized score (evals.jsonl, metrics.json, TensorBoard, plots, reports, the CLI) takes its
field name and labels from the family's :class:`Normalization`, so one code path serves both families and a MinAtar
score is never called human-normalized.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Iterable

from envs import FAMILIES, UnknownGameError, game_family, resolve_game


@dataclass(frozen=True)
class Normalization:
    """How one game family's scores are normalized, and the names it is shown under."""

    family: str
    key: str  # evals.jsonl field, stem of metrics.json keys (final_<key>, ...), TensorBoard tags (eval/<game>/<key>)
    short: str  # in table rows: "Final average <short>", "total clipped <short>"
    label: str  # the plain name, in axis labels and figure titles
    name: str  # the full display name, with its reference, in reports and the retention figure
    formula: str  # how a game's score is normalized
    level: str  # what a score of 1 means: "at <level>"
    references: str  # the reference figures behind it: "games with <references>"
    total_source: str = ""  # where the total clipped score over these scores comes from, if published


NORMALIZATIONS: dict[str, Normalization] = {
    "atari": Normalization(
        family="atari", key="hns", short="HNS", label="human-normalized score", name="human-normalized score",
        formula="(score − random) / (human − random)", level="human level",
        references="random and human reference scores", total_source="Kirkpatrick et al. 2017, Fig. 3",
    ),
    "minatar": Normalization(
        family="minatar", key="dqn_normalized", short="DQN-normalized score", label="DQN-normalized score",
        name="DQN-normalized score (Young & Tian 2019 reference)", formula="(score − random) / (dqn − random)",
        level="the level of Young & Tian 2019's DQN",
        references="random-play and DQN (Young & Tian 2019) reference scores",
    ),
}
SCORE_NAMES = {family: n.key for family, n in NORMALIZATIONS.items()}


@lru_cache(maxsize=1)
def reference_scores() -> dict[str, tuple[float, float]]:
    """ROM id -> (random, human) mean episode returns (DQN Zoo's Atari-57 table; see crl/data/README.md)."""
    text = resources.files("crl.data").joinpath("atari_human_random_scores.csv").read_text()
    return {row["game"]: (float(row["random"]), float(row["human"])) for row in csv.DictReader(text.splitlines())}


def human_normalized_score(game: str, score: float) -> float:
    """``(score - random) / (human - random)`` for an Atari ROM id; NaN for a game without reference figures."""
    ref = reference_scores().get(game)
    if ref is None:
        return math.nan
    random, human = ref
    return (score - random) / (human - random)


@lru_cache(maxsize=1)
def minatar_reference_scores() -> dict[str, tuple[float, float]]:
    """MinAtar game id (``minatar/breakout``) -> (random, dqn) mean episode returns (crl/data/minatar_scores.csv)."""
    text = resources.files("crl.data").joinpath("minatar_scores.csv").read_text()
    return {row["game"]: (float(row["random"]), float(row["dqn"])) for row in csv.DictReader(text.splitlines())}


def _family(name: str) -> str:
    """A game's family; a name no family knows counts as MinAtar when it carries MinAtar's prefix, else Atari."""
    if name in FAMILIES:
        return name
    try:
        return game_family(name)
    except UnknownGameError:
        return "minatar" if re.match(r"^minatar[/_\- ]", name.strip(), flags=re.IGNORECASE) else "atari"


def normalization(family_or_game: str) -> Normalization:
    """The normalization of a family (``"atari"``, ``"minatar"``) or of a game's family."""
    return NORMALIZATIONS[_family(family_or_game)]


def normalization_of(games: Iterable[str]) -> Normalization:
    """The normalization of a game sequence's family; ValueError (one line) if the games mix families."""
    families = sorted({_family(g) for g in games})
    if len(families) > 1:
        raise ValueError(f"games of several families ({', '.join(families)}) have no common normalized score")
    return NORMALIZATIONS[families[0] if families else "atari"]


def score_name(family_or_game: str) -> str:
    """The normalized score's name: ``"hns"`` for Atari, ``"dqn_normalized"`` for MinAtar (a family or a game)."""
    return normalization(family_or_game).key


def random_play_score(game: str) -> float | None:
    """Mean return of uniformly random play on ``game`` (its family's reference table); None if not in the table."""
    game = resolve_game(game)
    table = reference_scores() if game_family(game) == "atari" else minatar_reference_scores()
    return table[game][0] if game in table else None


def normalized_score(game: str, score: float) -> float:
    """``score`` of ``game`` normalized by its family's references; NaN for a game without reference figures."""
    try:
        game = resolve_game(game)
    except UnknownGameError:
        return math.nan
    if game_family(game) == "atari":
        return human_normalized_score(game, score)
    ref = minatar_reference_scores().get(game)
    if ref is None:
        return math.nan
    random, dqn = ref
    return (score - random) / (dqn - random)
