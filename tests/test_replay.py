"""FrameReplayBuffer against SB3's ReplayBuffer (full observations per transition) as the reference, on real ALE and
MinAtar episodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import ReplayBuffer

from agents.frame_buffer import FrameReplayBuffer
from envs import make_atari_vec_env, make_minatar_vec_env

FRAME_BYTES = 84 * 84


def make_pair(
    obs_space: spaces.Box, act_space: spaces.Discrete, buffer_size: int, n_envs: int, frame_stack: int | None = None
) -> tuple[FrameReplayBuffer, ReplayBuffer]:
    """The buffer under test and SB3's ``ReplayBuffer`` (full stacks) as the reference, same capacity."""
    frame = FrameReplayBuffer(buffer_size, obs_space, act_space, device="cpu", n_envs=n_envs, frame_stack=frame_stack)
    reference = ReplayBuffer(buffer_size, obs_space, act_space, device="cpu", n_envs=n_envs)
    return frame, reference


def next_obs_with_terminals(new_obs: np.ndarray, dones: np.ndarray, infos: list[dict]) -> np.ndarray:
    """What SB3's ``_store_transition`` passes as next_obs: the terminal observation where an episode ended."""
    next_obs = new_obs.copy()
    for i in np.flatnonzero(dones):
        next_obs[i] = infos[i]["terminal_observation"]
    return next_obs


def assert_same_transitions(frame: FrameReplayBuffer, reference: ReplayBuffer) -> None:
    """Every stored (position, env) transition of ``frame`` equals the reference's, field by field."""
    assert (frame.pos, frame.full, frame.size()) == (reference.pos, reference.full, reference.size())
    pos, env = np.meshgrid(np.arange(reference.size()), np.arange(reference.n_envs), indexing="ij")
    pos, env = pos.ravel(), env.ravel()
    got = frame.samples_at(pos, env)
    np.testing.assert_array_equal(got.observations.numpy(), reference.observations[pos, env])
    np.testing.assert_array_equal(got.next_observations.numpy(), reference.next_observations[pos, env])
    np.testing.assert_array_equal(got.actions.numpy(), reference.actions[pos, env])
    np.testing.assert_array_equal(got.rewards.numpy().ravel(), reference.rewards[pos, env])
    expected_dones = reference.dones[pos, env] * (1 - reference.timeouts[pos, env])
    np.testing.assert_array_equal(got.dones.numpy().ravel(), expected_dones)


def play_into(frame: FrameReplayBuffer, reference: ReplayBuffer, env, steps: int, check_every: int) -> dict[str, int]:
    """Random play, every transition added to both buffers as SB3 adds it; compares them along the way."""
    rng = np.random.default_rng(0)
    counts = {"terminated": 0, "truncated": 0, "wraps": 0}
    obs = env.reset()
    for step in range(1, steps + 1):
        actions = rng.integers(env.action_space.n, size=env.num_envs)
        new_obs, rewards, dones, infos = env.step(actions)
        next_obs = next_obs_with_terminals(new_obs, dones, infos)
        for buffer in (frame, reference):
            buffer.add(obs, next_obs, actions, rewards, dones, infos)
        obs = new_obs
        truncated = sum(info.get("TimeLimit.truncated", False) for info in infos)
        counts["truncated"] += truncated
        counts["terminated"] += int(dones.sum()) - truncated
        counts["wraps"] += frame.pos == 0
        if step % check_every == 0:
            assert_same_transitions(frame, reference)
    assert_same_transitions(frame, reference)
    return counts


