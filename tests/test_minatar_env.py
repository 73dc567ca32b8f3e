"""MinAtarVecEnv against MinAtar itself on the five real games, make_vec_env's dispatch, and the normalized scores."""

from __future__ import annotations

import csv
import math
from importlib import resources

import numpy as np
import pytest
from minatar import Environment
from stable_baselines3 import DQN
from stable_baselines3.common.env_checker import _check_obs
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first

from crl.analysis.normalization import minatar_reference_scores, normalized_score, score_name
from envs import (
    MINATAR_GAMES,
    AtariVecEnv,
    MinAtarVecEnv,
    known_games,
    make_minatar_vec_env,
    make_vec_env,
)

CHANNELS = 10  # Seaquest's, the most of the five games


def encode(state: np.ndarray) -> np.ndarray:
    """MinAtar's (10, 10, c) bool state as the VecEnv must show it: (10, 10, 10) channels first, 0/255, zero-padded."""
    padded = np.zeros((10, 10, CHANNELS), dtype=np.uint8)
    padded[:, :, : state.shape[2]] = state
    return np.moveaxis(padded, -1, 0) * np.uint8(255)


class Reference:
    """The documented behaviour, computed straight from ``minatar.Environment``: env ``i`` seeded from
    ``SeedSequence([seed, 0])``, MinAtar's sticky-action memory cleared at each episode start, an episode ending at
    game over or after ``cap`` steps."""

    def __init__(self, game: str, n_envs: int, seed: int, cap: int | None, sticky: float = 0.1) -> None:
        self.envs = [Environment(game, sticky_action_prob=sticky) for _ in range(n_envs)]
        for env, s in zip(self.envs, np.random.SeedSequence([seed, 0]).generate_state(n_envs)):
            env.seed(int(s))
            env.reset()
        self.cap = cap
        self.returns = [0.0] * n_envs
        self.lengths = [0] * n_envs

    def observe(self) -> np.ndarray:
        return np.stack([encode(env.state()) for env in self.envs])

    def step(self, actions: np.ndarray) -> tuple[list[float], list[bool], list[dict]]:
        rewards, dones, ends = [], [], []
        for i, (env, action) in enumerate(zip(self.envs, actions)):
            reward, terminated = env.act(int(action))
            self.returns[i] += reward
            self.lengths[i] += 1
            truncated = not terminated and self.cap is not None and self.lengths[i] >= self.cap
            end = {}
            if terminated or truncated:
                end = {"terminal": encode(env.state()), "truncated": truncated,
                       "r": self.returns[i], "l": self.lengths[i]}
                self.returns[i], self.lengths[i] = 0.0, 0
                env.reset()
                env.last_action = 0
            rewards.append(float(reward))
            dones.append(terminated or truncated)
            ends.append(end)
        return rewards, dones, ends


@pytest.mark.parametrize("game", MINATAR_GAMES)
def test_steps_match_minatar_with_auto_reset_terminal_observations_and_raw_scores(game: str) -> None:
    n_envs, seed, cap = 3, 5, 60
    env = make_minatar_vec_env(f"minatar/{game}", n_envs=n_envs, seed=seed, max_episode_steps=cap)
    ref = Reference(game, n_envs, seed, cap)
    channels = env.envs[0].state_shape()[2]
    obs = env.reset()
    np.testing.assert_array_equal(obs, ref.observe())
    rng = np.random.default_rng(0)
    counts = {"terminated": 0, "truncated": 0}
    for _ in range(400):
        actions = rng.integers(6, size=n_envs)
        previous, previous_expected = obs, ref.observe()
        obs, rewards, dones, infos = env.step(actions)
        raw, ref_dones, ends = ref.step(actions)
        assert obs.dtype == np.uint8 and rewards.dtype == np.float32 and dones.dtype == bool
        np.testing.assert_array_equal(obs, ref.observe())  # after an episode end: the next episode's first state
        np.testing.assert_array_equal(previous, previous_expected)  # SB3 still holds it: not overwritten
        assert not obs[:, channels:].any()  # padding channels stay empty
        np.testing.assert_array_equal(rewards, np.clip(raw, -1, 1))
        assert dones.tolist() == ref_dones
        for info, end in zip(infos, ends):
            if not end:
                assert info == {}
                continue
            np.testing.assert_array_equal(info["terminal_observation"], end["terminal"])
            assert info["TimeLimit.truncated"] == end["truncated"]
            assert info["episode"] == {"r": end["r"], "l": end["l"]}  # raw score: MinAtar's rewards, summed
            counts["truncated" if end["truncated"] else "terminated"] += 1
    if game == "freeway":  # 2,500-step episodes: every end here is the step cap
        assert counts["truncated"] >= 3 * n_envs and counts["terminated"] == 0
    else:
        assert counts["terminated"] > 0
    env.close()


