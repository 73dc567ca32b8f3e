"""Progressive networks inside the real agent and the real `crl train` loop, on real ALE games, tiny budgets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch as th
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import ContinualDQN
from crl.methods import TaskInfo, make_method
from envs import make_atari_vec_env

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them

GAMES = ["Pong", "Breakout", "SpaceInvaders"]
REPO = Path(__file__).resolve().parents[1]




def column_state(agent: ContinualDQN, k: int) -> dict[str, th.Tensor]:
    return {n: p.detach().clone() for n, p in agent.q_net.named_parameters() if n.startswith(f"columns.{k}.")}


def lateral_state(agent: ContinualDQN, k: int) -> dict[str, th.Tensor]:
    return {n: p.detach().clone() for n, p in agent.q_net.named_parameters() if n.startswith(f"laterals.{k}.")}


def assert_same_state(a: dict[str, th.Tensor], b: dict[str, th.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert th.equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def fixed_batch() -> th.Tensor:
    """16 real Pong frame stacks from random play."""
    env = make_atari_vec_env("Pong", n_envs=4, seed=7)
    frames = [env.reset()]
    rng = np.random.default_rng(0)
    for _ in range(3):
        frames.append(env.step(rng.integers(18, size=4))[0])
    env.close()
    return th.as_tensor(np.concatenate(frames))


def test_column_zero_is_frozen_through_training_and_save_load(tmp_path: Path, fixed_batch: th.Tensor) -> None:
    env = make_atari_vec_env(GAMES[0], n_envs=2, seed=0)
    agent = ContinualDQN(
        env, method=make_method("progressive", {"width": "paper"}), learning_starts=64, batch_size=16,
        buffer_size=1_000, train_freq=4, gradient_steps=2, target_update_interval=100, seed=0, device="cpu",
    )
    agent.set_task(TaskInfo(0, GAMES[0]))
    agent.learn(200)
    agent.end_task()
    q0 = agent.q_net(fixed_batch, task_id=0).detach().clone()
    column0 = column_state(agent, 0)
    agent.save(tmp_path / "task-0.zip")

    agent.set_env(make_atari_vec_env(GAMES[1], n_envs=2, seed=1))
    agent.set_task(TaskInfo(1, GAMES[1]))
    assert {id(p) for p in agent.policy.optimizer.param_groups[0]["params"]} == {
        id(p) for p in agent.q_net.parameters() if p.requires_grad
    } == {id(p) for n, p in agent.q_net.named_parameters() if n.startswith(("columns.1.", "laterals.1."))}
    column1_start = column_state(agent, 1)
    agent.learn(200, reset_num_timesteps=False)
    agent.end_task()
    assert any(not th.equal(v, column_state(agent, 1)[n]) for n, v in column1_start.items()), "column 1 did not train"
    assert th.equal(agent.q_net(fixed_batch, task_id=0), q0)
    assert_same_state(column_state(agent, 0), column0)
    for n, p in agent.q_net_target.named_parameters():  # the target's frozen column is the online one, exactly
        if n.startswith("columns.0."):
            assert th.equal(p, column0[n]), n
    assert agent.method.scalars()["progressive/columns"] == 2
    agent.save(tmp_path / "model.zip")
    agent.env.close()

    for path in ("task-0.zip", "model.zip"):
        loaded = ContinualDQN.load(tmp_path / path, device="cpu")
        assert_same_state(column_state(loaded, 0), column0)
        assert th.equal(loaded.q_net(fixed_batch, task_id=0), q0)
    assert loaded.q_net.num_tasks == 2 and loaded.q_net_target.num_tasks == 2
    assert th.equal(loaded.q_net(fixed_batch, task_id=1), agent.q_net(fixed_batch, task_id=1))
    assert {id(p) for p in loaded.q_net.trainable_parameters()} == {
        id(p) for n, p in loaded.q_net.named_parameters() if n.startswith(("columns.1.", "laterals.1."))
    }


def crl_train(run_dir: Path, games: list[str], cycles: int) -> None:
    cmd = [
        sys.executable, "-m", "crl", "train", "--games", ",".join(games), "--method", "progressive",
        "--cycles", str(cycles), "--steps-per-game", "200", "--eval-every", "0", "--eval-episodes", "1",
        "--eval-max-steps", "100", "--n-envs", "2", "--seed", "0", "--device", "cpu", "--run-dir", str(run_dir),
        "--set", "progressive.width=paper", "--set", "agent.learning_starts=64", "--set", "agent.batch_size=16",
        "--set", "agent.buffer_size=1000", "--set", "agent.target_update_interval=100",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("games, cycles", [(GAMES[:2], 2), (GAMES, 1)])
def test_crl_train_progressive_end_to_end(tmp_path: Path, fixed_batch: th.Tensor, games: list[str], cycles: int) -> None:
    run_dir = tmp_path / "run"
    crl_train(run_dir, games, cycles)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["method"] == "progressive" and config["progressive"]["width"] == "paper"
    roms = config["games"]
    evals = [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines()]
    assert {e["game"] for e in evals} == set(roms)
    assert len((run_dir / "retention.csv").read_text().splitlines()) == 1 + len(games) * cycles
    assert json.loads((run_dir / "metrics.json").read_text())["games"] == roms

    final = ContinualDQN.load(run_dir / "model.zip", device="cpu")
    assert final.q_net.num_tasks == len(games)
    blocks = [ContinualDQN.load(run_dir / "checkpoints" / f"task-{i}.zip", device="cpu") for i in range(len(games) * cycles)]
    assert [b.q_net.num_tasks for b in blocks] == [min(i + 1, len(games)) for i in range(len(blocks))]
    q0 = blocks[0].q_net(fixed_batch, task_id=0)
    for later in blocks[1 : len(games)] + ([final] if cycles == 1 else []):  # first cycle: column 0 stays frozen
        assert_same_state(column_state(later, 0), column_state(blocks[0], 0))
        assert th.equal(later.q_net(fixed_batch, task_id=0), q0)
    for earlier, later in zip(blocks, blocks[1:]):  # a block changes no other game's Q-values, in any cycle
        trained = later.current_task.task_id
        for k in set(range(earlier.q_net.num_tasks)) - {trained}:
            assert th.equal(later.q_net(fixed_batch, task_id=k), earlier.q_net(fixed_batch, task_id=k)), (trained, k)
    if cycles == 2:  # block 2 revisits game 0: only column 0's Q head trains; column 1 reads the layers below it
        revisit, before = blocks[2], blocks[1]
        head = f"columns.0.{len(revisit.q_net.columns[0]) - 1}."
        trainable = {n for n, p in revisit.q_net.named_parameters() if p.requires_grad}
        assert trainable == {n for n in column_state(revisit, 0) if n.startswith(head)}
        old, new = column_state(before, 0), column_state(revisit, 0)
        assert any(not th.equal(old[n], new[n]) for n in trainable)
        assert all(th.equal(old[n], new[n]) for n in old.keys() - trainable)
        assert_same_state(column_state(revisit, 1), column_state(before, 1))
        assert_same_state(lateral_state(revisit, 1), lateral_state(before, 1))

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    columns = [e.value for e in events.Scalars("progressive/columns")]
    totals = [e.value for e in events.Scalars("progressive/params_total")]
    assert columns == [min(i + 1, len(games)) for i in range(len(games) * cycles)]  # one per new game, none on revisits
    assert totals[-1] == sum(final.q_net.column_parameter_counts())
