"""EWC, online EWC and L2 (crl/methods/ewc.py, online_ewc.py, l2.py, anchored.py): penalty math, storage rules, persistence, and the effect."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from torch import nn

from agents.networks import ConvQNetwork, TaskQNetwork
from agents.frame_buffer import sample_with
from crl.methods import make_method
from agents.method import HookContext, TaskInfo
from crl.methods.anchored import ONLINE, Anchor, FoldedQuadratic, flatten
from crl.methods.ewc import EWC
from crl.methods.l2 import L2
from crl.methods.online_ewc import OnlineEWC



OBS = spaces.Box(-np.inf, np.inf, (6,), dtype=np.float32)
ACTIONS = spaces.Discrete(4)


class TinyQNetwork(TaskQNetwork):
    """A 6-16-4 MLP on vector observations, shared by all tasks."""

    def __init__(self, observation_space: spaces.Box = OBS, action_space: spaces.Discrete = ACTIONS) -> None:
        super().__init__(observation_space, action_space)
        self.body = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4))

    def q_values(self, x: th.Tensor, task_id: int) -> th.Tensor:
        return self.body(x)


class IndexedReplayBuffer(ReplayBuffer):
    """SB3's buffer with the ``samples_at`` of ``agents.frame_buffer.FrameReplayBuffer`` (what the Fisher draws through)."""

    def samples_at(self, batch_inds: Any, env_inds: Any) -> SimpleNamespace:
        b, e = np.asarray(batch_inds), np.asarray(env_inds)
        return SimpleNamespace(observations=th.as_tensor(self.observations[b, e]),
                               actions=th.as_tensor(self.actions[b, e]))


class FakeAgent(SimpleNamespace):
    """What ``ContinualDQN`` holds for the methods: the network, a replay buffer, steps per task."""

    def ctx(self, task: TaskInfo | None = None) -> HookContext:
        """The hook context the agent would build on ``task`` (None: the first task)."""
        task = task or TaskInfo(0, "Pong")
        return HookContext(q_net=self.q_net, task=task, task_steps=self.task_steps[task.task_id],
                           sample=lambda n, generator: sample_with(self.replay_buffer, n, generator))


def fake_agent(net: TaskQNetwork, num_tasks: int = 3) -> FakeAgent:
    buffer = IndexedReplayBuffer(256, net.observation_space, net.action_space, device="cpu")
    return FakeAgent(q_net=net, replay_buffer=buffer, task_steps=[0] * num_tasks)


def fill(agent: SimpleNamespace, obs: np.ndarray, actions: np.ndarray) -> None:
    agent.replay_buffer.reset()
    for o, a in zip(obs, actions):
        agent.replay_buffer.add(o[None], o[None], np.array([a]), np.zeros(1), np.zeros(1), [{}])


def finish(method: Any, agent: SimpleNamespace, task: TaskInfo, steps: int = 100) -> None:
    """Play a task block through the hooks: select it, count its steps, end it."""
    method.before_task(agent.ctx(task), task)
    agent.task_steps[task.task_id] += steps
    method.after_task(agent.ctx(task), task)


def seeded_agent(seed: int = 0) -> FakeAgent:
    th.manual_seed(seed)
    np.random.seed(seed)
    agent = fake_agent(TinyQNetwork())
    obs = np.random.randn(64, 6).astype(np.float32)
    fill(agent, obs, np.random.randint(0, 4, 64))
    return agent


def perturb(net: nn.Module, scale: float = 0.1) -> None:
    with th.no_grad():
        for p in net.parameters():
            p.add_(scale * th.randn_like(p))


PONG, BREAKOUT, SEAQUEST = TaskInfo(0, "Pong"), TaskInfo(1, "Breakout", block=1), TaskInfo(2, "Seaquest", block=2)


# --- the folded quadratic form ---------------------------------------------------------------------------
def test_folded_quadratic_equals_the_sum_over_tasks_with_the_same_gradient() -> None:
    gen = th.Generator().manual_seed(0)
    anchors = [Anchor(th.rand(50, generator=gen), th.randn(50, generator=gen)) for _ in range(3)]
    anchors[1].importance[:10] = 0.0  # parameters some task does not care about
    folded = FoldedQuadratic.fold(anchors)
    x = th.randn(50, generator=gen, dtype=th.float32).requires_grad_()
    y = x.detach().clone().requires_grad_()
    folded(x).backward()
    naive = sum((a.importance * (y - a.params).square()).sum() for a in anchors)
    naive.backward()
    th.testing.assert_close(folded(x.detach()), naive.detach(), rtol=1e-5, atol=1e-6)
    th.testing.assert_close(x.grad, y.grad, rtol=1e-5, atol=1e-6)


