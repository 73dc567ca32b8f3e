"""Rerun committed benchmark runs from their own config.yaml and say whether today's code repeats them exactly.

A benchmark may add seeds to records made by older code only if the code still produces those records bit for bit
(issue #26). This reruns each named run on this machine and compares every evaluation (step, block, game, mean and
standard deviation of the return) with the committed evals.jsonl. Float kernels differ across machines, so compare
on the machine that made the records, or expect differences that say nothing about the code.

    python scripts/check_identical.py benchmarks/results/minatar/test finetune-s0 ewc-task_modulation_true-s0 ...
    python scripts/check_identical.py benchmarks/results/minatar/test --seed 0     # one run per configuration

Exit status 0 when every run repeats exactly, 1 when one does not, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMPARED = ("step", "block", "game", "mean_return", "std_return")


def evaluations(evals_jsonl: Path) -> list[tuple]:
    """The compared fields of every evaluation, in order."""
    return [tuple(json.loads(line)[k] for k in COMPARED) for line in evals_jsonl.read_text().splitlines() if line]


def rerun(run: Path, scratch: Path) -> tuple[str, str]:
    """Train ``run``'s config afresh into ``scratch``; (run name, verdict)."""
    proc = subprocess.run([sys.executable, "-m", "crl", "train", "--config", str(run / "config.yaml"),
                           "--run-dir", str(scratch / run.name)], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        return run.name, f"failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"
    old, new = evaluations(run / "evals.jsonl"), evaluations(scratch / run.name / "evals.jsonl")
    if old == new:
        return run.name, f"identical ({len(old)} evaluations)"
    first = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
    where = old[first][:3] if first < len(old) else "the end"
    return run.name, f"DIFFERENT from evaluation {first} {where}: {len(old)} committed, {len(new)} now"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, help="a records dir with runs/<name>/{config.yaml,evals.jsonl}")
    parser.add_argument("runs", nargs="*", help="run names (default: all, or those of --seed)")
    parser.add_argument("--seed", type=int, help="only the runs of this seed (one per configuration)")
    parser.add_argument("--workers", type=int, default=2, help="runs at a time (default 2)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    runs_dir = args.records / "runs"
    if not runs_dir.is_dir():
        print(f"check_identical: error: {runs_dir} is not a directory of runs", file=sys.stderr)
        return 2
    names = args.runs or sorted(p.name for p in runs_dir.iterdir() if (p / "config.yaml").exists())
    if args.seed is not None:
        names = [n for n in names if n.endswith(f"-s{args.seed}")]
    missing = [n for n in names if not (runs_dir / n / "evals.jsonl").exists()]
    if missing or not names:
        print(f"check_identical: error: no such runs in {runs_dir}: {missing or 'none match'}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="crl-identical-") as scratch, ThreadPoolExecutor(args.workers) as pool:
        verdicts = list(pool.map(lambda n: rerun(runs_dir / n, Path(scratch)), names))
    for name, verdict in verdicts:
        print(f"{name:40s} {verdict}")
    return 0 if all(v.startswith("identical") for _, v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
