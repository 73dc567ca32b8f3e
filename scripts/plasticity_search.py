"""The plasticity protocol search in one table: per protocol, fine-tuning's later visits against a fresh network's.

Each argument is a sweep's records directory (a spec.yaml, sweep.json and a report written by
``crl sweep --report``). A row is that sweep's fine-tuning group: the protocol change (the spec's ``base`` keys
beyond the preset, ``device`` left out), the AUC gap over later visits (the number the protocol rule chooses by)
and each game's alone (over the seeds, then per seed: a confirmation on a new seed reads that seed's own
cell; the fresh network is the mean over the reference seeds, as in ``crl report``), the last visit's final gap, the first game's probe at the last block end (dead units,
srank), fine-tuning's CPU seconds per run and the whole sweep's CPU hours (references included).

    python scripts/plasticity_search.py benchmarks/results/plasticity/tune benchmarks/results/plasticity/protocol-*

Exit status 2, with one line, when a directory is not such a sweep.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from crl.report.compute import later_visits_auc_gap_by_game

REFERENCE_METHOD = "finetune"


def change(spec: dict[str, Any]) -> str:
    """The spec's departure from its preset, as ``key=value`` pairs (``none`` when there is none)."""
    base = {k: v for k, v in (spec.get("base") or {}).items() if k != "device"}
    return ", ".join(f"{k}={v}" for k, v in base.items()) or "none (the preset)"


def cpu_seconds(sweep: dict[str, Any]) -> list[float]:
    """CPU seconds of each fine-tuning sequence run, over all its attempts."""
    return [sum(a.get("cpu_s", 0.0) for a in run["attempts"]) for run in sweep["runs"].values()
            if run["kind"] == "run" and run["overrides"].get("method") == REFERENCE_METHOD]


def row(records: Path) -> str:
    """The table row of one sweep's fine-tuning group."""
    try:
        return _row(records)
    except (OSError, StopIteration, ValueError, yaml.YAMLError, KeyError, IndexError, TypeError, AttributeError) as e:
        reason = " ".join(str(e).split())  # one line, whatever the parser printed
        raise ValueError(f"{records} is not a sweep with a report ({type(e).__name__}: {reason})") from None


def _row(records: Path) -> str:
    spec = yaml.safe_load((records / "spec.yaml").read_text())
    sweep = json.loads((records / "sweep.json").read_text())
    summary = json.loads(next(records.glob("report/**/summary.json")).read_text())
    group = next((g for g in summary["groups"] if g["label"] == REFERENCE_METHOD), None)
    if group is None:
        raise ValueError(f"no '{REFERENCE_METHOD}' group")
    later = group["later_visits_auc_gap"]
    by_game = _by_game(group["later_visits_auc_gap_by_game"])
    runs = sorted(group["runs"], key=lambda r: r["seed"])
    per_seed = "; ".join(f"s{r['seed']}: " + (_by_game(later_visits_auc_gap_by_game([r["plasticity_blocks"]])) or "n/a")
                         for r in runs)
    last_visit = group["plasticity_by_visit"][-1]
    measured = [r["plasticity_measures"] for r in group["runs"] if r["plasticity_measures"]]
    first_game = next(iter(measured[0][0]["games"])) if measured else None  # probed from the first block end
    dead = [m[-1]["games"][first_game]["dormant_0"] for m in measured]
    srank = [m[-1]["games"][first_game]["stable_rank"] for m in measured]
    cpu = cpu_seconds(sweep)
    sweep_hours = sum(a.get("cpu_s", 0.0) for run in sweep["runs"].values() for a in run["attempts"]) / 3600
    cells = [f"`{records.name}`", change(spec), str(later["n"]), _num(later["mean"]), by_game or "n/a", per_seed,
             str(last_visit["visit"]), _num(last_visit["final_gap"]["mean"]), _num(_mean(dead)), _num(_mean(srank), 0),
             _num(_mean(cpu), 0), _num(sweep_hours)]
    return "| " + " | ".join(cells) + " |"


def _by_game(stats: dict[str, dict[str, Any]]) -> str:
    return ", ".join(f"{game.split('/')[-1]} {_num(stat['mean'])}" for game, stat in stats.items() if stat["n"])


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


HEADER = ["records", "change of protocol", "seeds", "AUC gap, later visits", "per game", "per seed", "last visit",
          "final gap, last visit", "dead units (first game's probe, last block)", "srank (same)",
          "CPU-s per fine-tuning run", "CPU-h, whole sweep"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, nargs="+", help="sweep records directories")
    args = parser.parse_args(argv)
    try:
        rows = [row(r) for r in args.records]
    except ValueError as e:
        print(f"plasticity_search: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER), *rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