def test_folded_quadratic_is_exactly_zero_at_a_single_anchor() -> None:
    gen = th.Generator().manual_seed(1)
    anchor = Anchor(th.rand(1000, generator=gen) * 1e-3, th.randn(1000, generator=gen))
    anchor.importance[::7] = 0.0
    folded = FoldedQuadratic.fold([anchor])
    assert th.equal(folded.center, anchor.params)
    assert folded(anchor.params).item() == 0.0


# --- EWC on a network ---------------------------------------------------------------------------------
def test_ewc_penalty_is_zero_at_the_anchor_and_its_gradient_is_lambda_f_delta() -> None:
    agent = seeded_agent()
    ewc = EWC({"lambda_": 7.0, "fisher_batches": 4, "fisher_batch_size": 16})
    finish(ewc, agent, PONG)
    ewc.before_task(agent.ctx(BREAKOUT), BREAKOUT)
    assert ewc.penalty(agent.ctx()).item() == 0.0

    anchor = ewc.anchors[0]
    perturb(agent.q_net)
    agent.q_net.zero_grad()
    ewc.penalty(agent.ctx()).backward()
    theta = flatten(p for _, p in agent.q_net.shared_named_parameters()).detach()
    grads = flatten(p.grad for _, p in agent.q_net.shared_named_parameters())
    th.testing.assert_close(grads, 7.0 * anchor.importance * (theta - anchor.params))
    assert anchor.importance.shape == theta.shape and (anchor.importance > 0).all()


def test_separate_anchors_penalty_sums_every_other_task() -> None:
    agent = seeded_agent()
    ewc = EWC({"lambda_": 3.0, "fisher_batches": 2, "fisher_batch_size": 8})
    finish(ewc, agent, PONG)
    perturb(agent.q_net)
    finish(ewc, agent, BREAKOUT)
    perturb(agent.q_net)
    ewc.before_task(agent.ctx(SEAQUEST), SEAQUEST)
    theta = flatten(p for _, p in agent.q_net.shared_named_parameters()).detach()
    expected = 1.5 * sum((a.importance * (theta - a.params).square()).sum() for a in ewc.anchors.values())
    th.testing.assert_close(ewc.penalty(agent.ctx()).detach(), expected, rtol=1e-5, atol=0.0)


def test_revisited_game_replaces_its_anchor_and_is_left_out_while_it_trains() -> None:
    agent = seeded_agent()
    ewc = EWC({"fisher_batches": 2, "fisher_batch_size": 8})
    finish(ewc, agent, PONG)
    first = ewc.anchors[0]
    perturb(agent.q_net)
    finish(ewc, agent, BREAKOUT)
    perturb(agent.q_net)
    revisit = TaskInfo(0, "Pong", block=2, cycle=1, first_visit=False)
    ewc.before_task(agent.ctx(revisit), revisit)
    theta = flatten(p for _, p in agent.q_net.shared_named_parameters()).detach()
    breakout = ewc.anchors[1]
    only_breakout = 200.0 * (breakout.importance * (theta - breakout.params).square()).sum()
    th.testing.assert_close(ewc.penalty(agent.ctx()).detach(), only_breakout)
    agent.task_steps[0] += 100
    ewc.after_task(agent.ctx(revisit), revisit)
    assert sorted(ewc.anchors) == [0, 1]
    assert th.equal(ewc.anchors[0].params, theta) and not th.equal(ewc.anchors[0].params, first.params)


def test_min_task_steps_delays_the_anchor() -> None:
    agent = seeded_agent()
    ewc = EWC({"min_task_steps": 250, "fisher_batches": 1, "fisher_batch_size": 4})
    finish(ewc, agent, PONG, steps=200)
    assert ewc.anchors == {} and ewc.penalty(agent.ctx()) is None
    finish(ewc, agent, PONG, steps=100)  # 300 steps on Pong in all
    assert list(ewc.anchors) == [0]


def test_online_ewc_recurrence() -> None:
    online = OnlineEWC({"gamma": 0.5})
    fishers = [th.tensor([1.0, 2.0]), th.tensor([4.0, 0.0]), th.tensor([0.5, 0.5])]
    params = [th.tensor([0.1, 0.2]), th.tensor([0.3, 0.4]), th.tensor([0.5, 0.6])]
    for task, f, p in zip([PONG, BREAKOUT, PONG], fishers, params):
        online.store(task, Anchor(f, p))
    assert list(online.anchors) == [ONLINE]
    th.testing.assert_close(online.anchors[ONLINE].importance, 0.25 * fishers[0] + 0.5 * fishers[1] + fishers[2])
    assert th.equal(online.anchors[ONLINE].params, params[2])


