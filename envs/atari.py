"""Atari games as stable-baselines3 VecEnvs, stepped by ale_py's C++ ``AtariVectorEnv``.

The preprocessing of the DQN papers runs inside ALE's threads: 84x84 grayscale, 4-frame stack, frame skip 4 with a
max-pool over the last two frames, up to 30 no-op starts, sticky actions (0.25 by default, Machado et al. 2018), the
full 18-action set, FIRE pressed after each reset in games that have it (``fire_reset``, ale_py's default; the
DQN papers did not). Rewards are clipped to [-1, 1] here (not in ALE) so that the raw game score of every episode is
still reported in ``info["episode"]`` for evaluation and logging.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from ale_py.vector_env import AtariVectorEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from envs.games import resolve_game
from envs.whole_vec_env import WholeVecEnv

NO_FRAME_CAP = 2**30  # frames; ALE's cap is a C int it increments once past, so not INT_MAX


class AtariVecEnv(WholeVecEnv):
    """SB3 ``VecEnv`` over ``AtariVectorEnv`` with SB3's auto-reset semantics.

    On an episode end, ``step`` returns the first observation of the next episode, with the last one in
    ``info["terminal_observation"]``, ``info["TimeLimit.truncated"]`` for time limits, and SB3 Monitor's
    ``info["episode"] = {"r": raw return, "l": length in agent steps}``. ``max_episode_steps``: agent steps per
    episode at most (None: the standard 27,000, i.e. 108,000 frames; 0: no cap).
    """

    def __init__(
        self,
        game: str,
        n_envs: int = 1,
        seed: int = 0,
        sticky_actions: float = 0.25,
        full_action_space: bool = True,
        frame_skip: int = 4,
        noop_max: int = 30,
        frame_stack: int = 4,
        clip_rewards: bool = True,
        max_episode_steps: int | None = None,
        num_threads: int = 0,
        fire_reset: bool = True,
    ) -> None:
        self.game = resolve_game(game)
        # ALE counts the cap in emulator frames and ends an episode at any cap it is given, 0 included (after one step)
        if max_episode_steps is None:
            max_frames = 108_000  # the standard cap: 27,000 agent steps of 4 frames
        elif max_episode_steps == 0:
            max_frames = NO_FRAME_CAP  # 0: no cap, as the config's env.max_episode_steps documents
        else:
            max_frames = max_episode_steps * frame_skip
        self.ale_env = AtariVectorEnv(
            self.game,
            n_envs,
            num_threads=num_threads,
            repeat_action_probability=sticky_actions,
            full_action_space=full_action_space,
            frameskip=frame_skip,
            noop_max=noop_max,
            use_fire_reset=fire_reset,  # press FIRE after each reset where the game has it (ale_py's default)
            stack_num=frame_stack,
            reward_clipping=False,
            max_num_frames_per_episode=max_frames,
            autoreset_mode="SameStep",
        )
        super().__init__(n_envs, self.ale_env.single_observation_space, self.ale_env.single_action_space)
        self.clip_rewards = clip_rewards
        self._seed = seed
        self._actions = np.zeros(n_envs, dtype=np.int64)
        self._returns = np.zeros(n_envs, dtype=np.float64)
        self._lengths = np.zeros(n_envs, dtype=np.int64)

    def reset(self) -> np.ndarray:
        obs, _ = self.ale_env.reset(seed=self._seed)
        self._seed += self.num_envs  # the next reset plays new episodes, reproducibly
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, terminated, truncated, ale_info = self.ale_env.step(self._actions)
        rewards = rewards.astype(np.float32)
        self._returns += rewards
        self._lengths += 1
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            infos[i] = {
                "terminal_observation": ale_info["final_obs"][i],
                "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                "episode": {"r": float(self._returns[i]), "l": int(self._lengths[i])},
            }
            self._returns[i] = 0.0
            self._lengths[i] = 0
        if self.clip_rewards:
            rewards = np.clip(rewards, -1.0, 1.0)
        return obs, rewards, dones, infos

    def close(self) -> None:
        self.ale_env.close()

    def seed(self, seed: int | None = None) -> Sequence[None | int]:
        self._seed = 0 if seed is None else seed
        return [self._seed + i for i in range(self.num_envs)]


def make_atari_vec_env(game: str, n_envs: int = 1, seed: int = 0, **options: Any) -> AtariVecEnv:
    """A ready-to-train ``AtariVecEnv`` for ``game`` (any accepted spelling); options as in :class:`AtariVecEnv`."""
    return AtariVecEnv(game, n_envs=n_envs, seed=seed, **options)