def test_observations_follow_sb3_image_conventions_and_sb3_tools_work() -> None:
    env = make_minatar_vec_env("minatar/breakout", n_envs=2, seed=0, max_episode_steps=50)
    space = env.observation_space
    assert space.shape == (CHANNELS, 10, 10) and space.dtype == np.uint8 and env.action_space.n == 6
    assert is_image_space(space) and is_image_space_channels_first(space)  # SB3 scales by 1/255, no transpose
    obs = env.reset()
    assert set(np.unique(obs)) == {0, 255}
    for o in obs:
        _check_obs(o, space, "reset")
    assert env.env_is_wrapped(Monitor) == [True, True]
    model = DQN("MlpPolicy", env, buffer_size=500, learning_starts=50, policy_kwargs={"net_arch": [16]}, seed=0,
                device="cpu")
    model.learn(120)
    returns, lengths = evaluate_policy(model, env, n_eval_episodes=4, return_episode_rewards=True)
    assert len(returns) == 4 and all(length <= 50 for length in lengths)
    env.close()


def test_every_game_has_the_same_spaces() -> None:
    envs = [make_minatar_vec_env(game, n_envs=1) for game in known_games("minatar")]
    assert all(e.observation_space == envs[0].observation_space and e.action_space == envs[0].action_space
               for e in envs)


def surface_with_six_divers(clip_rewards: bool) -> tuple[list[float], dict]:
    """A real Seaquest game with six divers put on board: down, up -> surfacing pays one point per oxygen tenth."""
    env = make_minatar_vec_env("minatar/seaquest", n_envs=1, seed=0, sticky_actions=0.0,
                               clip_rewards=clip_rewards, max_episode_steps=3)
    env.reset()
    env.envs[0].env.diver_count = 6  # MinAtar's Seaquest state: divers on board
    rewards, info = [], {}
    for action in (4, 2, 0):  # down, up, no-op
        _, reward, dones, infos = env.step(np.array([action]))
        rewards.append(float(reward[0]))
        info = infos[0] if dones[0] else info
    return rewards, info


def test_training_rewards_are_clipped_and_the_episode_score_is_raw() -> None:
    raw, raw_info = surface_with_six_divers(clip_rewards=False)
    clipped, clipped_info = surface_with_six_divers(clip_rewards=True)
    assert raw == [0.0, 9.0, 0.0]  # 199 of 200 oxygen left: 9 points at once
    assert clipped == [0.0, 1.0, 0.0]
    assert raw_info["episode"] == clipped_info["episode"] == {"r": 9.0, "l": 3}
    assert raw_info["TimeLimit.truncated"] and clipped_info["TimeLimit.truncated"]


