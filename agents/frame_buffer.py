"""``FrameReplayBuffer``: a drop-in for SB3's ``ReplayBuffer`` that stores about one frame per transition.

SB3's buffer keeps two full frame stacks per transition (``obs`` and ``next_obs``: 8 x 84 x 84 bytes on Atari).
Consecutive stacks of an episode share all but one frame, so this buffer keeps a ring of single frames and, per
transition, the ids of the frames its two stacks are made of. (Dopamine's circular buffer also stores single frames
but zero-pads the stacks at episode starts; here the real reset frames are kept.) A frame is written only when it is
new: the newest frame of ``next_obs`` on an ordinary step, the whole stack of ``obs`` at an episode start (the reset
and no-op frames) and the whole ``next_obs`` if it is not the shifted ``obs``. Which case applies is decided by
comparing the stacks themselves, so what ``sample`` rebuilds is bit-for-bit what ``add`` received, terminal
observations and truncated episodes included. The ring has 1/32 spare slots for episode starts (4 frames each) and
grows if shorter episodes need more.

Observations that are not frame stacks, such as MinAtar's object planes (channels are objects, not time), are a
"stack" of one frame: the frame is the whole observation, each transition stores its ``next_obs`` once (plus ``obs``
at an episode start), half of SB3's two copies. ``frame_stack`` says how many frames an observation holds along its
first axis; by default every channel of an image-sized observation (84x84 Atari frames) is a frame and a small grid
(MinAtar's 10x10) is one frame. The choice only costs or saves memory and time: ``sample`` is exact either way.

Everything lives in torch tensors on ``storage_device`` (by default the training device: on a GPU the buffer is
resident there as uint8) and ``sample`` draws indices with torch, so a gradient step needs no host-device sync.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import VecNormalize

FRAME_MARGIN = 1 / 32  # spare frame slots per transition for episode starts: 4 frames per episode of >= 128 steps
MIN_IMAGE_SIDE = 36  # observations at least this wide are images whose channels are stacked frames (Atari: 84)


def default_frame_stack(obs_shape: tuple[int, ...]) -> int:
    """Frames per ``(C, H, W)`` observation: ``C`` for images (a stack of grayscale frames), 1 for small grids."""
    return obs_shape[0] if min(obs_shape[1:]) >= MIN_IMAGE_SIDE else 1


class FrameReplayBuffer(ReplayBuffer):
    """Replay buffer over uint8 observations ``(C, H, W)`` made of ``frame_stack`` frames (newest last), storing
    each frame once.

    Same constructor, ``add``, ``sample``, ``size``, ``pos``, ``full`` and ``reset`` as SB3's ``ReplayBuffer``;
    ``samples_at`` reads given transitions, ``bytes_per_transition`` is the memory cost.

    :param optimize_memory_usage: accepted for SB3's signature; this buffer is always compact
    :param storage_device: where frames and transition data live (default: ``device``)
    :param frame_stack: frames per observation, a divisor of ``C`` (default: :func:`default_frame_stack`)
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        storage_device: th.device | str | None = None,
        frame_stack: int | None = None,
    ) -> None:
        is_image = isinstance(observation_space, spaces.Box) and len(observation_space.shape) == 3
        if not (is_image and observation_space.dtype == np.uint8):
            raise ValueError(f"FrameReplayBuffer needs (channels, height, width) uint8 frames, got {observation_space}")
        channels = observation_space.shape[0]
        stack = default_frame_stack(observation_space.shape) if frame_stack is None else frame_stack
        if stack < 1 or channels % stack:
            raise ValueError(f"frame_stack must divide the {channels} observation channels, got {frame_stack}")
        # BaseBuffer's set-up only: ReplayBuffer.__init__ would allocate the full-stack arrays this class replaces
        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=n_envs)
        self.buffer_size = max(buffer_size // n_envs, 1)
        self.optimize_memory_usage = optimize_memory_usage
        self.handle_timeout_termination = handle_timeout_termination
        self.storage_device = self.device if storage_device is None else get_device(storage_device)
        self.stack = stack
        # one frame: (H, W) when every channel is a frame (as stored before frame_stack existed), else (C/stack, H, W)
        frame_shape = self.obs_shape[1:] if stack == channels else (channels // stack, *self.obs_shape[1:])
        capacity = self.buffer_size * n_envs
        num_slots = capacity + int(capacity * FRAME_MARGIN) + 2 * self.stack * n_envs

        on = dict(device=self.storage_device)
        self.frames = th.empty((num_slots, *frame_shape), dtype=th.uint8, **on)  # only written slots are ever read
        # Absolute frame ids (frame k lives in slot k % num_slots) of obs (first `stack`) and next_obs (last `stack`).
        self.frame_ids = th.zeros((self.buffer_size, n_envs, 2 * self.stack), dtype=th.int64, **on)
        action_dtype = th.as_tensor(np.zeros(1, dtype=self._maybe_cast_dtype(action_space.dtype))).dtype
        self.actions = th.zeros((self.buffer_size, n_envs, self.action_dim), dtype=action_dtype, **on)
        self.rewards = th.zeros((self.buffer_size, n_envs), dtype=th.float32, **on)
        self.dones = th.zeros((self.buffer_size, n_envs), dtype=th.float32, **on)
        self.timeouts = th.zeros((self.buffer_size, n_envs), dtype=th.float32, **on)

        self.frames_written = 0
        self._oldest_frame = np.zeros(self.buffer_size, dtype=np.int64)  # per ring position: its smallest frame id
        # Host copy of each env's last next_obs and its frame ids: the next obs usually is that same stack.
        self._last_next_obs = np.zeros((n_envs, *self.obs_shape), dtype=np.uint8)
        self._last_next_ids = np.zeros((n_envs, self.stack), dtype=np.int64)
        self._has_last = np.zeros(n_envs, dtype=bool)

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return tuple(self.frames.shape[1:])

    # --- memory accounting -----------------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes held by the stored frames and transition data."""
        tensors = (self.frames, self.frame_ids, self.actions, self.rewards, self.dones, self.timeouts)
        return sum(t.nelement() * t.element_size() for t in tensors)

    @property
    def bytes_per_transition(self) -> float:
        """``nbytes`` divided by the capacity in transitions (SB3's buffer: 2 stacks + 13 bytes)."""
        return self.nbytes / (self.buffer_size * self.n_envs)

    # --- writing ---------------------------------------------------------------------------------------------
    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        n, stack = self.n_envs, self.stack
        obs, next_obs = np.asarray(obs), np.asarray(next_obs)
        continues = self._has_last & (obs == self._last_next_obs).reshape(n, -1).all(axis=1)
        frame_shape = self.frame_shape
        next_frames = next_obs.reshape(n, stack, *frame_shape)
        obs_frames = obs.reshape(n, stack, *frame_shape)
        # a stack of one frame is always its obs shifted by one
        shifted = True if stack == 1 else (next_frames[:, :-1] == obs_frames[:, 1:]).reshape(n, -1).all(axis=1)
        first = self.frames_written
        obs_ids = self._last_next_ids.copy()
        if continues.all() and (shifted is True or shifted.all()):  # the usual step: each env's newest frame only
            new_frames = next_frames[:, -1]
            next_ids = np.concatenate([obs_ids[:, 1:], np.arange(first, first + n)[:, None]], axis=1)
        else:
            # Frames to write, in order: whole obs stacks of envs that start an episode, then per env either the
            # newest next_obs frame or the whole next_obs stack.
            new_next = np.ones((n, stack), dtype=bool)
            if stack > 1:
                new_next[shifted, :-1] = False
            starts = np.flatnonzero(~continues)
            new_frames = np.concatenate([obs_frames[starts].reshape(-1, *frame_shape), next_frames[new_next]])
            obs_ids[starts] = first + np.arange(len(starts) * stack).reshape(-1, stack)
            next_ids = np.concatenate([obs_ids[:, 1:], np.zeros((n, 1), dtype=np.int64)], axis=1)
            next_ids[new_next] = first + len(starts) * stack + np.arange(new_next.sum())

        oldest_kept = int(obs_ids.min())
        self._ensure_free_slots(len(new_frames), oldest_kept)
        start, num_slots = first % len(self.frames), len(self.frames)
        if start + len(new_frames) <= num_slots:  # the slots do not wrap around the ring: one slice
            self._write(self.frames, slice(start, start + len(new_frames)), new_frames)
        else:
            self._write(self.frames, np.arange(first, first + len(new_frames)) % num_slots, new_frames)
        self.frames_written += len(new_frames)

        row = self.pos
        self._write(self.frame_ids, row, np.concatenate([obs_ids, next_ids], axis=1))
        self._oldest_frame[row] = oldest_kept
        self._write(self.actions, row, np.asarray(action).reshape(n, self.action_dim))
        self._write(self.rewards, row, np.asarray(reward, dtype=np.float32))
        self._write(self.dones, row, np.asarray(done, dtype=np.float32))
        if self.handle_timeout_termination:
            truncated = [info.get("TimeLimit.truncated", False) for info in infos]
            self._write(self.timeouts, row, np.asarray(truncated, dtype=np.float32))

        self._last_next_obs[:] = next_obs
        self._last_next_ids[:] = next_ids
        self._has_last[:] = True
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full = True
            self.pos = 0

    @staticmethod
    def _write(tensor: th.Tensor, index: int | slice | np.ndarray, values: np.ndarray) -> None:
        """``tensor[index] = values``. On the CPU through a numpy view of the tensor: a vector step writes six small
        pieces, and torch's per-call overhead (tensor wrapping, indexing dispatch) cost more than the copies."""
        if tensor.device.type == "cpu":
            tensor.numpy()[index] = values
        else:
            where = th.as_tensor(index, device=tensor.device) if isinstance(index, np.ndarray) else index
            tensor[where] = th.as_tensor(values).to(tensor.device)

    def _ensure_free_slots(self, count: int, oldest_kept: int) -> None:
        """Grow the frame ring if writing ``count`` frames would overwrite a frame that is still referenced.

        Frames are referenced by live transitions (all but the one at ``pos``, about to be overwritten) and by the
        obs stacks being added (``oldest_kept``: their smallest frame id). Ids only grow along an env's transitions,
        so the oldest referenced frame is the smallest id of the oldest live transition or ``oldest_kept``.
        """
        oldest = oldest_kept
        live = self.buffer_size - 1 if self.full else self.pos
        if live > 0:
            oldest = min(oldest, int(self._oldest_frame[(self.pos + 1) % self.buffer_size if self.full else 0]))
        needed = self.frames_written + count - oldest
        num_slots = len(self.frames)
        if needed <= num_slots:
            return
        size = max(needed, num_slots + num_slots // 8)
        grown = th.empty((size, *self.frames.shape[1:]), dtype=th.uint8, device=self.storage_device)
        kept = th.arange(oldest, self.frames_written, device=self.storage_device)
        grown.index_copy_(0, kept % len(grown), self.frames.index_select(0, kept % num_slots))
        self.frames = grown

    # --- sampling --------------------------------------------------------------------------------------------
    def sample(self, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:
        """Uniform minibatch over stored transitions (as SB3's: uniform slot, uniform env), drawn with torch."""
        upper_bound = self.buffer_size if self.full else self.pos
        flat = th.randint(0, upper_bound * self.n_envs, (batch_size,), device=self.storage_device)
        return self.samples_at(flat // self.n_envs, flat % self.n_envs, env)

    def samples_at(
        self, batch_inds: th.Tensor | np.ndarray, env_inds: th.Tensor | np.ndarray, env: VecNormalize | None = None
    ) -> ReplayBufferSamples:
        """The transitions at ring positions ``batch_inds`` of envs ``env_inds`` (what ``sample`` returns)."""
        batch_inds = th.as_tensor(batch_inds, device=self.storage_device)
        env_inds = th.as_tensor(env_inds, device=self.storage_device)
        # (batch, 2 * stack, *frame_shape): the obs stack, then the next_obs stack
        stacks = self._gather_frames(self.frame_ids[batch_inds, env_inds] % len(self.frames))
        shape = (len(stacks), *self.obs_shape)
        observations = stacks[:, : self.stack].reshape(shape)
        next_observations = stacks[:, self.stack :].reshape(shape)
        dones = self.dones[batch_inds, env_inds] * (1 - self.timeouts[batch_inds, env_inds])
        rewards = self.rewards[batch_inds, env_inds]
        if env is not None:  # VecNormalize works on numpy arrays
            observations, next_observations = (
                th.as_tensor(self._normalize_obs(x.cpu().numpy(), env)) for x in (observations, next_observations)
            )
            rewards = th.as_tensor(self._normalize_reward(rewards.cpu().numpy(), env))
        actions = self.actions[batch_inds, env_inds]
        data = (observations, actions, next_observations, dones.view(-1, 1), rewards.view(-1, 1))
        return ReplayBufferSamples(*(x.to(self.device) for x in data))

    def _gather_frames(self, slots: th.Tensor) -> th.Tensor:
        if self.frames.is_cuda:
            return self.frames[slots]
        return th.from_numpy(self.frames.numpy()[slots.numpy()])  # numpy gathers rows ~5x faster than torch on CPU

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> ReplayBufferSamples:
        env_inds = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        return self.samples_at(batch_inds, env_inds, env)


def sample_with(buffer: Any, batch_size: int, generator: th.Generator) -> ReplayBufferSamples:
    """``batch_size`` transitions uniform over those stored in ``buffer`` (slot and env, as ``sample``), the indices
    drawn with ``generator`` (a CPU generator) instead of the global RNG and read through ``buffer.samples_at``."""
    stored = (buffer.buffer_size if buffer.full else buffer.pos) * buffer.n_envs
    if stored == 0:
        raise ValueError("the replay buffer is empty: nothing to sample")
    flat = th.randint(0, stored, (batch_size,), generator=generator)
    return buffer.samples_at(flat // buffer.n_envs, flat % buffer.n_envs)
