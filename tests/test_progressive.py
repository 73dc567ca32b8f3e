"""Progressive networks: parameter-count formula, the adapter equation, freezing, target updates, the method."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch as th
import torch.nn.functional as F
from gymnasium import spaces

from agents.networks import build_q_network
from agents.networks.progressive_q import ProgressiveQNetwork
from crl.methods import make_method
from agents.method import TaskInfo

ATARI_OBS = spaces.Box(0, 255, (4, 84, 84), np.uint8)
ACTIONS = spaces.Discrete(18)
TINY_OBS = spaces.Box(0, 255, (4, 36, 36), np.uint8)  # convs: 36 -> 8 -> 3 -> 1
TINY_WIDTH = [3, 4, 5, 6]




def expected_params(columns: int, c1: int, c2: int, c3: int, hidden: int, actions: int = 18, side: int = 7) -> int:
    """Closed form (docs/progressive.md): K*C + (K-1)*a + b*K(K-1)/2 for K columns of the 84x84 Nature layout."""
    column = (4 * 8 * 8 * c1 + c1) + (c1 * 4 * 4 * c2 + c2) + (c2 * 3 * 3 * c3 + c3) + (c3 * side**2 * hidden + hidden)
    column += hidden * actions + actions
    a = (c1 + c1 * 4 * 4 * c2) + (c2 + c2 * 3 * 3 * c3) + (c3 + c3 * side**2 * hidden) + (hidden + hidden * actions)
    b = (c1**2 + 1) + (c2**2 + 1) + (c3**2 + 1) + (hidden**2 + 1)
    return columns * column + (columns - 1) * a + b * columns * (columns - 1) // 2


def n_params(module: th.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "width, sizes, totals",
    [
        ("dqn", (32, 64, 64, 512), (1_693_362, 5_343_240, 9_264_482)),
        ("paper", (12, 12, 12, 256), (162_118, 549_236, 1_002_326)),
    ],
)
def test_parameter_count_follows_quadratic_formula(width: str, sizes: tuple[int, ...], totals: tuple[int, ...]) -> None:
    net = ProgressiveQNetwork(ATARI_OBS, ACTIONS, width=width)
    for k, total in enumerate(totals, start=1):
        net.grow_to(k)
        assert n_params(net) == total == expected_params(k, *sizes)
        assert sum(net.column_parameter_counts()) == total
    counts = net.column_parameter_counts()  # column k costs C + a + k*b: a constant second difference of the total
    assert counts[2] - counts[1] == sum(n**2 + 1 for n in sizes)


def test_forward_shapes_for_every_column() -> None:
    net = ProgressiveQNetwork(ATARI_OBS, ACTIONS, width="paper")
    net.grow_to(3)
    obs = th.randint(0, 256, (5, 4, 84, 84), dtype=th.uint8)
    for k in range(3):
        net.set_task(k)
        q = net(obs)
        assert q.shape == (5, 18) and th.isfinite(q).all()
        assert net.predict(obs.numpy())[0].shape == (5,)


def test_column_one_computes_equation_2() -> None:
    """h_i = relu(W h_{i-1} + U relu(V alpha h_{i-1}^(0))), recomputed by hand with F.conv2d / F.linear."""
    th.manual_seed(0)
    net = ProgressiveQNetwork(TINY_OBS, ACTIONS, width=TINY_WIDTH, alpha_init=0.5)
    net.grow_to(2)
    with th.no_grad():
        for i, lateral in enumerate(net.laterals[1]):
            lateral.alpha.fill_(0.3 + 0.2 * i)
    x = th.rand(2, 4, 36, 36)
    w0 = net.columns[0]
    w1 = net.columns[1]
    lat = net.laterals[1]
    h0 = [x]  # column 0 activations, layer by layer
    h0.append(F.relu(F.conv2d(x, w0[0].weight, w0[0].bias, stride=4)))
    h0.append(F.relu(F.conv2d(h0[1], w0[1].weight, w0[1].bias, stride=2)))
    h0.append(F.relu(F.conv2d(h0[2], w0[2].weight, w0[2].bias, stride=1)))
    h0.append(F.relu(F.linear(h0[3].flatten(1), w0[3][1].weight, w0[3][1].bias)))

    def adapter(i: int, h: th.Tensor) -> th.Tensor:
        a = lat[i].alpha[0]
        if h.dim() == 4:
            return F.relu(F.conv2d(a * h, lat[i].V.weight, lat[i].V.bias))
        return F.relu(F.linear(a * h, lat[i].V.weight, lat[i].V.bias))

    h = F.relu(F.conv2d(x, w1[0].weight, w1[0].bias, stride=4))
    h_next = F.conv2d(h, w1[1].weight, w1[1].bias, stride=2) + F.conv2d(adapter(0, h0[1]), lat[0].U.weight, stride=2)
    h = F.relu(h_next)
    h_next = F.conv2d(h, w1[2].weight, w1[2].bias) + F.conv2d(adapter(1, h0[2]), lat[1].U.weight)
    h = F.relu(h_next)
    h_next = F.linear(h.flatten(1), w1[3][1].weight, w1[3][1].bias) + F.linear(adapter(2, h0[3]).flatten(1), lat[2].U.weight)
    h = F.relu(h_next)
    q = F.linear(h, w1[4].weight, w1[4].bias) + F.linear(adapter(3, h0[4]), lat[3].U.weight)

    assert th.allclose(net.q_values(x, 1), q, atol=1e-6)
    assert th.allclose(net.q_values(x, 0), F.linear(h0[4], w0[4].weight, w0[4].bias), atol=1e-6)


def test_third_column_concatenates_scaled_earlier_columns() -> None:
    """V of column 2 sees [alpha_0 h^(0), alpha_1 h^(1)]: zeroing alpha_1 removes column 1's influence."""
    th.manual_seed(1)
    net = ProgressiveQNetwork(TINY_OBS, ACTIONS, width=TINY_WIDTH)
    net.grow_to(3)
    assert [lateral.V.weight.shape[1] for lateral in net.laterals[2]] == [2 * n for n in TINY_WIDTH]
    x = th.rand(3, 4, 36, 36)
    with th.no_grad():
        for lateral in net.laterals[2]:
            lateral.alpha[1] = 0.0
        before = net.q_values(x, 2)
        for p in net.columns[1].parameters():
            p.add_(1.0)
        assert th.equal(net.q_values(x, 2), before)
        for p in net.columns[0].parameters():
            p.add_(1.0)
        assert not th.allclose(net.q_values(x, 2), before)


