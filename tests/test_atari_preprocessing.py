"""The Atari path against SB3's AtariWrapper / CleanRL's dqn_atari.py, on real ALE games (issue #27).

Pinned here: the episode cap (in agent steps, a truncation the replay bootstraps through, 0 = no cap), frame stacks
across auto-resets (zero-filled, never the previous episode's frames; the real last stack as terminal observation),
frame skip 4 with a max-pool of the last two frames, grayscale 84x84 by area interpolation (checked pixel by pixel
against a plain ALEInterface), no-op starts, FIRE once per reset and life loss not terminal (in training and in
evaluation alike), evaluation's env options, and the torso dividing uint8 input by 255 once on every path.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from ale_py import ALEInterface, roms

from agents.frame_buffer import FrameReplayBuffer
from agents.networks.base import ConvQNetwork
from crl.run import config, evaluation
from envs import make_atari_vec_env

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them


def store(buffer: FrameReplayBuffer, obs, action, new_obs, rewards, dones, infos) -> None:
    """What SB3's ``_store_transition`` hands the buffer: an ended episode's next_obs is its terminal observation."""
    next_obs = new_obs.copy()
    for i in np.flatnonzero(dones):
        next_obs[i] = infos[i]["terminal_observation"]
    buffer.add(obs, next_obs, action, rewards, dones, infos)


def test_max_episode_steps_zero_means_no_cap() -> None:
    # config: env.max_episode_steps "0: no cap"; ALE ends an episode at any frame cap it gets, so 0 frames cut every
    # episode after one agent step (the bug this pins)
    env = make_atari_vec_env("Breakout", n_envs=1, seed=0, max_episode_steps=0)
    env.reset()
    for _ in range(60):
        _, _, dones, _ = env.step(np.zeros(1, dtype=np.int64))
        assert not dones[0]
    env.close()


def test_cap_is_agent_steps_a_truncation_bootstrapped_and_resets_do_not_leak_frames() -> None:
    env = make_atari_vec_env("Pong", n_envs=2, seed=3, max_episode_steps=37)
    buffer = FrameReplayBuffer(100, env.observation_space, env.action_space, device="cpu", n_envs=2)
    obs = env.reset()
    assert (obs[:, :3] == 0).all() and (obs[:, 3] > 0).any(axis=(1, 2)).all()  # reset stack: zeros, reset frame
    for step in range(1, 38):
        actions = np.zeros(2, dtype=np.int64)
        new_obs, rewards, dones, infos = env.step(actions)
        store(buffer, obs, actions, new_obs, rewards, dones, infos)
        if step < 37:
            assert not dones.any()
            assert np.array_equal(new_obs[:, :3], obs[:, 1:])  # the stack shifts by one frame per step
            obs = new_obs
    assert dones.all()  # 37 agent steps (148 frames, ALE's unit), not 37 frames and not 148 steps
    for i in range(2):
        info, last = infos[i], infos[i]["terminal_observation"]
        assert info["TimeLimit.truncated"] and info["episode"]["l"] == 37
        assert np.array_equal(last[:3], obs[i, 1:]) and not np.array_equal(last[3], obs[i, 3])  # the real last stack
        assert (new_obs[i, :3] == 0).all()  # the next episode's stack: zero-filled, no frame of the last episode
        assert not any(np.array_equal(new_obs[i, 3], f) for f in last)
    sample = buffer.samples_at(np.array([36, 36]), np.array([0, 1]))
    assert (sample.dones == 0).all()  # a time-limit cut is not an end: the TD target bootstraps
    assert np.array_equal(sample.next_observations.numpy(), np.stack([i["terminal_observation"] for i in infos]))
    env.close()


def test_game_over_is_a_termination_and_a_life_loss_is_not() -> None:
    env = make_atari_vec_env("Breakout", n_envs=1, seed=0)
    buffer = FrameReplayBuffer(1000, env.observation_space, env.action_space, device="cpu")
    rng = np.random.default_rng(0)
    obs = env.reset()
    for step in range(1000):
        actions = rng.integers(18, size=1)
        new_obs, rewards, dones, infos = env.step(actions)
        store(buffer, obs, actions, new_obs, rewards, dones, infos)
        obs = new_obs
        if dones[0]:
            break
    assert dones[0] and not infos[0]["TimeLimit.truncated"]
    assert infos[0]["episode"]["l"] == step + 1 > 100  # all 5 lives of random play, not the first one
    assert buffer.samples_at(np.array([step]), np.array([0])).dones.item() == 1.0
    env.close()


def test_fire_once_per_reset_not_after_a_life_loss() -> None:
    """ale_py presses FIRE after a reset only; with life loss not terminal, Breakout then waits to be served."""
    env = make_atari_vec_env("Breakout", n_envs=1, seed=0, sticky_actions=0.0, noop_max=0)
    env.reset()
    lives = []
    for _ in range(120):
        _, _, terminated, truncated, info = env.ale_env.step(np.zeros(1, dtype=np.int64))
        assert not (terminated[0] or truncated[0])
        lives.append(int(info["lives"][0]))
    assert lives[0] == 5 and lives[-1] == 4 and lives.count(4) > 80  # the served ball is lost, none served again
    env.close()


def _area_resize(img: np.ndarray, size: int = 84) -> np.ndarray:
    """cv2.INTER_AREA for downscaling (SB3's WarpFrame): each output pixel is the mean of the area it covers."""
    def weights(n_in: int) -> np.ndarray:
        w, scale = np.zeros((size, n_in)), n_in / size
        for o in range(size):
            a, b = o * scale, (o + 1) * scale
            for i in range(int(a), int(np.ceil(b))):
                w[o, i] = min(b, i + 1) - max(a, i)
        return w / scale
    return weights(img.shape[0]) @ img.astype(np.float64) @ weights(img.shape[1]).T


def test_frames_are_skip_4_max_pooled_grayscale_84_against_a_plain_ale() -> None:
    env = make_atari_vec_env("Pong", n_envs=1, seed=0, sticky_actions=0.0, noop_max=0, fire_reset=False)
    assert env.action_space.n == 18  # full action set (Pong's minimal one has 6)
    ale = ALEInterface()
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(roms.get_rom_path("pong"))
    ale.reset_game()
    legal = ale.getLegalActionSet()
    assert np.abs(env.reset()[0, 3] - _area_resize(ale.getScreenGrayscale())).max() <= 0.501
    rng = np.random.default_rng(0)
    pooled_err, last_err = 0.0, 0.0
    for _ in range(60):
        action = int(rng.integers(18))
        screens = []
        for _ in range(4):
            ale.act(legal[action])
            screens.append(ale.getScreenGrayscale())
        frame = env.step(np.array([action]))[0][0, 3]
        pooled_err = max(pooled_err, np.abs(frame - _area_resize(np.maximum(screens[2], screens[3]))).max())
        last_err = max(last_err, np.abs(frame - _area_resize(screens[3])).max())
    assert pooled_err <= 0.501  # the rounding of the resize only
    assert last_err > 50  # the max-pool matters in Pong: without it the frames would differ
    env.close()


def test_noop_starts_are_up_to_30_frames() -> None:
    _, info = make_atari_vec_env("Pong", n_envs=16, seed=0, fire_reset=False).ale_env.reset(seed=0)
    frames = info["episode_frame_number"]
    assert frames.max() <= 30 and len(set(frames.tolist())) > 5
    _, info = make_atari_vec_env("Pong", n_envs=4, seed=0, noop_max=0, fire_reset=False).ale_env.reset(seed=0)
    assert (info["episode_frame_number"] == 0).all()


@pytest.mark.parametrize("cap, max_steps, expected", [(27_000, 5_000, 5_000), (100, 5_000, 100), (0, 5_000, 5_000)])
def test_evaluation_plays_the_training_env_unclipped(monkeypatch, cap: int, max_steps: int, expected: int) -> None:
    cfg = config.resolve({"games": ["Breakout"], "env.max_episode_steps": cap})
    training = config.env_options(cfg, "Breakout")
    seen = {}

    def capture(game, n_envs, seed, **options):
        seen.update(options)
        raise RuntimeError("captured")

    monkeypatch.setattr(evaluation, "make_vec_env", capture)
    with pytest.raises(RuntimeError, match="captured"):
        evaluation.play_episodes(None, "Breakout", 0, 2, max_steps, 0.05, 0, training)
    # same emulator settings (FIRE, sticky actions, life loss not terminal), raw scores, the step cap
    assert seen == {**training, "clip_rewards": False, "max_episode_steps": expected}


def test_uint8_frames_are_divided_by_255_once_on_every_path() -> None:
    env = make_atari_vec_env("Breakout", n_envs=2, seed=0)
    net = ConvQNetwork(env.observation_space, env.action_space)
    net.set_task(0)
    buffer = FrameReplayBuffer(50, env.observation_space, env.action_space, device="cpu", n_envs=2)
    obs = env.reset()
    for _ in range(8):
        actions = np.random.randint(18, size=2)
        new_obs, rewards, dones, infos = env.step(actions)
        store(buffer, obs, actions, new_obs, rewards, dones, infos)
        obs = new_obs
    env.close()
    batch = buffer.samples_at(np.arange(8).repeat(2), np.tile([0, 1], 8))
    # acting and evaluation feed env frames as they come; training and the target feed replay samples
    for frames in (th.as_tensor(obs), batch.observations, batch.next_observations):
        assert frames.dtype == th.uint8 and frames.max() > 1
        with th.no_grad():
            q = net(frames)
            assert th.allclose(q, net.q_values(frames.float() / 255.0, 0))
            assert not th.allclose(q, net.q_values(frames.float(), 0))  # not zero times
            assert not th.allclose(q, net.q_values(frames.float() / 255.0**2, 0))  # not twice
