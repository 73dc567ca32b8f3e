"""Hypernetwork Q-function and method: generated shapes and forward pass, chunking, compression, caching, target
updates, the output regularizer, persistence, and entropy-based task inference. Tiny networks, no Atari."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from agents.networks.hyper_q import HyperQNetwork
from agents.networks import ConvQNetwork, build_q_network
from crl.methods import make_method
from agents.method import HookContext, Method, TaskInfo
from crl.task_inference.entropy import infer_task_id, softmax_entropy

ATARI_OBS = spaces.Box(0, 255, (4, 84, 84), np.uint8)
ACTIONS = spaces.Discrete(18)
TINY_OBS = spaces.Box(0, 255, (4, 36, 36), np.uint8)  # convs: 36 -> 8 -> 3 -> 1
TINY_ACTIONS = spaces.Discrete(3)
TINY = dict(embedding_dim=4, chunk_embedding_dim=3, hyper_hidden=[8], chunk_size=64, conv_channels=[2, 3, 3], hidden=8)
# generated weights of TINY, layer by layer: conv 2x4x8x8+2, conv 3x2x4x4+3, conv 3x3x3x3+3, fc 8x3+8, head 3x8+3
TINY_WEIGHTS = (512 + 2) + (96 + 3) + (81 + 3) + (24 + 8) + (24 + 3)


def tiny_net(tasks: int = 2, seed: int = 0) -> HyperQNetwork:
    th.manual_seed(seed)
    net = HyperQNetwork(TINY_OBS, TINY_ACTIONS, **TINY)
    net.grow_to(tasks)
    return net


def tiny_obs(n: int, seed: int = 0) -> th.Tensor:
    return th.randint(0, 256, (n, *TINY_OBS.shape), dtype=th.uint8, generator=th.Generator().manual_seed(seed))


def fake_agent(net: HyperQNetwork, task_id: int, game: str = "Pong") -> HookContext:
    """What the method's hooks get from a ContinualDQN: the online network, the current task and the device."""
    net.set_task(task_id)
    return HookContext(q_net=net, task=TaskInfo(task_id, game))


@pytest.mark.parametrize(
    "obs_space, actions, kwargs",
    [(ATARI_OBS, ACTIONS, {}), (ATARI_OBS, ACTIONS, dict(conv_channels=[16, 32, 32], hidden=256)), (TINY_OBS, TINY_ACTIONS, TINY)],
)
def test_generated_shapes_equal_q_network_parameter_shapes(obs_space: spaces.Box, actions: spaces.Discrete, kwargs: dict) -> None:
    net = HyperQNetwork(obs_space, actions, **kwargs)
    net.grow_to(1)
    reference = ConvQNetwork(obs_space, actions, kwargs.get("conv_channels", (32, 64, 64)), kwargs.get("hidden", 512))
    with th.no_grad():
        generated = net.weights(0)
    expected = {name: p.shape for name, p in reference.named_parameters()}
    assert {name: w.shape for name, w in generated.items()} == expected
    assert net.num_weights == sum(p.numel() for p in reference.parameters())


def test_forward_equals_ordinary_module_loaded_with_generated_weights() -> None:
    net = tiny_net()
    obs = tiny_obs(5)
    for task_id in range(2):
        reference = ConvQNetwork(TINY_OBS, TINY_ACTIONS, TINY["conv_channels"], TINY["hidden"])
        with th.no_grad():
            reference.load_state_dict(net.weights(task_id))
            th.testing.assert_close(net(obs, task_id=task_id), reference(obs), rtol=0, atol=0)
    with th.no_grad():
        assert not th.allclose(net(obs, task_id=0), net(obs, task_id=1))  # each game gets its own weights


