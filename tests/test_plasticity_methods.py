"""The plasticity interventions on a tiny real agent (MinAtar): what each writes, what it must leave alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch as th

from agents import ContinualDQN
from agents.method import TaskInfo, seed_of
from crl.run.agent import build_agent
from crl.run.config import resolve
from envs import make_vec_env

GAME = "minatar/breakout"


def tiny_agent(method: str, **overrides: Any) -> ContinualDQN:
    cfg = resolve({
        "games": [GAME], "method": method, "n_envs": 1, "agent.learning_starts": 24, "agent.buffer_size": 300,
        "agent.batch_size": 8, "agent.train_freq": 1, "agent.gradient_steps": 1, "agent.target_update_interval": 20,
        "agent.learning_rate": 1e-3, **overrides,
    })
    return build_agent(cfg, make_vec_env(GAME, n_envs=1, seed=0), "cpu")


def first_block(agent: ContinualDQN, steps: int = 64) -> None:
    agent.set_task(TaskInfo(0, GAME, seed=5))
    agent.learn(steps, reset_num_timesteps=False)
    agent.end_task()


def moments(agent: ContinualDQN, param: th.nn.Parameter) -> list[th.Tensor]:
    return [v for v in agent.policy.optimizer.state[param].values() if th.is_tensor(v) and v.shape == param.shape]


def test_redo_recycles_dead_units_and_leaves_the_output_and_the_other_units_alone() -> None:
    agent = tiny_agent("redo", **{"redo.tau": 0.0, "redo.every": 10**9})
    first_block(agent)
    q_net = agent.q_net
    with th.no_grad():
        q_net.fc.weight[3] = 0.0
        q_net.fc.bias[3] = -1.0  # unit 3 of the dense layer never fires
    before = {n: p.detach().clone() for n, p in q_net.named_parameters()}
    state = agent.method_generator.get_state()
    batch = agent.sample_replay(256)  # the minibatch ReDo will score the units on
    agent.method_generator.set_state(state)
    with th.no_grad():
        q_before = q_net(batch.observations)
        dead = [h.abs().sum(dim=(0, 2, 3) if h.dim() == 4 else 0) == 0 for h in q_net.activations(batch.observations)]
    assert dead[1][3] and all(m[3].abs().sum() > 0 for m in moments(agent, q_net.fc.weight))
    agent.method.params.every = 1
    agent.method.after_gradient_step(agent.hook_context())

    assert q_net.fc.weight[3].any() and q_net.fc.bias[3] != -1.0, "the dead unit got no fresh weights"
    for layer, (incoming, outgoing) in enumerate([(q_net.convs[0], q_net.fc), (q_net.fc, q_net.head)]):
        name = "convs.0" if layer == 0 else "fc"
        alive = ~dead[layer]
        assert th.equal(incoming.weight[alive], before[f"{name}.weight"][alive]), "a live unit was recycled"
        assert not incoming.weight[dead[layer]].eq(before[f"{name}.weight"][dead[layer]]).all(dim=-1).any()
    assert not q_net.head.weight[:, dead[1]].any(), "outgoing weights not zeroed"
    with th.no_grad():
        assert th.equal(q_net(batch.observations), q_before), "recycling dead units changed the Q-values"
    assert all(not m[dead[1]].any() for m in moments(agent, q_net.fc.weight)), "Adam moments of the units kept"
    assert all(not m[:, dead[1]].any() for m in moments(agent, q_net.head.weight))
    assert all(m[~dead[1]].abs().sum() > 0 for m in moments(agent, q_net.fc.weight))
    assert agent.method.scalars()["redo/recycled_units"] == sum(int(d.sum()) for d in dead)


def test_shrink_perturb_is_lambda_theta_plus_sigma_fresh_and_the_target_follows() -> None:
    agent = tiny_agent("shrink-perturb", **{"shrink_perturb.shrink": 0.5, "shrink_perturb.noise": 0.1})
    first_block(agent)
    before = {n: p.detach().clone() for n, p in agent.q_net.named_parameters()}
    task = TaskInfo(0, GAME, block=1, cycle=1, first_visit=False, seed=5)
    agent.set_task(task)
    agent.method_generator.manual_seed(seed_of(task.seed, task.block, 0x686F6F6B))  # the block's draws, again
    fresh = agent.fresh_parameters()
    for name, p in agent.q_net.named_parameters():
        th.testing.assert_close(p.detach(), 0.5 * before[name] + 0.1 * fresh[name], rtol=1e-6, atol=1e-7)
    for p, t in zip(agent.q_net.parameters(), agent.q_net_target.parameters()):
        assert th.equal(p, t)


def test_shrink_perturb_and_resets_leave_the_first_block_alone() -> None:
    for method in ("shrink-perturb", "reset-head"):
        agent = tiny_agent(method, **{"agent.learning_starts": 10**6})
        before = {n: p.detach().clone() for n, p in agent.q_net.named_parameters()}
        agent.set_task(TaskInfo(0, GAME, seed=5))
        for name, p in agent.q_net.named_parameters():
            assert th.equal(p, before[name]), (method, name)


@pytest.mark.parametrize("layers, reset", [(1, ("head.",)), (2, ("head.", "fc."))])
def test_reset_head_reinitializes_the_last_layers_only(layers: int, reset: tuple[str, ...]) -> None:
    agent = tiny_agent("reset-head", **{"reset_head.layers": layers})
    first_block(agent)
    before = {n: p.detach().clone() for n, p in agent.q_net.named_parameters()}
    task = TaskInfo(0, GAME, block=1, cycle=1, first_visit=False, seed=5)
    agent.set_task(task)
    agent.method_generator.manual_seed(seed_of(task.seed, task.block, 0x686F6F6B))
    fresh = agent.fresh_parameters()
    for name, p in agent.q_net.named_parameters():
        if name.startswith(reset):
            assert th.equal(p, fresh[name]), name
            assert all(m.abs().sum() == 0 for m in moments(agent, p)), name
        else:
            assert th.equal(p, before[name]), name
    for p, t in zip(agent.q_net.parameters(), agent.q_net_target.parameters()):
        assert th.equal(p, t)


def test_l2_init_penalty_is_lambda_times_the_squared_distance_to_the_initial_weights() -> None:
    agent = tiny_agent("l2-init", **{"l2_init.lambda_": 0.01, "agent.learning_starts": 10**6})
    initial = {n: p.detach().clone() for n, p in agent.q_net.named_parameters()}
    agent.set_task(TaskInfo(0, GAME, seed=5))
    assert float(agent.method.penalty(agent.hook_context()).detach()) == 0.0
    with th.no_grad():
        agent.q_net.fc.weight.add_(0.5)
    expected = 0.01 * 0.25 * agent.q_net.fc.weight.numel()
    assert float(agent.method.penalty(agent.hook_context()).detach()) == pytest.approx(expected, rel=1e-5)
    assert th.equal(agent.method.initial["fc.weight"], initial["fc.weight"])


def test_cbp_replaces_the_lowest_utility_mature_units_at_its_rate() -> None:
    agent = tiny_agent("cbp", **{"cbp.replacement_rate": 1 / 16, "cbp.maturity": 0, "cbp.decay": 0.0,
                                 "agent.learning_starts": 10**6})
    agent.set_task(TaskInfo(0, GAME, seed=5))
    agent.learn(32, reset_num_timesteps=False)  # fills the buffer, no gradient step
    batch = agent.sample_replay(16)
    q_net = agent.q_net
    with th.no_grad():
        activity = [h.abs().mean(dim=(0, 2, 3)) if h.dim() == 4 else h.abs().mean(dim=0)
                    for h in q_net.activations(batch.observations)]
        utility = [a * q_net.outgoing_magnitude(i) for i, a in enumerate(activity)]
    agent.method.after_gradient_step(agent.hook_context(batch=batch))
    assert agent.method.replaced == 1 + 8  # 16 conv units and 128 dense units at 1/16 each
    fc_zeroed = [i for i in range(128) if not q_net.head.weight[:, i].any()]
    rows = th.ones(128, dtype=th.bool)
    rows[fc_zeroed] = False  # replaced dense units took fresh incoming weights after the conv unit was zeroed
    conv_zeroed = [c for c in range(16) if not q_net.fc.weight[rows, c * 64:(c + 1) * 64].any()]
    assert len(conv_zeroed) == 1 and len(fc_zeroed) == 8, "outgoing weights of the replaced units are not zero"
    for chosen, u in ((conv_zeroed, utility[0]), (fc_zeroed, utility[1])):
        kept = th.ones_like(u, dtype=th.bool)
        kept[chosen] = False
        assert u[chosen].max() <= u[kept].min(), "a unit of higher utility was replaced"
        layer = 0 if u is utility[0] else 1
        assert not agent.method.utility[layer][chosen].any() and not agent.method.age[layer][chosen].any()


@pytest.mark.parametrize("intervention, settings", [
    ("redo", {"redo.tau": 0.5, "redo.every": 1}),
    ("cbp", {"cbp.replacement_rate": 0.2, "cbp.maturity": 0}),
    ("shrink-perturb", {}),
    ("reset-head", {"reset_head.layers": 2}),
])
def test_other_tasks_biases_and_gains_are_never_touched(intervention: str, settings: dict[str, Any]) -> None:
    """EWC's Atari agent with per-game biases and gains: an intervention rewrites shared weights only."""
    agent = tiny_agent(f"ewc+{intervention}", **{"network.task_modulation": True, **settings})
    first_block(agent)
    first_task = {n: p.detach().clone() for n, p in agent.q_net.named_parameters() if n.endswith(".0")}
    assert first_task, "no per-task parameters of task 0"
    agent.set_task(TaskInfo(1, "minatar/space_invaders", block=1, seed=5))
    agent.learn(64, reset_num_timesteps=False)
    for name, p in agent.q_net.named_parameters():
        if name in first_task:
            assert th.equal(p, first_task[name]), f"{intervention} touched {name}"
    scalars = agent.method.scalars()
    if intervention in ("redo", "cbp"):
        assert max(scalars.values()) > 0, f"{intervention} never fired: the test shows nothing"


