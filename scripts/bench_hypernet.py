"""Benchmark: DQN gradient steps/s and acting steps/s of the hypernetwork method against fine-tuning.

Both agents come from the same resolved configuration (``crl.run.config``, the trainer's ``build_agent``), so they
differ only in the method. Each plays ``--games`` in order for a short block (enough to fill the replay warm-up);
the timings are taken on the last game, where the hypernetwork's output regularizer covers every earlier game.
Prints one line per method and a JSON summary (with the chunk size and compression ratio used).

    python scripts/bench_hypernet.py                      # Nature CNN, defaults of crl.run.config, CPU
    python scripts/bench_hypernet.py --set hypernet.chunk_size=4000 --device cuda --games Pong,Breakout,Seaquest
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch as th

from crl.run import config as config_mod
from crl.benchmark import Stopwatch, agent_with_stored_tasks
from crl.run.agent import resolve_device


def bench_method(cfg: dict[str, Any], device: str, gradient_steps: int, acting_steps: int) -> dict[str, Any]:
    """Play every game but the last for one warm-up block, then time training and acting on the last game."""
    games, n_envs = cfg.games, cfg.n_envs
    warmup = cfg.agent.learning_starts + 4 * n_envs
    agent = agent_with_stored_tasks(cfg, device, warmup)
    agent.learn(warmup, reset_num_timesteps=False)
    batch_size = cfg.agent.batch_size
    agent.train(gradient_steps=5, batch_size=batch_size)  # warm-up: allocator, kernels
    with Stopwatch(device) as clock:
        agent.train(gradient_steps=gradient_steps, batch_size=batch_size)
    train_rate = gradient_steps / clock.seconds

    obs = agent.env.reset()
    agent.predict(obs, deterministic=True)
    with Stopwatch(device) as clock:
        for _ in range(acting_steps):
            agent.predict(obs, deterministic=True)
    act_rate = acting_steps * n_envs / clock.seconds
    result = {
        "method": cfg.method,
        "gradient_steps_per_s": train_rate,
        "acting_env_steps_per_s": act_rate,
        "q_network_parameters": sum(p.numel() for p in agent.q_net.parameters()),
    }
    if cfg.method == "hypernet":
        result.update(
            chunk_size=agent.q_net.chunk_size,
            num_chunks=agent.q_net.num_chunks,
            generated_weights=agent.q_net.num_weights,
            compression_ratio=agent.q_net.compression_ratio(),
            regularized_games=len(games) - 1,
        )
    agent.env.close()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", default="Pong,Breakout", help="comma-separated; timings on the last one")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--gradient-steps", type=int, default=50)
    parser.add_argument("--acting-steps", type=int, default=200, help="batched predict calls (n_envs env steps each)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, repeatable")
    args = parser.parse_args(argv)
    if args.threads:
        th.set_num_threads(args.threads)
    device = resolve_device(args.device)
    overrides = {"games": args.games, "device": device, "agent.learning_starts": 200, **config_mod.parse_set(args.set)}
    results = []
    for method in ("finetune", "hypernet"):
        cfg = config_mod.resolve({**overrides, "method": method})
        results.append(bench_method(cfg, device, args.gradient_steps, args.acting_steps))
        r = results[-1]
        extra = f"  chunk_size={r['chunk_size']} compression_ratio={r['compression_ratio']:.3f}" if method == "hypernet" else ""
        print(f"{method:9s} {r['gradient_steps_per_s']:8.2f} gradient steps/s  {r['acting_env_steps_per_s']:8.1f} acting env steps/s{extra}")
    print(f"hypernet / finetune gradient steps/s: {results[1]['gradient_steps_per_s'] / results[0]['gradient_steps_per_s']:.2f}")
    print(json.dumps({"device": device, "threads": th.get_num_threads(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
