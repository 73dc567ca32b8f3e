"""``crl sweep SPEC.yaml`` and ``crl sweep --report DIR``: prepare the sweep directory, run, report."""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import os
import re
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from crl.run.config import RunConfig
from crl.run import config as config_mod
from crl.run import rundir
from crl.sweep import spec as spec_mod
from crl.sweep import state as state_mod
from crl.sweep.spec import SpecError, Sweep

RAY_CONNECT_TIMEOUT = 10.0  # seconds to reach --ray HOST:PORT before it is an error
RAY_MISSING = 'crl sweep --ray needs Ray, an optional extra: pip install -e ".[ray]"'


def run_command(args: argparse.Namespace) -> int:
    if args.report is not None:
        if args.spec or args.dry_run or args.ray is not None or args.workers is not None or args.out:
            raise SpecError("crl sweep --report DIR takes no spec and no other option")
        return report(Path(args.report))
    if not args.spec:
        raise SpecError("give a sweep spec (crl sweep SPEC.yaml) or --report DIR")
    if args.workers is not None and args.workers < 1:
        raise SpecError(f"--workers must be at least 1, got {args.workers}")
    sweep = spec_mod.expand(spec_mod.load(args.spec), source=args.spec)
    out = Path(args.out) if args.out else Path("runs") / f"sweep-{Path(args.spec).stem}"
    if args.dry_run:
        print(spec_mod.describe(sweep) + f"-> {out}/runs/<name>")
        return 0
    if args.ray is not None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise SpecError(RAY_MISSING) from None
        check_ray_address(args.ray)
    out = out.resolve()
    lock, state = prepare(out, sweep, Path(args.spec))
    try:
        return run(out, sweep, state, args.workers, args.ray)
    finally:
        lock.close()


def check_ray_address(address: str, timeout: float = RAY_CONNECT_TIMEOUT) -> None:
    """A ``HOST:PORT`` (or ``ray://HOST:PORT``) that nothing answers on is one line, within ``timeout`` seconds:
    Ray itself retries an unreachable address for minutes."""
    address = address or os.environ.get("RAY_ADDRESS", "")
    match = re.fullmatch(r"(?:ray://)?\[?([^\[\]]+?)\]?:(\d+)", address.strip())
    if match is None:  # "" (a local cluster or RAY_ADDRESS), "auto": Ray finds the cluster itself
        return
    host, port = match.group(1), int(match.group(2))
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise SpecError(f"--ray {address}: cannot reach a Ray cluster there ({e.strerror or e}); is `ray start "
                        "--head` running on that host and port?") from None


