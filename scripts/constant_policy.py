"""A constant action's score under a committed run's own evaluation: the baseline a game's return is read against.

Random play is one floor; on some games a policy that presses one button scores far above it (Freeway: pressing UP
crosses the road again and again). This plays the evaluation of each given run (its environment options, its
evaluation seeds, episodes, epsilon and step limit: ``crl train``'s own evaluation, called with a stand-in agent) with an agent whose greedy
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
from crl.run.evaluation import evaluate_games
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


def row(run: Path, action: str, game: str | None = None) -> str:
    """The run's evaluation of each of its games (or of ``game`` alone), played by the constant policy."""
    if not (run / "config.yaml").is_file():
        raise BadInput(f"{run} is not a run directory (no config.yaml)")
    cfg = config_mod.resolve(config_mod.load_yaml(str(run / "config.yaml")))
    if game is not None and game not in cfg.games:
        raise BadInput(f"--game {game}: {run} plays {', '.join(cfg.games)}")
    if any(not config_mod.env_options(cfg, g).get("full_action_space", False) for g in cfg.games):
        raise BadInput(f"{run} does not play the full 18-action set, so an ALE action name is not its action index")
    evaluations = evaluate_games(ConstantAgent(Action[action].value), cfg, [0] * len(cfg.games), [0])
    return "\n".join(f"| {run.name} | {ev.game} | {cfg.seed} | {action} | {ev.mean:.1f} | "
                     f"{', '.join(f'{r:.0f}' for r in ev.returns)} |"
                     for ev in evaluations if game is None or ev.game == game)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="committed run directories (their config.yaml)")
    parser.add_argument("--action", default="UP", help="an ALE action name: NOOP, FIRE, UP, ... (default UP)")
    parser.add_argument("--game", help="only this game of the runs (default: every game)")
    args = parser.parse_args(argv)
    try:
        if args.action not in Action.__members__:
            raise BadInput(f"--action {args.action}: not an ALE action (one of {', '.join(Action.__members__)})")
        rows = [row(run, args.action, args.game) for run in args.runs]
    except BadInput as e:
        print(f"constant_policy: error: {e}", file=sys.stderr)
        return 2
    print("| run | game | seed | action | mean return | episodes |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
