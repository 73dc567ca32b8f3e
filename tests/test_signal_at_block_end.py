"""A stop signal that arrives in a block's last training segment: the block ends first (end_task, its evaluation,
its checkpoint), so the resumed run never has to run ``end_task`` on a block whose replay it no longer has (EWC's
Fisher would find no samples without ``--checkpoint-replay``). Found by the sweep's kill-and-rerun test."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from agents import ContinualDQN
from crl.run import checkpoint
from crl.run.config import resolve
from crl.run.console import TrainingInterrupted
from crl.run.loop import ContinualTrainer

pytestmark = pytest.mark.e2e


def test_signal_in_the_last_segment_stops_after_the_block_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = resolve({
        "games": ["minatar/breakout", "minatar/space_invaders"], "method": "ewc", "steps_per_game": 400,
        "n_envs": 2, "eval.every": 0, "eval.episodes": 1, "eval.max_steps": 50, "agent.learning_starts": 100,
        "agent.buffer_size": 1_000, "ewc.fisher_batches": 2, "device": "cpu",
    })
    trainer = ContinualTrainer(cfg, tmp_path / "run")
    learn = ContinualDQN.learn

    def learn_then_signal(self: ContinualDQN, *args: object, **kwargs: object) -> ContinualDQN:
        result = learn(self, *args, **kwargs)
        trainer.signals.signum = signal.SIGTERM  # arrives as the block's last rollout ends
        return result

    monkeypatch.setattr(ContinualDQN, "learn", learn_then_signal)
    with pytest.raises(TrainingInterrupted):
        trainer.run()
    assert trainer.block_index == 1 and trainer.block_done == 0 and len(trainer.retention) == 1
    monkeypatch.setattr(ContinualDQN, "learn", learn)

    resumed = ContinualTrainer(cfg, tmp_path / "run")
    resumed.restore(checkpoint.newest_good(tmp_path / "run" / "checkpoints"))
    summary = resumed.run()  # the second block trains and ends with a Fisher of its own replay
    assert len(resumed.retention) == 2 and summary["final_return"]
