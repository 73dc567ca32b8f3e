"""The trainer's position in the task sequence and its history: everything a resume checkpoint stores besides the
agent (and the task-identity model), so a resumed run continues exactly where the checkpoint was taken."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunState:
    """Where the run stands. The loop moves the position, the step callbacks move the schedules, the loop and the
    evaluation append the history; nothing else writes it."""

    block_index: int = 0  # the block being trained (== number of finished blocks)
    block_done: int = 0  # env steps done in the current block
    next_eval: int = 0  # the step of the next periodic evaluation
    next_log: int = 0  # the step of the next training scalars
    retention: list[list[float]] = field(default_factory=list)  # per finished block: every game's mean return
    retention_cut: list[list[int]] = field(default_factory=list)  # and its episodes cut by eval.max_steps
    # per finished block: the game's column (metrics, figures) and the agent's task id (given or inferred); the two
    # differ as soon as task inference names a game differently from its place in the sequence
    trained_at: list[int | list[int]] = field(default_factory=list)  # a joint (multitask) block trains every column
    task_ids: list[int] = field(default_factory=list)
    n_evaluations: int = 0
    n_eval_records: int = 0  # lines of evals.jsonl and blocks.jsonl this state accounts for: a resume drops the rest
    n_block_records: int = 0
    n_plasticity_records: int = 0  # lines of plasticity.jsonl
