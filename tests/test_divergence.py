"""The divergence guard: a non-finite loss stops the run naming step and game, or the bad batch is skipped."""

from dataclasses import dataclass

import pytest
import torch as th

from crl.run import config
from crl.methods import METHODS, Method, MethodParams, register
from crl.run.callbacks import TrainingDiverged
from crl.run.loop import ContinualTrainer


@dataclass
class NanAfterParams(MethodParams):
    calls: int = 5


class NanAfter(Method):
    """Test method: its penalty turns NaN after a number of calls."""

    name = "test-nan-after"
    Params = NanAfterParams

    def __init__(self, params=None):
        super().__init__(params)
        self.n = 0

    def penalty(self, agent):
        self.n += 1
        bad = self.n > self.params.calls
        return agent.q_net.head.bias.sum() * 0.0 + (th.tensor(float("nan")) if bad else 0.0)


@pytest.fixture
def nan_method():
    register(NanAfter)
    yield
    METHODS.pop(NanAfter.name)


def tiny(on_divergence: str) -> dict:
    return config.resolve({
        "games": ["Pong", "Breakout"], "method": "test-nan-after", "steps_per_game": 200, "n_envs": 2,
        "eval.every": 0, "eval.episodes": 1, "eval.max_steps": 20, "device": "cpu", "log_every": 20,
        "agent.learning_starts": 50, "agent.buffer_size": 500, "checkpoint.every": 100,
        "on_divergence": on_divergence, "test_nan_after.calls": 30,
    })


@pytest.mark.e2e  # a real run or a `crl` subprocess: seconds, not milliseconds
def test_stop_names_step_and_game_and_keeps_last_good_checkpoint(tmp_path, nan_method):
    trainer = ContinualTrainer(tiny("stop"), tmp_path)
    with pytest.raises(TrainingDiverged, match=r"training diverged at step \d+ on pong: penalty is nan"):
        trainer.run()
    assert list((tmp_path / "checkpoints").glob("resume-*.sha256"))  # the state before it went bad
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.e2e  # a real run or a `crl` subprocess: seconds, not milliseconds
def test_skip_drops_bad_batches_and_finishes(tmp_path, nan_method):
    trainer = ContinualTrainer(tiny("skip"), tmp_path)
    trainer.run()
    assert trainer.agent.skipped_batches > 0
    assert all(th.isfinite(p).all() for p in trainer.agent.q_net.parameters())
    assert (tmp_path / "metrics.json").exists()
