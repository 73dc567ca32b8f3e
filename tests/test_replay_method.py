"""``--method replay``: reservoir sampling, compact exact storage, each stored transition trained with its own task id,
the transition hook against SB3's replay buffer on real games, state in save/load, and a `crl train` run."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch as th
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import ContinualDQN
from crl.run import checkpoint as ckpt
from crl.run import rundir
from crl.run.config import resolve
from crl.methods import Method, TaskInfo, make_method
from crl.methods.distill import distillation_loss
from crl.methods.memory import Reservoir, sample_by_task
from crl.methods.replay import Replay
from crl.run.agent import build_agent
from envs import make_atari_vec_env
from tests.conftest import TINY, run_crl

TINY_NET = {"network.conv_channels": [4, 8, 8], "network.hidden": 32}


# --- reservoir sampling -------------------------------------------------------------------------------------
def inclusion_frequencies(select, capacity: int, batches: list[int], trials: int, seed: int = 0) -> np.ndarray:
    """How often each item of a stream (fed in ``batches``) ends up in a reservoir of ``capacity``."""
    rng = np.random.default_rng(seed)
    counts = np.zeros(sum(batches))
    for _ in range(trials):
        reservoir = Reservoir(capacity)
        held = np.full(capacity, -1)
        first = 0
        for size in batches:
            items, slots = select(reservoir, size, rng)
            held[slots] = first + items
            first += size
        assert len(set(held.tolist())) == capacity  # distinct items, every slot filled
        counts[held] += 1
    return counts / trials


BATCHES = [4, 4, 5, 3, 4]  # 20 items in vector-env steps of several sizes: slot collisions inside a batch happen
CAPACITY = 5
TRIALS = 12_000


def test_reservoir_keeps_every_item_with_equal_probability() -> None:
    freq = inclusion_frequencies(Reservoir.select, CAPACITY, BATCHES, TRIALS)
    expected = CAPACITY / sum(BATCHES)
    sigma = np.sqrt(expected * (1 - expected) / TRIALS)  # 0.0035
    assert np.abs(freq - expected).max() < 4.5 * sigma, np.round(freq, 3)


def test_the_uniformity_check_rejects_biased_samplers() -> None:
    """Two plausible bugs (an off-by-one range; earlier items winning slot collisions in a batch) fail the check."""

    def off_by_one(reservoir: Reservoir, count: int, rng: np.random.Generator):
        index = reservoir.seen + np.arange(count)
        slots = np.where(index < reservoir.capacity, index, rng.integers(0, np.maximum(index, 1)))
        reservoir.seen += count
        items = np.flatnonzero(slots < reservoir.capacity)
        slots = slots[items]
        _, last = np.unique(slots[::-1], return_index=True)
        keep = np.sort(len(slots) - 1 - last)
        return items[keep], slots[keep]

    def first_wins(reservoir: Reservoir, count: int, rng: np.random.Generator):
        index = reservoir.seen + np.arange(count)
        slots = np.where(index < reservoir.capacity, index, rng.integers(0, index + 1))
        reservoir.seen += count
        items = np.flatnonzero(slots < reservoir.capacity)
        _, first = np.unique(slots[items], return_index=True)
        return items[first], slots[items][first]

    expected = CAPACITY / sum(BATCHES)
    sigma = np.sqrt(expected * (1 - expected) / TRIALS)
    for biased in (off_by_one, first_wins):
        freq = inclusion_frequencies(biased, CAPACITY, BATCHES, TRIALS)
        assert np.abs(freq - expected).max() > 4.5 * sigma, biased.__name__


def test_reservoir_randomness_is_its_generator_only() -> None:
    """Same generator seed, same sample; the global RNGs are neither used nor advanced."""
    np.random.seed(1)
    th.manual_seed(1)
    before = (np.random.get_state()[1].copy(), th.get_rng_state().clone())
    picks = []
    for _ in range(2):
        reservoir, rng = Reservoir(7), np.random.default_rng(42)
        picks.append([reservoir.select(5, rng) for _ in range(10)])
    for (a_items, a_slots), (b_items, b_slots) in zip(*picks):
        np.testing.assert_array_equal(a_items, b_items)
        np.testing.assert_array_equal(a_slots, b_slots)
    assert np.array_equal(np.random.get_state()[1], before[0]) and th.equal(th.get_rng_state(), before[1])


def test_sample_by_task_is_uniform_over_stored_items() -> None:
    rng = np.random.default_rng(3)
    sizes = {0: 100, 2: 300}
    counts = {0: np.zeros(100), 2: np.zeros(300)}
    for _ in range(2_000):
        groups = sample_by_task(rng, sizes, 32)
        assert [t for t, _ in groups] == sorted(t for t, _ in groups)
        assert sum(len(s) for _, s in groups) == 32
        for task, slots in groups:
            assert slots.min() >= 0 and slots.max() < sizes[task]
            np.add.at(counts[task], slots, 1)
    share0 = counts[0].sum() / (counts[0].sum() + counts[2].sum())
    assert share0 == pytest.approx(0.25, abs=0.01)  # its share of the stored items
    per_item = np.concatenate([counts[0], counts[2]]) / (2_000 * 32)
    assert np.abs(per_item - 1 / 400).max() < 0.0009  # each item ~ 1/400, 4.5 sigma


# --- compact, exact storage ---------------------------------------------------------------------------------
def frame_stack_stream(steps: int, n_envs: int, stack: int = 4, side: int = 6, seed: int = 0):
    """Synthetic frame-stacked transitions: next obs = obs shifted by one new frame (episode ends included)."""
    rng = np.random.default_rng(seed)
    obs = rng.integers(0, 256, (n_envs, stack, side, side), dtype=np.uint8)
    for _ in range(steps):
        new = rng.integers(0, 256, (n_envs, 1, side, side), dtype=np.uint8)
        next_obs = np.concatenate([obs[:, 1:], new], axis=1)
        actions = rng.integers(0, 18, n_envs)
        rewards = rng.normal(size=n_envs).astype(np.float32)
        dones = rng.random(n_envs) < 0.1
        yield obs, next_obs, actions, rewards, dones
        reset = rng.integers(0, 256, (n_envs, stack, side, side), dtype=np.uint8)
        obs = np.where(dones[:, None, None, None], reset, next_obs)  # auto-reset: the next obs is a fresh stack


def offered_and_stored(method: Replay, stream) -> tuple[list, dict]:
    """Feed ``stream`` to the method's block (capacity holds it all); return what went in and what comes back."""
    offered = []
    for obs, next_obs, actions, rewards, dones in stream:
        method.on_transition(None, obs, next_obs, actions, rewards, dones)
        offered += list(zip(obs, next_obs, actions, rewards, dones))
    memory = method.block
    method.memories[0] = memory
    data, _ = method.samples(0, np.arange(len(memory)), th.device("cpu"))
    return offered, {"obs": data.observations, "next": data.next_observations, "action": data.actions,
                     "reward": data.rewards, "done": data.dones, "bytes": memory.bytes_per_item}


