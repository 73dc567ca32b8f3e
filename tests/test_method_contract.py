"""The contract every registered method must keep, checked for each one the package ships (a new file in
``crl/methods`` is picked up with no edit here; methods that tests define for themselves are left out):

* its parameters: every ``Params`` field declares a default, a help text and the values it may take, and values just
  outside them (derived from the declaration) are a ValueError naming the field;
* its hooks on a tiny real agent: ``before_task``/``after_task`` over two tasks, a penalty that is None or a finite
  scalar with a gradient, and a ``save``/``load`` round trip that restores its state, its generator and its penalty;
* the agent acts with what it has learned (on every game family, with and without task modulation where it
  applies; both optimizers on MinAtar, Adam on Atari, since optimizer state handling does not depend on the torso): after two games of a few dozen gradient steps each, the Q-values used for acting, for
  evaluation, for the Double DQN argmax and by the target network equal a fresh forward of the current parameters
  (a network rebuilt from the spec and the state dict: no cache can hide there); every parameter the network reports
  as trainable changed during the second game and every other one is bit-identical; the same after ``save``/``load``
  and after training on from the loaded agent (a resume).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch as th

from agents import ContinualDQN, HookContext, TaskQNetwork, build_q_network
from crl.run.config import resolve
from crl.methods import METHODS, TaskInfo, make_method
from crl.run.agent import build_agent
from envs import make_vec_env

SHIPPED = sorted(name for name, cls in METHODS.items() if cls.__module__.startswith(("crl.", "agents.")))
# Plasticity interventions (they rewrite the conv network) combined with every forgetting method that allows them.
INTERVENTIONS = sorted(n for n in SHIPPED if METHODS[n].network_kinds == ("conv",))
FORGETTING = sorted(n for n in SHIPPED if n not in INTERVENTIONS and n != "finetune")


def combinable(name: str) -> bool:
    try:
        make_method(name)
    except ValueError:
        return False
    return True


COMPOSED = [f"{f}+{i}" for f in FORGETTING for i in INTERVENTIONS if combinable(f"{f}+{i}")]

FAMILIES = {
    "atari": (("pong", "breakout"), {"network.conv_channels": [4, 8, 8], "network.hidden": 32}),
    "minatar": (("minatar/breakout", "minatar/space_invaders"), {}),
}
STEPS = 160  # env steps per game: (160 - 64 warm-up) / 2 envs = 48 gradient steps


def takes_task_modulation(method: str) -> bool:
    try:
        make_method(method).q_network_spec({"task_modulation": True})
    except ValueError:
        return False
    return True


CASES = [
    pytest.param(family, method, optimizer, modulation, id=f"{family}-{method}-{optimizer}{'-mod' if modulation else ''}")
    for family in FAMILIES
    for method in SHIPPED
    for optimizer in (("adam", "rmsprop") if family == "minatar" else ("adam",))  # optimizer code: family-blind
    for modulation in ((False, True) if takes_task_modulation(method) else (False,))
] + [  # composed methods: MinAtar and Adam, with task modulation where it applies (the EWC paper's agent)
    pytest.param("minatar", method, "adam", takes_task_modulation(method),
                 id=f"minatar-{method}-adam{'-mod' if takes_task_modulation(method) else ''}")
    for method in COMPOSED
]


def make_agent(family: str, method: str, optimizer: str, modulation: bool) -> ContinualDQN:
    games, network = FAMILIES[family]
    cfg = resolve({
        "games": list(games), "method": method, "n_envs": 2, "agent.optimizer": optimizer,
        "network.task_modulation": modulation, "agent.learning_starts": 64, "agent.buffer_size": 1_000,
        "agent.batch_size": 8, "agent.train_freq": 1, "agent.gradient_steps": 1, "agent.target_update_interval": 40,
        "agent.double_q": True, "agent.learning_rate": 1e-3,
        # recycling within the test's 48 gradient steps per game: ReDo every 8, CBP on units older than 8
        "redo.every": 8, "redo.batch_size": 8, "cbp.maturity": 8, "cbp.replacement_rate": 0.05, **network,
    })
    return build_agent(cfg, make_vec_env(cfg.games[0], n_envs=2, seed=0), "cpu")


def fresh_copy(agent: ContinualDQN, net: TaskQNetwork) -> TaskQNetwork:
    """The network rebuilt from its spec and loaded with ``net``'s parameters: what its Q-values must be."""
    fresh = build_q_network(agent.observation_space, agent.action_space, agent.policy.network)
    fresh.grow_to(net.num_tasks)
    fresh.load_state_dict(net.state_dict())
    fresh.set_task(net.task_id)
    return fresh.eval()