def test_chunks_of_several_games_come_from_one_batched_call() -> None:
    net = tiny_net()
    assert net.num_chunks == -(-TINY_WEIGHTS // 64) == 12
    calls = []
    net.hypernet.register_forward_hook(lambda module, inputs, output: calls.append(tuple(inputs[0].shape)))
    both = net.generate([0, 1])
    assert calls == [(2, 12, 4 + 3)]
    assert both.shape == (2, TINY_WEIGHTS)
    th.testing.assert_close(both[1], net.generate([1])[0])
    # chunk k of game j is the MLP applied to [e_j, c_k]: check one by hand, with the LeCun scale of conv 1 (fan-in 256)
    chunk = net.hypernet(th.cat([net.task_embeddings[1], net.chunk_embeddings[2]]))
    th.testing.assert_close(both[1, 128:192], chunk * 256**-0.5)


def test_compression_ratio_counts_hypernetwork_and_embeddings() -> None:
    net = tiny_net(tasks=2)
    hyper = (7 * 8 + 8) + (8 * 64 + 64)  # MLP [e, c] (4 + 3) -> 8 -> 64
    embeddings = 12 * 3 + 2 * 4  # 12 chunk embeddings, 2 game embeddings
    assert net.compression_ratio() == pytest.approx((hyper + embeddings) / TINY_WEIGHTS)
    nature = HyperQNetwork(ATARI_OBS, ACTIONS)  # defaults: 212 chunks of 8000 weights from a 100-unit layer
    nature.grow_to(1)
    assert nature.num_weights == 1_693_362
    expected = (64 * 100 + 100) + (100 * 8000 + 8000) + 212 * 32 + 32
    assert nature.compression_ratio() == pytest.approx(expected / 1_693_362) and nature.compression_ratio() < 0.5


def test_generated_layers_start_at_lecun_scale() -> None:
    th.manual_seed(0)
    net = HyperQNetwork(ATARI_OBS, ACTIONS)
    net.grow_to(1)
    with th.no_grad():
        weights = net.weights(0)
    for name, fan_in in [("convs.0.weight", 256), ("convs.1.weight", 512), ("convs.2.weight", 576), ("fc.weight", 3136)]:
        assert weights[name].std().item() == pytest.approx(fan_in**-0.5, rel=0.25), name


def test_only_current_embedding_trains_and_is_not_shared() -> None:
    net = tiny_net(tasks=3)
    net.set_task(1)
    trainable = {id(p) for p in net.trainable_parameters()}
    assert id(net.task_embeddings[1]) in trainable
    assert id(net.task_embeddings[0]) not in trainable and id(net.task_embeddings[2]) not in trainable
    assert {id(p) for p in net.hypernet.parameters()} | {id(net.chunk_embeddings)} <= trainable
    assert not any(name.startswith("task_embeddings") for name, _ in net.shared_named_parameters())


@pytest.mark.parametrize("fused", [False, True])
def test_no_grad_weights_are_cached_until_the_parameters_are_declared_changed(fused: bool) -> None:
    net = tiny_net()
    net.set_task(0)
    calls = []
    net.hypernet.register_forward_hook(lambda *_: calls.append(1))
    obs = tiny_obs(2)
    with th.no_grad():
        first = net(obs)
        net(obs), net(obs)
        net(obs, task_id=1), net(obs, task_id=0)
    assert len(calls) == 2  # one generation per game
    optimizer = th.optim.Adam(net.trainable_parameters(), lr=1e-2, fused=fused)
    net(obs).sum().backward()  # with grad: generated afresh, differentiable
    optimizer.step()
    with th.no_grad():
        stale = net(obs)
    assert len(calls) == 3 and th.equal(stale, first)  # the cache is keyed on the explicit version, nothing else
    net.parameters_changed()  # what the agent does after every optimizer step
    with th.no_grad():
        after = net(obs)
    assert len(calls) == 4 and not th.allclose(first, after)
    reference = ConvQNetwork(TINY_OBS, TINY_ACTIONS, TINY["conv_channels"], TINY["hidden"])
    with th.no_grad():
        reference.load_state_dict(net.unflatten(net.generate([0])[0]))
        th.testing.assert_close(after, reference(obs), rtol=0, atol=0)


def test_target_update_snapshots_generated_weights_once() -> None:
    online, target = tiny_net(seed=0), tiny_net(seed=1)
    online.set_task(1)
    online.update_target(target, 1.0)
    obs = tiny_obs(3)
    calls = []
    target.hypernet.register_forward_hook(lambda *_: calls.append(1))
    with th.no_grad():
        for _ in range(5):
            th.testing.assert_close(target(obs), online(obs), rtol=0, atol=0)
    assert len(calls) == 1 and target.task_id == 1
    before = [p.detach().clone() for p in target.parameters()]
    with th.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    online.update_target(target, 0.25)  # polyak: target <- 0.25 * online + 0.75 * target
    for p_online, p_before, p_target in zip(online.parameters(), before, target.parameters()):
        th.testing.assert_close(p_target, 0.25 * p_online + 0.75 * p_before)
    with th.no_grad():
        target(obs)
    assert len(calls) == 2  # the update expired the snapshot


def test_spec_round_trip_restores_network_exactly() -> None:
    method = make_method("hypernet", dict(embedding_dim=4, chunk_embedding_dim=3, hidden=[8], chunk_size=64))
    spec = method.q_network_spec({"task_modulation": False, "conv_channels": (2, 3, 3), "hidden": 8})
    assert json.loads(json.dumps(spec)) == spec == pickle.loads(pickle.dumps(spec))
    th.manual_seed(0)
    net = build_q_network(TINY_OBS, TINY_ACTIONS, spec)
    net.grow_to(2)
    saved = {k: v for k, v in net._get_constructor_parameters().items() if k not in ("observation_space", "action_space")}
    assert saved == TINY
    th.manual_seed(1)
    rebuilt = build_q_network(TINY_OBS, TINY_ACTIONS, spec)
    rebuilt.grow_to(2)
    obs = tiny_obs(4)
    with th.no_grad():
        rebuilt(obs, task_id=0)  # caches weights generated from its own initialization
    rebuilt.load_state_dict(net.state_dict())  # must expire that cache
    with th.no_grad():
        for task_id in range(2):
            th.testing.assert_close(rebuilt(obs, task_id=task_id), net(obs, task_id=task_id), rtol=0, atol=0)
    with pytest.raises(ValueError, match="task_modulation"):
        method.q_network_spec({"task_modulation": True})


@pytest.mark.parametrize(
    "params, bad",
    [({"beta": -0.1}, "beta"), ({"chunk_size": 0}, "chunk_size"), ({"reg_subset": -1}, "reg_subset"), ({"hidden": [100, 0]}, "hidden")],
)
def test_params_validation_names_the_parameter(params: dict, bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        make_method("hypernet", params)


def test_penalty_is_beta_over_games_times_squared_distance() -> None:
    net = tiny_net(tasks=3)
    method = make_method("hypernet", dict(beta=0.5))
    for task_id, game in enumerate(["Pong", "Breakout"]):
        method.before_task(fake_agent(net, task_id, game), TaskInfo(task_id, game))
    method.after_task(fake_agent(net, 0), TaskInfo(0, "Pong"))
    method.after_task(fake_agent(net, 1), TaskInfo(1, "Breakout"))  # stores theta* of games 0 and 1 (2 is unseen)
    agent = fake_agent(net, 2, "Seaquest")
    method.before_task(agent, TaskInfo(2, "Seaquest"))
    assert method.penalty(agent).item() == pytest.approx(0.0, abs=1e-12)  # nothing moved yet
    with th.no_grad():
        net.hypernet[-1].bias.add_(0.1)  # shifts every generated weight by 0.1 * its layer scale
    expected = 0.5 / 2 * 2 * (0.1 * net.weight_scale).pow(2).sum().item()
    assert method.penalty(agent).item() == pytest.approx(expected, rel=1e-5)
    scalars = method.scalars()
    assert scalars["hypernet/reg_loss"] == pytest.approx(expected / 2, rel=1e-5)  # mean over two steps
    assert scalars["hypernet/compression_ratio"] == pytest.approx(net.compression_ratio())
    assert scalars["hypernet/embedding_norm/task_1"] == pytest.approx(net.task_embeddings[1].norm().item())
    assert method.penalty(fake_agent(net, 0)) is not None  # revisiting game 0: only game 1 is regularized
    assert make_method("hypernet", dict(beta=0.0)).penalty(agent) is None


def test_reg_subset_regularizes_a_random_subset_per_step() -> None:
    net = tiny_net(tasks=4)
    method = make_method("hypernet", dict(beta=1.0, reg_subset=1))
    for task_id, game in enumerate(["Pong", "Breakout", "Seaquest"]):
        method.after_task(fake_agent(net, task_id), TaskInfo(task_id, game))
    agent = fake_agent(net, 3, "Qbert")
    calls = []
    net.hypernet.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    for _ in range(20):
        method.penalty(agent)
    assert set(calls) == {1}


def train_regression(net: HyperQNetwork, agent: HookContext, method: Method, data: tuple[th.Tensor, th.Tensor], steps: int) -> None:
    """Fit the current game's Q-values to fixed targets (a stand-in for the TD loss), plus the method's penalty."""
    obs, q_targets = data
    optimizer = th.optim.Adam(net.trainable_parameters(), lr=3e-3)
    for _ in range(steps):
        loss = (net(obs) - q_targets).pow(2).mean()
        penalty = method.penalty(agent)
        loss = loss if penalty is None else loss + penalty
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def drift_of_game_0(beta: float) -> float:
    net = tiny_net(tasks=1, seed=3)
    method = make_method("hypernet", dict(beta=beta))
    generator = th.Generator().manual_seed(7)
    games = [(tiny_obs(16, seed=10 + t), th.randn(16, 3, generator=generator)) for t in range(2)]
    for task_id, game in enumerate(["Pong", "Breakout"]):
        net.grow_to(task_id + 1)
        agent = fake_agent(net, task_id, game)
        method.before_task(agent, TaskInfo(task_id, game))
        train_regression(net, agent, method, games[task_id], steps=150)
        if task_id == 0:
            with th.no_grad():
                theta_0 = net.generate([0])[0].clone()
        method.after_task(agent, TaskInfo(task_id, game))
    with th.no_grad():
        return (net.generate([0])[0] - theta_0).norm().item() / theta_0.norm().item()


@pytest.mark.e2e  # a real run or a `crl` subprocess: seconds, not milliseconds
def test_output_regularizer_keeps_earlier_games_weights() -> None:
    free, regularized = drift_of_game_0(beta=0.0), drift_of_game_0(beta=1.0)
    assert free > 0.05  # training game 1 moves game 0's weights when nothing protects them
    assert regularized < 0.1 * free


def test_method_state_round_trip() -> None:
    net = tiny_net(tasks=2)
    method = make_method("hypernet", dict(beta=0.1))
    for task_id, game in enumerate(["Pong", "Breakout"]):
        agent = fake_agent(net, task_id, game)
        method.before_task(agent, TaskInfo(task_id, game))
        method.after_task(agent, TaskInfo(task_id, game))
    with th.no_grad():
        net.hypernet[-1].bias.add_(0.1)
    method.penalty(agent)  # mid-block (Breakout, regularizing Pong): the running mean must survive a resume
    state = pickle.loads(pickle.dumps(method.state_dict()))
    restored = make_method("hypernet", method.params_dict())
    restored.load_state_dict(state)
    assert th.equal(restored.targets, method.targets) and restored.targets.shape == (2, TINY_WEIGHTS)
    assert restored.games == {0: "Pong", 1: "Breakout"}
    assert restored.scalars()["hypernet/reg_loss"] == method.scalars()["hypernet/reg_loss"] > 0


def test_softmax_entropy_known_values() -> None:
    q = th.tensor([[1.0, 1.0, 1.0, 1.0], [100.0, 0.0, 0.0, 0.0], [0.0, float(np.log(3.0)), 0.0, 0.0]])
    # third row: probabilities 3/6 and 1/6 three times -> H = -(0.5 ln 0.5 + 3 (1/6) ln(1/6))
    expected = [np.log(4.0), 0.0, -(0.5 * np.log(0.5) + 0.5 * np.log(1 / 6))]
    th.testing.assert_close(softmax_entropy(q), th.tensor(expected, dtype=th.float32), atol=1e-5, rtol=0)
    th.testing.assert_close(softmax_entropy(q[:1] * 7, temperature=7.0), softmax_entropy(q[:1]))


def test_infer_task_id_picks_lowest_entropy_task() -> None:
    th.manual_seed(0)
    net = ConvQNetwork(TINY_OBS, TINY_ACTIONS, (2, 3, 3), 8, task_modulation=True)  # any TaskQNetwork works
    net.grow_to(3)
    with th.no_grad():
        net.modulations[-1].gains[1].copy_(th.tensor([50.0, 0.0, 0.0]))  # task 1 strongly prefers one action
        net.modulations[-1].biases[1].copy_(th.tensor([1.0, 0.0, 0.0]))
    obs = tiny_obs(6).numpy()
    assert infer_task_id(net, obs, [0, 1, 2]) == 1
    assert infer_task_id(net, obs, [2, 0]) == 2  # tasks 0 and 2 are identical: the first candidate wins the tie
    with pytest.raises(ValueError):
        infer_task_id(net, obs, [])


def test_ids_never_trained_are_not_regularized() -> None:
    """A task id a task-inference process skipped (ids 0 and 2 trained, 1 never) has no learned target."""
    net = tiny_net(tasks=3)
    method = make_method("hypernet", dict(beta=1.0))
    for task_id, game in ((0, "Pong"), (2, "Breakout")):
        method.after_task(fake_agent(net, task_id), TaskInfo(task_id, game))
    calls = []
    net.hypernet.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    method.penalty(fake_agent(net, 2))  # revisiting id 2: only id 0 is regularized, not the untrained id 1
    assert calls == [1]
