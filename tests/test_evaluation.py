"""Evaluation on real ALE games: the inferred task id is chosen per episode, and episodes cut by
``eval.max_steps`` are counted (crl/run/evaluation.py)."""

from __future__ import annotations

import numpy as np
import torch as th

from crl.run.evaluation import play_episodes
import pytest

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them


class NoopQNetwork:
    """Q-values that always pick action 0 (NOOP), for any task id: the evaluation loop without a trained net."""

    training = False

    def set_training_mode(self, mode: bool) -> None:
        self.training = mode

    def __call__(self, obs: th.Tensor, task_id: int) -> th.Tensor:
        return th.zeros(len(obs), 18)


class RecordingInferrer:
    """Records the observations each call sees; guesses ``candidates[len(history) % 2]`` so the last guess of a
    5-step episode (history of 5) differs from that of a 16-step window (history of 16)."""

    def __init__(self) -> None:
        self.histories: list[th.Tensor] = []

    def __call__(self, q_net: object, history: th.Tensor, candidates: list[int]) -> int:
        self.histories.append(history.clone())
        return candidates[len(history) % 2]


AGENT = type("Agent", (), {"q_net": NoopQNetwork(), "device": th.device("cpu")})()
ENV = {"sticky_actions": 0.0, "noop_max": 0, "max_episode_steps": 27_000}


def test_the_task_id_is_inferred_afresh_for_every_episode() -> None:
    infer = RecordingInferrer()
    # 17 episodes in 16 envs: env 0 plays two; every episode is cut after 5 steps, shorter than the 16-step window
    result = play_episodes(AGENT, "Pong", 0, episodes=17, max_steps=5, epsilon=0.0, seed=1, env_options=ENV,
                           infer_task=infer, candidate_task_ids=[7, 9], infer_steps=16)
    lengths = [len(h) for h in infer.histories]
    assert max(lengths) == 5  # a history never reaches into the next episode
    assert lengths.count(1) == 17  # each episode started its own inference from its first observation
    assert result.inferred_task_ids == [9] * 17  # one choice per episode: its last guess (5 observations)
    # every history begins with an episode's first observation: the only frame stack with 3 empty older frames
    assert all(not h[0][:-1].any() for h in infer.histories)
    assert all(h[-1][:-1].any() for h in infer.histories if len(h) > 1)


def test_an_episode_longer_than_the_window_keeps_the_window_s_choice() -> None:
    infer = RecordingInferrer()
    result = play_episodes(AGENT, "Pong", 0, episodes=2, max_steps=30, epsilon=0.0, seed=1, env_options=ENV,
                           infer_task=infer, candidate_task_ids=[7, 9], infer_steps=4)
    assert sorted(len(h) for h in infer.histories) == [1, 1, 2, 2, 3, 3, 4, 4]  # 4 steps per episode, then fixed
    assert result.inferred_task_ids == [7, 7]  # history of 4 -> candidates[0]


def test_episodes_cut_by_max_steps_are_counted() -> None:
    cut = play_episodes(AGENT, "Pong", 0, episodes=3, max_steps=8, epsilon=0.0, seed=2, env_options=ENV)
    assert cut.cut_episodes == 3 and len(cut.returns) == 3 and cut.inferred_task_ids is None
    # the same cap set as the game's own episode limit is the protocol, not a cut
    capped = play_episodes(AGENT, "Pong", 0, episodes=3, max_steps=8, epsilon=0.0, seed=2,
                           env_options={**ENV, "max_episode_steps": 8})
    assert capped.cut_episodes == 0 and capped.returns == cut.returns


def test_episodes_that_end_on_their_own_are_not_cut() -> None:
    """Random play of Pong loses 21 points well within 2,000 steps; none of those episodes is cut."""
    result = play_episodes(AGENT, "Pong", 0, episodes=2, max_steps=5_000, epsilon=1.0, seed=3, env_options=ENV)
    assert result.cut_episodes == 0 and all(r <= -15 for r in result.returns)
    assert np.isfinite(result.mean)


def test_the_given_task_id_plays_as_an_inferrer_that_always_names_it() -> None:
    """With the task id given, all envs act from one forward; the episodes are those of the per-id path (an
    inferrer that always answers the same id), bit for bit, with a network whose actions depend on the frames."""
    from gymnasium import spaces

    from agents.networks import build_q_network
    from envs import make_vec_env

    env = make_vec_env("minatar/breakout", n_envs=1, seed=0)
    th.manual_seed(0)
    q_net = build_q_network(env.observation_space, spaces.Discrete(env.action_space.n), {"kind": "conv"})
    q_net.grow_to(3)
    agent = type("Agent", (), {"q_net": q_net, "device": th.device("cpu")})()
    options = {"sticky_actions": 0.1, "max_episode_steps": 1_000}
    given = play_episodes(agent, "minatar/breakout", 2, episodes=6, max_steps=1_000, epsilon=0.05, seed=4,
                          env_options=options)
    named = play_episodes(agent, "minatar/breakout", 2, episodes=6, max_steps=1_000, epsilon=0.05, seed=4,
                          env_options=options, infer_task=lambda *_: 2, candidate_task_ids=[0, 1, 2])
    assert given.returns == named.returns and named.inferred_task_ids == [2] * 6