@pytest.mark.parametrize(
    "game, n_envs, buffer_size, steps, max_episode_steps",
    [
        ("breakout", 4, 4 * 64, 400, 150),  # terminations and truncations, the ring wraps 6 times
        ("pong", 3, 3 * 50, 130, 40),  # short truncated episodes: the frame ring has to grow
    ],
)
def test_matches_reference_on_ale_episodes(
    game: str, n_envs: int, buffer_size: int, steps: int, max_episode_steps: int
) -> None:
    env = make_atari_vec_env(game, n_envs=n_envs, seed=1, max_episode_steps=max_episode_steps)
    frame, reference = make_pair(env.observation_space, env.action_space, buffer_size, n_envs)
    initial_slots = len(frame.frames)
    counts = play_into(frame, reference, env, steps, check_every=23)
    env.close()
    assert counts["truncated"] > 0 and counts["wraps"] >= 2
    if game == "breakout":
        assert counts["terminated"] > 0
    else:
        assert len(frame.frames) > initial_slots


@pytest.mark.parametrize("seed", range(4))
def test_random_episode_structure_round_trips(seed: int) -> None:
    """Random pixels, random episode starts, non-sliding stacks, wraps, a reset: every transition stays exact.

    Episode starts write 4 frames and non-sliding next stacks 4 more, so the frame ring has to grow, often to
    exactly what is referenced: a frame freed one transition too early shows up as a mismatch.
    """
    n_envs, shape = 3, (4, 6, 6)
    frame, reference = make_pair(spaces.Box(0, 255, shape, dtype=np.uint8), spaces.Discrete(6), 5 * n_envs, n_envs)
    rng = np.random.default_rng(seed)
    obs = rng.integers(0, 256, (n_envs, *shape), dtype=np.uint8)
    for step in range(60):
        if step == 45:
            frame.reset()
            reference.reset()
        next_obs = np.concatenate([obs[:, 1:], rng.integers(0, 256, (n_envs, 1, *shape[1:]), dtype=np.uint8)], axis=1)
        jumbled = rng.random(n_envs) < 0.3
        next_obs[jumbled] = rng.integers(0, 256, (int(jumbled.sum()), *shape), dtype=np.uint8)
        dones = rng.random(n_envs) < 0.3
        infos = [{"TimeLimit.truncated": bool(t)} for t in dones & (rng.random(n_envs) < 0.5)]
        args = (obs, next_obs, rng.integers(6, size=n_envs), rng.normal(size=n_envs).astype(np.float32), dones, infos)
        frame.add(*args)
        reference.add(*args)
        obs = np.where(dones[:, None, None, None], rng.integers(0, 256, (n_envs, *shape), dtype=np.uint8), next_obs)
        assert_same_transitions(frame, reference)


def test_one_frame_observations_round_trip_across_the_ring_end() -> None:
    """Stacks of one frame (MinAtar's default), random episode starts: the usual step writes each env's next_obs
    alone, a start also its obs; writes that run past the end of the frame ring continue at its start."""
    n_envs, shape = 3, (4, 10, 10)
    frame, reference = make_pair(spaces.Box(0, 255, shape, dtype=np.uint8), spaces.Discrete(6), 8 * n_envs, n_envs)
    assert frame.stack == 1
    rng = np.random.default_rng(5)
    obs = rng.integers(0, 2, (n_envs, *shape), dtype=np.uint8) * 255
    straddled = 0
    for _ in range(120):
        next_obs = rng.integers(0, 2, (n_envs, *shape), dtype=np.uint8) * 255
        dones = rng.random(n_envs) < 0.2
        infos = [{"TimeLimit.truncated": bool(t)} for t in dones & (rng.random(n_envs) < 0.5)]
        written, slots = frame.frames_written, len(frame.frames)
        args = (obs, next_obs, rng.integers(6, size=n_envs), rng.normal(size=n_envs).astype(np.float32), dones, infos)
        frame.add(*args)
        reference.add(*args)
        straddled += len(frame.frames) == slots and written % slots + frame.frames_written - written > slots
        obs = np.where(dones[:, None, None, None], rng.integers(0, 2, (n_envs, *shape), dtype=np.uint8) * 255,
                       next_obs)
        assert_same_transitions(frame, reference)
    assert straddled > 0


