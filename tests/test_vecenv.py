"""The AtariVecEnv wrapper against stable-baselines3's own checks and tools, on real ALE games."""

import numpy as np
import pytest
from stable_baselines3 import DQN
from stable_baselines3.common.env_checker import _check_obs
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import VecCheckNan, VecEnv

from envs import make_atari_vec_env

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them


def test_spaces_and_observations_follow_sb3_conventions():
    env = make_atari_vec_env("Pong", n_envs=3, seed=0)
    assert isinstance(env, VecEnv) and env.num_envs == 3
    assert env.observation_space.shape == (4, 84, 84) and env.observation_space.dtype == np.uint8
    assert is_image_space(env.observation_space, check_channels=True)
    assert env.action_space.n == 18  # full action space by default
    obs = env.reset()
    assert obs.shape == (3, 4, 84, 84)
    for o in obs:
        _check_obs(o, env.observation_space, "reset")
    checked = VecCheckNan(env, raise_exception=True)
    for _ in range(20):
        obs, rewards, dones, infos = checked.step(np.random.randint(18, size=3))
        assert rewards.dtype == np.float32 and dones.dtype == bool and len(infos) == 3
    env.close()


def test_auto_reset_reports_terminal_observation_and_raw_episode_return():
    env = make_atari_vec_env("SpaceInvaders", n_envs=2, seed=1, max_episode_steps=150)
    env.reset()
    ends, clipped_sum = [], np.zeros(2)
    for _ in range(400):
        obs, rewards, dones, infos = env.step(np.random.randint(18, size=2))
        assert np.all(np.abs(rewards) <= 1.0)  # training rewards are clipped
        clipped_sum += rewards
        for i in np.flatnonzero(dones):
            info = infos[i]
            assert info["terminal_observation"].shape == (4, 84, 84)
            assert not np.array_equal(info["terminal_observation"], obs[i])  # obs is already the next episode's
            assert info["TimeLimit.truncated"] and info["episode"]["l"] == 150
            ends.append((info["episode"]["r"], clipped_sum[i]))
            clipped_sum[i] = 0
    assert len(ends) >= 4
    assert any(raw > clipped for raw, clipped in ends)  # Space Invaders scores 5-30 per alien: raw > clipped
    env.close()


def test_sb3_dqn_and_evaluate_policy_work_unchanged():
    env = make_atari_vec_env("Breakout", n_envs=2, seed=0, max_episode_steps=100)
    assert env.env_is_wrapped(Monitor) == [True, True]  # it reports episode stats as Monitor does
    model = DQN("CnnPolicy", env, buffer_size=500, learning_starts=50, seed=0, device="cpu")
    model.learn(120)
    returns, lengths = evaluate_policy(model, env, n_eval_episodes=2, return_episode_rewards=True)
    assert len(returns) == 2 and all(length <= 100 for length in lengths)
    env.close()


def test_same_seed_same_frames():
    a = make_atari_vec_env("Pong", n_envs=2, seed=7)
    b = make_atari_vec_env("Pong", n_envs=2, seed=7)
    assert np.array_equal(a.reset(), b.reset())
    actions = np.array([3, 4])
    for _ in range(30):
        oa, ra, *_ = a.step(actions)
        ob, rb, *_ = b.step(actions)
    assert np.array_equal(oa, ob) and np.array_equal(ra, rb)


@pytest.mark.parametrize("sticky, same", [(0.0, False), (1.0, True)])
def test_sticky_actions_option_reaches_ale(sticky, same):
    """With repeat probability 1 ALE keeps repeating the first action, so what the agent sends has no effect."""
    frames = []
    for action in (0, 3):  # NOOP vs RIGHT
        env = make_atari_vec_env("Breakout", n_envs=1, seed=3, sticky_actions=sticky, noop_max=0)
        env.reset()
        for _ in range(15):
            obs, *_ = env.step(np.array([action]))
        frames.append(obs)
        env.close()
    assert np.array_equal(frames[0], frames[1]) == same
