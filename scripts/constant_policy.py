"""A constant action's score under a committed run's own evaluation: the baseline a game's return is read against.

Random play is one floor; on some games a policy that presses one button scores far above it (Freeway: pressing UP
crosses the road again and again). This plays the evaluation of each given run (its environment options, its
evaluation seeds, episodes, epsilon and step limit, exactly as ``crl train`` evaluates) with an agent whose greedy
action is always ``--action``, and prints a markdown row per run.

    python scripts/constant_policy.py benchmarks/results/atari-cpu/candidates/runs/finetune-games_freeway-s0 \\
        benchmarks/results/atari-cpu/candidates/runs/finetune-games_freeway-s1 --action UP

Exit status 2, with one line, for a directory that is not a run or an action that is not an ALE action name.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch as th
from ale_py import Action

from crl.run import config as config_mod
from crl.run import seeds
from crl.run.evaluation import play_episodes
from crl.run.seeds import derive_seed
from crl.report.records import BadInput


class ConstantQNet:
    """A Q-network stand-in whose greedy action is always ``action`` (epsilon-greedy exploration still applies)."""

    training = False

    def __init__(self, action: int, n_actions: int = len(Action.__members__)) -> None:
        self.action, self.n_actions = action, n_actions

    def __call__(self, obs: th.Tensor, task_id: int = 0) -> th.Tensor:
        q = th.zeros(obs.shape[0], self.n_actions)
        q[:, self.action] = 1.0
        return q

    def set_training_mode(self, mode: bool) -> None:
        pass


class ConstantAgent:
    """What ``play_episodes`` needs of an agent: a Q-network and a device."""

    device = "cpu"

    def __init__(self, action: int) -> None:
        self.q_net = ConstantQNet(action)


def row(run: Path, action: str) -> str:
    """The run's evaluation of each of its games, played by the constant policy."""
    if not (run / "config.yaml").is_file():
        raise BadInput(f"{run} is not a run directory (no config.yaml)")
    cfg = config_mod.resolve(config_mod.load_yaml(str(run / "config.yaml")))
    agent = ConstantAgent(Action[action].value)
    cells = []
    for g, game in enumerate(cfg.games):
        ev = play_episodes(agent, game, 0, cfg.eval.episodes, cfg.eval.max_steps, cfg.eval.epsilon,
                           derive_seed(cfg.seed, seeds.EVALUATION_ENV, g), config_mod.env_options(cfg, game))
        cells.append(f"| {run.name} | {game} | {cfg.seed} | {action} | {ev.mean:.1f} | "
                     f"{', '.join(f'{r:.0f}' for r in ev.returns)} |")
    return "\n".join(cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="committed run directories (their config.yaml)")
    parser.add_argument("--action", default="UP", help="an ALE action name: NOOP, FIRE, UP, ... (default UP)")
    args = parser.parse_args(argv)
    try:
        if args.action not in Action.__members__:
            raise BadInput(f"--action {args.action}: not an ALE action (one of {', '.join(Action.__members__)})")
        rows = [row(run, args.action) for run in args.runs]
    except BadInput as e:
        print(f"constant_policy.py: {e}", file=sys.stderr)
        return 2
    print("| run | game | seed | action | mean return | episodes |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
