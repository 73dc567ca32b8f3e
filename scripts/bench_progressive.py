"""Training throughput of a progressive network as it grows: env steps/s with 1, 2, 3, ... columns, one run.

One agent, configured as `crl train` configures it, trains on one game per column. Each block first fills its
fresh replay buffer (untimed), then trains for ``--steps`` env steps under the clock: acting (a forward of every
column the current one reads from) plus gradient updates (forward and backward through them, 1 update per
``train_freq`` vector steps as in the config). Wall time and process CPU time are both reported: on a machine
shared with other jobs, CPU time is the steadier of the two. Not a test: numbers depend on the machine.

    python scripts/bench_progressive.py --games Pong,Breakout,SpaceInvaders --width dqn --steps 2000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch as th

from crl.run import config
from crl.benchmark import time_learning, walk_tasks
from crl.run.agent import resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", default="Pong,Breakout,SpaceInvaders", help="one game per column")
    parser.add_argument("--width", default="dqn", choices=["dqn", "paper"])
    parser.add_argument("--no-adapters", action="store_true", help="independent columns (the ablation)")
    parser.add_argument("--steps", type=int, default=2_000, help="timed env steps per column")
    parser.add_argument("--warmup", type=int, default=1_000, help="untimed env steps per column (replay warm-up)")
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        th.set_num_threads(args.threads)

    games = args.games.split(",")
    cfg = config.resolve({
        "games": games, "method": "progressive", "n_envs": args.n_envs, "device": args.device,
        "progressive.width": args.width, "progressive.adapters": not args.no_adapters,
        "agent.learning_starts": args.warmup, "agent.buffer_size": args.warmup + args.steps,
    })
    device = resolve_device(cfg.device)
    rows = []
    for agent, task in walk_tasks(cfg, device):
        agent.learn(args.warmup, reset_num_timesteps=False)
        rates = time_learning(agent, args.steps)
        agent.end_task()
        counts = agent.q_net.column_parameter_counts()
        rows.append({
            "columns": task.task_id + 1, "game": task.game, "params_total": sum(counts), "params_trainable": counts[-1],
            "env_steps_per_s": rates["env_steps_per_s"], "updates_per_s": rates["updates_per_s"],
            "env_steps_per_cpu_s": rates["env_steps_per_cpu_s"],
        })
        base, base_cpu = rows[0]["env_steps_per_s"], rows[0]["env_steps_per_cpu_s"]
        r = rows[-1]
        print(
            f"columns={r['columns']} game={r['game']:<14} params={r['params_total']:>10,} trainable={r['params_trainable']:>10,} "
            f"env steps/s={r['env_steps_per_s']:7.1f} (relative {r['env_steps_per_s'] / base:.2f}) "
            f"updates/s={r['updates_per_s']:6.1f} env steps per CPU-s={r['env_steps_per_cpu_s']:7.1f} "
            f"(relative {r['env_steps_per_cpu_s'] / base_cpu:.2f})",
            flush=True,
        )
    agent.env.close()
    if args.json:
        meta = {"width": args.width, "adapters": not args.no_adapters, "n_envs": args.n_envs, "device": device,
                "threads": th.get_num_threads(), "steps": args.steps}
        args.json.write_text(json.dumps({**meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