def started(method: Replay) -> Replay:
    method.before_task(None, TaskInfo(0, "pong"))
    return method


def assert_exact(offered: list, stored: dict) -> None:
    assert len(offered) == len(stored["obs"])  # capacity >= stream: slot i holds item i
    for i, (obs, next_obs, action, reward, done) in enumerate(offered):
        np.testing.assert_array_equal(stored["obs"][i].numpy(), obs)
        np.testing.assert_array_equal(stored["next"][i].numpy(), next_obs)
        assert stored["action"][i, 0] == action and stored["reward"][i, 0] == reward and stored["done"][i, 0] == done


def test_frame_stacks_are_stored_as_the_stack_plus_one_frame_and_rebuilt_exactly() -> None:
    method = started(Replay({"per_task": 1_000}))
    offered, stored = offered_and_stored(method, frame_stack_stream(40, n_envs=3))
    assert_exact(offered, stored)
    assert stored["obs"].dtype == th.uint8 and method.block.fields["next"].shape[1] == 1
    assert stored["bytes"] == 5 * 6 * 6 + 8 + 4 + 4  # 4 + 1 frames, int64 action, float32 reward and done


def test_observations_that_are_not_frame_stacks_store_the_whole_next_observation() -> None:
    """MinAtar-like object planes: the next observation is not a shift of the observation."""
    rng = np.random.default_rng(1)

    def planes():
        for _ in range(30):
            obs, next_obs = (rng.integers(0, 2, (2, 10, 10, 10), dtype=np.uint8) for _ in range(2))
            yield obs, next_obs, rng.integers(0, 6, 2), np.ones(2, np.float32), np.zeros(2, bool)

    method = started(Replay({"per_task": 1_000}))
    offered, stored = offered_and_stored(method, planes())
    assert_exact(offered, stored)
    assert stored["bytes"] == 2 * 1000 + 16


def test_switching_to_whole_next_observations_keeps_what_was_stored() -> None:
    stream = list(frame_stack_stream(20, n_envs=2, seed=2))
    obs, next_obs, *rest = stream[10]
    stream[10] = (obs, next_obs[:, ::-1].copy(), *rest)  # not a shift: the sample switches layout mid-block
    method = started(Replay({"per_task": 1_000}))
    offered, stored = offered_and_stored(method, stream)
    assert_exact(offered, stored)
    assert method.block.fields["next"].shape[1] == 4


