"""Training throughput of stock stable-baselines3 DQN and of this project's agent, side by side in one invocation.

Every variant trains on the same game with the same hyperparameters (RL Zoo's Atari DQN: batch 32, train_freq 4,
lr 1e-4, target update every 1000 steps, buffer 100k; ``gradient_steps = n_envs`` keeps one gradient step per 4
env steps) and the same network (the Nature CNN on Atari, Young & Tian's on MinAtar: stock SB3 gets it as a
features extractor), epsilon fixed at 0.01 (so acting runs the network on every step in all variants) and no
Double DQN (stock DQN has none). Each variant runs in its own process (so peak RSS is its own):
untimed set-up (earlier tasks for the methods that store them, then the replay warm-up), then ``--steps`` env steps
of acting and training under the clock. ``--repeats`` runs the variants round-robin and reports medians.

Besides wall-clock env steps/s the table gives env steps per CPU-second of the process (all its threads, emulator
included): on a CPU-only machine shared with other jobs that figure is the stable one, wall-clock time mostly
measures the neighbours. On a GPU use the wall-clock figure. With ``network-only`` among the variants, ``x floor`` is
each row's CPU-second rate over that floor's (what the agent keeps of its network's speed). Not a test: figures
depend on the machine.

    python scripts/bench_throughput.py --device cpu --steps 2000 --n-envs 4
    python scripts/bench_throughput.py --game minatar/breakout --steps 20000 --threads 1 --variants sb3,finetune+fused
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import resource
import subprocess
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from agents.networks import torso_for
from agents.frame_buffer import FrameReplayBuffer
from crl.run import config
from crl.benchmark import Stopwatch, agent_with_stored_tasks, time_learning
from crl.methods import METHODS
from envs import game_family, make_vec_env, resolve_game

# games of the tasks trained before the timed one, per family
PRIOR_GAMES = {"atari": ("breakout", "space_invaders", "seaquest"),
               "minatar": ("minatar/asterix", "minatar/space_invaders", "minatar/seaquest")}
EPSILON = 0.01  # RL Zoo's final epsilon


@dataclass(frozen=True)
class Variant:
    """One row: stock SB3 (``method`` None) or ContinualDQN with ``method`` after ``prior_tasks`` earlier tasks."""

    label: str
    method: str | None
    prior_tasks: int = 0
    frame_buffer: bool = True
    fused_adam: bool = True  # torch's fused Adam kernel (the toolkit's default) instead of the per-parameter loop
    setup: dict[str, Any] = field(default_factory=dict)  # config overrides that only speed up the untimed set-up
    network_only: bool = False  # time only the acting forwards and gradient steps (no env, no SB3 loop): the floor


VARIANTS = {
    v.label: v
    for v in (
        Variant("sb3", None, frame_buffer=False),
        Variant("sb3+frames", None),
        Variant("finetune+sb3buffer", "finetune", frame_buffer=False, fused_adam=False),
        Variant("finetune", "finetune", fused_adam=False),
        Variant("finetune+fused", "finetune", fused_adam=True),
        Variant("network-only", "finetune", fused_adam=True, network_only=True),
        Variant("ewc-3tasks", "ewc", prior_tasks=3, setup={"ewc.fisher_batches": 10}),
        Variant("progressive-3cols", "progressive", prior_tasks=2),
        Variant("hypernet-3tasks", "hypernet", prior_tasks=3),
    )
}


def replay_bytes_per_transition(buffer: Any) -> float:
    """Bytes the replay buffer holds per transition of capacity (SB3's: every numpy array it allocated)."""
    if isinstance(buffer, FrameReplayBuffer):
        return buffer.bytes_per_transition
    arrays = [v for v in vars(buffer).values() if isinstance(v, np.ndarray)]
    return sum(a.nbytes for a in arrays) / (buffer.buffer_size * buffer.n_envs)


class TorsoExtractor(BaseFeaturesExtractor):
    """The project's convolutional torso (conv layers, dense ReLU layer) as a stock SB3 features extractor, so stock
    SB3 and the project's agent train the same network (SB3 adds the final linear Q head)."""

    def __init__(self, observation_space: Any) -> None:
        torso = torso_for(observation_space)
        super().__init__(observation_space, torso.hidden)
        layers: list[nn.Module] = []
        channels, side = observation_space.shape[0], observation_space.shape[1]
        for out_channels, kernel, stride in torso.conv:
            layers += [nn.Conv2d(channels, out_channels, kernel, stride), nn.ReLU()]
            channels, side = out_channels, (side - kernel) // stride + 1
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * side * side, torso.hidden), nn.ReLU())

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.net(x)


