"""A constant action's score under a committed run's own evaluation: the baseline a game's return is read against.

Random play is one floor; on some games a policy that presses one button scores far above it (Freeway: pressing UP
crosses the road again and again). This plays the evaluation of each given run (its environment options, its
evaluation seeds, episodes, epsilon and step limit: ``crl train``'s own evaluation, called with a stand-in agent)
with an agent whose greedy action is always ``--action``, and prints a markdown row per run and game. Action names
are ALE's for Atari runs (which must play the full 18-action set) and NOOP, LEFT, UP, RIGHT, DOWN, FIRE for MinAtar
runs (its full 6-action set).

    python scripts/constant_policy.py benchmarks/results/atari-cpu/candidates/runs/finetune-games_freeway-s0 \\
        benchmarks/results/atari-cpu/candidates/runs/finetune-games_freeway-s1 --action UP
    python scripts/constant_policy.py benchmarks/results/minatar/tune/runs/finetune-s1000 --game minatar/freeway

Exit status 2, with one line, for a directory that is not a run or an action that its games do not have.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch as th
from ale_py import Action

from crl.report.records import BadInput
from crl.run import config as config_mod
from crl.run.evaluation import evaluate_games
from envs import game_family
from envs.minatar import ACTION_NAMES as MINATAR_ACTIONS


class ConstantQNet:
    """A Q-network stand-in whose greedy action is always ``action`` (epsilon-greedy exploration still applies)."""

    training = False

    def __init__(self, action: int, n_actions: int) -> None:
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

    def __init__(self, action: int, n_actions: int) -> None:
        self.q_net = ConstantQNet(action, n_actions)


def action_index(cfg: Any, action: str) -> tuple[int, int]:
    """(the index of ``action`` in the run's action set, the set's size); BadInput when its games lack it."""
    families = {game_family(g) for g in cfg.games}
    if families == {"minatar"}:
        if action not in MINATAR_ACTIONS:
            raise BadInput(f"--action {action}: not a MinAtar action (one of {', '.join(MINATAR_ACTIONS)})")
        return MINATAR_ACTIONS.index(action), len(MINATAR_ACTIONS)
    if action not in Action.__members__:
        raise BadInput(f"--action {action}: not an ALE action (one of {', '.join(Action.__members__)})")
    if any(not config_mod.env_options(cfg, g).get("full_action_space", False) for g in cfg.games):
        raise BadInput(f"{cfg.games} do not play the full 18-action set, so an ALE action name is not an index")
    return Action[action].value, len(Action.__members__)


def row(run: Path, action: str, game: str | None = None) -> str:
    """The run's evaluation of each of its games (or of ``game`` alone), played by the constant policy."""
    if not (run / "config.yaml").is_file():
        raise BadInput(f"{run} is not a run directory (no config.yaml)")
    cfg = config_mod.resolve(config_mod.load_yaml(str(run / "config.yaml")))
    if game is not None and game not in cfg.games:
        raise BadInput(f"--game {game}: {run} plays {', '.join(cfg.games)}")
    index, n_actions = action_index(cfg, action)
    only = None if game is None else [cfg.games.index(game)]
    evaluations = evaluate_games(ConstantAgent(index, n_actions), cfg, [0] * len(cfg.games), [0], only=only)
    return "\n".join(f"| {run.name} | {ev.game} | {cfg.seed} | {action} | {ev.mean:.1f} | "
                     f"{', '.join(f'{r:.0f}' for r in ev.returns)} |" for ev in evaluations)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="committed run directories (their config.yaml)")
    parser.add_argument("--action", default="UP", help="an action name: NOOP, FIRE, UP, ... (default UP)")
    parser.add_argument("--game", help="only this game of the runs (default: every game)")
    args = parser.parse_args(argv)
    try:
        rows = [row(run, args.action, args.game) for run in args.runs]
    except BadInput as e:
        print(f"constant_policy: error: {e}", file=sys.stderr)
        return 2
    print("| run | game | seed | action | mean return | episodes |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