def assert_acts_with_current_parameters(agent: ContinualDQN) -> None:
    obs = np.stack([agent.observation_space.sample() for _ in range(16)])
    obs_t = th.as_tensor(obs)
    online, target = fresh_copy(agent, agent.q_net), fresh_copy(agent, agent.q_net_target)
    with th.no_grad():
        expected_actions = online(obs_t).argmax(dim=1).numpy()
        actions, _ = agent.predict(obs, deterministic=True)  # acting (behaviour policy before epsilon)
        np.testing.assert_array_equal(actions, expected_actions)
        # the Double DQN argmax: td_loss evaluates the online network on next observations under no_grad
        np.testing.assert_array_equal(agent.q_net(obs_t).argmax(dim=1).numpy(), expected_actions)
        for task_id in range(agent.q_net.num_tasks):  # evaluation plays each game with its own task id
            th.testing.assert_close(agent.q_net(obs_t, task_id=task_id), online(obs_t, task_id=task_id), rtol=0, atol=0)
        th.testing.assert_close(agent.q_net_target(obs_t), target(obs_t), rtol=0, atol=0)


def train_and_check_parameters(agent: ContinualDQN, steps: int) -> None:
    """Train ``steps`` env steps; trainable parameters must all move, every other one must stay bit-identical."""
    trainable = {id(p) for p in agent.q_net.trainable_parameters()}
    before = {name: p.detach().clone() for name, p in agent.q_net.named_parameters()}
    assert trainable, "nothing to train"
    agent.learn(steps, reset_num_timesteps=False)
    for name, p in agent.q_net.named_parameters():
        if id(p) in trainable:
            assert not th.equal(p, before[name]), f"trainable parameter {name} did not change"
        else:
            assert th.equal(p, before[name]), f"frozen parameter {name} changed"


def assert_penalty_contract(penalty: th.Tensor | None, q_net: TaskQNetwork) -> None:
    """None, or a finite scalar whose gradient reaches the network (zero where nothing moved yet is fine)."""
    if penalty is None:
        return
    assert isinstance(penalty, th.Tensor) and penalty.dim() == 0 and th.isfinite(penalty), penalty
    assert penalty.requires_grad, "the penalty has no gradient"
    q_net.zero_grad(set_to_none=True)
    penalty.backward()
    assert any(p.grad is not None for p in q_net.parameters()), "the penalty's gradient reaches no parameter"
    q_net.zero_grad(set_to_none=True)