# --- the agent: real games ----------------------------------------------------------------------------------
def make_agent(method: str, params: dict | None = None, games=("pong", "breakout"), **overrides) -> ContinualDQN:
    cfg = resolve({"games": list(games), "method": method, "n_envs": 2, "agent.learning_starts": 32,
                   "agent.buffer_size": 1_000, "agent.batch_size": 8, "agent.target_update_interval": 40,
                   **TINY_NET, **{f"{method}.{k}": v for k, v in (params or {}).items()}, **overrides})
    return build_agent(cfg, make_atari_vec_env(cfg.games[0], n_envs=2, seed=0, max_episode_steps=25), "cpu")


class Recorder(Method):
    """Keeps every transition the hook reports."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[np.ndarray, ...]] = []

    def on_transition(self, agent, obs, next_obs, actions, rewards, dones) -> None:
        self.seen.append(tuple(np.array(x, copy=True) for x in (obs, next_obs, actions, rewards, dones)))


def test_transition_hook_reports_what_the_replay_buffer_stores() -> None:
    """Real ALE episodes cut by a time limit: the hook's next observations are the real terminal observations and
    its dones are terminations only, exactly what SB3's own buffer logic stored for the same steps."""
    recorder = Recorder()
    env = make_atari_vec_env("breakout", n_envs=2, seed=4, max_episode_steps=25)
    agent = ContinualDQN(env, method=recorder, network={"conv_channels": (4, 8, 8), "hidden": 32},
                         buffer_size=1_000, learning_starts=1_000, device="cpu", seed=0)
    agent.set_task(TaskInfo(0, "breakout"))
    agent.learn(120, reset_num_timesteps=False)
    buffer = agent.replay_buffer
    assert len(recorder.seen) == buffer.pos == 60
    ends = 0
    for pos, (obs, next_obs, actions, rewards, dones) in enumerate(recorder.seen):
        stored = buffer.samples_at(np.full(2, pos), np.arange(2))
        np.testing.assert_array_equal(stored.observations.numpy(), obs)
        np.testing.assert_array_equal(stored.next_observations.numpy(), next_obs)
        np.testing.assert_array_equal(stored.actions.numpy()[:, 0], actions)
        np.testing.assert_array_equal(stored.rewards.numpy()[:, 0], rewards)
        np.testing.assert_array_equal(stored.dones.numpy()[:, 0], dones.astype(np.float32))
        cut = buffer.timeouts[pos].numpy().astype(bool)
        if cut.any() and pos + 1 < len(recorder.seen):  # the next step starts from the reset obs, not this one
            assert not np.array_equal(recorder.seen[pos + 1][0][cut], next_obs[cut])
        ends += int(cut.sum())
    assert ends >= 2  # time-limit cuts happened (and were not reported as terminations)


def prepared_agent(params: dict, modulation: bool = True) -> ContinualDQN:
    """A replay agent that finished game 0 (a stored sample of real transitions) and is now on game 1."""
    agent = make_agent("replay", {"per_task": 40, "batch_size": 16, **params},
                       **{"network.task_modulation": modulation, "agent.double_q": True})
    agent.set_task(TaskInfo(0, "pong", seed=0))
    agent.learn(60, reset_num_timesteps=False)
    agent.end_task()
    agent.set_env(make_atari_vec_env("breakout", n_envs=2, seed=1))
    agent.set_task(TaskInfo(1, "breakout", block=1, seed=0))
    return agent


def test_stored_transitions_train_with_their_own_task_id() -> None:
    """The replay term is the TD loss of the stored game-0 transitions evaluated as task 0, and its gradient reaches
    task 0's biases and gains, never those of the task being trained."""
    agent = prepared_agent({})
    method: Replay = agent.method
    with th.no_grad():  # make the two tasks' modulations differ, so evaluating as the wrong task is visible
        for modulation in agent.q_net.modulations:
            modulation.biases[0].normal_(0, 0.5)
            modulation.gains[0].uniform_(0.5, 1.5)
    agent.q_net.parameters_changed()
    for modulation in agent.q_net.modulations:  # let the gradient show where it would go
        for p in (*modulation.biases, *modulation.gains):
            p.requires_grad_(True)
            p.grad = None

    groups = sample_by_task(copy.deepcopy(method.rng), {0: len(method.memories[0])}, method.params.batch_size)
    ((task, slots),) = groups
    data, _ = method.samples(0, slots, agent.device)
    with th.no_grad():
        as_task0, as_task1 = agent.td_loss(data, task_id=0), agent.td_loss(data, task_id=1)
    assert not th.isclose(as_task0, as_task1)

    penalty = method.penalty(agent.hook_context())
    assert th.allclose(penalty, as_task0)
    penalty.backward()
    for modulation in agent.q_net.modulations:
        assert modulation.biases[0].grad.abs().sum() > 0 and modulation.gains[0].grad.abs().sum() > 0
        assert modulation.biases[1].grad is None and modulation.gains[1].grad is None