def build_stock_sb3(args: argparse.Namespace, variant: Variant, env: Any) -> Any:
    from stable_baselines3 import DQN

    return DQN(
        "CnnPolicy", env, learning_rate=1e-4, buffer_size=args.buffer_size, learning_starts=args.warmup,
        batch_size=32, train_freq=4, gradient_steps=args.n_envs, target_update_interval=1000,
        exploration_initial_eps=EPSILON, exploration_final_eps=EPSILON,
        replay_buffer_class=FrameReplayBuffer if variant.frame_buffer else None, seed=0, device=args.device,
        policy_kwargs={"features_extractor_class": TorsoExtractor, "net_arch": []},
    )


def build_continual(args: argparse.Namespace, variant: Variant, env: Any, games: list[str]) -> Any:
    """The project's agent configured as ``crl train`` would, trained briefly on the earlier tasks."""
    cfg = config.resolve({
        "games": games, "method": variant.method, "n_envs": args.n_envs, "device": args.device, "seed": 0,
        "agent.buffer_size": args.buffer_size, "agent.learning_starts": args.warmup, "agent.batch_size": 32,
        "agent.train_freq": 4, "agent.gradient_steps": -1, "agent.target_update_interval": 1000,
        "agent.learning_rate": 1e-4, "agent.exploration_initial_eps": EPSILON, "agent.exploration_final_eps": EPSILON,
        "agent.double_q": False, "agent.replay": "fresh", **variant.setup,
    })

    def configure(agent: Any) -> None:
        agent.replay_buffer_class = FrameReplayBuffer if variant.frame_buffer else ReplayBuffer  # used by set_task
        agent.policy.optimizer_kwargs["fused"] = variant.fused_adam
        agent.rebuild_optimizer()

    return agent_with_stored_tasks(cfg, args.device, args.prior_steps, last_env=env, configure=configure)


def time_network_only(model: Any, env_steps: int) -> dict[str, float]:
    """What ``model.learn(env_steps)`` costs in this agent's network work alone: one acting forward per vector step
    and the agent's gradient steps (its own minibatch sampling included), in the same whole rounds of ``n_envs x
    train_freq`` steps that ``learn`` takes, with no env, no replay writes and no SB3 loop (target copies left
    out). A floor for this code: only a leaner sampler or network step could go below it."""
    phases = math.ceil(env_steps / (model.n_envs * model.train_freq.frequency))
    obs = model.replay_buffer.sample(model.n_envs).observations.cpu().numpy()
    updates = model._n_updates
    with Stopwatch(model.device) as clock:
        for _ in range(phases):
            for _ in range(model.train_freq.frequency):
                model.predict(obs)
            model.train(model.gradient_steps, model.batch_size)
    steps = phases * model.n_envs * model.train_freq.frequency
    return {
        "env_steps_per_s": steps / clock.seconds,
        "env_steps_per_cpu_s": steps / clock.cpu_seconds,
        "updates_per_s": (model._n_updates - updates) / clock.seconds,
    }


def run_variant(args: argparse.Namespace, variant: Variant) -> dict[str, Any]:
    """Set up, warm up, then time ``args.steps`` env steps; figures of this process only."""
    game = resolve_game(args.game)
    games = [*PRIOR_GAMES[game_family(game)][: variant.prior_tasks], game]
    env = make_vec_env(game, n_envs=args.n_envs, seed=0)
    if variant.method is None:
        model = build_stock_sb3(args, variant, env)
    else:
        model = build_continual(args, variant, env, games)
    model.learn(args.warmup, reset_num_timesteps=variant.method is None)
    cuda = th.device(args.device).type == "cuda"
    if cuda:
        th.cuda.reset_peak_memory_stats()
    profiler = cProfile.Profile() if args.profile else None
    timed = time_network_only if variant.network_only else time_learning
    clock = None
    if args.phases:  # a sibling script: python puts this script's directory first on the import path
        from profile_run import EvaluationLog, PhaseClock, instrument

        clock = PhaseClock()
        instrument(clock, EvaluationLog())
        timed = clock.timed(timed, "timed")  # the root: what no other phase covers stays its own
    with profiler or nullcontext():
        rates = timed(model, args.steps)
    if profiler:
        args.profile.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(args.profile / f"{variant.label}.prof")
    env.close()
    return {
        "variant": variant.label,
        **rates,
        **({"phases": dict(clock.seconds), "timed_steps": args.steps} if clock else {}),
        "replay_bytes_per_transition": replay_bytes_per_transition(model.replay_buffer),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mib": th.cuda.max_memory_allocated() / 2**20 if cuda else 0.0,
    }


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from a variant's repeats: median speeds, largest memory figures."""
    if any("status" in r for r in runs):
        return next(r for r in runs if "status" in r)
    row = {"variant": runs[0]["variant"], "repeats": len(runs)}
    for key in runs[0]:
        if key == "phases":  # mean CPU seconds per phase
            row[key] = {path: float(np.mean([r[key].get(path, 0.0) for r in runs])) for path in runs[0][key]}
        elif key != "variant":
            values = [r[key] for r in runs]
            row[key] = float(np.median(values)) if "per" in key else max(values)
    return row