def prepare(out: Path, sweep: Sweep, spec_path: Path) -> tuple[Any, dict[str, Any]]:
    """Check ``out`` holds this sweep or nothing, lock it, write the configs, and reconcile the state with the disk."""
    old = None
    if out.exists():
        if not out.is_dir():
            raise SpecError(f"--out {out} exists and is not a directory")
        try:
            old = state_mod.load(out)
        except ValueError as e:
            raise SpecError(f"{out / state_mod.STATE} is unreadable ({e}); move it aside to start over") from e
        if old is None and any(out.iterdir()):
            raise SpecError(f"{out} exists and is not a sweep directory (no {state_mod.STATE}); choose another --out")
    if old is not None and old.get("fingerprint") != sweep.fingerprint:
        if not extends(out, sweep):
            names, before = [r.name for r in sweep.runs], list(old.get("runs", {}))
            added, removed = len(set(names) - set(before)), len(set(before) - set(names))
            raise SpecError(f"{out} holds another sweep (started from {old.get('spec')}; this spec has {added} new "
                            f"runs, {removed} fewer, or other settings); choose another --out")
        added = [r for r in sweep.runs if r.name not in old["runs"]]
        print(f"crl sweep: the spec adds {len(added)} runs to the sweep in {out}; its {len(old['runs'])} runs are "
              "kept", file=sys.stderr)
        old["fingerprint"], old["spec"] = sweep.fingerprint, str(spec_path)
        old["runs"].update({r.name: {"kind": r.kind, "overrides": r.overrides, "status": "pending", "attempts": []}
                            for r in added})
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SpecError(f"cannot create --out {out}: {e.strerror or e}") from e
    lock = open(out / "sweep.lock", "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise SpecError(f"another crl sweep is running on {out}") from None
    rundir.atomic_write(out / "spec.yaml", spec_path.read_text())
    (out / "configs").mkdir(exist_ok=True)
    for run in sweep.runs:
        cfg = dataclasses.replace(run.config, run_dir=str(state_mod.run_dir(out, run.name)))
        rundir.atomic_write(state_mod.config_file(out, run.name), config_mod.dump(cfg))
    state = old or state_mod.new_state(sweep.fingerprint, str(spec_path),
                                       [{"name": r.name, "kind": r.kind, "overrides": r.overrides} for r in sweep.runs])
    for r in sweep.runs:  # records exported by scripts/export_records.py hold only the finished runs
        state["runs"].setdefault(r.name, {"kind": r.kind, "overrides": r.overrides, "status": "pending", "attempts": []})
    for name, entry in state["runs"].items():
        if state_mod.finished(out, name):
            entry["status"] = "done"
        elif state_mod.run_dir(out, name).exists():
            entry["status"] = "interrupted"  # started before and not finished: resumed where it can be
        else:
            entry["status"] = "pending"
    state_mod.save(out, state)
    return lock, state


def extends(out: Path, sweep: Sweep) -> bool:
    """Whether ``sweep`` only adds runs to the one in ``out`` (more seeds, more values, more methods): every run
    of the stored spec is in it under the same name with the same settings, so finished runs stay valid."""
    try:
        before = spec_mod.expand(spec_mod.load(out / "spec.yaml"), source=str(out / "spec.yaml"))
    except SpecError:
        return False
    now = {r.name: (r.kind, r.layers) for r in sweep.runs}
    return all(now.get(r.name) == (r.kind, r.layers) for r in before.runs)


def cpus_gpus(sweep: Sweep, cfg: RunConfig) -> tuple[float, float]:
    """What one run asks for: the spec's resources, else its torch threads (one on the CPU) and a GPU on cuda."""
    cpus = sweep.cpus if sweep.cpus is not None else float(cfg.torch_threads or 1)
    gpus = sweep.gpus if sweep.gpus is not None else (1.0 if cfg.device == "cuda" else 0.0)
    return cpus, gpus


def run(out: Path, sweep: Sweep, state: dict[str, Any], workers: int | None, ray_address: str | None) -> int:
    from crl.sweep import execute

    jobs = []
    for planned in sweep.runs:
        if state["runs"][planned.name]["status"] == "done":
            continue
        cpus, gpus = cpus_gpus(sweep, planned.config)
        jobs.append({"name": planned.name, "cpus": cpus, "gpus": gpus,
                     "run_dir": str(state_mod.run_dir(out, planned.name)),
                     "config_file": str(state_mod.config_file(out, planned.name)),
                     "log_file": str(state_mod.log_file(out, planned.name)),
                     "lock_file": str(state_mod.lock_file(out, planned.name))})
    cpus = max((j["cpus"] for j in jobs), default=1.0)
    gpus = max((j["gpus"] for j in jobs), default=0.0)
    if ray_address is not None:
        with tempfile.TemporaryFile() as said:  # Ray's C++ client logs each failed retry on stderr itself
            saved = os.dup(2)
            os.dup2(said.fileno(), 2)
            try:
                backend: Any = execute.RayBackend(ray_address)
            except (ConnectionError, ValueError, RuntimeError, TimeoutError) as e:  # Ray's own: one line
                raise SpecError(f"--ray {ray_address}: cannot connect to a Ray cluster there: "
                                f"{' '.join(str(e).split())[:200]}") from None
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            said.seek(0)
            sys.stderr.write(said.read().decode(errors="replace"))  # connected: what Ray said, as it said it
        workers = workers or backend.capacity(cpus, gpus)
        where = "on the Ray cluster"
    else:
        workers = workers or max(1, int(len(os.sched_getaffinity(0)) // cpus))
        backend = execute.LocalBackend(workers)
        where = "here"
    done = len(sweep.runs) - len(jobs)
    again = sum(state["runs"][j["name"]]["status"] == "interrupted" for j in jobs)
    print(f"crl sweep: {len(sweep.runs)} runs ({done} finished before, {again} to continue), {workers} at a time "
          f"{where} -> {out}", file=sys.stderr, flush=True)
    try:
        stopped = execute.execute(out, state, jobs, backend, workers, lambda: state_mod.save(out, state))
    finally:
        backend.close()
        state_mod.save(out, state)
    if stopped is not None:
        print("crl sweep: stopped; rerun the same command to continue (finished runs are kept, the others resume)",
              file=sys.stderr)
        return 128 + stopped
    failed = [n for n, e in state["runs"].items() if e["status"] == "failed"]
    status = report(out, state)
    if failed:
        print(f"crl sweep: {len(failed)} run(s) failed: {', '.join(failed)}; their logs are in {out / 'logs'}; "
              "rerun the same command to retry them", file=sys.stderr)
        return 1
    return status


def report(out: Path, state: dict[str, Any] | None = None) -> int:
    """``crl report`` over the finished runs, one report per game sequence, references wired in: ``DIR/report``."""
    from crl.report import command as report_mod

    if state is None:
        if not out.is_dir():
            raise SpecError(f"{out} does not exist")
        try:
            state = state_mod.load(out)
        except ValueError as e:
            raise SpecError(f"{out / state_mod.STATE} is unreadable ({e})") from e
        if state is None:
            raise SpecError(f"{out} is not a sweep directory (no {state_mod.STATE})")
    finished = [(n, e["kind"]) for n, e in state["runs"].items() if state_mod.finished(out, n)]
    missing = [n for n in state["runs"] if not state_mod.finished(out, n)]
    if missing:
        print(f"crl sweep: the report leaves out {len(missing)} of {len(state['runs'])} runs, not finished (no "
              f"metrics.json): {', '.join(missing)}", file=sys.stderr)
    sequences: dict[tuple[Any, ...], list[Path]] = {}
    references: list[tuple[str, Path]] = []
    for name, kind in finished:
        path = state_mod.run_dir(out, name)
        cfg = yaml.safe_load((path / rundir.CONFIG).read_text())
        if kind == "reference":
            references.append((cfg["games"][0], path))
        else:
            sequences.setdefault((tuple(cfg["games"]), cfg["cycles"]), []).append(path)
    if not sequences:
        print(f"crl sweep: no finished run to report yet in {out}", file=sys.stderr)
        return 1
    status = 0
    for (games, cycles), paths in sequences.items():
        target = out / "report"
        if len(sequences) > 1:
            target = target / (spec_mod.slug(list(games)) + (f"-x{cycles}" if cycles > 1 else ""))
        refs = [str(p) for game, p in references if game in games]
        argv = [*map(str, paths), "--out", str(target), *(["--reference", *refs] if refs else [])]
        print(f"crl sweep: crl report {' '.join(argv)}", file=sys.stderr, flush=True)
        parser = argparse.ArgumentParser(prog="crl report")
        report_mod.add_arguments(parser)
        status = max(status, report_mod.main(parser.parse_args(argv)))
    return status