def test_adapters_off_gives_independent_columns() -> None:
    th.manual_seed(2)
    net = ProgressiveQNetwork(ATARI_OBS, ACTIONS, width="paper", adapters=False)
    net.grow_to(3)
    column = expected_params(1, 12, 12, 12, 256)
    assert net.column_parameter_counts() == [column] * 3
    assert n_params(net) == 3 * column
    x = th.rand(2, 4, 84, 84)
    with th.no_grad():
        before = net.q_values(x, 1)
        for p in net.columns[0].parameters():
            p.mul_(-2.0)
        assert th.equal(net.q_values(x, 1), before)

    linked = ProgressiveQNetwork(ATARI_OBS, ACTIONS, width="paper", adapters=True)
    linked.grow_to(2)
    with th.no_grad():
        before = linked.q_values(x, 1)
        for p in linked.columns[0].parameters():
            p.mul_(-2.0)
        assert not th.allclose(linked.q_values(x, 1), before)


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def test_only_current_column_and_its_adapters_train() -> None:
    th.manual_seed(3)
    net = ProgressiveQNetwork(TINY_OBS, ACTIONS, width=TINY_WIDTH)
    obs = th.randint(0, 256, (16, 4, 36, 36), dtype=th.uint8)
    q0_before = net(obs).detach().clone()
    params0_before = {n: p.detach().clone() for n, p in net.columns[0].named_parameters()}

    net.set_task(1)
    expected = _ids(net.columns[1].parameters()) | _ids(net.laterals[1].parameters())
    assert _ids(net.trainable_parameters()) == expected
    optimizer = th.optim.Adam(net.trainable_parameters(), lr=1e-2)
    for _ in range(5):
        optimizer.zero_grad()
        net(obs).pow(2).mean().backward()
        optimizer.step()
    assert all(p.grad is None for p in net.columns[0].parameters())
    assert th.equal(net(obs, task_id=0), q0_before)
    for name, p in net.columns[0].named_parameters():
        assert th.equal(p, params0_before[name]), name

    net.set_task(2)
    assert _ids(net.trainable_parameters()) == _ids(net.columns[2].parameters()) | _ids(net.laterals[2].parameters())
    net.set_task(0)  # a revisit, later columns reading this one: its Q head alone
    assert _ids(net.trainable_parameters()) == _ids(net.columns[0][-1].parameters())
    net.set_task(1)  # ... and the head's adapter, which reads column 0 and feeds only this head
    head = _ids(net.columns[1][-1].parameters()) | _ids(net.laterals[1][-1].parameters())
    assert _ids(net.trainable_parameters()) == head
    net.set_task(2)  # the newest column: no later column reads it, it trains whole
    assert _ids(net.trainable_parameters()) == _ids(net.columns[2].parameters()) | _ids(net.laterals[2].parameters())
    assert net.num_tasks == 3