def test_online_ewc_through_the_hooks_keeps_one_normalized_running_fisher() -> None:
    agent = seeded_agent()
    online = OnlineEWC({"gamma": 0.9, "fisher_batches": 2, "fisher_batch_size": 8, "fisher_type": "empirical"})
    finish(online, agent, PONG)
    first = online.anchors[ONLINE].importance.clone()
    assert first.max().item() == 1.0  # normalized by default, as in Progress & Compress
    perturb(agent.q_net)
    finish(online, agent, BREAKOUT)
    running = online.anchors[ONLINE]
    new = running.importance - 0.9 * first
    th.testing.assert_close(new.max(), th.tensor(1.0))
    assert th.equal(running.params, flatten(p for _, p in agent.q_net.shared_named_parameters()).detach())
    online.before_task(agent.ctx(SEAQUEST), SEAQUEST)
    assert online.penalty(agent.ctx()).item() == 0.0  # anchored at the current parameters
    assert set(online.scalars()) >= {"ewc/fisher_mean/online", "ewc/fisher_max/online", "ewc/fisher_mean/task_0"}


def test_l2_equals_ewc_with_unit_fisher() -> None:
    agent = seeded_agent()
    l2, ewc = L2({"lambda_": 2.0}), EWC({"lambda_": 2.0, "fisher_batches": 1, "fisher_batch_size": 4})
    anchors = []
    for task in (PONG, BREAKOUT):
        finish(l2, agent, task)
        agent.task_steps[task.task_id] -= 100
        finish(ewc, agent, task)
        anchors.append(flatten(p for _, p in agent.q_net.shared_named_parameters()).detach().clone())
        perturb(agent.q_net)
    ewc.anchors = {g: Anchor(th.ones_like(a.params), a.params) for g, a in ewc.anchors.items()}
    for method in (l2, ewc):
        method.before_task(agent.ctx(SEAQUEST), SEAQUEST)
    agent.q_net.zero_grad()
    l2.penalty(agent.ctx()).backward()
    l2_grads = [p.grad.clone() for p in agent.q_net.parameters()]
    agent.q_net.zero_grad()
    ewc.penalty(agent.ctx()).backward()
    theta = flatten(agent.q_net.parameters()).detach()
    expected = sum((theta - a).square().sum() for a in anchors)  # lambda / 2 = 1
    th.testing.assert_close(l2.penalty(agent.ctx()).detach(), expected)
    th.testing.assert_close(ewc.penalty(agent.ctx()).detach(), expected)
    for g, p in zip(l2_grads, agent.q_net.parameters()):
        th.testing.assert_close(g, p.grad)
    assert l2.anchors[0].importance.numel() == 1  # L2 stores no importance vector


# --- task modulation -------------------------------------------------------------------------------------
def test_task_modulation_parameters_are_outside_fisher_and_penalty() -> None:
    th.manual_seed(0)
    np.random.seed(0)
    frames_space = spaces.Box(0, 255, (4, 36, 36), dtype=np.uint8)
    net = ConvQNetwork(frames_space, spaces.Discrete(3), (4, 4, 4), 8, task_modulation=True)
    net.set_task(0)
    agent = fake_agent(net)
    frames = np.random.randint(0, 256, (32, 4, 36, 36), dtype=np.uint8)
    fill(agent, frames, np.random.randint(0, 3, 32))
    ewc = EWC({"fisher_batches": 2, "fisher_batch_size": 8})
    finish(ewc, agent, PONG)
    shared = sum(p.numel() for _, p in net.shared_named_parameters())
    assert ewc.anchors[0].params.numel() == shared < sum(p.numel() for p in net.parameters())
    assert all(not n.startswith("modulations.") for n in ewc.param_names)

    net.set_task(1)  # Breakout's biases (init 0) and gains (init 1) now exist
    ewc.before_task(agent.ctx(BREAKOUT), BREAKOUT)
    perturb(net)
    net.zero_grad()
    ewc.penalty(agent.ctx()).backward()
    for name, p in net.named_parameters():
        assert (p.grad is None) == name.startswith("modulations."), name