def test_the_game_being_trained_is_not_replayed() -> None:
    agent = prepared_agent({}, modulation=False)
    agent.set_task(TaskInfo(0, "pong", block=2, cycle=1, first_visit=False, seed=0))  # revisit game 0
    assert agent.method.penalty(agent.hook_context()) is None


def test_behavioural_cloning_term_uses_the_distillation_loss_on_stored_q_values() -> None:
    agent = prepared_agent({"bc_weight": 2.0, "weight": 0.5, "bc_temperature": 0.1}, modulation=False)
    method: Replay = agent.method
    memory = method.memories[0]
    with th.no_grad():  # the teacher's outputs: the agent's Q-values as task 0 at the end of game 0's block
        th.testing.assert_close(memory.fields["q"], agent.q_net(memory.fields["obs"], task_id=0))
    rng = copy.deepcopy(method.rng)
    ((_, slots),) = sample_by_task(rng, {0: len(memory)}, method.params.batch_size)
    data, q_stored = method.samples(0, slots, agent.device)
    with th.no_grad():
        td = agent.td_loss(data, task_id=0)
        bc_now = distillation_loss(agent.q_net(data.observations, task_id=0), q_stored, 0.1)
        penalty = method.penalty(agent.hook_context())
    assert bc_now < 1e-6  # the network still is the teacher
    assert th.allclose(penalty, 0.5 * td)
    with th.no_grad():
        agent.q_net.head.bias.add_(th.linspace(-1, 1, agent.q_net.head.bias.numel()))
    agent.q_net.parameters_changed()
    ((_, slots),) = sample_by_task(copy.deepcopy(method.rng), {0: len(memory)}, method.params.batch_size)
    data, q_stored = method.samples(0, slots, agent.device)
    with th.no_grad():
        expected = 0.5 * agent.td_loss(data, task_id=0) + 2.0 * distillation_loss(
            agent.q_net(data.observations, task_id=0), q_stored, 0.1)
        penalty = method.penalty(agent.hook_context())
    assert expected > 0.5 * agent.td_loss(data, task_id=0)
    assert th.allclose(penalty, expected)


def test_state_travels_through_save_and_load(tmp_path: Path) -> None:
    """Stored samples, the block's sample in progress, the generator: the loaded agent's penalty is the same draw."""
    agent = prepared_agent({"bc_weight": 1.0})
    agent.learn(40, reset_num_timesteps=False)  # mid-block: the block's own reservoir is partly filled
    method: Replay = agent.method
    assert len(method.block) > 0 and len(method.memories[0]) == 40
    agent.save(tmp_path / "agent.zip")
    loaded = ContinualDQN.load(tmp_path / "agent.zip", device="cpu")
    other: Replay = loaded.method
    assert isinstance(other, Replay) and other.params == method.params
    for task in (0,):
        for name, field in method.memories[task].fields.items():
            assert th.equal(field, other.memories[task].fields[name]), name
    assert other.block.seen == method.block.seen
    for name, field in method.block.fields.items():
        assert th.equal(field[: len(method.block)], other.block.fields[name]), name
    with th.no_grad():
        assert th.equal(method.penalty(agent.hook_context()), other.penalty(loaded.hook_context()))
    assert other.scalars() == method.scalars()