@pytest.mark.parametrize("revisit, adapters", [("column", True), ("head", False)])
def test_a_revisit_trains_the_whole_column_when_asked_or_when_nothing_reads_it(revisit: str, adapters: bool) -> None:
    net = ProgressiveQNetwork(TINY_OBS, ACTIONS, width=TINY_WIDTH, adapters=adapters, revisit=revisit)
    net.grow_to(3)
    net.set_task(1)
    assert _ids(net.trainable_parameters()) == _ids(net.columns[1].parameters()) | _ids(net.laterals[1].parameters())


def train_block(net: ProgressiveQNetwork, task_id: int, generator: th.Generator, steps: int = 3) -> None:
    """What the agent does in a block, in miniature: select the task, then Adam steps on random frames and targets
    over the trainable parameters only."""
    net.set_task(task_id)
    optimizer = th.optim.Adam(net.trainable_parameters(), lr=1e-2)
    for _ in range(steps):
        x = th.rand(8, 4, 36, 36, generator=generator)
        target = th.randn(8, ACTIONS.n, generator=generator)
        optimizer.zero_grad()
        F.mse_loss(net(x), target).backward()
        optimizer.step()


@pytest.mark.parametrize("revisit", ["head", "column"])
def test_revisits_forget_nothing_with_head_and_drift_later_games_with_column(revisit: str) -> None:
    """Two cycles over three games: after each block, every game but the trained one (and, with revisit=column,
    the games after it in a second cycle, whose adapters read its column) has bit-identical Q-values."""
    th.manual_seed(6)
    generator = th.Generator().manual_seed(6)
    net = ProgressiveQNetwork(TINY_OBS, ACTIONS, width=TINY_WIDTH, revisit=revisit)
    x = th.rand(16, 4, 36, 36, generator=generator)
    games = 3
    for block in range(2 * games):
        cycle, game = divmod(block, games)
        with th.no_grad():
            before = {k: net.q_values(x, k) for k in range(net.num_tasks)}
        train_block(net, game, generator)
        with th.no_grad():
            changed = {k for k, q in before.items() if not th.equal(net.q_values(x, k), q)}
        drifting = set(range(game + 1, games)) if revisit == "column" and cycle == 1 else set()
        assert changed == ({game} | drifting) & before.keys(), f"block {block} (game {game})"


