"""The task sequence: games trained one after another in blocks, optionally over several cycles (revisits)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Block:
    """One stretch of training on one game: the ``index``-th block, in ``cycle``, on ``game`` (task ``task_id``)."""

    index: int
    cycle: int
    game: str
    task_id: int
    steps: int

    @property
    def first_visit(self) -> bool:
        return self.cycle == 0


@dataclass(frozen=True)
class TaskSequence:
    """``games`` in order, ``steps_per_game`` env steps each, repeated ``cycles`` times; task id = game index."""

    games: tuple[str, ...]
    steps_per_game: int
    cycles: int = 1

    @property
    def blocks(self) -> list[Block]:
        n = len(self.games)
        return [
            Block(index=c * n + i, cycle=c, game=g, task_id=i, steps=self.steps_per_game)
            for c in range(self.cycles)
            for i, g in enumerate(self.games)
        ]

    @property
    def total_steps(self) -> int:
        return len(self.games) * self.cycles * self.steps_per_game
