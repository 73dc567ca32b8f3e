"""The hypernetwork inside the real agent, the real evaluation and the real `crl train` loop, on real ALE games,
tiny budgets and a narrow generated network."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch as th
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import ContinualDQN
from crl.run.evaluation import play_episodes
from crl.methods import TaskInfo, make_method
from crl.task_inference.entropy import infer_task_id
from envs import make_atari_vec_env
from tests.conftest import run_crl

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them

GAMES = ["Pong", "Breakout"]
NETWORK = {"conv_channels": (4, 8, 8), "hidden": 32}  # 15,302 generated weights
HYPER = {"chunk_size": 1000, "hidden": [16], "beta": 0.05}


@pytest.fixture(scope="module")
def frames() -> th.Tensor:
    """8 real Breakout frame stacks from random play."""
    env = make_atari_vec_env("Breakout", n_envs=4, seed=7)
    batch = [env.reset(), env.step(np.random.default_rng(0).integers(18, size=4))[0]]
    env.close()
    return th.as_tensor(np.concatenate(batch))


@pytest.fixture(scope="module")
def trained() -> SimpleNamespace:
    """An agent trained on Pong then Breakout (200 env steps each), with what it looked like between the games."""
    agent = ContinualDQN(
        make_atari_vec_env(GAMES[0], n_envs=2, seed=0), method=make_method("hypernet", HYPER), network=dict(NETWORK),
        learning_starts=50, batch_size=8, buffer_size=500, train_freq=4, gradient_steps=2, target_update_interval=100,
        exploration_steps=100, seed=0, device="cpu",
    )
    agent.set_task(TaskInfo(0, GAMES[0]))
    agent.learn(200)
    agent.end_task()
    pong_embedding = agent.q_net.task_embeddings[0].detach().clone()
    agent.set_env(make_atari_vec_env(GAMES[1], n_envs=2, seed=1))
    agent.set_task(TaskInfo(1, GAMES[1]))
    agent.learn(200, reset_num_timesteps=False)
    agent.end_task()
    return SimpleNamespace(agent=agent, pong_embedding=pong_embedding)


def test_second_game_is_regularized_and_first_embedding_frozen(trained: SimpleNamespace) -> None:
    agent, method = trained.agent, trained.agent.method
    assert agent.q_net.num_weights == 15_302 and agent.q_net.num_tasks == 2
    assert th.equal(agent.q_net.task_embeddings[0], trained.pong_embedding)
    assert agent.last_losses["penalty"].item() > 0
    scalars = method.scalars()
    assert scalars["hypernet/reg_loss"] > 0
    assert set(scalars) == {"hypernet/reg_loss", "hypernet/compression_ratio", "hypernet/embedding_norm/task_0", "hypernet/embedding_norm/task_1"}
    assert method.targets.shape == (2, 15_302)
    with th.no_grad():  # the stored targets are what the hypernetwork generates at the end of the Breakout block
        th.testing.assert_close(method.targets, agent.q_net.generate([0, 1]), rtol=0, atol=0)


def test_save_load_round_trips_hypernetwork_embeddings_and_targets(trained: SimpleNamespace, frames: th.Tensor, tmp_path: Path) -> None:
    agent = trained.agent
    agent.save(tmp_path / "model.zip")
    loaded = ContinualDQN.load(tmp_path / "model.zip", device="cpu")
    saved, restored = agent.policy.state_dict(), loaded.policy.state_dict()
    assert saved.keys() == restored.keys()
    assert {"q_net.task_embeddings.1", "q_net_target.task_embeddings.1", "q_net.chunk_embeddings"} <= saved.keys()
    for name in saved:
        assert th.equal(saved[name], restored[name]), name
    assert th.equal(loaded.method.targets, agent.method.targets)
    assert loaded.method.games == {0: "Pong", 1: "Breakout"}
    with th.no_grad():
        for task_id in range(2):
            assert th.equal(loaded.q_net(frames, task_id=task_id), agent.q_net(frames, task_id=task_id))
            assert th.equal(loaded.q_net_target(frames, task_id=task_id), agent.q_net_target(frames, task_id=task_id))
    assert th.equal(loaded.method.penalty(loaded.hook_context()), agent.method.penalty(agent.hook_context()))

    # continue: revisit Pong; only its embedding (and the shared hypernetwork) trains, Breakout's is regularized
    breakout = loaded.q_net.task_embeddings[1].detach().clone()
    loaded.set_env(make_atari_vec_env(GAMES[0], n_envs=2, seed=2))
    loaded.set_task(TaskInfo(0, GAMES[0], block=2, cycle=1, first_visit=False))
    loaded.learn(100, reset_num_timesteps=False)
    assert th.equal(loaded.q_net.task_embeddings[1], breakout)
    assert not th.equal(loaded.q_net.task_embeddings[0], agent.q_net.task_embeddings[0])
    loaded.env.close()


def test_evaluation_with_entropy_task_inference(trained: SimpleNamespace) -> None:
    result = play_episodes(
        trained.agent, "Breakout", 1, episodes=2, max_steps=40, epsilon=0.0, seed=3, env_options={},
        infer_task=infer_task_id, candidate_task_ids=[0, 1], infer_steps=4,
    )
    assert len(result.returns) == 2
    assert len(result.inferred_task_ids) == 2 and set(result.inferred_task_ids) <= {0, 1}


def test_crl_train_hypernet_two_games_end_to_end(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_crl(
        "train", "--games", ",".join(GAMES), "--method", "hypernet", "--steps-per-game", "200", "--eval-every", "0",
        "--eval-episodes", "1", "--eval-max-steps", "50", "--eval-task-id", "inferred", "--n-envs", "2", "--seed", "0",
        "--device", "cpu", "--run-dir", str(run_dir),
        "--set", "agent.learning_starts=64", "--set", "agent.batch_size=8", "--set", "agent.buffer_size=1000",
        "--set", "agent.target_update_interval=100", "--set", "network.conv_channels=[4,8,8]",
        "--set", "network.hidden=32", "--set", "hypernet.chunk_size=1000", "--set", "hypernet.hidden=[16]",
    )

    assert len((run_dir / "retention.csv").read_text().splitlines()) == 1 + len(GAMES)
    games = json.loads((run_dir / "metrics.json").read_text())["games"]
    assert games == [g.lower() for g in GAMES]  # ALE ROM ids
    final = ContinualDQN.load(run_dir / "model.zip", device="cpu")
    assert final.q_net.num_tasks == 2 and final.method.targets.shape == (2, final.q_net.num_weights)
    first = ContinualDQN.load(run_dir / "checkpoints" / "task-0.zip", device="cpu")
    assert first.method.targets.shape == (1, final.q_net.num_weights)
    assert th.equal(first.q_net.task_embeddings[0], final.q_net.task_embeddings[0])  # frozen after its block

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    reg = [e.value for e in events.Scalars("hypernet/reg_loss")]
    assert reg[0] == 0 and reg[1] > 0  # nothing to regularize during the first game
    ratio = events.Scalars("hypernet/compression_ratio")[-1].value
    assert ratio == pytest.approx(final.q_net.compression_ratio(), rel=1e-6)
    for task_id, game in enumerate(games):
        norm = events.Scalars(f"hypernet/embedding_norm/task_{task_id}")[-1].value
        assert norm == pytest.approx(final.q_net.task_embeddings[task_id].norm().item(), rel=1e-5)
