"""A game's column and the agent's task id are kept apart: metrics and figures use columns, evaluation uses the id
the agent trained the game under, EWC keys its anchors by task id (issue 12, item 2).

Task inference (``--task-id fmn``) may name three games 0, 2, 3 (a spurious context opened in between); a run must
then finish and report the metrics of its retention matrix exactly as a run whose ids are 0, 1, 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch as th

from agents import ContinualDQN
from crl.run import config, rundir
from crl.analysis import metrics, plots
from crl.methods import TaskInfo
from crl.methods.ewc import EWC
from crl.run.sequence import TaskSequence
from crl.run.loop import ContinualTrainer
from tests.test_ewc import seeded_agent

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them

# The example: 3 games trained in order, retention rows after each block.
R = np.array([[10.0, 0.0, 0.0], [5.0, 20.0, 0.0], [1.0, 2.0, 30.0]])
GAMES = ["pong", "breakout", "freeway"]


# --- metrics and figures read columns ----------------------------------------------------------------------
def test_metrics_of_columns_do_not_depend_on_task_ids() -> None:
    summary = metrics.summarize(R, GAMES, [0, 1, 2])
    assert summary["backward_transfer"] == pytest.approx(((1 - 10) + (2 - 20)) / 2)  # negative: forgetting
    assert summary["forgetting"] == {"pong": 9.0, "breakout": 18.0, "freeway": None}


def test_task_ids_given_as_columns_are_rejected_not_misread() -> None:
    with pytest.raises(ValueError, match="game column"):
        metrics.summarize(R, GAMES, [0, 2, 3])
    with pytest.raises(ValueError, match="game column"):
        plots.retention_heatmap(R, GAMES, trained_at=[0, 2, 3])


def test_heatmap_boxes_columns_and_labels_task_ids() -> None:
    fig = plots.retention_heatmap(R, GAMES, trained_at=[0, 1, 2], task_ids=[0, 2, 3])
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["0: pong (task 0)", "1: breakout (task 2)", "2: freeway (task 3)"]
    plain = plots.retention_heatmap(R, GAMES, trained_at=[0, 1, 2], task_ids=[0, 1, 2])
    assert [t.get_text() for t in plain.axes[0].get_yticklabels()] == ["0: pong", "1: breakout", "2: freeway"]


# --- the trainer's bookkeeping -----------------------------------------------------------------------------
def bookkeeping(trained_at: list[int], task_ids: list[int], block_index: int, current: int) -> SimpleNamespace:
    """What ``task_id_for`` reads from a trainer, without an agent or environments."""
    blocks = TaskSequence(tuple(GAMES), 100, 2).blocks
    return SimpleNamespace(trained_at=trained_at, task_ids=task_ids, blocks=blocks, block_index=block_index,
                           agent=SimpleNamespace(current_task=TaskInfo(current, blocks[block_index].game)))


def task_id_for(state: SimpleNamespace, game_index: int) -> int:
    state.trained_task_ids = lambda: ContinualTrainer.trained_task_ids(state)
    return ContinualTrainer.task_id_for(state, game_index)


def test_evaluation_uses_the_id_the_agent_trained_the_game_under() -> None:
    # during block 1 (breakout, inferred id 2), after pong (id 0): freeway is zero-shot with the current id
    during = bookkeeping([0], [0], block_index=1, current=2)
    assert [task_id_for(during, g) for g in range(3)] == [0, 2, 2]
    after = bookkeeping([0, 1, 2], [0, 2, 3], block_index=2, current=3)
    assert [task_id_for(after, g) for g in range(3)] == [0, 2, 3]
    # a revisit of pong (block 3) that inference names 4: pong is now evaluated with its latest id
    revisit = bookkeeping([0, 1, 2], [0, 2, 3], block_index=3, current=4)
    assert [task_id_for(revisit, g) for g in range(3)] == [4, 2, 3]


# --- EWC keys anchors by the agent's task id ---------------------------------------------------------------
def test_ewc_anchors_are_keyed_by_task_id_never_by_game() -> None:
    agent = seeded_agent()
    agent.task_steps = [0] * 4
    ewc = EWC({"fisher_batches": 2, "fisher_batch_size": 8})
    for task in (TaskInfo(0, "pong"), TaskInfo(2, "breakout", block=1), TaskInfo(2, "freeway", block=2)):
        ewc.before_task(agent.ctx(task), task)  # freeway taken for breakout: the agent cannot tell them apart
        agent.task_steps[task.task_id] += 100
        ewc.after_task(agent.ctx(task), task)
        with th.no_grad():
            for p in agent.q_net.parameters():
                p.add_(0.1)
    assert sorted(ewc.anchors) == [0, 2]
    assert not any(isinstance(key, str) for key in ewc.anchors) and set(ewc.fisher_stats) == {0, 2}
    revisit = TaskInfo(2, "freeway", block=3)
    ewc.before_task(agent.ctx(revisit), revisit)  # task 2's own anchor rests while it trains
    assert len(ewc.penalized()) == 1 and ewc.penalized()[0] is ewc.anchors[0]


# --- a real run whose inferred ids are 0, 2, 3 -------------------------------------------------------------
def test_run_with_task_ids_0_2_3_finishes_with_the_metrics_of_its_columns(tmp_path: Path) -> None:
    """FMN (scripted: ids 0, 2, 3) + EWC + per-game modulation on three real games, tiny budgets, in process."""
    ids = [0, 2, 3]
    cfg = config.resolve({
        "games": ["Pong", "Breakout", "Freeway"], "method": "ewc", "task_id": "fmn", "steps_per_game": 64,
        "n_envs": 2, "device": "cpu", "seed": 3, "eval.every": 0, "eval.episodes": 1, "eval.max_steps": 20,
        "agent.learning_starts": 32, "agent.batch_size": 8, "agent.buffer_size": 500,
        "agent.target_update_interval": 50, "log_every": 32, "network.task_modulation": True,
        "network.conv_channels": [4, 4, 4], "network.hidden": 16, "ewc.fisher_batches": 2,
        "ewc.fisher_batch_size": 8,
    })
    trainer = ContinualTrainer(cfg, tmp_path)
    trainer.task_id_of = lambda block, env: ids[block.index]  # what FMN named each block
    summary = trainer.run()

    assert trainer.trained_at == [0, 1, 2] and trainer.task_ids == ids
    retention = np.array(trainer.retention)
    expected = metrics.summarize(retention, trainer.games, [0, 1, 2], trainer.state.retention_cut[-1])
    written = json.loads((tmp_path / rundir.METRICS).read_text())
    for key, value in expected.items():
        assert written[key] == value == summary[key], key
    assert written["task_ids"] == ids

    blocks = rundir.read_jsonl(tmp_path / rundir.BLOCKS)
    assert [(b["task_index"], b["task_id"]) for b in blocks] == [(0, 0), (1, 2), (2, 3)]
    finals = [r for r in rundir.read_jsonl(tmp_path / rundir.EVALS) if r["final"]]
    played_with = {(r["block"], r["game_index"]): r["eval_task_id"] for r in finals}
    assert played_with == {(0, 0): 0, (0, 1): 0, (0, 2): 0,  # untrained games: zero-shot with the current id
                           (1, 0): 0, (1, 1): 2, (1, 2): 2,
                           (2, 0): 0, (2, 1): 2, (2, 2): 3}
    assert all(r["task_id"] == ids[r["block"]] and r["task_index"] == r["block"] for r in finals)

    final = ContinualDQN.load(tmp_path / rundir.MODEL, device="cpu")
    assert sorted(final.method.anchors) == ids  # EWC under fmn: anchors by the agent's ids
    assert final.task_steps == [64, 0, 64, 64]
