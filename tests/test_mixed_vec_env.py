"""MixedVecEnv: all games of a run in one vector (the multi-task reference), on real MinAtar and ALE games."""

import numpy as np
import pytest

from envs import make_joint_vec_env, make_vec_env
from envs.mixed_vec_env import part_seed

GAMES = ["minatar/breakout", "minatar/space_invaders"]


def test_each_game_plays_in_its_envs_exactly_as_alone():
    joint = make_joint_vec_env(GAMES, n_envs=4, seed=7)
    alone = [make_vec_env(g, n_envs=2, seed=part_seed(7, k)) for k, g in enumerate(GAMES)]
    assert joint.num_envs == 4 and joint.games == [GAMES[0]] * 2 + [GAMES[1]] * 2
    obs = joint.reset()
    assert np.array_equal(obs, np.concatenate([env.reset() for env in alone]))
    rng = np.random.default_rng(0)
    episodes = 0
    for _ in range(300):
        actions = rng.integers(joint.action_space.n, size=4)
        obs, rewards, dones, infos = joint.step(actions)
        parts = [env.step(actions[2 * k: 2 * k + 2]) for k, env in enumerate(alone)]
        assert np.array_equal(obs, np.concatenate([p[0] for p in parts]))
        assert np.array_equal(rewards, np.concatenate([p[1] for p in parts]))
        assert np.array_equal(dones, np.concatenate([p[2] for p in parts]))
        episodes += sum("episode" in info for info in infos)
    assert episodes > 0
    assert not obs[:2, 4:].any()  # Breakout has 4 channels; the padding stays empty in its envs


def test_refuses_uneven_splits_and_mixed_families():
    with pytest.raises(ValueError, match="split evenly"):
        make_joint_vec_env(GAMES, n_envs=3)
    with pytest.raises(ValueError, match="one family"):
        make_joint_vec_env(["minatar/breakout", "pong"], n_envs=2)


@pytest.mark.e2e
def test_atari_games_share_one_vector():
    joint = make_joint_vec_env(["pong", "breakout"], n_envs=2, seed=0)
    obs = joint.reset()
    assert obs.shape == (2, 4, 84, 84) and joint.action_space.n == 18
    obs, rewards, dones, infos = joint.step(np.zeros(2, dtype=np.int64))
    assert obs.shape == (2, 4, 84, 84) and len(infos) == 2
    joint.close()
