"""ContinualDQN's task switching: epsilon timers, replay modes, the method's penalty, save/load of method state."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch as th

from agents import ContinualDQN
from crl.methods import Method, MethodParams, TaskInfo
from envs import make_atari_vec_env

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them


@dataclass
class CountingParams(MethodParams):
    weight: float = 1.0


class CountingMethod(Method):
    """Penalty = weight * (head bias sum)^2; counts its calls and stores a tensor per finished task."""

    name = "counting"
    Params = CountingParams

    def __init__(self, params=None):
        super().__init__(params)
        self.calls = 0
        self.stored: dict[str, th.Tensor] = {}

    def penalty(self, agent):
        self.calls += 1
        return self.params.weight * agent.q_net.head.bias.sum() ** 2

    def after_task(self, agent, task):
        self.stored[task.game] = agent.q_net.head.weight.detach().clone()

    def state_dict(self):
        return {"calls": self.calls, "stored": self.stored}

    def load_state_dict(self, state):
        self.calls, self.stored = state["calls"], state["stored"]


def make_agent(**kwargs):
    env = make_atari_vec_env("Pong", n_envs=2, seed=0, max_episode_steps=50)
    defaults = dict(buffer_size=400, learning_starts=40, exploration_steps=100, seed=0, device="cpu",
                    train_freq=4, gradient_steps=1, target_update_interval=50)
    return ContinualDQN(env, **{**defaults, **kwargs})


def test_each_game_has_its_own_epsilon_timer():
    agent = make_agent()
    agent.set_task(TaskInfo(0, "pong"))
    agent.learn(120, reset_num_timesteps=False)
    eps_after_pong = agent.exploration_rate
    assert eps_after_pong < 1.0
    agent.set_task(TaskInfo(1, "breakout", block=1))
    assert agent.exploration_rate == 1.0  # a new game starts its own schedule
    agent.learn(60, reset_num_timesteps=False)
    agent.set_task(TaskInfo(0, "pong", block=2, cycle=1, first_visit=False))
    assert agent.exploration_rate == pytest.approx(eps_after_pong)  # a revisit continues the game's timer
    assert agent.task_steps[0] == 120 and 60 <= agent.task_steps[1] < 60 + 8  # SB3 collects train_freq vector steps at a time


@pytest.mark.parametrize("replay, same_on_revisit, same_across_tasks", [
    ("fresh", False, False), ("per-task", True, False), ("shared", True, True)])
def test_replay_modes(replay, same_on_revisit, same_across_tasks):
    agent = make_agent(replay=replay)
    agent.set_task(TaskInfo(0, "pong"))
    agent.learn(60, reset_num_timesteps=False)
    first = agent.replay_buffer
    agent.set_task(TaskInfo(1, "breakout", block=1))
    assert (agent.replay_buffer is first) == same_across_tasks
    agent.set_task(TaskInfo(0, "pong", block=2, cycle=1, first_visit=False))
    assert (agent.replay_buffer is first) == same_on_revisit
    # a kept buffer needs no new warm-up; a fresh one waits learning_starts steps again
    warmup = agent.learning_starts - agent.num_timesteps
    assert warmup == (0 if same_on_revisit else 40)


def test_penalty_enters_every_gradient_step_and_state_survives_save_load(tmp_path):
    method = CountingMethod({"weight": 5.0})
    agent = make_agent(method=method)
    agent.set_task(TaskInfo(0, "pong"))
    agent.learn(120, reset_num_timesteps=False)
    assert method.calls == agent._n_updates > 0
    assert "penalty" in agent.last_losses
    agent.end_task()
    agent.save(tmp_path / "a.zip")
    loaded = ContinualDQN.load(tmp_path / "a.zip", device="cpu")
    assert isinstance(loaded.method, CountingMethod) and loaded.method.params.weight == 5.0
    assert loaded.method.calls == method.calls
    assert th.equal(loaded.method.stored["pong"], method.stored["pong"])
    for (name, a), b in zip(agent.policy.state_dict().items(), loaded.policy.state_dict().values()):
        assert th.equal(a, b), name
    assert loaded.current_task == agent.current_task and loaded.task_steps == agent.task_steps


def test_task_modulation_params_are_per_task_and_outside_shared():
    agent = make_agent(network={"task_modulation": True})
    agent.set_task(TaskInfo(0, "pong"))
    agent.set_task(TaskInfo(1, "breakout", block=1))
    net = agent.q_net
    assert net.num_tasks == 2 and len(net.modulations[0].biases) == 2
    shared = {n for n, _ in net.shared_named_parameters()}
    assert shared and not any(n.startswith("modulations") for n in shared)
    obs = th.randint(0, 255, (3, 4, 84, 84), dtype=th.uint8)
    assert th.equal(net(obs, task_id=0), net(obs, task_id=1))  # bias 0 and gain 1 at init
    with th.no_grad():
        net.modulations[4].biases[1] += 1.0
    assert th.allclose(net(obs, task_id=1), net(obs, task_id=0) + 1.0)


def test_per_env_exploration():
    agent = make_agent()
    agent.set_task(TaskInfo(0, "pong"))
    agent.exploration_rate = 0.5
    np.random.seed(0)
    obs = np.zeros((64, 4, 84, 84), dtype=np.uint8)
    actions, _ = agent.predict(obs)
    greedy, _ = agent.predict(obs, deterministic=True)
    differs = (actions != greedy).mean()
    assert 0.2 < differs < 0.8  # some envs explore, others act greedily, in the same batch