def assert_same_state(a: Any, b: Any, where: str = "state") -> None:
    """Two ``state_dict`` results hold the same values (tensors bit for bit), recursively."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, th.Tensor):
        assert a.shape == b.shape and th.equal(a.cpu(), b.cpu()), where
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(map(str, a))} != {sorted(map(str, b))}"
        for key in a:
            assert_same_state(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# --- parameters: declared, and checked against the declaration ---------------------------------------------------
def out_of_range(spec: dataclasses.Field) -> list[Any]:
    """Values just outside what ``spec`` declares: past each bound of its range, off its choices, of the wrong type."""
    default, bounds, choices = spec.default, spec.metadata.get("range"), spec.metadata.get("choices")
    if isinstance(default, bool):
        return ["yes", 1]
    if isinstance(default, str):
        return ["-".join(choices) + "?", 3]
    number = default[0] if isinstance(default, tuple) else default
    bad: list[Any] = ["many", float("nan")]
    if bounds is not None and bounds.low is not None:
        bad.append(bounds.low if bounds.low_open else bounds.low - 1)
    if bounds is not None and bounds.high is not None:
        bad.append(bounds.high + 1)
    if isinstance(number, int):
        bad.append(number + 0.5)
    return [(v,) if isinstance(default, tuple) else v for v in bad]


@pytest.mark.parametrize("method", SHIPPED)
def test_params_declare_default_help_and_range(method: str) -> None:
    params = METHODS[method].Params
    METHODS[method]()  # the defaults are valid
    for spec in dataclasses.fields(params):
        where = f"{method}.{spec.name}"
        assert spec.default is not dataclasses.MISSING, f"{where} has no default"
        assert isinstance(spec.metadata.get("help"), str) and spec.metadata["help"].strip(), f"{where} has no help"
        if isinstance(spec.default, str):
            assert spec.metadata.get("choices"), f"{where} declares no choices"
        elif not isinstance(spec.default, bool):
            assert spec.metadata.get("range") is not None, f"{where} declares no range"


@pytest.mark.parametrize("method", SHIPPED)
def test_values_outside_the_declared_range_are_errors_naming_the_field(method: str) -> None:
    for spec in dataclasses.fields(METHODS[method].Params):
        for value in out_of_range(spec):
            with pytest.raises(ValueError, match=spec.name):
                METHODS[method]({spec.name: value})


# --- hooks, penalty and persistence on a tiny real agent ---------------------------------------------------------
def tiny_agent(method: str) -> ContinualDQN:
    cfg = resolve({
        "games": ["minatar/breakout"], "method": method, "n_envs": 1, "agent.learning_starts": 24,
        "agent.buffer_size": 200, "agent.batch_size": 8, "agent.train_freq": 1, "agent.gradient_steps": 1,
        "agent.target_update_interval": 20, "agent.learning_rate": 1e-3,
    })
    return build_agent(cfg, make_vec_env("minatar/breakout", n_envs=1, seed=0), "cpu")


def test_every_intervention_combines_with_the_forgetting_methods_that_allow_it() -> None:
    assert set(INTERVENTIONS) == {"cbp", "l2-init", "redo", "reset-head", "shrink-perturb"}
    refused = {f for f in FORGETTING if not any(combinable(f"{f}+{i}") for i in INTERVENTIONS)}
    assert refused == {"progressive", "hypernet"}, "only the methods that choose their own network refuse"
    assert len(COMPOSED) == len(INTERVENTIONS) * (len(FORGETTING) - len(refused))


@pytest.mark.e2e
@pytest.mark.parametrize("method", SHIPPED + COMPOSED)
def test_hooks_penalty_and_round_trip_on_a_tiny_agent(tmp_path: Path, method: str) -> None:
    agent = tiny_agent(method)
    for task in (TaskInfo(0, "minatar/breakout", seed=3), TaskInfo(1, "minatar/breakout", block=1, seed=3)):
        agent.set_task(task)
        agent.learn(48, reset_num_timesteps=False)
        context = agent.hook_context()
        assert isinstance(context, HookContext) and context.task == task and context.task_steps == 48
        assert_penalty_contract(agent.method.penalty(context), agent.q_net)
        if task.task_id == 0:
            agent.end_task()

    agent.save(tmp_path / "agent.zip")
    loaded = ContinualDQN.load(tmp_path / "agent.zip", env=make_vec_env("minatar/breakout", seed=1), device="cpu")
    assert type(loaded.method) is type(agent.method) and loaded.method.params_dict() == agent.method.params_dict()
    assert_same_state(loaded.method.state_dict(), agent.method.state_dict())
    assert th.equal(loaded.method_generator.get_state(), agent.method_generator.get_state())
    penalties = [m.penalty(a.hook_context()) for m, a in ((agent.method, agent), (loaded.method, loaded))]
    assert (penalties[0] is None) == (penalties[1] is None)
    if penalties[0] is not None:
        assert th.equal(penalties[0].detach(), penalties[1].detach())
    loaded.resume_task()
    loaded.learn(16, reset_num_timesteps=False)
    loaded.end_task()


# --- acting with what was learned ---------------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.parametrize("family, method, optimizer, modulation", CASES)
def test_method_acts_with_what_it_learned(tmp_path: Path, family: str, method: str, optimizer: str, modulation: bool) -> None:
    games = FAMILIES[family][0]
    agent = make_agent(family, method, optimizer, modulation)
    agent.set_task(TaskInfo(0, games[0]))
    agent.learn(STEPS, reset_num_timesteps=False)
    assert_acts_with_current_parameters(agent)
    agent.end_task()

    second_env = make_vec_env(games[1], n_envs=2, seed=1)
    agent.set_env(second_env)
    agent.set_task(TaskInfo(1, games[1], block=1, first_visit=True))
    train_and_check_parameters(agent, STEPS)
    assert_acts_with_current_parameters(agent)
    assert_penalty_contract(agent.method.penalty(agent.hook_context()), agent.q_net)

    agent.save(tmp_path / "agent.zip")
    loaded = ContinualDQN.load(tmp_path / "agent.zip", env=second_env, device="cpu")
    assert_acts_with_current_parameters(loaded)
    for name, p in agent.q_net.state_dict().items():
        assert th.equal(p, loaded.q_net.state_dict()[name]), name
    recycled = {k: v for k, v in agent.method.scalars().items() if k in ("redo/recycled_units", "cbp/replaced_units")}
    assert all(v > 0 for v in recycled.values()), f"no unit was recycled, so the checks above tested none: {recycled}"
    loaded.resume_task()
    train_and_check_parameters(loaded, STEPS)  # a resumed agent trains and acts like any other
    assert_acts_with_current_parameters(loaded)