def filled_buffer(n_envs: int, transitions_per_env: int, buffer_size: int) -> FrameReplayBuffer:
    """A buffer of random sliding 8x8 stacks whose reward is the transition's flat index ``pos * n_envs + env``."""
    obs_space = spaces.Box(0, 255, (4, 8, 8), dtype=np.uint8)
    buffer = FrameReplayBuffer(buffer_size, obs_space, spaces.Discrete(18), device="cpu", n_envs=n_envs)
    rng = np.random.default_rng(3)
    obs = rng.integers(0, 256, (n_envs, 4, 8, 8), dtype=np.uint8)
    for pos in range(transitions_per_env):
        next_obs = np.concatenate([obs[:, 1:], rng.integers(0, 256, (n_envs, 1, 8, 8), dtype=np.uint8)], axis=1)
        rewards = pos * n_envs + np.arange(n_envs, dtype=np.float32)
        buffer.add(obs, next_obs, np.arange(n_envs), rewards, np.zeros(n_envs, dtype=bool), [{}] * n_envs)
        obs = next_obs
    return buffer


def test_sample_types_and_uniform_coverage() -> None:
    th.manual_seed(0)
    buffer = filled_buffer(n_envs=2, transitions_per_env=5, buffer_size=2 * 8)
    batch = buffer.sample(64)
    assert batch.observations.shape == batch.next_observations.shape == (64, 4, 8, 8)
    assert batch.observations.dtype == batch.next_observations.dtype == th.uint8
    assert batch.actions.shape == batch.rewards.shape == batch.dones.shape == (64, 1)
    assert (batch.actions.dtype, batch.rewards.dtype, batch.dones.dtype) == (th.int64, th.float32, th.float32)
    assert set(batch.rewards.ravel().tolist()) <= set(range(10))  # only the 5 positions written so far

    buffer = filled_buffer(n_envs=2, transitions_per_env=11, buffer_size=2 * 8)  # full, wrapped: 16 transitions
    counts = np.bincount(buffer.sample(16_000).rewards.ravel().long().numpy(), minlength=22)
    assert counts[:6].sum() == 0  # the first 3 positions were overwritten
    assert counts[6:].min() > 850 and counts[6:].max() < 1150  # 1000 expected each, std 31


def test_bytes_per_transition_on_pong() -> None:
    env = make_atari_vec_env("pong", n_envs=2, seed=0)
    frame, reference = make_pair(env.observation_space, env.action_space, buffer_size=2 * 300, n_envs=2)
    play_into(frame, reference, env, steps=350, check_every=350)
    env.close()
    reference_bytes = sum(a.nbytes for a in (reference.observations, reference.next_observations, reference.actions,
                                             reference.rewards, reference.dones, reference.timeouts))
    assert frame.bytes_per_transition < 1.1 * FRAME_BYTES
    assert reference_bytes / (300 * 2) / frame.bytes_per_transition > 7


def test_drop_in_for_sb3_dqn_and_replay_pickle(tmp_path) -> None:
    env = make_atari_vec_env("breakout", n_envs=2, seed=0)
    model = DQN("CnnPolicy", env, buffer_size=400, learning_starts=64, batch_size=8, train_freq=4, gradient_steps=1,
                replay_buffer_class=FrameReplayBuffer, policy_kwargs={"net_arch": [16]}, device="cpu", seed=0)
    model.learn(200)
    assert isinstance(model.replay_buffer, FrameReplayBuffer) and model.replay_buffer.size() == 100
    assert model._n_updates > 0
    model.save_replay_buffer(tmp_path / "replay.pkl")
    stored = model.replay_buffer
    model.load_replay_buffer(tmp_path / "replay.pkl")
    positions, envs = np.arange(100).repeat(2), np.tile([0, 1], 100)
    for before, after in zip(stored.samples_at(positions, envs), model.replay_buffer.samples_at(positions, envs)):
        if before is not None:
            assert th.equal(before, after)
    env.close()


