"""The EWC Atari comparison of Kirkpatrick et al. 2017 (PNAS, Fig. 3) at a reduced scale: fine-tuning vs EWC on one
game sequence, and single-game agents whose summed score is the ceiling.

Every frame count of the paper's schedule is divided by ``--scale`` (preset ``ewc-atari-2017-scaled-<S>``, see
crl/run/presets.py). Each run is a ``python -m crl train`` subprocess, one after another; then ``python -m crl report``
over the sequence runs with the single-game runs as references, and a comparison of total clipped human-normalized
scores (the paper's metric) written to OUT/comparison.md. Rerunning the same command resumes: finished runs (with
metrics.json) are skipped, interrupted ones continue from their last checkpoint (``crl train --resume``), and a run
directory that holds another experiment (other games, seed, scale or cycles) is refused.

    python scripts/reproduce_ewc_atari.py --scale 20 --seeds 0,1,2 --device cuda       # GPU: blocks of 250k steps
    python scripts/reproduce_ewc_atari.py --cpu --seeds 0,1                             # CPU demo, ~11 min a seed
    python scripts/reproduce_ewc_atari.py --scale 20 --dry-run                           # print the plan only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from crl.run import presets
from envs import resolve_game

REPO = Path(__file__).resolve().parents[1]

METHODS = ("finetune", "ewc", "single")  # "single": one single-game run per game (the ceiling)
# Pool games on which DQN visibly learns within a few hundred thousand agent steps (all in the Atari-100k benchmark,
# random play far below human), each recognized as one context by the Forget-Me-Not process.
DEFAULT_GAMES = ("boxing", "road_runner", "breakout", "pong", "freeway")
# The CPU demonstration: blocks of 1,000 steps, the paper's replay ratio (4x cheaper than the scaled preset's), a
# Fisher from 10 minibatches instead of 100, one evaluation episode cut at 400 steps. Its games have no negative
# rewards, so a cut episode cannot score above a full one (in Pong or Boxing it would hide the opponent's points).
CPU_SCALE = 5_000
CPU_GAMES = ("breakout", "road_runner")
CPU_SETTINGS = ("agent.train_freq=4", "ewc.fisher_batches=10", "eval.episodes=1", "eval.max_steps=400", "n_envs=2",
                "log_every=100")
RESERVED_KEYS = ("games", "method", "seed", "cycles", "steps_per_game", "run_dir", "device")  # the script sets these


@dataclass(frozen=True)
class PlannedRun:
    """One ``crl train`` invocation of the comparison."""

    name: str
    method: str  # the comparison's method: finetune, ewc or single
    seed: int
    games: tuple[str, ...]
    run_dir: Path
    argv: tuple[str, ...]
    expected: tuple[tuple[str, object], ...]  # config keys a run directory must hold to be this run (resuming)


@dataclass(frozen=True)
class Plan:
    """The runs in the order they are run, then the report over them."""

    runs: tuple[PlannedRun, ...]
    report_argv: tuple[str, ...] | None  # None when there is no sequence run to report on
    out: Path

    def sequence_runs(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.method != "single"]

    def single_runs(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.method == "single"]


def make_plan(scale: int, methods: list[str], games: list[str], seeds: list[int], out: Path, device: str = "auto",
              cycles: int = presets.CYCLES, sets: tuple[str, ...] = (), python: str = sys.executable) -> Plan:
    """Every run of the comparison with its command line, and the report command. Pure: nothing is run or read.

    Sequence runs train ``games`` in the given order for ``cycles`` cycles. A single-game run trains one game for
    as many steps as that game gets in the sequence (``cycles`` blocks), in one block.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be among {', '.join(METHODS)}, got {','.join(methods) or 'none'}")
    if scale < 1 or cycles < 1:
        raise ValueError(f"scale and cycles must be positive, got scale {scale}, cycles {cycles}")
    for item in sets:
        key = item.partition("=")[0].strip()
        if key in RESERVED_KEYS:
            raise ValueError(f"--set {key}=... is set by the script; use its own option instead")
    preset = f"{presets.SCALED}-{scale}"
    block_steps = presets.scaled_overrides(scale, 0)["steps_per_game"]
    common = ["--preset", preset, "--device", device, *(arg for item in sets for arg in ("--set", item))]
    runs: list[PlannedRun] = []

    def add(name: str, method: str, seed: int, run_games: list[str], train_method: str, run_cycles: int, steps: int) -> None:
        run_dir = out / "runs" / name
        argv = (python, "-m", "crl", "train", *common, "--seed", str(seed), "--games", ",".join(run_games),
                "--method", train_method, "--cycles", str(run_cycles), "--steps-per-game", str(steps),
                "--run-dir", str(run_dir))
        expected = (("games", list(run_games)), ("method", train_method), ("seed", seed), ("cycles", run_cycles),
                    ("steps_per_game", steps))
        runs.append(PlannedRun(name, method, seed, tuple(run_games), run_dir, argv, expected))

    for seed in seeds:
        for method in methods:
            if method == "single":
                for game in games:
                    add(f"single-{game}-s{seed}", method, seed, [game], "finetune", 1, block_steps * cycles)
            else:
                add(f"{method}-s{seed}", method, seed, games, method, cycles, block_steps)
    sequence = [str(r.run_dir) for r in runs if r.method != "single"]
    singles = [str(r.run_dir) for r in runs if r.method == "single"]
    report_argv = None
    if sequence:
        report_argv = (python, "-m", "crl", "report", *sequence, *(("--reference", *singles) if singles else ()),
                       "--out", str(out / "report"))
    return Plan(tuple(runs), report_argv, out)