def print_phases(rows: list[dict[str, Any]], n_envs: int) -> None:
    """Each variant's timed CPU time by phase (exclusive, as ``scripts/profile_run.py`` counts it): microseconds per
    vector step of ``n_envs`` env steps, and share."""
    for r in rows:
        if "phases" not in r:
            continue
        phases, vector_steps = r["phases"], r["timed_steps"] / n_envs
        total = sum(phases.values())
        print(f"\n{r['variant']}: {total / vector_steps * 1e6:,.0f} us of timed CPU per vector step")
        for path, seconds in sorted(phases.items(), key=lambda kv: -kv[1]):
            print(f"  {path:<48} {seconds / vector_steps * 1e6:8.1f} us {seconds / total:6.1%}")


def print_table(rows: list[dict[str, Any]], transitions: int) -> None:
    """The rows, with speeds relative to stock SB3 and, per CPU-second, to the ``network-only`` floor (if run)."""
    base = next((r for r in rows if r["variant"] == "sb3" and "status" not in r), None)
    floor = next((r for r in rows if r["variant"] == "network-only" and "status" not in r), None)
    header = (f"{'variant':<19} {'steps/s':>8} {'x SB3':>6} {'steps/CPU-s':>11} {'x SB3':>6} {'x floor':>7} "
              f"{'updates/s':>9} {'replay B/trans':>14} {'10x100k GiB':>11} {'peak RSS MiB':>12} {'peak GPU MiB':>12}")
    print(header)
    print("-" * len(header))
    for r in rows:
        if "status" in r:
            print(f"{r['variant']:<19} {r['status']}")
            continue
        wall = f"{r['env_steps_per_s'] / base['env_steps_per_s']:6.2f}" if base else f"{'-':>6}"
        cpu = f"{r['env_steps_per_cpu_s'] / base['env_steps_per_cpu_s']:6.2f}" if base else f"{'-':>6}"
        of_floor = f"{r['env_steps_per_cpu_s'] / floor['env_steps_per_cpu_s']:7.2f}" if floor else f"{'-':>7}"
        print(f"{r['variant']:<19} {r['env_steps_per_s']:8.1f} {wall} {r['env_steps_per_cpu_s']:11.1f} {cpu} "
              f"{of_floor} {r['updates_per_s']:9.1f} {r['replay_bytes_per_transition']:14,.0f} "
              f"{r['replay_bytes_per_transition'] * transitions / 2**30:11.2f} "
              f"{r['peak_rss_mib']:12,.0f} {r['peak_gpu_mib']:12,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if th.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=2_000, help="timed env steps per variant")
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--game", default="pong")
    parser.add_argument("--warmup", type=int, default=1_000, help="untimed env steps filling the replay first")
    parser.add_argument("--prior-steps", type=int, default=200, help="env steps on each earlier task (untimed)")
    parser.add_argument("--buffer-size", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds over the variants; the table shows medians")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--profile", type=Path, help="write cProfile stats of each timed phase to DIR/<variant>.prof")
    parser.add_argument("--phases", action="store_true", help="time the timed phase's parts (env step, replay, "
                        "forward, backward, ...) with scripts/profile_run.py's clock and print them (~1%% slower)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # run one variant in this process, print its row as JSON
    args = parser.parse_args()
    if args.threads:
        th.set_num_threads(args.threads)

    if args.child:
        print(json.dumps(run_variant(args, VARIANTS[args.child])))
        return

    labels = args.variants.split(",")
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    for _ in range(args.repeats):
        for label in labels:
            variant = VARIANTS[label]
            if variant.method is not None and variant.method not in METHODS:
                runs[label] = [{"variant": label, "status": "not available"}]
            if runs[label] and "status" in runs[label][0]:
                continue
            command = [sys.executable, __file__, *sys.argv[1:], "--child", label]
            child = subprocess.run(command, capture_output=True, text=True)
            if child.returncode != 0:
                error = (child.stderr.strip().splitlines() or ["no message"])[-1]
                runs[label].append({"variant": label, "status": f"failed: {error}"})
            else:
                runs[label].append(json.loads(child.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[label][-1]), file=sys.stderr, flush=True)
    rows = [median_row(runs[label]) for label in labels]
    machine = {"device": args.device, "torch_threads": args.threads or th.get_num_threads(), "n_envs": args.n_envs,
               "steps": args.steps, "game": args.game, "buffer_size": args.buffer_size,
               "gpu": th.cuda.get_device_name() if args.device == "cuda" else None}
    print(json.dumps(machine))
    print_table(rows, transitions=10 * 100_000)
    print_phases(rows, args.n_envs)
    if args.json:
        args.json.write_text(json.dumps({**machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