def test_parameters_are_checked() -> None:
    for bad in ({"per_task": 0}, {"batch_size": 0}, {"weight": -1.0}, {"bc_weight": -0.1}, {"bc_temperature": 0.0},
                {"bc_loss": "l1"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            make_method("replay", bad)


@pytest.mark.e2e  # a real run or a `crl` subprocess: seconds, not milliseconds
def test_out_of_range_parameter_is_one_line_and_status_2() -> None:
    proc = run_crl("train", "--method", "replay", "--set", "replay.per_task=0", "--dry-run", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["crl: error: replay.per_task must be >= 1, got 0"]


# --- end to end ---------------------------------------------------------------------------------------------
MINATAR_GAMES = "minatar/breakout,minatar/space_invaders"


def train_and_resume_mid_block(tmp_path: Path, method: str, *sets: str) -> tuple[Path, Path]:
    """A tiny two-game MinAtar `crl train` run with resume checkpoints, and a copy of it rolled back to a checkpoint
    inside the second game's block and resumed from there. Returns (uninterrupted run, resumed run)."""
    full = tmp_path / "full"
    run_crl("train", "--games", MINATAR_GAMES, "--method", method, "--run-dir", str(full), "--seed", "1", *TINY,
            "--checkpoint-every", "100", "--checkpoint-replay", "--set", "checkpoint.keep=50",
            *(x for item in sets for x in ("--set", item)))
    second = rundir.read_jsonl(full / "blocks.jsonl")[1]
    resumed = tmp_path / "resumed"
    shutil.copytree(full, resumed)
    points = ckpt.resume_points(resumed / "checkpoints")  # newest first
    inside = [p for p in points if second["start_step"] < p.step < second["end_step"]]
    assert inside, [p.step for p in points]
    for point in points[: points.index(inside[-1])]:  # forget everything after the earliest one inside the block
        for path in point.files():
            path.unlink()
    run_crl("train", "--resume", str(resumed))
    return full, resumed


def assert_same_run(full: Path, resumed: Path) -> None:
    """Same evaluations, same final network, same stored memories."""
    assert rundir.read_jsonl(resumed / "evals.jsonl") == rundir.read_jsonl(full / "evals.jsonl")
    a, b = (ContinualDQN.load(run / "model.zip", device="cpu") for run in (full, resumed))
    for name, value in a.policy.state_dict().items():
        assert th.equal(value, b.policy.state_dict()[name]), name
    assert sorted(a.method.memories) == sorted(b.method.memories) == [0, 1]
    for task, memory in a.method.memories.items():
        assert memory.seen == b.method.memories[task].seen
        for name, field in memory.fields.items():
            assert th.equal(field, b.method.memories[task].fields[name]), (task, name)


@pytest.mark.e2e
def test_crl_train_replay_end_to_end_and_exact_resume(tmp_path: Path) -> None:
    full, resumed = train_and_resume_mid_block(tmp_path, "replay", "replay.per_task=100", "replay.bc_weight=1")
    acc = EventAccumulator(str(full / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"replay/td_loss", "replay/bc_loss", "replay/memory_bytes", "replay/bytes_per_transition", "train/penalty"} <= tags
    per_transition = 2 * 10 * 10 * 10 + 16 + 6 * 4  # obs and whole next obs, action/reward/done, stored Q-values
    assert [e.value for e in acc.Scalars("replay/memory_bytes")] == [100 * per_transition, 200 * per_transition]
    final = ContinualDQN.load(full / "model.zip", device="cpu")
    assert sorted(final.method.memories) == [0, 1] and len(final.method.memories[1]) == 100
    assert final.method.memories[0].seen == final.task_steps[0] >= 300  # every transition of the block was offered
    assert_same_run(full, resumed)


def test_td_loss_of_stored_transitions_uses_their_task_in_target_and_argmax() -> None:
    """``td_loss(data, task_id=j)``: online Q, the Double DQN argmax and the target network all evaluate as task j
    (a hand-built target; evaluating any of the three as the current task gives another value)."""
    import torch.nn.functional as F

    agent = prepared_agent({})
    method: Replay = agent.method
    with th.no_grad():  # task 0's modulations differ between the online and target networks and from task 1's
        for net, scale in ((agent.q_net, 0.5), (agent.q_net_target, 1.0)):
            for modulation in net.modulations:
                modulation.biases[0].normal_(0, scale)
                modulation.gains[0].uniform_(0.5, 1.5)
            net.parameters_changed()
    groups = sample_by_task(copy.deepcopy(method.rng), {0: len(method.memories[0])}, method.params.batch_size)
    data, _ = method.samples(0, groups[0][1], agent.device)
    with th.no_grad():
        next_actions = agent.q_net(data.next_observations, task_id=0).argmax(dim=1, keepdim=True)
        next_q = agent.q_net_target(data.next_observations, task_id=0).gather(1, next_actions)
        target = data.rewards + (1 - data.dones) * agent.gamma * next_q
        q = agent.q_net(data.observations, task_id=0).gather(1, data.actions.long())
        expected = F.smooth_l1_loss(q, target)
        wrong_target = data.rewards + (1 - data.dones) * agent.gamma * agent.q_net_target(
            data.next_observations, task_id=1).gather(1, next_actions)
        assert not th.isclose(expected, F.smooth_l1_loss(q, wrong_target))
        th.testing.assert_close(agent.td_loss(data, task_id=0), expected)
