"""Naming a block's task with Forget-Me-Not (``task_id: fmn``): FMN watches random-action probe steps (not training
steps) at the block's start, and the name is checked against what the run knows."""

from __future__ import annotations

from typing import Any

import numpy as np

from crl.task_inference.fmn import ForgetMeNot


def probe_task_id(fmn: ForgetMeNot, env: Any) -> int:
    """The task FMN names after random-action steps of ``env`` (env 0's frames), as many as it needs to have
    confirmed a new game."""
    obs = env.reset()
    for _ in range(fmn.params.update_every * fmn.params.window * 3):
        task = fmn.observe(obs[0])
        obs, _, _, _ = env.step(np.random.randint(env.action_space.n, size=env.num_envs))
    return task


def is_right(task: int, column: int, ids_of_columns: dict[int, int]) -> bool:
    """Whether ``task`` is right for the game in ``column``: a revisited game gets the id it had before
    (``ids_of_columns``: game column -> task id of its latest block), a new game an id no other game has."""
    if column in ids_of_columns:
        return task == ids_of_columns[column]
    return task not in ids_of_columns.values()
