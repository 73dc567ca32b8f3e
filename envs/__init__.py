"""Game families behind one VecEnv interface: Atari (ale_py's vectorized emulator) and MinAtar (in-process).

``make_vec_env`` picks the family from the game's name (``pong``, ``minatar/breakout``); both families follow
stable-baselines3's VecEnv semantics with raw episode scores in ``info["episode"]``.
"""

from __future__ import annotations

import numbers
from typing import Any

from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from envs.atari import AtariVecEnv, make_atari_vec_env
from envs.games import (
    FAMILIES,
    MINATAR_GAMES,
    MINATAR_PREFIX,
    UnknownGameError,
    check_one_family,
    game_family,
    known_games,
    resolve_game,
)
from envs.minatar import MinAtarVecEnv, make_minatar_vec_env
from envs.mixed_vec_env import MixedVecEnv, make_mixed_vec_env


def make_vec_env(game: str, n_envs: int = 1, seed: int = 0, **options: Any) -> VecEnv:
    """A ready-to-train VecEnv for ``game`` of either family; ``options`` are that family's (see its VecEnv)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= 2**31 - 1:
        raise ValueError(f"seed must be an integer in [0, 2147483647] (ALE's seeds are C ints), got {seed!r}")
    if game_family(game) == "minatar":
        return make_minatar_vec_env(game, n_envs=n_envs, seed=seed, **options)
    return make_atari_vec_env(game, n_envs=n_envs, seed=seed, **options)


def make_joint_vec_env(games: list[str], n_envs: int = 1, seed: int = 0, **options: Any) -> MixedVecEnv:
    """One VecEnv playing all ``games`` (of one family) at once, ``n_envs`` split evenly over them."""
    check_one_family(games)
    return make_mixed_vec_env(make_vec_env, games, n_envs, seed, **options)


__all__ = [
    "FAMILIES",
    "MINATAR_GAMES",
    "MINATAR_PREFIX",
    "AtariVecEnv",
    "MinAtarVecEnv",
    "MixedVecEnv",
    "UnknownGameError",
    "check_one_family",
    "game_family",
    "known_games",
    "make_atari_vec_env",
    "make_joint_vec_env",
    "make_minatar_vec_env",
    "make_vec_env",
    "resolve_game",
]
