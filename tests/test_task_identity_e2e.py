"""`--task-id fmn`: the Forget-Me-Not process names each block's task from its frames, revisits included."""

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from crl.run import checkpoint
from tests.conftest import run_crl
import pytest

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them


def test_fmn_recognises_new_and_revisited_games(tmp_path):
    run_dir = tmp_path / "run"
    run_crl("train", "--games", "Pong,Breakout", "--cycles", "2", "--task-id", "fmn", "--steps-per-game", "150",
            "--eval-every", "0", "--eval-episodes", "1", "--eval-max-steps", "20", "--n-envs", "2", "--device", "cpu",
            "--set", "agent.learning_starts=50", "--set", "agent.buffer_size=500", "--run-dir", str(run_dir))
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("task_inference/fmn_correct")] == [1.0, 1.0, 1.0, 1.0]
    assert [e.value for e in acc.Scalars("task_inference/fmn_tasks")] == [1.0, 2.0, 2.0, 2.0]  # no new task on revisit
    point = checkpoint.newest_good(run_dir / "checkpoints")
    state = checkpoint.load_trainer_state(point)
    assert state["task_identity"]["counts"].shape[1] == 2  # both games' frame models travel with the checkpoint