@pytest.mark.parametrize(
    "game, frame_stack, max_episode_steps",
    [
        ("minatar/breakout", None, None),  # default: one frame per observation; short episodes, the ring grows
        ("minatar/freeway", None, 70),  # truncations only
        ("minatar/seaquest", 10, 120),  # every channel a "frame": nothing slides, whole stacks are written
        ("minatar/space_invaders", 2, 40),  # frames of 5 channels
    ],
)
def test_matches_reference_on_minatar_episodes(game: str, frame_stack: int | None, max_episode_steps: int | None) -> None:
    """MinAtar observations are object planes, not frame stacks: stored whole by default, exact whatever the stack."""
    n_envs = 3
    env = make_minatar_vec_env(game, n_envs=n_envs, seed=2, max_episode_steps=max_episode_steps)
    frame, reference = make_pair(env.observation_space, env.action_space, n_envs * 60, n_envs, frame_stack)
    assert frame.stack == (frame_stack or 1)
    counts = play_into(frame, reference, env, steps=400, check_every=37)
    assert counts["wraps"] >= 5 and counts["terminated" if max_episode_steps is None else "truncated"] > 0
    if frame_stack is None:
        assert frame.frame_shape == env.observation_space.shape
        assert frame.bytes_per_transition < 0.65 * 2 * np.prod(env.observation_space.shape)  # SB3: two copies


def test_sampling_minatar_transitions_returns_what_was_added() -> None:
    """``sample`` draws stored transitions whole: every sampled (obs, action, reward, next_obs, done) was added."""
    env = make_minatar_vec_env("minatar/asterix", n_envs=2, seed=0, max_episode_steps=80)
    buffer = FrameReplayBuffer(2 * 500, env.observation_space, env.action_space, device="cpu", n_envs=2)
    rng = np.random.default_rng(0)
    added = set()
    obs = env.reset()
    for _ in range(300):
        actions = rng.integers(6, size=2)
        new_obs, rewards, dones, infos = env.step(actions)
        next_obs = next_obs_with_terminals(new_obs, dones, infos)
        buffer.add(obs, next_obs, actions, rewards, dones, infos)
        for i in range(2):
            truncated = infos[i].get("TimeLimit.truncated", False)
            added.add((obs[i].tobytes(), int(actions[i]), float(rewards[i]), next_obs[i].tobytes(),
                       float(dones[i] and not truncated)))
        obs = new_obs
    th.manual_seed(0)
    batch = buffer.sample(256)
    assert batch.observations.shape == (256, *env.observation_space.shape)
    for k in range(256):
        drawn = (batch.observations[k].numpy().tobytes(), int(batch.actions[k, 0]), float(batch.rewards[k, 0]),
                 batch.next_observations[k].numpy().tobytes(), float(batch.dones[k, 0]))
        assert drawn in added


def test_drop_in_for_sb3_dqn_on_minatar() -> None:
    env = make_minatar_vec_env("minatar/breakout", n_envs=2, seed=0)
    model = DQN("MlpPolicy", env, buffer_size=400, learning_starts=64, batch_size=8, train_freq=4, gradient_steps=1,
                replay_buffer_class=FrameReplayBuffer, policy_kwargs={"net_arch": [16]}, device="cpu", seed=0)
    model.learn(200)
    assert isinstance(model.replay_buffer, FrameReplayBuffer) and model.replay_buffer.stack == 1
    assert model.replay_buffer.size() == 100 and model._n_updates > 0


def test_rejects_observations_that_are_not_frame_stacks() -> None:
    with pytest.raises(ValueError, match="uint8 frames"):
        FrameReplayBuffer(10, spaces.Box(0.0, 1.0, (4,), dtype=np.float32), spaces.Discrete(2))
    with pytest.raises(ValueError, match="uint8 frames"):
        FrameReplayBuffer(10, spaces.Box(0.0, 1.0, (4, 84, 84), dtype=np.float32), spaces.Discrete(2))
    with pytest.raises(ValueError, match="frame_stack must divide the 10 observation channels"):
        FrameReplayBuffer(10, spaces.Box(0, 255, (10, 10, 10), dtype=np.uint8), spaces.Discrete(6), frame_stack=3)