# --- parameters and persistence ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "params", "bad"),
    [
        ("ewc", {"lambda_": -1.0}, "lambda_"),
        ("l2", {"lambda_": -0.5}, "lambda_"),
        ("ewc", {"fisher_type": "exact"}, "fisher_type"),
        ("ewc", {"temperature": 0.0}, "temperature"),
        ("ewc", {"fisher_batches": 0}, "fisher_batches"),
        ("ewc", {"min_task_steps": -1}, "min_task_steps"),
        ("online-ewc", {"gamma": 0.0}, "gamma"),
        ("online-ewc", {"gamma": 1.5}, "gamma"),
    ],
)
def test_bad_parameters_raise_naming_the_parameter(method: str, params: dict[str, Any], bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        make_method(method, params)


def test_defaults_follow_the_papers() -> None:
    ewc = make_method("ewc").params
    assert (ewc.lambda_, ewc.fisher_batches, ewc.fisher_batch_size, ewc.fisher_type) == (400.0, 100, 32, "true")
    online = make_method("online-ewc").params
    assert online.normalize and 0 < online.gamma < 1


def test_state_dict_round_trip_is_exact() -> None:
    agent = seeded_agent()
    ewc = EWC({"fisher_batches": 2, "fisher_batch_size": 8})
    finish(ewc, agent, PONG)
    perturb(agent.q_net)
    finish(ewc, agent, BREAKOUT)
    state = ewc.state_dict()
    restored = EWC(ewc.params_dict())
    restored.load_state_dict(state)
    restored.to(th.device("cpu"))
    for task_id, anchor in ewc.anchors.items():
        assert th.equal(anchor.importance, restored.anchors[task_id].importance)
        assert th.equal(anchor.params, restored.anchors[task_id].params)
    assert restored.scalars() == ewc.scalars() and set(ewc.scalars()) == {
        f"ewc/fisher_{stat}/task_{task_id}" for stat in ("mean", "max") for task_id in (0, 1)
    }
    for method in (ewc, restored):
        method.before_task(agent.ctx(SEAQUEST), SEAQUEST)
    assert th.equal(ewc.penalty(agent.ctx()), restored.penalty(agent.ctx()))


# --- the effect: EWC protects the first task -------------------------------------------------------------
def classification_task(seed: int, dims: list[int], n: int = 256) -> tuple[th.Tensor, th.Tensor]:
    """Inputs living on ``dims`` and the labels a random linear teacher gives them (the argmax "action")."""
    gen = th.Generator().manual_seed(seed)
    x = th.zeros(n, 6)
    x[:, dims] = th.randn(n, len(dims), generator=gen)
    return x, (x @ th.randn(6, 4, generator=gen)).argmax(1)


def train(net: TinyQNetwork, x: th.Tensor, y: th.Tensor, method: Any, agent: SimpleNamespace, steps: int = 300) -> None:
    optimizer = th.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(x), y)
        penalty = method.penalty(agent.ctx())
        optimizer.zero_grad()
        (loss if penalty is None else loss + penalty).backward()
        optimizer.step()


def losses_after_two_tasks(method: Any) -> tuple[float, float]:
    """Train task A then task B (overlapping inputs, different teachers); return both losses at the end."""
    th.manual_seed(0)
    np.random.seed(0)
    net = TinyQNetwork()
    agent = fake_agent(net)
    (xa, ya), (xb, yb) = classification_task(1, [0, 1, 2, 3]), classification_task(2, [2, 3, 4, 5])
    method.before_task(agent.ctx(PONG), PONG)
    train(net, xa, ya, method, agent)
    fill(agent, xa.numpy(), ya.numpy())
    agent.task_steps[0] = 300
    method.after_task(agent.ctx(PONG), PONG)
    method.before_task(agent.ctx(BREAKOUT), BREAKOUT)
    train(net, xb, yb, method, agent)
    with th.no_grad():
        return nn.functional.cross_entropy(net(xa), ya).item(), nn.functional.cross_entropy(net(xb), yb).item()


def test_ewc_forgets_the_first_task_less_than_fine_tuning() -> None:
    finetune_a, _ = losses_after_two_tasks(make_method("finetune"))
    ewc_a, ewc_b = losses_after_two_tasks(EWC({"lambda_": 100.0, "fisher_batches": 8, "fisher_batch_size": 32}))
    assert ewc_a < 0.5 * finetune_a, (ewc_a, finetune_a)
    assert ewc_b < 0.5 * np.log(4), ewc_b  # and it still learned task B (chance level is log 4)
