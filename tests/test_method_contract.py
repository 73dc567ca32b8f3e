"""The contract every registered method must keep: the agent acts with what it has learned.

For every method (both optimizers, with and without task modulation where it applies, on every game family) a real
agent trains two games for a few dozen gradient steps each, and then:

* the Q-values used for acting, for evaluation, for the Double DQN argmax and by the target network equal a fresh
  forward of the current parameters (a network rebuilt from the spec and the state dict: no cache can hide there);
* every parameter the network reports as trainable changed during the second game; every other one is bit-identical;
* the same holds after ``save``/``load`` and after training on from the loaded agent (a resume).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch as th

from agents import ContinualDQN, TaskQNetwork, build_q_network
from crl.config import resolve
from crl.methods import METHODS, TaskInfo
from crl.trainer import build_agent
from envs import make_vec_env

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them

FAMILIES = {
    "atari": (("pong", "breakout"), {"network.conv_channels": [4, 8, 8], "network.hidden": 32}),
    "minatar": (("minatar/breakout", "minatar/space_invaders"), {}),
}
STEPS = 160  # env steps per game: (160 - 64 warm-up) / 2 envs = 48 gradient steps


def takes_task_modulation(method: str) -> bool:
    try:
        METHODS[method]().q_network_spec({"task_modulation": True})
    except ValueError:
        return False
    return True


CASES = [
    pytest.param(family, method, optimizer, modulation, id=f"{family}-{method}-{optimizer}{'-mod' if modulation else ''}")
    for family in FAMILIES
    for method in sorted(METHODS)
    for optimizer in ("adam", "rmsprop")
    for modulation in ((False, True) if takes_task_modulation(method) else (False,))
]


def make_agent(family: str, method: str, optimizer: str, modulation: bool) -> ContinualDQN:
    games, network = FAMILIES[family]
    cfg = resolve({
        "games": list(games), "method": method, "n_envs": 2, "agent.optimizer": optimizer,
        "network.task_modulation": modulation, "agent.learning_starts": 64, "agent.buffer_size": 1_000,
        "agent.batch_size": 8, "agent.train_freq": 1, "agent.gradient_steps": 1, "agent.target_update_interval": 40,
        "agent.double_q": True, "agent.learning_rate": 1e-3, **network,
    })
    return build_agent(cfg, make_vec_env(cfg["games"][0], n_envs=2, seed=0), "cpu")


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
    penalty = agent.method.penalty(agent)
    assert penalty is None or (penalty.dim() == 0 and th.isfinite(penalty))

    agent.save(tmp_path / "agent.zip")
    loaded = ContinualDQN.load(tmp_path / "agent.zip", env=second_env, device="cpu")
    assert_acts_with_current_parameters(loaded)
    for name, p in agent.q_net.state_dict().items():
        assert th.equal(p, loaded.q_net.state_dict()[name]), name
    loaded.resume_task()
    train_and_check_parameters(loaded, STEPS)  # a resumed agent trains and acts like any other
    assert_acts_with_current_parameters(loaded)
