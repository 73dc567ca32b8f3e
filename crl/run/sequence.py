"""The task sequence: games trained one after another in blocks, optionally over several cycles (revisits); or, for
the multi-task reference, every game at once in one joint block."""

from __future__ import annotations

from dataclasses import dataclass

JOINT = "+"  # a joint block's ``game``: the names of the games it trains at once, joined


@dataclass(frozen=True)
class Block:
    """One stretch of training: the ``index``-th block, in ``cycle``, on ``game`` as task ``task_id`` (the game's
    column in the sequence). A ``joint`` block trains every game of the sequence at once, as task 0; its ``game`` is
    their names joined with ``+`` (what blocks.jsonl and the progress line show)."""

    index: int
    cycle: int
    game: str
    task_id: int
    steps: int
    joint: bool = False

    @property
    def first_visit(self) -> bool:
        return self.cycle == 0

    @property
    def games(self) -> tuple[str, ...]:
        """The games the block trains: its one game, or every game of a joint block."""
        return tuple(self.game.split(JOINT)) if self.joint else (self.game,)

    @property
    def trained_at(self) -> int | list[int]:
        """The block's entry of a run's ``trained_at`` (:mod:`crl.analysis.metrics`): its game's column, or the
        list of every column for a joint block."""
        return list(range(len(self.games))) if self.joint else self.task_id


@dataclass(frozen=True)
class TaskSequence:
    """``games`` in order, ``steps_per_game`` env steps each, repeated ``cycles`` times; task id = game index.

    ``joint`` (the multi-task reference): one block that trains every game at once for all those steps. ``unit``:
    every block's steps are rounded up to a multiple of it (the agent collects in rollouts of n_envs x train_freq
    steps, so a block can end only on that grid); a joint block rounds the total.
    """

    games: tuple[str, ...]
    steps_per_game: int
    cycles: int = 1
    joint: bool = False
    unit: int = 1

    @property
    def block_steps(self) -> int:
        """The env steps every block trains."""
        planned = len(self.games) * self.cycles * self.steps_per_game if self.joint else self.steps_per_game
        return -(-planned // self.unit) * self.unit

    @property
    def blocks(self) -> list[Block]:
        if self.joint:
            return [Block(index=0, cycle=0, game=JOINT.join(self.games), task_id=0, steps=self.block_steps, joint=True)]
        n = len(self.games)
        return [
            Block(index=c * n + i, cycle=c, game=g, task_id=i, steps=self.block_steps)
            for c in range(self.cycles)
            for i, g in enumerate(self.games)
        ]

    @property
    def total_steps(self) -> int:
        return len(self.blocks) * self.block_steps
