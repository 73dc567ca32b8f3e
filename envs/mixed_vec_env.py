"""``MixedVecEnv``: several games of one family stepped as one vector, for training on all of them at once.

The multi-task reference of a continual benchmark trains one network on every game jointly: the upper bound of what
a shared network can hold. Here that is a VecEnv whose envs are split evenly over the games, so every rollout holds
every game and one replay buffer mixes them. The games must share their observation and action spaces (MinAtar's
are padded to one shape; Atari's full action space is shared).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvStepReturn

from envs.whole_vec_env import WholeVecEnv


class MixedVecEnv(WholeVecEnv):
    """The envs of ``parts`` (one VecEnv per game) as one vector, in order; ``games[i]`` is env ``i``'s game."""

    def __init__(self, parts: Sequence[VecEnv], games: Sequence[str]) -> None:
        if not parts or len(parts) != len(games):
            raise ValueError(f"one VecEnv per game: got {len(parts)} for {len(games)} games")
        first = parts[0]
        for part, game in zip(parts, games):
            if part.observation_space != first.observation_space or part.action_space != first.action_space:
                raise ValueError(f"{game} has observations {part.observation_space} and actions "
                                 f"{part.action_space}; {games[0]} has {first.observation_space} and "
                                 f"{first.action_space}: one network cannot play both")
        self.parts = list(parts)
        self.games = [game for part, game in zip(parts, games) for _ in range(part.num_envs)]
        self._bounds = np.cumsum([0] + [p.num_envs for p in parts])
        super().__init__(int(self._bounds[-1]), first.observation_space, first.action_space)

    def reset(self) -> np.ndarray:
        obs = np.concatenate([part.reset() for part in self.parts])
        self.reset_infos = [info for part in self.parts for info in getattr(part, "reset_infos", [{}] * part.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        for part, low, high in zip(self.parts, self._bounds[:-1], self._bounds[1:]):
            part.step_async(actions[low:high])

    def step_wait(self) -> VecEnvStepReturn:
        results = [part.step_wait() for part in self.parts]
        obs, rewards, dones = (np.concatenate([r[k] for r in results]) for k in range(3))
        return obs, rewards, dones, [info for r in results for info in r[3]]

    def close(self) -> None:
        for part in self.parts:
            part.close()

    def seed(self, seed: int | None = None) -> Sequence[None | int]:
        return [s for k, part in enumerate(self.parts) for s in part.seed(part_seed(seed or 0, k))]


def part_seed(seed: int, k: int) -> int:
    """The seed of the ``k``-th game's envs: its own stream, derived from the vector's seed."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0] % 2**31)


def make_mixed_vec_env(make: Callable[..., VecEnv], games: Sequence[str], n_envs: int, seed: int,
                       **options: Any) -> MixedVecEnv:
    """``n_envs`` envs split evenly over ``games``, each game's made by ``make(game, n_envs=, seed=, **options)``."""
    if n_envs % len(games):
        raise ValueError(f"n_envs {n_envs} cannot be split evenly over {len(games)} games")
    per_game = n_envs // len(games)
    return MixedVecEnv([make(game, n_envs=per_game, seed=part_seed(seed, k), **options)
                        for k, game in enumerate(games)], games)
