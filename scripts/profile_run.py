"""Where the CPU time of a ``crl train`` run goes: the run's own phases, timed in the same process, as a tree.

Runs ``crl train`` with the arguments after ``--`` and, around the functions a run spends its time in, a clock of
this process's CPU time (``time.process_time``: all threads, so on a machine shared with other jobs the figures are
the run's own, not the neighbours'). Each phase is charged its exclusive time: a nested phase's time is its own,
not its parent's, so the rows add up to the whole process. Then it prints

* the tree: CPU-s, fraction of the whole process, calls;
* the phases summed by category (env stepping, replay, network, SB3 loop, evaluation, method, records, ...);
* every evaluation: game, agent step, env steps played, longest episode, CPU-s (evaluation cost grows with the
  episodes' length, i.e. with what the agent has learned).

The clock costs ~1-2 us per timed call (about 1% of a MinAtar run); ``python -m cProfile -o run.prof -m crl train
...`` gives per-function detail instead, at 2x the run's CPU time and with Python-heavy parts inflated the most.

    python scripts/profile_run.py -- --config benchmarks/results/minatar/test/runs/ewc-task_modulation_true-s0/config.yaml --run-dir /tmp/prof-run
    python scripts/profile_run.py --json /tmp/prof.json -- --games minatar/breakout --steps-per-game 5000 --run-dir /tmp/p
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

START_CPU = time.process_time()  # before the heavy imports: start-up is part of the run's cost

import torch as th  # noqa: E402
from stable_baselines3.common.vec_env.base_vec_env import VecEnv  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from agents import ContinualDQN  # noqa: E402
from agents.frame_buffer import FrameReplayBuffer  # noqa: E402
from crl.cli.main import main as crl_main  # noqa: E402
from crl.run import callbacks, evaluation, loop  # noqa: E402
from crl.run.plasticity import PlasticityProbes  # noqa: E402
from crl.run.recording import Recorder  # noqa: E402

# a phase's category, by its own label; whatever runs inside an evaluation or the plasticity probes counts as those
CATEGORIES = {
    "env step": "env stepping (training)",
    "replay add": "replay add",
    "store transition": "SB3 loop and callbacks",
    "replay sample": "replay sample",
    "acting forward": "network: acting forward",
    "TD loss forward": "network: gradient steps",
    "backward": "network: gradient steps",
    "grad clipping": "network: gradient steps",
    "gradient steps": "network: gradient steps",  # exclusive: zero_grad, optimizer step, bookkeeping
    "target update, epsilon": "target update, epsilon",
    "learn": "SB3 loop and callbacks",
    "method penalty": "method's own work",
    "method after_task": "method's own work",
    "method before_task": "method's own work",
    "method after_gradient_step": "method's own work",
    "method on_transition": "method's own work",
    "plasticity probes": "plasticity probes",
    "task snapshot": "checkpoints",
    "resume checkpoint": "checkpoints",
    "TensorBoard scalars": "records and TensorBoard",
    "TensorBoard figures": "records and TensorBoard",
    "records": "records and TensorBoard",
    "build agent": "set-up (agent, envs)",
    "make env": "set-up (agent, envs)",
}


class PhaseClock:
    """Exclusive CPU time per phase path (``run/learn/gradient steps/replay sample``) and calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[Any]] = []  # [path, start, time of the children]

    def enter(self, label: str) -> None:
        path = f"{self._stack[-1][0]}/{label}" if self._stack else label
        self._stack.append([path, time.process_time(), 0.0])

    def exit(self) -> None:
        path, start, children = self._stack.pop()
        spent = time.process_time() - start
        self.seconds[path] += spent - children
        self.calls[path] += 1
        if self._stack:
            self._stack[-1][2] += spent

    def timed(self, function: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.enter(label)
            try:
                return function(*args, **kwargs)
            finally:
                self.exit()
        return wrapper

    def wrap(self, owner: Any, name: str, label: str) -> None:
        """Time ``owner.name`` (a class's method or a module's function) as ``label``."""
        setattr(owner, name, self.timed(getattr(owner, name), label))


class EvaluationLog:
    """Per ``play_episodes`` call: the game, the agent's step, env steps played and the longest episode."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.env_steps = 0  # of envs stepped inside play_episodes
        self.iterations = 0
        self.active = False  # inside play_episodes

    def count_step(self, env: Any) -> None:
        self.env_steps += env.num_envs
        self.iterations += 1

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(agent: Any, game: str, *args: Any, **kwargs: Any) -> Any:
            steps, iterations, cpu = self.env_steps, self.iterations, time.process_time()
            self.active = True
            try:
                result = function(agent, game, *args, **kwargs)
            finally:
                self.active = False
            self.rows.append({"step": agent.num_timesteps, "game": game, "episodes": len(result.returns),
                              "env_steps": self.env_steps - steps, "longest_episode": self.iterations - iterations,
                              "cpu_s": time.process_time() - cpu})
            return result
        return wrapper


def instrument(clock: PhaseClock, evals: EvaluationLog) -> None:
    """Put the clock around the phases of a run (class attributes: every instance, also those built later)."""
    w = clock.wrap
    w(loop.ContinualTrainer, "run", "run")
    w(ContinualDQN, "learn", "learn")
    w(ContinualDQN, "predict", "acting forward")
    w(ContinualDQN, "_store_transition", "store transition")
    w(FrameReplayBuffer, "add", "replay add")
    w(FrameReplayBuffer, "sample", "replay sample")
    w(ContinualDQN, "train", "gradient steps")
    w(ContinualDQN, "td_loss", "TD loss forward")
    w(th.autograd, "backward", "backward")  # Tensor.backward looks it up at call time
    w(th.nn.utils, "clip_grad_norm_", "grad clipping")
    w(ContinualDQN, "_on_step", "target update, epsilon")
    for name in ("ObserveFrames", "LogEpisodeReturns", "LogTraining", "EvaluateEvery", "ShowProgress", "StopOnSignal"):
        w(getattr(callbacks, name), "_on_step", f"callback {name}")
    w(loop.ContinualTrainer, "evaluate", "evaluation")
    w(loop.ContinualTrainer, "measure_plasticity", "plasticity probes")
    w(PlasticityProbes, "measure", "plasticity measures")
    w(evaluation, "play_episodes", "play episodes")
    evaluation.play_episodes = evals.wrap(evaluation.play_episodes)
    w(evaluation, "make_vec_env", "make env")
    w(loop, "make_vec_env", "make env")
    w(ContinualDQN, "set_task", "task switch")
    w(ContinualDQN, "end_task", "end task")
    w(ContinualDQN, "save", "task snapshot")
    w(loop.ContinualTrainer, "save_checkpoint", "resume checkpoint")
    w(loop.ContinualTrainer, "check_finite", "weights finite check")
    for name in ("open", "block_started", "block_finished", "evaluation", "plasticity", "summary", "close", "flush"):
        w(Recorder, name, "records")
    w(Recorder, "figures", "TensorBoard figures")
    w(SummaryWriter, "add_scalar", "TensorBoard scalars")

    step = VecEnv.step

    def env_step(env: Any, actions: Any) -> Any:
        if evals.active:
            evals.count_step(env)
        return step(env, actions)
    VecEnv.step = clock.timed(env_step, "env step")  # type: ignore[method-assign]

    build = loop.build_agent

    def build_timed_agent(*args: Any, **kwargs: Any) -> ContinualDQN:
        agent = build(*args, **kwargs)
        method = agent.method
        for hook in ("penalty", "before_task", "after_task", "after_gradient_step", "on_transition"):
            if method.overrides(hook):  # an instance attribute: overrides() still reads the class
                setattr(method, hook, clock.timed(getattr(method, hook), f"method {hook}"))
        return agent
    loop.build_agent = clock.timed(build_timed_agent, "build agent")


def category(path: str) -> str:
    """The category of a phase path (``run/learn/callback EvaluateEvery/evaluation/play episodes/env step``)."""
    labels = path.split("/")
    if "evaluation" in labels and labels[-1] != "plasticity probes" and "plasticity probes" not in labels:
        return "evaluation"
    if "plasticity probes" in labels:
        return "plasticity probes"
    if labels[-1].startswith("callback "):
        return "SB3 loop and callbacks"
    return CATEGORIES.get(labels[-1], "other (" + labels[-1] + ")")


def report(clock: PhaseClock, evals: EvaluationLog, total: float) -> dict[str, Any]:
    """Print the tree, the categories and the evaluations; return them as a dict."""
    seconds = dict(clock.seconds)
    seconds["start-up (imports, config, outside the run)"] = total - sum(clock.seconds.values())
    print(f"\nprocess CPU time: {total:.1f} s\n")
    print(f"{'phase (exclusive CPU time)':<78} {'CPU-s':>8} {'share':>6} {'calls':>9}")
    for path in sorted(seconds):
        depth = path.count("/")
        name = "  " * depth + path.rsplit("/", 1)[-1]
        print(f"{name:<78} {seconds[path]:8.2f} {seconds[path] / total:6.1%} {clock.calls.get(path, 1):9d}")
    groups: dict[str, float] = defaultdict(float)
    for path, value in seconds.items():
        groups["start-up" if path.startswith("start-up") else category(path)] += value
    print(f"\n{'category':<40} {'CPU-s':>8} {'share':>6}")
    for name, value in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"{name:<40} {value:8.2f} {value / total:6.1%}")
    if evals.rows:
        print(f"\n{'evaluation at step':>18} {'game':<24} {'episodes':>8} {'env steps':>9} {'longest':>7} {'CPU-s':>6}")
        for r in evals.rows:
            print(f"{r['step']:>18} {r['game']:<24} {r['episodes']:>8} {r['env_steps']:>9} "
                  f"{r['longest_episode']:>7} {r['cpu_s']:6.2f}")
        played = sum(r["env_steps"] for r in evals.rows)
        print(f"evaluation env steps in all: {played}")
    return {"process_cpu_s": total, "phases": seconds, "calls": dict(clock.calls), "categories": dict(groups),
            "evaluations": evals.rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the breakdown here")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then the arguments of crl train")
    args = parser.parse_args()
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    clock, evals = PhaseClock(), EvaluationLog()
    instrument(clock, evals)
    status = crl_main(["train", *train_args])
    out = report(clock, evals, time.process_time() - START_CPU)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
