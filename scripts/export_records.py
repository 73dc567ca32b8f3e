"""Copy the small records of a sweep's finished runs into a directory meant for git (no checkpoints, no models).

    python scripts/export_records.py SWEEP_DIR DEST
    python scripts/export_records.py --costs DEST      # what each configuration cost, as a markdown table

DEST mirrors the sweep directory: ``spec.yaml``, ``sweep.json`` (the finished runs with their attempts: wall
seconds, CPU seconds, peak memory) and ``runs/<name>/`` with config.yaml, evals.jsonl, blocks.jsonl, retention.csv,
metrics.json, run.json, plasticity.jsonl (where measured), usage.json (what each attempt cost, as the run recorded
it) and, for a run resumed from a checkpoint, resumes.jsonl (whether a block refilled its replay buffer), plus
``network.json``: the number of values in the trained Q-network (its parameters
and buffers, read from the model's weights). So ``crl sweep --report DEST`` regenerates the sweep's report from DEST
alone. Runs already in DEST are copied again (a finished run's records do not change); each run is written to a
temporary directory and renamed into place, so an interrupted export leaves no half-written run.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import zipfile
from pathlib import Path

import torch as th

from crl.run import rundir
from crl.sweep import state as state_mod

RECORDS = ("config.yaml", "evals.jsonl", "blocks.jsonl", "retention.csv", "metrics.json", "run.json", "resumes.jsonl",
           "plasticity.jsonl", rundir.USAGE)


def network_size(model_zip: Path) -> dict[str, int]:
    """Values in the online Q-network's saved tensors (``q_net.*`` of SB3's ``policy.pth``)."""
    with zipfile.ZipFile(model_zip) as archive:
        weights = th.load(io.BytesIO(archive.read("policy.pth")), map_location="cpu", weights_only=True)
    return {"q_net_values": int(sum(t.numel() for k, t in weights.items() if k.startswith("q_net.")))}


def export(sweep_dir: Path, dest: Path) -> list[str]:
    """Copy every finished run's records of ``sweep_dir`` to ``dest``; the names exported."""
    state = state_mod.load(sweep_dir)
    assert state is not None, "main checks that sweep_dir is a sweep directory"
    finished = {name: entry for name, entry in state["runs"].items() if state_mod.finished(sweep_dir, name)}
    for name in finished:
        src, target = state_mod.run_dir(sweep_dir, name), state_mod.run_dir(dest, name)
        tmp = target.with_name(f".{name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for record in RECORDS:
            if (src / record).exists():
                shutil.copy2(src / record, tmp / record)
        if (src / "model.zip").exists():
            (tmp / "network.json").write_text(json.dumps(network_size(src / "model.zip")) + "\n")
        else:  # the model was cleared from the sweep: a size measured before, by an export into it or into dest
            kept = next((d / "network.json" for d in (src, target) if (d / "network.json").exists()), None)
            if kept is not None:
                shutil.copy2(kept, tmp / "network.json")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    rundir.atomic_write(dest / "spec.yaml", (sweep_dir / "spec.yaml").read_text())
    state_mod.save(dest, {**state, "runs": finished})
    return list(finished)


def run_usage(entry: dict, run: Path | None = None) -> dict[str, float]:
    """What one run cost over all its attempts (a run stopped and resumed has several): wall and CPU seconds
    summed, peak memory the largest; a figure no attempt recorded is left out. The wall seconds are the sweep's
    (``entry``'s attempts). The CPU seconds and peak memory are the sweep's too, unless ``run`` (the run's directory)
    has its own ``usage.json``: that also holds the attempts a killed sweep lost, so it counts instead, with the
    sweep's attempts that ended before its first one began (made by a crl from before the file existed)."""
    usage = _totals(entry["attempts"])
    counted = entry["attempts"]
    own = json.loads((run / rundir.USAGE).read_text()) if run is not None and (run / rundir.USAGE).is_file() else []
    if own:
        began = min(a["start"] for a in own)
        before = [a for a in entry["attempts"] if a.get("end", began) < began]
        counted = [*before, *(_with_sweeps_figures(a, entry["attempts"]) for a in own)]
        usage.update(_totals([{k: a[k] for k in ("cpu_s", "max_rss_mib") if k in a} for a in counted]))
    # a run whose earliest counted attempt is a resume lost its first attempt's record: its CPU is a lower bound
    usage["first_attempt_lost"] = bool(counted) and min(counted, key=lambda a: a.get("start", "")).get("mode") == "resume"
    return usage


def _with_sweeps_figures(own: dict, sweeps: list[dict]) -> dict:
    """A run's own record of an attempt, with the sweep's figures where they are larger: an attempt killed before
    its first checkpoint (no ``outcome``) recorded only its start, while a sweep that saw it die has its whole cost."""
    if "outcome" in own:
        return own
    same = [s for s in sweeps if s.get("start", "~") <= own["start"] <= s.get("end", "")]
    return {**own, **{key: max(own.get(key, 0.0), *(s[key] for s in same if key in s))
                      for key in ("cpu_s", "max_rss_mib") if any(key in s for s in same)}}


def _totals(attempts: list[dict]) -> dict[str, float]:
    """Over ``attempts``: wall and CPU seconds summed, peak memory the largest, each where any attempt has it."""
    usage = {key: float(sum(a[key] for a in attempts if key in a))
             for key in ("duration_s", "cpu_s") if any(key in a for a in attempts)}
    if any("max_rss_mib" in a for a in attempts):
        usage["max_rss_mib"] = max(a["max_rss_mib"] for a in attempts if "max_rss_mib" in a)
    return usage


def env_steps(run: Path) -> int:
    """The environment steps a finished run trained for: its last block's end."""
    blocks = [json.loads(line) for line in (run / "blocks.jsonl").read_text().splitlines() if line.strip()]
    return int(blocks[-1]["end_step"])


def costs(dest: Path) -> str:
    """Per configuration (method and the settings the sweep varied, seeds pooled): runs, wall minutes, CPU minutes,
    env steps per CPU-second and peak memory of the run's process (per run over all its attempts: the run's own
    ``usage.json`` where it has one, else what the sweep recorded, see :func:`run_usage`), and the size of the
    trained Q-network; then the whole stage's totals."""
    import numpy as np

    state = state_mod.load(dest)
    groups: dict[str, list[tuple[dict, dict]]] = {}
    for name, entry in state["runs"].items():
        label = " ".join(f"{k}={v}" for k, v in entry["overrides"].items() if k != "seed")
        if entry["kind"] != "run":
            label = "reference runs (single game)"
        run = state_mod.run_dir(dest, name)
        network = json.loads((run / "network.json").read_text()) if (run / "network.json").exists() else {}
        usage = run_usage(entry, run)
        if "cpu_s" in usage and not usage["first_attempt_lost"]:
            usage["steps_per_cpu_s"] = env_steps(run) / usage["cpu_s"]
        groups.setdefault(label, []).append((usage, network))
    lines = ["| configuration | runs | wall min | CPU min | env steps per CPU-s | peak RSS MiB | Q-network values |",
             "|---|---|---|---|---|---|---|"]
    for label, runs in groups.items():
        def mean(key: str, scale: float = 1.0) -> str:
            values = [usage[key] / scale for usage, _ in runs if key in usage]
            return f"{np.mean(values):.1f}" + (f" ({len(values)} runs)" if 0 < len(values) < len(runs) else "") \
                if values else "not recorded"

        sizes = sorted({n["q_net_values"] for _, n in runs if "q_net_values" in n})
        unsized = sum("q_net_values" not in n for _, n in runs)
        lost = sum(usage["first_attempt_lost"] for usage, _ in runs)
        at_least = "at least " if lost else ""
        cpu = at_least + mean("cpu_s", 60) + (f" ({lost} run(s) without their first attempt's record)" if lost else "")
        lines.append(f"| {label} | {len(runs)} | {at_least}{mean('duration_s', 60)} | {cpu} | "
                     f"{mean('steps_per_cpu_s')} | {mean('max_rss_mib')} | "
                     f"{', '.join([*(f'{s:,}' for s in sizes), *([f'not recorded ({unsized} runs)'] if unsized else [])])} |")
    usages = [run_usage(entry, state_mod.run_dir(dest, name)) for name, entry in state["runs"].items()]
    cpu = [u["cpu_s"] for u in usages if "cpu_s" in u]
    lost = sum(u["first_attempt_lost"] for u in usages)
    lines.append(f"| all | {len(usages)} | {'at least ' if lost else ''}"
                 f"{sum(u.get('duration_s', 0) for u in usages) / 60:.1f} in all | {'at least ' if lost else ''}"
                 f"{sum(cpu) / 60:.1f} in all ({len(cpu)} runs recorded"
                 + (f"; {lost} without their first attempt" if lost else "") + ") | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--costs"] and len(argv) == 2:
        print(costs(Path(argv[1])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    if not (args.sweep_dir / state_mod.STATE).is_file():
        print(f"export_records: {args.sweep_dir} is not a sweep directory (no {state_mod.STATE})", file=sys.stderr)
        return 2
    names = export(args.sweep_dir, args.dest)
    print(f"export_records: {len(names)} finished runs of {args.sweep_dir} -> {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
