"""EWC, online EWC and L2 inside the real agent and the real `crl train` loop, on real ALE games, tiny budgets."""

from __future__ import annotations

from pathlib import Path


import pytest
import torch as th
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import ContinualDQN
from crl.cli import main as cli
from crl.methods import TaskInfo, make_method
from envs import make_atari_vec_env

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them

SMALL_NETWORK = {"task_modulation": True, "conv_channels": (8, 8, 8), "hidden": 32}




def modulation_state(agent: ContinualDQN, task_id: int) -> dict[str, th.Tensor]:
    """Task ``task_id``'s biases and gains (``modulations.<layer>.biases.<task_id>`` and ``...gains.<task_id>``)."""
    return {
        n: p.detach().clone()
        for n, p in agent.q_net.named_parameters()
        if n.startswith("modulations.") and n.endswith(f".{task_id}")
    }


def assert_same_anchors(a: ContinualDQN, b: ContinualDQN) -> None:
    assert a.method.anchors.keys() == b.method.anchors.keys() and a.method.anchors
    for key, anchor in a.method.anchors.items():
        assert th.equal(anchor.importance, b.method.anchors[key].importance), key
        assert th.equal(anchor.params, b.method.anchors[key].params), key


def test_ewc_in_the_agent_penalizes_shared_weights_only_and_survives_save_load(tmp_path: Path) -> None:
    env = make_atari_vec_env("Pong", n_envs=2, seed=0)
    agent = ContinualDQN(
        env, method=make_method("ewc", {"fisher_batches": 4, "fisher_batch_size": 16}), network=SMALL_NETWORK,
        learning_starts=64, batch_size=16, buffer_size=1_000, train_freq=4, gradient_steps=2,
        target_update_interval=100, seed=0, device="cpu",
    )
    agent.set_task(TaskInfo(0, "Pong"))
    agent.learn(200)
    agent.end_task()
    assert list(agent.method.anchors) == [0] and "penalty" not in agent.last_losses
    pong_modulation = modulation_state(agent, 0)

    agent.set_env(make_atari_vec_env("Breakout", n_envs=2, seed=1))
    agent.set_task(TaskInfo(1, "Breakout", block=1))
    breakout_start = modulation_state(agent, 1)
    agent.learn(200, reset_num_timesteps=False)
    assert agent.last_losses["penalty"].item() > 0
    for name, value in modulation_state(agent, 0).items():  # Pong's biases and gains rest while Breakout trains
        assert th.equal(value, pong_modulation[name]), name
    assert any(not th.equal(v, breakout_start[n]) for n, v in modulation_state(agent, 1).items())
    agent.end_task()
    agent.save(tmp_path / "model.zip")
    agent.env.close()

    loaded = ContinualDQN.load(tmp_path / "model.zip", device="cpu")
    assert_same_anchors(agent, loaded)
    loaded.method.before_task(loaded.hook_context(), TaskInfo(2, "SpaceInvaders", block=2))
    agent.method.before_task(agent.hook_context(), TaskInfo(2, "SpaceInvaders", block=2))
    assert th.equal(loaded.method.penalty(loaded.hook_context()), agent.method.penalty(agent.hook_context()))


def crl_train(run_dir: Path, method: str, *extra: str) -> None:
    """``crl train`` in this process (one set of imports for the three runs), tiny budgets and network."""
    argv = [
        "train", "--games", "Pong,Breakout", "--method", method,
        "--steps-per-game", "128", "--eval-every", "0", "--eval-episodes", "1", "--eval-max-steps", "30",
        "--n-envs", "2", "--seed", "0", "--device", "cpu", "--run-dir", str(run_dir),
        "--set", "agent.learning_starts=32", "--set", "agent.batch_size=16", "--set", "agent.buffer_size=1000",
        "--set", "agent.target_update_interval=100", "--set", "network.task_modulation=true",
        "--set", "network.conv_channels=[8,8,8]", "--set", "network.hidden=32", "--set", "log_every=32", *extra,
    ]
    assert cli.main(argv) == 0


@pytest.mark.parametrize(
    ("method", "extra", "anchor_keys", "scalar"),
    [
        ("ewc", ("--set", "ewc.fisher_batches=4", "--cycles", "2"), [0, 1], "ewc/fisher_max/task_1"),
        ("online-ewc", ("--set", "online_ewc.fisher_batches=4"), ["online"], "ewc/fisher_mean/online"),
        ("l2", (), [0, 1], None),
    ],
)
def test_crl_train_end_to_end(
    tmp_path: Path, method: str, extra: tuple[str, ...], anchor_keys: list[int | str], scalar: str | None
) -> None:
    run_dir = tmp_path / "run"
    crl_train(run_dir, method, *extra)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["method"] == method and config["network"]["task_modulation"] is True

    first = ContinualDQN.load(run_dir / "checkpoints" / "task-0.zip", device="cpu")
    final = ContinualDQN.load(run_dir / "model.zip", device="cpu")
    assert type(first.method).name == type(final.method).name == method
    assert list(first.method.anchors) == anchor_keys[:1]
    assert list(final.method.anchors) == anchor_keys
    if method == "l2":  # Pong is not revisited: its anchor in the final model is the one stored after block 0
        assert th.equal(first.method.anchors[0].params, final.method.anchors[0].params)
    if method == "ewc":  # two cycles: the revisit replaced Pong's anchor with the one after block 2
        after_revisit = ContinualDQN.load(run_dir / "checkpoints" / "task-2.zip", device="cpu")
        assert not th.equal(first.method.anchors[0].params, after_revisit.method.anchors[0].params)
        assert th.equal(after_revisit.method.anchors[0].params, final.method.anchors[0].params)
    shared = sum(p.numel() for _, p in final.q_net.shared_named_parameters())
    assert all(a.params.numel() == shared for a in final.method.anchors.values())

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    assert events.Scalars("train/penalty")[-1].value > 0
    if scalar is not None:
        assert events.Scalars(scalar)[-1].value > 0