@pytest.mark.parametrize("method", ["progressive+redo", "hypernet+cbp", "progressive+shrink-perturb",
                                    "hypernet+reset-head", "progressive+l2-init", "progressive+hypernet",
                                    "redo+redo"])
def test_combinations_that_cannot_work_are_refused_by_the_config(method: str) -> None:
    from crl.run.config import ConfigError

    with pytest.raises(ConfigError) as error:
        resolve({"method": method})
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_crelu_and_layer_norm_networks_recycle_like_relu_ones(layer_norm: bool) -> None:
    agent = tiny_agent("redo", **{"redo.tau": 0.0, "redo.every": 10**9, "network.activation": "crelu",
                                  "network.layer_norm": layer_norm})
    first_block(agent)
    q_net = agent.q_net
    assert q_net.head.weight.shape[1] == 2 * 128 and q_net.fc.weight.shape[1] == 2 * 16 * 64
    with th.no_grad():
        q_net.fc.weight[5] = 0.0
        q_net.fc.bias[5] = 0.0  # h = 0: both halves of the CReLU unit are silent
        if layer_norm:
            q_net.norms[1].weight[5] = 0.0
            q_net.norms[1].bias[5] = 0.0
    obs = th.as_tensor(np.stack([agent.observation_space.sample() for _ in range(16)]))
    with th.no_grad():
        q_before = q_net(obs)
    agent.method.params.every = 1
    agent.method.after_gradient_step(agent.hook_context())
    assert q_net.fc.weight[5].any()
    assert not q_net.head.weight[:, 5].any() and not q_net.head.weight[:, 128 + 5].any()
    if layer_norm:  # the unit's norm gain and shift start afresh; the layer's statistics change with it
        assert q_net.norms[1].weight[5] == 1.0 and q_net.norms[1].bias[5] == 0.0
    else:
        with th.no_grad():
            assert th.equal(q_net(obs), q_before)


def test_recycling_adjacent_layers_together_resets_the_moments_of_both_masks() -> None:
    """The dense layer's weights are the conv units' outgoing weights and the dense units' incoming ones: when both
    layers recycle in one pass, the entries written (and so the moments reset) are the union of the two masks."""
    agent = tiny_agent("redo", **{"redo.every": 10**9})
    first_block(agent)
    q_net = agent.q_net
    conv_units, fc_units = th.zeros(16, dtype=th.bool), th.zeros(128, dtype=th.bool)
    conv_units[2], fc_units[7] = True, True
    written = q_net.reinitialize_units(0, conv_units, agent.fresh_parameters())
    q_net.reinitialize_units(1, fc_units, agent.fresh_parameters(), written)
    mask = written[q_net.fc.weight]
    assert mask[:, 2 * 64:3 * 64][~fc_units].all() and mask[7].all(), "one layer's mask replaced the other's"
    assert not mask[~fc_units][:, :2 * 64].any()
    agent.weights_changed(written)
    for moment in moments(agent, q_net.fc.weight):
        assert not moment[:, 2 * 64:3 * 64].any() and not moment[7].any()
    assert q_net.fc.bias[7] == 0 and q_net.convs[0].bias[2] == 0
