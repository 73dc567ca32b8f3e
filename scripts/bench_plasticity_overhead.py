"""The cost of the plasticity measures: the same run with and without them, side by side in one invocation.

    python scripts/bench_plasticity_overhead.py [--repeats 1] [-- extra crl train arguments]

Runs ``crl train`` (the default run unless arguments follow ``--``) with ``plasticity.measure`` true and false, same
seed, and prints each run's CPU seconds (user + system of the process) and wall seconds, and their ratios. CPU time
is the steady figure on a shared machine; the two runs also write bit-identical evaluations, which is checked.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(extra: list[str], measure: bool, run_dir: Path) -> tuple[float, float]:
    """CPU and wall seconds of one ``crl train`` child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "crl", "train", *extra, "--set", f"plasticity.measure={str(measure).lower()}",
                    "--run-dir", str(run_dir)], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("extra", nargs="*", help="crl train arguments (after --)")
    args = parser.parse_args()
    rows = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for measure in (False, True):
                rows[measure].append(timed_run(args.extra, measure, Path(tmp) / f"{measure}-{r}"))
        same = all((Path(tmp) / f"True-{r}" / "evals.jsonl").read_bytes()
                   == (Path(tmp) / f"False-{r}" / "evals.jsonl").read_bytes() for r in range(args.repeats))
    cpu = {m: min(c for c, _ in rows[m]) for m in rows}
    wall = {m: min(w for _, w in rows[m]) for m in rows}
    print("| plasticity measures | CPU s | wall s |\n|---|---|---|")
    print(f"| off | {cpu[False]:.1f} | {wall[False]:.1f} |")
    print(f"| on | {cpu[True]:.1f} | {wall[True]:.1f} |")
    print(f"| ratio on/off | {cpu[True] / cpu[False]:.3f} | {wall[True] / wall[False]:.3f} |")
    print(f"evaluations bit-identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
