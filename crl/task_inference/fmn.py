"""Forget-Me-Not task recognition: which game a frame stream comes from, when nobody says.

Kirkpatrick et al. 2017 ("Overcoming catastrophic forgetting in neural networks", PNAS; arXiv:1612.00796v2,
appendix "Atari experiments") infer the task with a flat version of the Forget-Me-Not process (Milan et al. 2016,
"The Forget-me-not Process", NeurIPS): the task is the hidden state ``c`` of a hidden Markov model over frames.

* Frame model of a task: the newest frame at 42x42, each pixel an independent categorical over ``bins``
  intensity levels with a symmetric Dirichlet(beta) prior, so the posterior predictive counts frames:
  ``p(x_i = b | c) = (n_c[i, b] + beta) / (n_c + bins * beta)``, ``n_c`` the frames task ``c`` has absorbed.
* Filtering, the appendix's recursion: ``p(c | o_1..t) ∝ p(o_t | c) Σ_c' Γ(c, c') p(c' | o_1..t-1)`` with
  ``Γ(c, c) = 1 - alpha_t`` and the switch mass ``alpha_t`` spread evenly over the other contexts (the paper
  puts ``alpha`` on every off-diagonal entry, which is a distribution only for two contexts). ``alpha_t = 1/t``
  (Veness et al. 2012), ``t`` counting evidence frames since the start rather than since the last switch: that
  is the setting of the cited worst-case bound, and a clock reset at each switch would make another switch
  certain right after one (``alpha_1 = 1``). The ``log t`` nats a switch costs are small against the hundreds
  to thousands of nats one frame of another game brings, so late switches are still seen at once.
* New tasks: the paper keeps a hold-out Dirichlet model with no data (the uniform prior predictive); in each
  window of ``window`` frames every model, the hold-out included, is scored as if it had already absorbed the
  window's earlier frames; at the window's end the most probable model keeps the frames, the others roll back,
  and a winning hold-out becomes a new task. Here the hold-out is expanded by the frame it started at: the
  context "fresh model of age a" (a = 0 .. window-1) is a new task that began ``a`` evidence frames ago and has
  learnt from those frames only, so a new task may start at any frame. A fresh model that, ``window`` frames
  after it started, leads every task's posterior by ``new_task_margin`` nats becomes a task trained on those
  frames; the tasks that had absorbed any of them give them back (the roll-back). Windows fixed on a clock
  straddle switches, and such a mixed window is explained best by the hold-out, which learns inside it: on real
  game streams that created a spurious task at most switches.
* Each evidence frame is absorbed at once by the most probable task, which is also what ``observe`` returns.

Only every ``update_every``-th observed frame is evidence (the appendix's "model update period"): consecutive
agent steps show nearly the same screen, so skipping them loses little and divides the cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.method import check_fields, param


@dataclass
class ForgetMeNotParams:
    """Task-recognition settings (the ``fmn`` config section); defaults follow the EWC paper's Table 2 where it
    gives a value."""

    frame_shape: tuple[int, int] = param((84, 84), "height, width of the frames as the agent sees them (newest frame)",
                                         low=1)
    downscale: int = param(2, "model downscaling: frames are modelled at frame_shape / downscale (paper: 2)", low=1)
    bins: int = param(16, "intensity levels per pixel (not in the paper)", low=2, high=256)
    concentration: float = param(0.05, "symmetric Dirichlet prior per level (not in the paper)", low=0, low_open=True)
    update_every: int = param(4, "model update period: one observed frame in this many is evidence (paper: 4)", low=1)
    window: int = param(4, "evidence frames a fresh model must explain to become a task (paper: 4)", low=1)
    new_task_margin: float = param(0.0, "nats by which a fresh model must lead every task (0: the paper's MAP rule)",
                                   low=0)

    def __post_init__(self) -> None:
        self.frame_shape = tuple(int(side) for side in self.frame_shape)  # a YAML config gives a list

    def validate(self) -> None:
        """Raise ValueError naming the parameter when a value has the wrong type or is out of range."""
        check_fields(self)
        if len(self.frame_shape) != 2:
            raise ValueError(f"frame_shape must be two positive sides, got {self.frame_shape}")
        if any(side % self.downscale for side in self.frame_shape):
            raise ValueError(f"downscale must divide frame_shape {list(self.frame_shape)}, got {self.downscale}")


class ForgetMeNot:
    """Online task recognition over a stream of frames: ``observe(frame)`` returns the inferred task index.

    Tasks are numbered in order of creation; a game seen again should get its old index back.
    ``current_task`` is -1 before the first frame, which always opens task 0.
    """

    Params = ForgetMeNotParams

    def __init__(self, params: ForgetMeNotParams | dict[str, Any] | None = None) -> None:
        if params is None:
            params = ForgetMeNotParams()
        elif isinstance(params, dict):
            params = ForgetMeNotParams(**params)
        params.validate()
        self.params = params
        height, width = params.frame_shape
        self.pixels = (height // params.downscale) * (width // params.downscale)
        self.cells_per_frame = self.pixels * params.bins
        self._ones = np.ones(self.pixels)  # sums over pixels as a dot product: faster than .sum(axis=0) here
        self._level_offsets = np.arange(self.pixels) * params.bins  # flat index of (pixel, level 0)
        block_area = params.downscale**2
        self._level_of_block_sum = np.arange(256 * block_area) * params.bins // (256 * block_area)
        self._log_seen = np.log(np.arange(params.window) + params.concentration)  # log(m + beta), m < window
        self.counts = np.zeros((self.cells_per_frame, 0))  # counts[pixel * bins + level, task]
        self._log_counts = np.zeros((self.cells_per_frame, 0))  # log(counts + beta), kept in step with counts
        self.frames_absorbed = np.zeros(0)  # n_c
        self.recent_cells = np.zeros((0, self.pixels), dtype=np.intp)  # evidence frames since the last new task,
        self.recent_tasks = np.zeros(0, dtype=np.intp)  # at most ``window``, and the task that absorbed each
        self.log_posterior = np.zeros(0)  # log p(c | o_1..t): tasks, then fresh models of age 0 .. window-1
        self.evidence_frames = 0  # t
        self.frames_observed = 0
        self.current_task = -1

    @property
    def num_tasks(self) -> int:
        return len(self.frames_absorbed)

    # --- frame model ---------------------------------------------------------------------------------
    def cells(self, frame: np.ndarray) -> np.ndarray:
        """Flat (pixel, level) index of every downscaled pixel of a uint8 (H, W) frame or (stack, H, W) stack."""
        frame = np.asarray(frame)
        if frame.ndim == 3:
            frame = frame[-1]  # the newest frame of the stack
        if frame.shape != self.params.frame_shape:
            raise ValueError(f"expected frames of shape {self.params.frame_shape}, got {frame.shape}")
        d = self.params.downscale
        block_sums = sum(frame[i::d, j::d].astype(np.intp) for i in range(d) for j in range(d))
        return self._level_offsets + self._level_of_block_sum[block_sums.ravel()]

    def log_likelihoods(self, cells: np.ndarray) -> np.ndarray:
        """``log p(frame | c)`` for every task, then for the fresh models of age 0 .. window-1."""
        beta, bins, window = self.params.concentration, self.params.bins, self.params.window
        per_pixel = np.take(self._log_counts, cells, axis=0)  # (pixels, tasks)
        tasks = self._ones @ per_pixel - self.pixels * np.log(self.frames_absorbed + bins * beta)
        # the fresh model of age a has seen the last a evidence frames: per pixel, how many showed this level
        newest_first = self.recent_cells[::-1][: window - 1]
        seen = np.zeros((window, self.pixels), dtype=np.intp)
        for age, earlier in enumerate(newest_first, start=1):
            seen[age] = seen[age - 1] + (earlier == cells)
        fresh = self._log_seen[seen].sum(axis=1) - self.pixels * np.log(np.arange(window) + bins * beta)
        return np.concatenate([tasks, fresh])

    # --- hidden Markov model -------------------------------------------------------------------------
    def _switch_prior(self) -> np.ndarray:
        """``log Σ_c' Γ(c, c') p(c')``. With probability 1 - alpha a task stays and a fresh model ages by one
        frame; with probability alpha a task moves to one of the other tasks or to a fresh model of age 0, and a
        fresh model to one of the tasks or to a fresh model of age 0, evenly."""
        alpha = 1.0 / self.evidence_frames
        k = self.num_tasks
        p = np.exp(self.log_posterior)
        p_tasks, p_fresh = p[:k], p[k:]
        from_tasks, from_fresh = alpha * p_tasks.sum(), alpha * p_fresh.sum()
        prior = np.empty_like(p)
        prior[:k] = (1 - alpha) * p_tasks + (from_tasks - alpha * p_tasks) / k + from_fresh / (k + 1)
        prior[k] = from_tasks / k + from_fresh / (k + 1)
        prior[k + 1 :] = (1 - alpha) * p_fresh[:-1]  # the oldest fresh model has no mass left (see observe)
        with np.errstate(divide="ignore"):
            return np.log(prior)

    def observe(self, frame: np.ndarray) -> int:
        """Take the next frame (or frame stack) of the stream; return the inferred task index."""
        self.frames_observed += 1
        if (self.frames_observed - 1) % self.params.update_every:
            return self.current_task
        cells = self.cells(frame)
        self.evidence_frames += 1
        if self.num_tasks == 0:
            self.recent_cells = cells[None]
            self._add_task(inherited_log_mass=0.0)
            return self.current_task

        log_joint = self._switch_prior() + self.log_likelihoods(cells)
        self.log_posterior = log_joint - np.logaddexp.reduce(log_joint)
        best_task = int(np.argmax(self.log_posterior[: self.num_tasks]))
        self.current_task = best_task
        self._absorb(cells, best_task, +1)
        self.recent_cells = np.vstack([self.recent_cells, cells[None]])[-self.params.window :]
        self.recent_tasks = np.append(self.recent_tasks, best_task)[-self.params.window :]

        oldest_fresh = self.log_posterior[-1]  # explained the last ``window`` frames as a new task
        if oldest_fresh - self.log_posterior[best_task] > self.params.new_task_margin:
            for frame_cells, task in zip(self.recent_cells, self.recent_tasks):
                self._absorb(frame_cells, task, -1)
            self._add_task(inherited_log_mass=oldest_fresh)
        else:
            self.log_posterior[-1] = -np.inf  # it can grow no older: its hypothesis lapses
            self.log_posterior -= np.logaddexp.reduce(self.log_posterior)
        return self.current_task

    def _absorb(self, cells: np.ndarray, task: int, frames: int) -> None:
        """Add a frame to a task's counts (``frames=-1``: take it back)."""
        counts = self.counts[cells, task] + frames
        self.counts[cells, task] = counts
        self._log_counts[cells, task] = np.log(counts + self.params.concentration)
        self.frames_absorbed[task] += frames

    def _add_task(self, inherited_log_mass: float) -> None:
        """Make the recent frames a new task's model; it takes over the posterior mass of the fresh model."""
        new_counts = np.bincount(self.recent_cells.ravel(), minlength=self.cells_per_frame).astype(np.float64)
        self.counts = np.column_stack([self.counts, new_counts])
        self._log_counts = np.column_stack([self._log_counts, np.log(new_counts + self.params.concentration)])
        self.frames_absorbed = np.append(self.frames_absorbed, len(self.recent_cells))
        tasks = self.log_posterior[: self.num_tasks - 1]
        log_posterior = np.concatenate([tasks, [inherited_log_mass], np.full(self.params.window, -np.inf)])
        self.log_posterior = log_posterior - np.logaddexp.reduce(log_posterior)
        self.current_task = self.num_tasks - 1
        self.recent_cells = self.recent_cells[:0]
        self.recent_tasks = self.recent_tasks[:0]

    # --- persistence ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to continue the stream, as numpy arrays."""
        return {
            "counts": self.counts.copy(),
            "frames_absorbed": self.frames_absorbed.copy(),
            "recent_cells": self.recent_cells.copy(),
            "recent_tasks": self.recent_tasks.copy(),
            "log_posterior": self.log_posterior.copy(),
            "evidence_frames": np.array(self.evidence_frames),
            "frames_observed": np.array(self.frames_observed),
            "current_task": np.array(self.current_task),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore a :meth:`state_dict` taken with the same ``frame_shape``, ``downscale`` and ``bins``."""
        counts = np.asarray(state["counts"], dtype=np.float64)
        if counts.ndim != 2 or counts.shape[0] != self.cells_per_frame:
            raise ValueError(
                f"state has frame models of {counts.shape[:1]} cells, this one needs {self.cells_per_frame}: "
                "frame_shape, downscale or bins differ"
            )
        self.counts = counts.copy()
        self._log_counts = np.log(self.counts + self.params.concentration)
        self.frames_absorbed = np.asarray(state["frames_absorbed"], dtype=np.float64).copy()
        self.recent_cells = np.asarray(state["recent_cells"], dtype=np.intp).reshape(-1, self.pixels).copy()
        self.recent_tasks = np.asarray(state["recent_tasks"], dtype=np.intp).copy()
        self.log_posterior = np.asarray(state["log_posterior"], dtype=np.float64).copy()
        self.evidence_frames = int(state["evidence_frames"])
        self.frames_observed = int(state["frames_observed"])
        self.current_task = int(state["current_task"])