# --- running -------------------------------------------------------------------------------------------


def run_state(run: PlannedRun) -> str:
    """``done`` (metrics.json written), ``resume`` (a checkpoint to continue from), ``stale`` (an interrupted run
    with nothing to resume from) or ``new``. A run directory holding another experiment is a ValueError."""
    config_file = run.run_dir / "config.yaml"
    if config_file.is_file():
        saved = yaml.safe_load(config_file.read_text()) or {}
        differ = [f"{key}: {saved.get(key)!r}, planned {value!r}" for key, value in run.expected if saved.get(key) != value]
        if differ:
            raise ValueError(f"{run.run_dir} holds another run ({'; '.join(differ)}); choose another --out")
    if (run.run_dir / "metrics.json").is_file():
        return "done"
    if any((run.run_dir / "checkpoints").glob("resume-*.zip")):
        return "resume"
    if run.run_dir.exists() and any(run.run_dir.iterdir()):
        return "stale"
    return "new"


def execute(run: PlannedRun, log_dir: Path) -> float:
    """Run (or resume) one training run with its output in ``log_dir``; seconds taken."""
    state = run_state(run)
    argv = list(run.argv)
    if state == "resume":
        argv = [*argv[:4], "--resume", str(run.run_dir)]
    elif state == "stale":
        aside = run.run_dir.with_name(f"{run.run_dir.name}.incomplete-{time.strftime('%Y%m%d-%H%M%S')}")
        run.run_dir.rename(aside)
        print(f"    {run.run_dir} had no checkpoint to resume from; moved to {aside.name}, starting over")
    log = log_dir / f"{run.name}.log"
    start = time.time()
    with open(log, "a") as f:
        f.write(f"$ {' '.join(argv)}\n")
        f.flush()
        result = subprocess.run(argv, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{run.name} failed (exit status {result.returncode}); see {log}")
    return time.time() - start


def total_clipped_hns(run: PlannedRun) -> float:
    return float(json.loads((run.run_dir / "metrics.json").read_text())["total_clipped_hns"])


def comparison(plan: Plan, scale: int) -> str:
    """Markdown table: total clipped HNS per method (mean and per seed) and the sum of the single-game agents."""
    rows: dict[str, dict[int, float]] = {}
    for run in plan.sequence_runs():
        rows.setdefault(run.method, {})[run.seed] = total_clipped_hns(run)
    ceiling: dict[int, float] = {}
    for run in plan.single_runs():
        ceiling[run.seed] = ceiling.get(run.seed, 0.0) + total_clipped_hns(run)
    if ceiling:
        rows["single-game agents, summed (ceiling)"] = ceiling
    seeds = sorted({r.seed for r in plan.runs})
    sequence = plan.sequence_runs()
    games = sequence[0].games if sequence else tuple(dict.fromkeys(r.games[0] for r in plan.single_runs()))
    lines = [
        f"Total clipped human-normalized score (sum over {len(games)} games of min(HNS, 1); at most {len(games)}) "
        f"at the end of training, scale 1/{scale}.",
        "",
        "| agent | mean | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|---:|" + "---:|" * len(seeds),
    ]
    for label, by_seed in rows.items():
        mean = sum(by_seed.values()) / len(by_seed)
        lines.append(f"| {label} | {mean:.3f} | " + " | ".join(f"{by_seed[s]:.3f}" if s in by_seed else "-" for s in seeds) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, help=f"divide every frame count of the paper by S (default {presets.DEFAULT_SCALE}; "
                        f"--cpu: {CPU_SCALE})")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated: finetune, ewc, single")
    parser.add_argument("--games", help=f"comma-separated, trained in this order (default {','.join(DEFAULT_GAMES)}; "
                        f"--cpu: {','.join(CPU_GAMES)})")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    parser.add_argument("--cycles", type=int, default=presets.CYCLES, help="visits per game in the sequence runs")
    parser.add_argument("--out", type=Path, help="output directory (default runs/reproduce-ewc-atari-x<S>)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every crl train")
    parser.add_argument("--cpu", action="store_true", help=f"the CPU demonstration: scale {CPU_SCALE}, "
                        f"{' and '.join(CPU_GAMES)}, --set {' --set '.join(CPU_SETTINGS)}")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    args = parser.parse_args(argv)

    scale = args.scale or (CPU_SCALE if args.cpu else presets.DEFAULT_SCALE)
    games = args.games.split(",") if args.games else list(CPU_GAMES if args.cpu else DEFAULT_GAMES)
    try:
        games = [resolve_game(g) for g in games]  # ROM ids, as run directories record them
    except ValueError as e:
        parser.error(str(e))
    sets = (*(CPU_SETTINGS if args.cpu else ()), *args.set)
    device = "cpu" if args.cpu and args.device == "auto" else args.device
    out = args.out or REPO / "runs" / f"reproduce-ewc-atari-x{scale}"
    try:
        plan = make_plan(scale, args.methods.split(","), games, [int(s) for s in args.seeds.split(",")], out, device,
                         args.cycles, sets)
    except ValueError as e:
        parser.error(str(e))

    print(f"EWC Atari reproduction at 1/{scale}: {len(plan.runs)} runs -> {out}")
    try:
        states = [run_state(run) for run in plan.runs]
    except ValueError as e:
        parser.error(str(e))
    for run, state in zip(plan.runs, states):
        print(f"  {run.name:28} [{state}] {' '.join(run.argv[2:])}")
    if args.dry_run:
        if plan.report_argv:
            print(f"  then: {' '.join(plan.report_argv[2:])}")
        return 0

    log_dir = out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    for i, run in enumerate(plan.runs, 1):
        if run_state(run) == "done":
            print(f"[{i}/{len(plan.runs)}] {run.name}: done already (total clipped HNS {total_clipped_hns(run):.3f})")
            continue
        print(f"[{i}/{len(plan.runs)}] {run.name}: training ({run_state(run)}), log {log_dir / (run.name + '.log')}", flush=True)
        seconds = execute(run, log_dir)
        print(f"[{i}/{len(plan.runs)}] {run.name}: {seconds / 60:.1f} min, total clipped HNS {total_clipped_hns(run):.3f}", flush=True)
    if plan.report_argv:
        print("report: " + " ".join(plan.report_argv[2:]), flush=True)
        subprocess.run(plan.report_argv, cwd=REPO, check=True)
    table = comparison(plan, scale)
    (out / "comparison.md").write_text(table)
    print(f"\n{table}\n{(time.time() - started) / 60:.1f} min in all; comparison written to {out / 'comparison.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
