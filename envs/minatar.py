"""MinAtar games (Young & Tian 2019) as stable-baselines3 VecEnvs, stepped in-process through MinAtar's core API.

Same contract as :class:`envs.atari.AtariVecEnv`: SB3 auto-reset, ``info["terminal_observation"]``,
``info["TimeLimit.truncated"]``, the raw game score in ``info["episode"]`` and rewards clipped to [-1, 1] for
training if asked (Seaquest pays up to 9 at once when surfacing with six divers).

Every game gets MinAtar's full 6-action set (no-op, left, up, right, down, fire; a game ignores the moves it has no
use for) and the same observation shape: channels-first ``(C, 10, 10)`` uint8, 0 or 255, where ``C`` is the largest
channel count of the five games (Seaquest's 10) and a game with fewer channels leaves the rest zero. So one network
serves any MinAtar sequence, and a model can be evaluated on a game it never saw. MinAtar's own defaults, sticky
actions with probability 0.1 and difficulty ramping, are options.

MinAtar is GPL-3.0 licensed; it is imported when the first MinAtar env is built (it pulls in matplotlib and seaborn).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from envs.games import MINATAR_GAMES, MINATAR_PREFIX, resolve_game
from envs.whole_vec_env import WholeVecEnv

GRID = 10  # every MinAtar game plays out on a 10x10 grid
NUM_ACTIONS = 6  # MinAtar's full action set, shared by all games
ACTION_NAMES = ("NOOP", "LEFT", "UP", "RIGHT", "DOWN", "FIRE")  # that set in MinAtar's order: n, l, u, r, d, f


def _environment(game: str, sticky_actions: float, difficulty_ramping: bool) -> Any:
    """A ``minatar.Environment`` for the bare game name (``breakout``)."""
    from minatar import Environment

    return Environment(game, sticky_action_prob=sticky_actions, difficulty_ramping=difficulty_ramping)


@lru_cache(maxsize=None)
def game_channels(game: str) -> int:
    """Object channels of one MinAtar game (``breakout``: 4, ``seaquest``: 10)."""
    return int(_environment(game, 0.0, True).state_shape()[2])


@lru_cache(maxsize=1)
def observation_channels() -> int:
    """The channel count every MinAtar observation is padded to: the largest over the five games."""
    return max(game_channels(g) for g in MINATAR_GAMES)


class MinAtarVecEnv(WholeVecEnv):
    """SB3 ``VecEnv`` over ``n_envs`` ``minatar.Environment`` instances of one game, stepped in a plain loop.

    On an episode end (game over, or ``max_episode_steps`` agent steps), ``step`` returns the first observation of
    the next episode, with the last one in ``info["terminal_observation"]``, ``info["TimeLimit.truncated"]`` set
    for the step cap, and SB3 Monitor's ``info["episode"] = {"r": raw return, "l": length in agent steps}``.

    Seeding: every ``reset()`` seeds env ``i`` from ``SeedSequence([seed, resets])``, so the same ``seed`` plays
    the same episodes, each further ``reset()`` plays new ones, and envs of different seeds share no streams. An
    episode starts with MinAtar's sticky-action memory cleared (no-op), like a fresh ``Environment``.
    """

    def __init__(
        self,
        game: str,
        n_envs: int = 1,
        seed: int = 0,
        sticky_actions: float = 0.1,
        difficulty_ramping: bool = True,
        clip_rewards: bool = True,
        max_episode_steps: int | None = None,
    ) -> None:
        self.game = resolve_game(game)
        if not self.game.startswith(MINATAR_PREFIX):
            raise ValueError(f"{game!r} is an Atari game; MinAtarVecEnv plays {', '.join(MINATAR_GAMES)}")
        if not 0.0 <= sticky_actions <= 1.0:
            raise ValueError(f"sticky_actions must be in [0, 1], got {sticky_actions}")
        if n_envs < 1:
            raise ValueError(f"n_envs must be positive, got {n_envs}")
        name = self.game[len(MINATAR_PREFIX) :]
        self.envs = [_environment(name, sticky_actions, difficulty_ramping) for _ in range(n_envs)]
        self.channels = observation_channels()
        self.game_channels = game_channels(name)
        obs_space = spaces.Box(0, 255, (self.channels, GRID, GRID), dtype=np.uint8)
        super().__init__(n_envs, obs_space, spaces.Discrete(NUM_ACTIONS))
        self.clip_rewards = clip_rewards
        self.max_episode_steps = max_episode_steps
        self._seed = seed
        self._resets = 0
        self._actions: list[int] = [0] * n_envs
        self._returns: list[float] = [0] * n_envs  # raw score of each env's current episode
        self._lengths: list[int] = [0] * n_envs  # agent steps of each env's current episode

    def _observe(self, out: np.ndarray, i: int) -> None:
        """Env ``i``'s state, (10, 10, c) bool, into ``out`` (C, 10, 10) as 0/1; padding channels stay 0."""
        out[: self.game_channels] = self.envs[i].state().transpose(2, 0, 1)

    def _start_episode(self, i: int) -> None:
        env = self.envs[i]
        env.reset()
        env.last_action = 0  # MinAtar's sticky-action memory: a new episode does not repeat the last one's action

    def reset(self) -> np.ndarray:
        seeds = np.random.SeedSequence([self._seed, self._resets]).generate_state(self.num_envs)
        self._resets += 1
        obs = np.zeros((self.num_envs, *self.observation_space.shape), dtype=np.uint8)
        for i, env in enumerate(self.envs):
            env.seed(int(seeds[i]))
            self._start_episode(i)
            self._observe(obs[i], i)
        obs *= 255
        self._returns = [0] * self.num_envs
        self._lengths = [0] * self.num_envs
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs).tolist()

    def step_wait(self) -> VecEnvStepReturn:
        # One pass over the envs with Python scalars (numpy calls per env cost more than MinAtar's own step).
        # Fresh output arrays each step: SB3 keeps the previous observation while the next one is written.
        n, shape, c, envs = self.num_envs, self.observation_space.shape, self.game_channels, self.envs
        cap = self.max_episode_steps or -1  # None or 0: no step cap
        low, high = (-1, 1) if self.clip_rewards else (-np.inf, np.inf)
        returns, lengths = self._returns, self._lengths
        obs = np.zeros((n, *shape), dtype=np.uint8)
        rewards = [0.0] * n
        dones = [False] * n
        infos: list[dict[str, Any]] = [{} for _ in range(n)]
        for i, action in enumerate(self._actions):
            env = envs[i]
            reward, terminated = env.act(action)
            returns[i] += reward
            lengths[i] += 1
            rewards[i] = min(max(reward, low), high)
            if terminated or lengths[i] == cap:
                last = np.zeros(shape, dtype=np.uint8)
                self._observe(last, i)
                last *= 255
                infos[i] = {
                    "terminal_observation": last,
                    "TimeLimit.truncated": not terminated,
                    "episode": {"r": float(returns[i]), "l": lengths[i]},
                }
                dones[i] = True
                returns[i] = lengths[i] = 0
                self._start_episode(i)
            obs[i, :c] = env.state().transpose(2, 0, 1)  # as _observe, inlined: this loop is the hot path
        obs *= 255
        return obs, np.array(rewards, dtype=np.float32), np.array(dones), infos

    def close(self) -> None:
        self.envs = []

    def seed(self, seed: int | None = None) -> Sequence[None | int]:
        """Seed of the next ``reset()``; the per-env seeds are derived from it."""
        self._seed = 0 if seed is None else seed
        self._resets = 0
        return [self._seed for _ in range(self.num_envs)]


def make_minatar_vec_env(game: str, n_envs: int = 1, seed: int = 0, **options: Any) -> MinAtarVecEnv:
    """A ready-to-train ``MinAtarVecEnv`` for ``game`` (``minatar/breakout``, ``MinAtar/Breakout-v1``, ...); options as
    in :class:`MinAtarVecEnv`."""
    return MinAtarVecEnv(game, n_envs=n_envs, seed=seed, **options)
