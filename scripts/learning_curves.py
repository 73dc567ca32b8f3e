"""Learning curves of committed runs as markdown table rows: each game's mean evaluation return at every evaluation.

One row per (run, game), against the game's random-play score and its human (Atari) or DQN (MinAtar) reference,
with the run's CPU time from the sweep's record. The results pages quote these rows, and a test regenerates them.

    python scripts/learning_curves.py benchmarks/results/atari-cpu/candidates

Exit status 2, with one line, when the directory holds no runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from crl.analysis.normalization import minatar_reference_scores, reference_scores
from crl.report.records import BadInput, load_run


def references(game: str) -> tuple[float, float] | None:
    """(random, human) for an Atari game, (random, DQN) for a MinAtar one; None if the tables lack it."""
    return {**reference_scores(), **minatar_reference_scores()}.get(game)


def cpu_minutes(records: Path) -> dict[str, float]:
    """Run name -> CPU minutes over all its attempts, from the sweep's sweep.json (none: no entry)."""
    path = records / "sweep.json"
    if not path.exists():
        return {}
    runs = json.loads(path.read_text())["runs"]
    return {name: sum(a.get("cpu_s", 0.0) for a in run["attempts"]) / 60 for name, run in runs.items()}


def nominal(step: int) -> int:
    """An evaluation's step to the nearest thousand: a resumed run's evaluations land a few steps (one vector step)
    off the planned ones (200,004 for 200,000), and belong in the same column."""
    return round(step / 1000) * 1000


def table(records: Path) -> list[str]:
    """The markdown table (header and rows) of every finished or partial run under ``records/runs``."""
    runs = [load_run(p) for p in sorted((records / "runs").iterdir()) if (p / "evals.jsonl").exists()]
    if not runs:
        raise BadInput(f"{records / 'runs'} holds no runs with evaluations")
    steps = sorted({nominal(e["step"]) for run in runs for e in run.evals})
    cpu = cpu_minutes(records)
    header = ["run", "game", "seed", *(f"{s // 1000}k" for s in steps), "best", "random", "reference", "CPU-min"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        for game in run.games:
            by_step = {nominal(e["step"]): e["mean_return"] for e in run.evals if e["game"] == game}
            ref = references(game)
            cells = [run.path.name, game, str(run.seed), *(f"{by_step[s]:.1f}" if s in by_step else "" for s in steps),
                     f"{max(by_step.values()):.1f}", *((f"{r:.1f}" for r in ref) if ref else ("", "")),
                     f"{cpu[run.path.name]:.0f}" if run.path.name in cpu else ""]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, help="a records directory with runs/<name>/ (and sweep.json)")
    args = parser.parse_args(argv)
    try:
        print("\n".join(table(args.records)))
    except (BadInput, FileNotFoundError, NotADirectoryError) as e:
        print(f"learning_curves: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
