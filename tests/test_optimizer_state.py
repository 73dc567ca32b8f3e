"""Optimizer state of parameters that stay trainable survives a task switch (issue: lost Adam/RMSprop state)."""

from __future__ import annotations

import pytest
import torch as th

from crl.methods import TaskInfo
from tests.test_method_contract import make_agent

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them

STATE_KEY = {"adam": "exp_avg_sq", "rmsprop": "square_avg"}


@pytest.mark.parametrize("method, modulation", [("ewc", True), ("hypernet", False)])
@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
@pytest.mark.parametrize("reset", [False, True])
def test_shared_parameters_keep_their_optimizer_state_across_a_task_switch(
    method: str, modulation: bool, optimizer: str, reset: bool
) -> None:
    agent = make_agent("atari", method, optimizer, modulation)
    agent.reset_optimizer = reset
    agent.set_task(TaskInfo(0, "pong"))
    agent.learn(100, reset_num_timesteps=False)
    agent.end_task()
    shared = [p for _, p in agent.q_net.shared_named_parameters()]
    saved = {id(p): agent.policy.optimizer.state[p][STATE_KEY[optimizer]].clone() for p in shared}
    assert all(s.abs().sum() > 0 for s in saved.values())
    old_optimizer = agent.policy.optimizer

    agent.set_task(TaskInfo(1, "breakout", block=1))
    new_optimizer = agent.policy.optimizer
    assert new_optimizer is not old_optimizer  # the trainable set changed: the old task's own parameters left it
    in_optimizer = {id(p) for group in new_optimizer.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for p in agent.q_net.trainable_parameters()}
    for p in shared:
        assert id(p) in in_optimizer
        if reset:
            assert p not in new_optimizer.state
        else:
            assert th.equal(new_optimizer.state[p][STATE_KEY[optimizer]], saved[id(p)])
    own = [p for name, p in agent.q_net.named_parameters() if p.requires_grad and id(p) not in saved]
    assert own and all(p not in new_optimizer.state for p in own)  # newly trainable: fresh state


@pytest.mark.parametrize("reset", [False, True])
def test_reset_optimizer_applies_even_when_the_trainable_set_is_unchanged(reset: bool) -> None:
    agent = make_agent("minatar", "ewc", "adam", False)  # shared network: the same parameters train every game
    agent.reset_optimizer = reset
    agent.set_task(TaskInfo(0, "minatar/breakout"))
    agent.learn(100, reset_num_timesteps=False)
    agent.end_task()
    old_optimizer = agent.policy.optimizer
    agent.set_task(TaskInfo(1, "minatar/space_invaders", block=1))
    assert (agent.policy.optimizer is not old_optimizer) == reset
    assert (len(agent.policy.optimizer.state) == 0) == reset
