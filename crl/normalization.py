"""Normalized scores per game family, each under a name that says what it is normalized against.

Atari: the human-normalized score (HNS), ``(score - random) / (human - random)``, from :mod:`crl.metrics`.
MinAtar has no human reference; its scores are normalized against random play and a published DQN,
``(score - random) / (dqn - random)``: 0 is random play, 1 is the DQN of Young & Tian 2019 (see crl/data/README.md).
"""

from __future__ import annotations

import csv
import math
from functools import lru_cache
from importlib import resources

from crl.metrics import human_normalized_score
from envs import FAMILIES, UnknownGameError, game_family, resolve_game

SCORE_NAMES = {"atari": "hns", "minatar": "dqn_normalized"}


@lru_cache(maxsize=1)
def minatar_reference_scores() -> dict[str, tuple[float, float]]:
    """MinAtar game id (``minatar/breakout``) -> (random, dqn) mean episode returns (crl/data/minatar_scores.csv)."""
    text = resources.files("crl.data").joinpath("minatar_scores.csv").read_text()
    return {row["game"]: (float(row["random"]), float(row["dqn"])) for row in csv.DictReader(text.splitlines())}


def score_name(family_or_game: str) -> str:
    """The normalized score's name: ``"hns"`` for Atari, ``"dqn_normalized"`` for MinAtar (a family or a game)."""
    family = family_or_game if family_or_game in FAMILIES else game_family(family_or_game)
    return SCORE_NAMES[family]


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
