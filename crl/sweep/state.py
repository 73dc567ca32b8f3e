"""The sweep directory and its state file.

    DIR/sweep.json          the spec's fingerprint and every run: kind, settings, status, attempts (written atomically,
                            by the sweep process only)
    DIR/spec.yaml           the spec as given
    DIR/configs/<name>.yaml the resolved configuration a fresh run starts from (crl train --config)
    DIR/runs/<name>/        an ordinary crl train run directory
    DIR/logs/<name>.log     the run's output, every attempt appended
    DIR/locks/<name>.lock   held (flock) by the process running the run, for as long as it runs
    DIR/report/             crl report over the finished runs

A run is finished when its ``metrics.json`` exists; the state file records the rest (failed, interrupted, attempts
with their durations, how each started) for progress, the time estimate and the user.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from crl.run import rundir

STATE = "sweep.json"
STATUSES = ("pending", "running", "done", "failed", "interrupted")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def run_dir(out: Path, name: str) -> Path:
    return out / "runs" / name


def config_file(out: Path, name: str) -> Path:
    return out / "configs" / f"{name}.yaml"


def log_file(out: Path, name: str) -> Path:
    return out / "logs" / f"{name}.log"


def lock_file(out: Path, name: str) -> Path:
    return out / "locks" / f"{name}.lock"


def finished(out: Path, name: str) -> bool:
    return (run_dir(out, name) / rundir.METRICS).is_file()


def load(out: Path) -> dict[str, Any] | None:
    """The state of the sweep in ``out``; None if there is none."""
    path = out / STATE
    if not path.is_file():
        return None
    state = json.loads(path.read_bytes().decode("utf-8"))  # ValueError if it is not (UTF-8) JSON
    if not isinstance(state, dict) or not isinstance(state.get("runs"), dict) or not all(
            isinstance(e, dict) and isinstance(e.get("attempts"), list) and "kind" in e for e in state["runs"].values()):
        raise ValueError("not a sweep state: it must map 'runs' to one object per run with its kind and attempts")
    return state


def save(out: Path, state: dict[str, Any]) -> None:
    state["updated"] = now()
    rundir.write_json(out / STATE, state)


def new_state(fingerprint: str, source: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A state for a sweep not started before: every run pending."""
    return {
        "fingerprint": fingerprint,
        "spec": source,
        "created": now(),
        "runs": {r["name"]: {"kind": r["kind"], "overrides": r["overrides"], "status": "pending", "attempts": []}
                 for r in runs},
    }


def run_seconds(entry: dict[str, Any]) -> float:
    """Time spent on a run over all its attempts."""
    return sum(a.get("duration_s") or 0.0 for a in entry["attempts"])
