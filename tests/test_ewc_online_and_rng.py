"""Online EWC penalises with ``gamma F*_{k-1}`` (Progress & Compress); the Fisher draws its minibatches and actions
from generators seeded by (run seed, block), never from the global RNGs, so same-seed runs of EWC and fine-tuning
stay paired."""

from __future__ import annotations

import numpy as np
import torch as th
from torch import nn

from agents import ContinualDQN
from crl.methods import HookContext, TaskInfo, make_method
from crl.methods.anchored import ONLINE, Anchor
from crl.methods.ewc import EWC
from crl.methods.online_ewc import OnlineEWC
from envs import make_atari_vec_env
from tests.test_ewc import seeded_agent
import pytest

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them


class TwoWeights(nn.Module):
    """A "network" whose shared parameters are one vector of two weights."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.w = nn.Parameter(th.tensor(values))

    def shared_named_parameters(self):
        return self.named_parameters()


def test_online_ewc_penalty_is_gamma_times_the_running_fisher() -> None:
    """lambda 2, gamma 0.5; F1 = [1, 2], F2 = [4, 0]: F*_2 = 0.5 F1 + F2 = [4.5, 1], weighed by gamma: [2.25, 0.5].
    At theta = anchor + [1, 2]: 0.5 * 2 * (2.25 * 1 + 0.5 * 4) = 4.25, gradient 2 * [2.25, 0.5] * [1, 2] = [4.5, 2]."""
    online = OnlineEWC({"lambda_": 2.0, "gamma": 0.5})
    agent = HookContext(q_net=TwoWeights([1.3, 2.4]), task=TaskInfo(1, "breakout", block=1))
    online.store(TaskInfo(0, "pong"), Anchor(th.tensor([1.0, 2.0]), th.tensor([0.1, 0.2])))
    online.before_task(agent, TaskInfo(1, "breakout", block=1))
    # first penalty: gamma F1 around theta*_1: 0.5 * 2 * 0.5 * (1 * 1.2^2 + 2 * 2.2^2)
    th.testing.assert_close(online.penalty(agent).detach(), th.tensor(0.5 * (1.44 + 2 * 4.84)))
    online.store(TaskInfo(1, "breakout", block=1), Anchor(th.tensor([4.0, 0.0]), th.tensor([0.3, 0.4])))
    online.before_task(agent, TaskInfo(2, "freeway", block=2))
    penalty = online.penalty(agent)
    th.testing.assert_close(penalty.detach(), th.tensor(4.25))
    penalty.backward()
    th.testing.assert_close(agent.q_net.w.grad, th.tensor([4.5, 2.0]))
    th.testing.assert_close(online.anchors[ONLINE].importance, th.tensor([4.5, 1.0]))  # F* itself is stored


def fisher_after(seed: int, block: int, advance_global: int) -> th.Tensor:
    """The Fisher EWC stores for a task finished in ``block`` of a run seeded ``seed``, after ``advance_global``
    draws from the global RNGs in between (what other code, or another method, would have consumed)."""
    agent = seeded_agent(0)
    th.rand(advance_global)
    np.random.rand(advance_global)
    ewc = EWC({"fisher_batches": 3, "fisher_batch_size": 8})
    task = TaskInfo(0, "pong", block=block, seed=seed)
    ewc.before_task(agent.ctx(task), task)
    agent.task_steps[0] += 100
    ewc.after_task(agent.ctx(task), task)
    return ewc.anchors[0].importance


def test_same_seed_and_block_give_the_same_fisher_whatever_the_global_rng() -> None:
    assert th.equal(fisher_after(5, 2, advance_global=0), fisher_after(5, 2, advance_global=17))
    assert not th.equal(fisher_after(5, 2, advance_global=0), fisher_after(6, 2, advance_global=0))
    assert not th.equal(fisher_after(5, 2, advance_global=0), fisher_after(5, 3, advance_global=0))


def test_a_fisher_in_the_real_agent_leaves_the_global_rngs_alone() -> None:
    """EWC's end of task (the Fisher over the agent's real frame replay) draws nothing from torch's or numpy's
    global RNG: after it, an EWC agent and a fine-tuning agent of the same seed draw the same numbers."""
    env = make_atari_vec_env("Pong", n_envs=2, seed=0)
    agent = ContinualDQN(
        env, method=make_method("ewc", {"fisher_batches": 4, "fisher_batch_size": 16}),
        network={"conv_channels": (4, 4, 4), "hidden": 16}, learning_starts=32, batch_size=8, buffer_size=500,
        train_freq=4, gradient_steps=1, target_update_interval=100, seed=0, device="cpu",
    )
    agent.set_task(TaskInfo(0, "Pong", seed=0))
    agent.learn(64)
    torch_state, numpy_state = th.get_rng_state(), np.random.get_state()
    agent.end_task()
    env.close()
    assert list(agent.method.anchors) == [0]
    assert th.equal(th.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]