def rollout(env: MinAtarVecEnv, steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observations, rewards and dones of ``steps`` random steps after a ``reset()``."""
    rng = np.random.default_rng(seed)
    observations, rewards, dones = [env.reset()], [], []
    for _ in range(steps):
        obs, reward, done, _ = env.step(rng.integers(6, size=env.num_envs))
        observations.append(obs)
        rewards.append(reward)
        dones.append(done)
    return np.stack(observations), np.stack(rewards), np.stack(dones)


def test_seeding_is_reproducible_and_each_reset_plays_new_episodes() -> None:
    make = lambda seed: make_minatar_vec_env("minatar/asterix", n_envs=2, seed=seed)  # noqa: E731
    first = rollout(make(3), 300)
    assert first[2].sum() >= 4  # several episodes, auto-reset included
    for a, b in zip(first, rollout(make(3), 300)):
        np.testing.assert_array_equal(a, b)
    env = make(3)
    rollout(env, 10)
    again = rollout(env, 300)  # the second reset(): new episodes
    assert not np.array_equal(again[0], first[0])
    env.seed(3)  # back to the first reset's episodes
    np.testing.assert_array_equal(rollout(env, 300)[0], first[0])
    assert not np.array_equal(rollout(make(4), 300)[0], first[0])
    assert not np.array_equal(first[0][:, 0], first[0][:, 1])  # the envs of one vector play different episodes


def test_sticky_actions_and_difficulty_ramping_are_passed_to_minatar() -> None:
    env = make_minatar_vec_env("minatar/asterix", n_envs=2, sticky_actions=0.0, difficulty_ramping=False)
    assert all(e.sticky_action_prob == 0.0 and not e.env.ramping for e in env.envs)
    env = make_minatar_vec_env("minatar/asterix", n_envs=2)
    assert all(e.sticky_action_prob == 0.1 and e.env.ramping for e in env.envs)
    with pytest.raises(ValueError, match="sticky_actions"):
        make_minatar_vec_env("minatar/asterix", sticky_actions=1.5)


def test_make_vec_env_dispatches_on_the_family() -> None:
    env = make_vec_env("MinAtar/SpaceInvaders-v1", n_envs=2, seed=1, sticky_actions=0.0)
    assert isinstance(env, MinAtarVecEnv) and env.game == "minatar/space_invaders" and env.num_envs == 2
    assert env.envs[0].sticky_action_prob == 0.0
    atari = make_vec_env("Pong", n_envs=1, seed=0, max_episode_steps=10)
    assert isinstance(atari, AtariVecEnv) and atari.game == "pong"
    atari.close()
    with pytest.raises(ValueError, match="Atari game"):
        MinAtarVecEnv("pong")
    with pytest.raises(TypeError):
        make_vec_env("minatar/breakout", frame_skip=4)  # an Atari option


# --- normalized scores ----------------------------------------------------------------------------------------
def test_normalized_scores_known_answers() -> None:
    assert score_name("atari") == score_name("pong") == "hns"
    assert score_name("minatar") == score_name("MinAtar/Breakout-v1") == "dqn_normalized"
    assert normalized_score("pong", -20.7) == pytest.approx(0.0)  # Atari: human-normalized (random -20.7, human 14.6)
    assert normalized_score("Pong", 14.6) == pytest.approx(1.0)
    random, dqn = minatar_reference_scores()["minatar/breakout"]
    assert dqn == 10.0  # Young & Tian 2019's DQN on Breakout
    assert normalized_score("minatar/breakout", 10.0) == pytest.approx(1.0)
    assert normalized_score("minatar/breakout", random) == pytest.approx(0.0)
    assert normalized_score("MinAtar/Breakout-v0", (random + 10.0) / 2) == pytest.approx(0.5)
    assert normalized_score("minatar/breakout", random + 2 * (10.0 - random)) == pytest.approx(2.0)
    assert math.isnan(normalized_score("adventure", 0.0))  # an Atari game without reference figures
    assert math.isnan(normalized_score("not_a_game", 0.0))


def test_the_minatar_table_covers_every_game_with_random_below_dqn() -> None:
    text = resources.files("crl.data").joinpath("minatar_scores.csv").read_text()
    rows = {row["game"]: row for row in csv.DictReader(text.splitlines())}
    assert set(rows) == set(known_games("minatar"))
    for row in rows.values():
        assert 0 <= float(row["random"]) < float(row["dqn"]) and int(row["random_episodes"]) >= 1000
