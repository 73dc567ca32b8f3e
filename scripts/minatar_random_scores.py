"""Measure random-play returns of the MinAtar games and write crl/data/minatar_scores.csv.

Random play: an action drawn uniformly from MinAtar's full set of 6 at every step, MinAtar's own dynamics (sticky
actions 0.1, difficulty ramping on), raw (unclipped) episode scores, no step cap. Each of ``--n-envs`` environments
plays a fixed share of the ``--episodes`` episodes, so short episodes are not over-represented. The table also holds
the published DQN reference of each game (``DQN_REFERENCE``, kept as is; sources in crl/data/README.md).

    python scripts/minatar_random_scores.py                      # all five games, 1,000 episodes each (~3 min)
    python scripts/minatar_random_scores.py --episodes 100 --out /tmp/scores.csv
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path

import numpy as np

from crl.run.rundir import atomic_write
from envs import MINATAR_GAMES, MINATAR_PREFIX, make_minatar_vec_env, resolve_game

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "crl" / "data" / "minatar_scores.csv"
# DQN of Young & Tian 2019 (arXiv:1903.03176): the end (5M frames) of its DQN learning curves, each the mean over 30
# runs of the moving average of training returns over 100 episodes (epsilon 0.1), read off the figure by pixel
# measurement; see crl/data/README.md for the figure used and the reading's precision.
DQN_REFERENCE = {
    "minatar/asterix": 16.9,
    "minatar/breakout": 10.0,
    "minatar/freeway": 50.2,
    "minatar/seaquest": 20.1,
    "minatar/space_invaders": 43.6,
}
FIELDS = ("game", "random", "random_sem", "random_episodes", "dqn")


def random_returns(game: str, episodes: int, n_envs: int, seed: int) -> tuple[np.ndarray, int]:
    """Raw returns of ``episodes`` uniformly random episodes of ``game``, and the longest episode's length."""
    n_envs = min(n_envs, episodes)
    targets = [episodes // n_envs + (i < episodes % n_envs) for i in range(n_envs)]
    env = make_minatar_vec_env(game, n_envs=n_envs, seed=seed, clip_rewards=False, max_episode_steps=None)
    rng = np.random.default_rng(seed)
    returns: list[list[float]] = [[] for _ in range(n_envs)]
    longest = 0
    env.reset()
    while any(len(r) < t for r, t in zip(returns, targets)):
        _, _, dones, infos = env.step(rng.integers(env.action_space.n, size=n_envs))
        for i in np.flatnonzero(dones):
            if len(returns[i]) < targets[i]:
                returns[i].append(infos[i]["episode"]["r"])
                longest = max(longest, infos[i]["episode"]["l"])
    env.close()
    return np.concatenate([np.asarray(r, dtype=float) for r in returns]), longest


def read_table(path: Path) -> dict[str, dict[str, str]]:
    """Rows of an existing table by game (empty if there is none)."""
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {row["game"]: row for row in csv.DictReader(f)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", default=",".join(MINATAR_GAMES), help="comma-separated MinAtar games (breakout or "
                        "minatar/breakout)")
    parser.add_argument("--episodes", type=int, default=1_000, help="episodes per game")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="CSV to write (other games' rows are kept)")
    args = parser.parse_args(argv)
    names = [g.strip() for g in args.games.split(",") if g.strip()]
    try:  # a bare name (breakout) means the MinAtar game here
        games = [resolve_game(g if g.lower().startswith("minatar") else MINATAR_PREFIX + g) for g in names]
    except ValueError as e:
        print(f"minatar_random_scores: error: {e}", file=sys.stderr)
        return 2
    if not games or args.episodes < 1 or args.n_envs < 1:
        print("minatar_random_scores: error: give at least one game, --episodes and --n-envs >= 1", file=sys.stderr)
        return 2

    command = "python scripts/minatar_random_scores.py " + " ".join(argv if argv is not None else sys.argv[1:])
    table = read_table(args.out)
    print(f"{'game':24}{'random':>10}{'sem':>8}{'episodes':>10}{'longest':>9}{'dqn':>8}{'seconds':>9}")
    for game in games:
        start = time.perf_counter()
        returns, longest = random_returns(game, args.episodes, args.n_envs, args.seed)
        sem = returns.std(ddof=1) / np.sqrt(len(returns)) if len(returns) > 1 else float("nan")
        table[game] = {"game": game, "random": f"{returns.mean():.3f}", "random_sem": f"{sem:.3f}",
                       "random_episodes": str(len(returns)), "dqn": f"{DQN_REFERENCE[game]:.1f}"}
        print(f"{game:24}{returns.mean():10.3f}{sem:8.3f}{len(returns):10d}{longest:9d}{DQN_REFERENCE[game]:8.1f}"
              f"{time.perf_counter() - start:9.1f}")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for game in sorted(table):
        writer.writerow({k: table[game][k] for k in FIELDS})
    atomic_write(args.out, out.getvalue())
    print(f"wrote {args.out}\ncommand: {command.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
