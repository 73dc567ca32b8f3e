"""``--method distill``: the distillation loss (known values and gradients), teacher outputs stored per game and
distilled with that game's task id, state in save/load, and a `crl train` run."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch as th
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import ContinualDQN
from crl.run.config import resolve
from crl.methods import TaskInfo, make_method
from crl.methods.distill import Distill, distillation_loss
from crl.methods.memory import sample_by_task
from crl.run.agent import build_agent
from envs import make_atari_vec_env
from tests.test_replay_method import assert_same_run, train_and_resume_mid_block


# --- the loss -----------------------------------------------------------------------------------------------
def test_kl_known_value() -> None:
    """Teacher softmax (1/4, 3/4), student (1/2, 1/2): KL = 1/4 ln(1/2) + 3/4 ln(3/2)."""
    T = 0.5
    teacher = th.tensor([[0.0, T * math.log(3.0)]])
    student = th.tensor([[1.0, 1.0]])
    expected = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert distillation_loss(student, teacher, T).item() == pytest.approx(expected, rel=1e-6)
    assert distillation_loss(student, teacher, T, "mse").item() == pytest.approx((1 + (1 - T * math.log(3)) ** 2) / 2)


@pytest.mark.parametrize("kind", ["kl", "mse"])
def test_loss_is_zero_with_zero_gradient_when_the_network_is_the_teacher(kind: str) -> None:
    th.manual_seed(0)
    net = th.nn.Linear(5, 4).double()
    x = th.randn(16, 5, dtype=th.float64)
    with th.no_grad():
        teacher = net(x)
    loss = distillation_loss(net(x), teacher, 0.01, kind)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert net.weight.grad.abs().max() < 1e-10 and net.bias.grad.abs().max() < 1e-10


@pytest.mark.parametrize("temperature", [0.05, 1.0, 3.0])
def test_kl_gradient_matches_the_hand_computation(temperature: float) -> None:
    """For q = W x: dKL/dW = 1/(T B) sum_b (softmax(q_b/T) - softmax(t_b/T)) x_b^T."""
    g = th.Generator().manual_seed(1)
    W = (0.3 * th.randn(3, 4, generator=g, dtype=th.float64)).requires_grad_(True)
    x = th.randn(6, 4, generator=g, dtype=th.float64)
    teacher = th.randn(6, 3, generator=g, dtype=th.float64) * 0.2
    distillation_loss(x @ W.T, teacher, temperature).backward()
    with th.no_grad():
        p_student = th.softmax(x @ W.T / temperature, dim=1)
        p_teacher = th.softmax(teacher / temperature, dim=1)
        expected = (p_student - p_teacher).T @ x / (temperature * len(x))
    th.testing.assert_close(W.grad, expected, rtol=1e-10, atol=1e-12)


def test_mse_gradient_matches_the_hand_computation() -> None:
    """For q = W x with A actions: dMSE/dW = 2/(B A) sum_b (q_b - t_b) x_b^T."""
    g = th.Generator().manual_seed(2)
    W = th.randn(3, 4, generator=g, dtype=th.float64, requires_grad=True)
    x = th.randn(5, 4, generator=g, dtype=th.float64)
    teacher = th.randn(5, 3, generator=g, dtype=th.float64)
    distillation_loss(x @ W.T, teacher, 1.0, "mse").backward()
    with th.no_grad():
        expected = 2 * (x @ W.T - teacher).T @ x / (5 * 3)
    th.testing.assert_close(W.grad, expected, rtol=1e-10, atol=1e-12)


# --- the method on a real agent -----------------------------------------------------------------------------
def prepared_agent(params: dict | None = None, modulation: bool = True) -> ContinualDQN:
    """A distill agent that finished game 0 (stored observations and Q-values) and is now on game 1."""
    cfg = resolve({"games": ["pong", "breakout"], "method": "distill", "n_envs": 2, "agent.learning_starts": 32,
                   "agent.buffer_size": 1_000, "agent.batch_size": 8, "network.conv_channels": [4, 8, 8],
                   "network.hidden": 32, "network.task_modulation": modulation, "distill.per_task": 40,
                   "distill.batch_size": 16, **{f"distill.{k}": v for k, v in (params or {}).items()}})
    agent = build_agent(cfg, make_atari_vec_env("pong", n_envs=2, seed=0), "cpu")
    agent.set_task(TaskInfo(0, "pong", seed=0))
    agent.learn(60, reset_num_timesteps=False)
    agent.end_task()
    agent.set_env(make_atari_vec_env("breakout", n_envs=2, seed=1))
    agent.set_task(TaskInfo(1, "breakout", block=1, seed=0))
    return agent


def test_stores_a_sample_of_the_games_observations_with_its_q_values() -> None:
    agent = prepared_agent(modulation=False)
    method: Distill = agent.method
    memory = method.memories[0]
    assert len(memory) == 40 and memory.seen == agent.task_steps[0]
    assert set(memory.fields) == {"obs", "q"} and memory.fields["obs"].dtype == th.uint8
    assert memory.bytes_per_item == 4 * 84 * 84 + 18 * 4
    with th.no_grad():
        th.testing.assert_close(memory.fields["q"], agent.q_net(memory.fields["obs"], task_id=0))
        assert method.penalty(agent.hook_context()) < 1e-6  # the network has not moved away from the teacher yet


def test_distils_each_game_with_its_own_task_id() -> None:
    """The term is the KL of the stored game-0 observations evaluated as task 0; its gradient reaches task 0's
    biases and gains, never those of the task being trained."""
    agent = prepared_agent({"weight": 3.0, "temperature": 0.5})
    method: Distill = agent.method
    with th.no_grad():
        for modulation in agent.q_net.modulations:
            modulation.biases[0].normal_(0, 0.5)
            modulation.gains[0].uniform_(0.5, 1.5)
    agent.q_net.parameters_changed()
    for modulation in agent.q_net.modulations:
        for p in (*modulation.biases, *modulation.gains):
            p.requires_grad_(True)
            p.grad = None
    ((task, slots),) = sample_by_task(copy.deepcopy(method.rng), {0: len(method.memories[0])}, 16)
    stored = method.memories[0].gather(slots)
    with th.no_grad():
        as_task = {j: distillation_loss(agent.q_net(stored["obs"], task_id=j), stored["q"], 0.5) for j in (0, 1)}
    assert not th.isclose(as_task[0], as_task[1])
    penalty = method.penalty(agent.hook_context())
    th.testing.assert_close(penalty, 3.0 * as_task[0])
    penalty.backward()
    for modulation in agent.q_net.modulations:
        assert modulation.biases[0].grad.abs().sum() > 0 and modulation.gains[0].grad.abs().sum() > 0
        assert modulation.biases[1].grad is None and modulation.gains[1].grad is None


def test_mse_option() -> None:
    agent = prepared_agent({"loss": "mse"}, modulation=False)
    method: Distill = agent.method
    with th.no_grad():
        agent.q_net.head.bias.add_(0.5)  # every Q-value 0.5 above the teacher's
    agent.q_net.parameters_changed()
    with th.no_grad():
        assert method.penalty(agent.hook_context()).item() == pytest.approx(0.25, rel=1e-4)
    assert set(method.scalars()) >= {"distill/mse", "distill/memory_bytes"}


def test_state_travels_through_save_and_load(tmp_path: Path) -> None:
    agent = prepared_agent()
    agent.learn(40, reset_num_timesteps=False)  # mid-block: the block's own sample is partly filled
    method: Distill = agent.method
    agent.save(tmp_path / "agent.zip")
    loaded = ContinualDQN.load(tmp_path / "agent.zip", device="cpu")
    other: Distill = loaded.method
    assert isinstance(other, Distill) and other.params == method.params
    for name in ("obs", "q"):
        assert th.equal(method.memories[0].fields[name], other.memories[0].fields[name])
    assert other.block.seen == method.block.seen and len(other.block) == len(method.block) > 0
    assert th.equal(method.block.fields["obs"][: len(method.block)], other.block.fields["obs"])
    with th.no_grad():
        # same generator state: the same draw
        assert th.equal(method.penalty(agent.hook_context()), other.penalty(loaded.hook_context()))
    assert other.scalars() == method.scalars()


def test_parameters_are_checked() -> None:
    for bad in ({"per_task": 0}, {"batch_size": 0}, {"weight": -1.0}, {"temperature": 0.0}, {"loss": "l1"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            make_method("distill", bad)


# --- end to end ---------------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_crl_train_distill_end_to_end_and_exact_resume(tmp_path: Path) -> None:
    full, resumed = train_and_resume_mid_block(tmp_path, "distill", "distill.per_task=100")
    acc = EventAccumulator(str(full / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"distill/kl", "distill/memory_bytes", "distill/bytes_per_observation", "train/penalty"} <= tags
    per_observation = 10 * 10 * 10 + 6 * 4  # the planes and the stored Q-values
    assert [e.value for e in acc.Scalars("distill/memory_bytes")] == [100 * per_observation, 200 * per_observation]
    assert np.isfinite([e.value for e in acc.Scalars("distill/kl")]).all()
    final = ContinualDQN.load(full / "model.zip", device="cpu")
    assert final.method.memories[0].seen == final.task_steps[0]
    assert_same_run(full, resumed)