def test_rebuilt_from_json_spec_loads_every_column() -> None:
    th.manual_seed(4)
    spec = {"kind": "progressive", "width": TINY_WIDTH, "adapters": True, "alpha_init": 0.01, "revisit": "column"}
    net = build_q_network(TINY_OBS, ACTIONS, json.loads(json.dumps(spec)))
    assert ProgressiveQNetwork(**net._get_constructor_parameters()).revisit == "column"  # what a policy save keeps
    net.set_task(2)
    rebuilt = build_q_network(TINY_OBS, ACTIONS, json.loads(json.dumps(spec)))
    rebuilt.grow_to(net.num_tasks)
    rebuilt.load_state_dict(net.state_dict())
    rebuilt.set_task(2)
    x = th.rand(4, 4, 36, 36)
    for k in range(3):
        assert th.equal(rebuilt.q_values(x, k), net.q_values(x, k))
    assert all(lateral.alpha.eq(0.01).all() for column in net.laterals for lateral in column)


@pytest.mark.parametrize(
    "columns, averaged", [(2, ("columns.1.", "laterals.1.")), (3, ("columns.1.4.", "laterals.1.3."))]
)
def test_target_update_copies_frozen_and_averages_trainable(columns: int, averaged: tuple[str, ...]) -> None:
    """Task 1 as the newest column (all of it averaged) and as a revisit (its Q head and the head's adapter)."""
    th.manual_seed(5)
    online = ProgressiveQNetwork(TINY_OBS, ACTIONS, width=TINY_WIDTH)
    target = ProgressiveQNetwork(TINY_OBS, ACTIONS, width=TINY_WIDTH)
    online.grow_to(columns)
    online.set_task(1)
    target.grow_to(columns)
    old_target = [p.detach().clone() for p in target.parameters()]
    online.update_target(target, tau=0.25)
    assert target.num_tasks == columns and target.task_id == 1
    assert {n for n, p in online.named_parameters() if p.requires_grad} == {
        n for n, _ in online.named_parameters() if n.startswith(averaged)
    }
    for p, t, old in zip(online.parameters(), target.parameters(), old_target):
        expected = p if not p.requires_grad else 0.25 * p + 0.75 * old
        assert th.allclose(t, expected, atol=1e-7, rtol=0) if p.requires_grad else th.equal(t, expected)


def test_method_spec_validation_and_scalars() -> None:
    method = make_method("progressive", {"width": "paper", "adapters": False, "alpha_init": 1.0, "revisit": "column"})
    spec = method.q_network_spec({"task_modulation": False, "conv_channels": (32, 64, 64), "hidden": 512})
    assert spec == {"kind": "progressive", "width": "paper", "adapters": False, "alpha_init": 1.0, "revisit": "column"}
    assert json.loads(json.dumps(spec)) == spec
    assert make_method("progressive").q_network_spec({})["revisit"] == "head"
    with pytest.raises(ValueError, match="width"):
        make_method("progressive", {"width": "huge"})
    with pytest.raises(ValueError, match="revisit"):
        make_method("progressive", {"revisit": "all"})
    with pytest.raises(ValueError, match="revisit"):
        build_q_network(TINY_OBS, ACTIONS, {"kind": "progressive", "revisit": "all"})
    with pytest.raises(ValueError, match="alpha_init"):
        make_method("progressive", {"alpha_init": 0.0})
    with pytest.raises(ValueError, match="task_modulation"):
        make_method("progressive").q_network_spec({"task_modulation": True, "hidden": 512})

    method = make_method("progressive", {"width": "paper"})
    assert method.scalars() == {}
    net = build_q_network(ATARI_OBS, ACTIONS, method.q_network_spec({}))
    net.set_task(2)
    method.before_task(SimpleNamespace(q_net=net), TaskInfo(2, "Pong"))
    scalars = method.scalars()
    assert scalars["progressive/columns"] == 3
    assert scalars["progressive/params_total"] == expected_params(3, 12, 12, 12, 256) == n_params(net)
    assert [scalars[f"progressive/params_column_{k}"] for k in range(3)] == net.column_parameter_counts()
