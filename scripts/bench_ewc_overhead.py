"""Benchmark: gradient steps/s of EWC with 3 stored tasks vs fine-tuning, same agent, same replay data.

One ContinualDQN (Nature CNN, task modulation) plays Pong to fill a shared replay buffer, stores three EWC anchors
with real Fisher estimates (timed too), then alternates timed rounds of ``agent.train`` with the fine-tune method
(no penalty) and with EWC (TD loss + penalty). Prints one JSON object.

    python scripts/bench_ewc_overhead.py --device cpu
    python scripts/bench_ewc_overhead.py --device cuda --gradient-steps 500
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch as th

from agents import ContinualDQN
from crl.benchmark import Stopwatch
from crl.methods import TaskInfo, make_method
from envs import make_atari_vec_env


def timed_train(agent: ContinualDQN, gradient_steps: int, batch_size: int) -> float:
    """Seconds for ``gradient_steps`` gradient steps, device work included."""
    with Stopwatch(agent.device) as clock:
        agent.train(gradient_steps, batch_size)
    return clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--collect", type=int, default=2_000, help="env steps of Pong put in the replay buffer")
    parser.add_argument("--gradient-steps", type=int, default=100, help="gradient steps per timed round")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per method (alternating)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--fisher-batches", type=int, default=100)
    parser.add_argument("--n-envs", type=int, default=4)
    args = parser.parse_args()

    th.manual_seed(0)
    ewc = make_method("ewc", {"fisher_batches": args.fisher_batches})
    finetune = make_method("finetune")
    agent = ContinualDQN(
        make_atari_vec_env("Pong", n_envs=args.n_envs, seed=0), method=ewc, network={"task_modulation": True},
        replay="shared", buffer_size=args.collect, learning_starts=args.collect + 1, seed=0, device=args.device,
    )
    agent.set_task(TaskInfo(0, "Pong"))
    agent.learn(args.collect)  # fills the buffer; learning_starts keeps it from training

    fisher_seconds = []
    for task_id in range(3):  # three stored tasks, each with a real Fisher from the buffer
        agent.set_task(TaskInfo(task_id, f"task-{task_id}", block=task_id))
        agent.task_steps[task_id] = args.collect
        with Stopwatch(agent.device) as clock:
            agent.end_task()
        fisher_seconds.append(clock.seconds)
    agent.set_task(TaskInfo(3, "current", block=3))
    assert ewc.penalty(agent.hook_context()) is not None and len(ewc.penalized()) == 3

    seconds: dict[str, list[float]] = {"finetune": [], "ewc": []}
    for method in (finetune, ewc):  # warm-up round each (allocator, kernels, the penalty's one-off fold)
        agent.method = method
        timed_train(agent, max(args.gradient_steps // 5, 1), args.batch_size)
    for _ in range(args.repeats):
        for name, method in (("finetune", finetune), ("ewc", ewc)):
            agent.method = method
            seconds[name].append(timed_train(agent, args.gradient_steps, args.batch_size))
    rate = {name: args.gradient_steps / float(np.median(s)) for name, s in seconds.items()}
    shared = sum(p.numel() for _, p in agent.q_net.shared_named_parameters())
    print(json.dumps({
        "device": str(agent.device),
        "torch_threads": th.get_num_threads(),
        "shared_parameters": shared,
        "stored_tasks": 3,
        "batch_size": args.batch_size,
        "finetune_steps_per_s": round(rate["finetune"], 2),
        "ewc_steps_per_s": round(rate["ewc"], 2),
        "ewc_overhead_percent": round(100 * (rate["finetune"] / rate["ewc"] - 1), 2),
        "fisher_seconds_per_task": [round(s, 3) for s in fisher_seconds],
        "fisher_samples_per_task": args.fisher_batches * 32,
        "fisher_mean_per_task": [round(v, 9) for k, v in ewc.scalars().items() if k.startswith("ewc/fisher_mean/")],
        "anchor_memory_mb_per_task": round(2 * 4 * shared / 2**20, 2),
    }, indent=1))
    agent.env.close()


if __name__ == "__main__":
    main()
