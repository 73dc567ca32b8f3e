"""The run directory: file names, atomic writes, the append-only records a run leaves behind, the lock that makes
one process its only writer, and the fingerprint of the configuration its records were made with.

    config.yaml  run.json  evals.jsonl  blocks.jsonl  retention.csv  metrics.json  resumes.jsonl  usage.json  tb/
    checkpoints/resume-<step>.{zip,sha256}  checkpoints/task-<i>.zip  model.zip  .crl.lock
"""

from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
import io
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterable

CONFIG, EVALS, BLOCKS, RETENTION, METRICS, TB, CHECKPOINTS, MODEL = (
    "config.yaml", "evals.jsonl", "blocks.jsonl", "retention.csv", "metrics.json", "tb", "checkpoints", "model.zip",
)
RUN = "run.json"  # the experiment's fingerprint and the configuration keys it covers, written before training
RESUMES = "resumes.jsonl"
USAGE = "usage.json"  # what each attempt of the run cost its own process (UsageRecord)
PLASTICITY = "plasticity.jsonl"
LOCK = ".crl.lock"
TMP_SUFFIX = ".tmp"

# Configuration keys a resumed run may change (they extend the budget or do not touch the experiment); every other
# key is part of the experiment's fingerprint.
RESUME_MAY_CHANGE = ("cycles", "device", "log_every", "checkpoint.every", "checkpoint.replay", "checkpoint.keep")
# Disk-full errors: reported as one line; the temporary files are removed.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


# --- writing ------------------------------------------------------------------------------------------


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``.

    On any failure (a full disk) the temporary file is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def repair_torn_tail(path: Path) -> bool:
    """Cut a partial last line (a write torn by a crash) off a JSON-lines file; True if there was one.

    Appending after a torn line would glue the next record onto it, and readers would lose both.
    """
    path = Path(path)
    if not path.exists():
        return False
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return False
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return False
        f.seek(0)
        data = f.read()
        f.truncate(data.rfind(b"\n") + 1)  # rfind gives -1 when there is no complete line: truncate to 0
        f.flush()
        os.fsync(f.fileno())
    return True


def append_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append one JSON object per line (after cutting off a torn last line), flushed to disk before returning."""
    repair_torn_tail(path)
    with open(path, "a") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def update_last_jsonl(path: Path, changes: dict[str, Any]) -> None:
    """Rewrite the last record of a JSON-lines file with ``changes`` applied (atomically)."""
    lines = Path(path).read_text().splitlines(keepends=True)
    last = dict(json.loads(lines[-1]), **changes)
    atomic_write(path, "".join(lines[:-1]) + json.dumps(last) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All complete records of a JSON-lines file (a torn last line from a crash is skipped)."""
    if not Path(path).exists():
        return []
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def write_retention(path: Path, games: list[str], rows: list[list[float]]) -> None:
    """``retention.csv``: header ``after_task,<game>,...`` and one row of mean returns per finished block."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["after_task", *games])
    for block, row in enumerate(rows):
        writer.writerow([block, *(f"{v:.6g}" for v in row)])
    atomic_write(path, out.getvalue())


def read_retention(path: Path) -> tuple[list[str], list[list[float]]]:
    """Games and rows of a ``retention.csv``."""
    with open(path) as f:
        rows = list(csv.reader(f))
    return rows[0][1:], [[float(v) for v in row[1:]] for row in rows[1:]]


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2) + "\n")


def remove_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporary files of interrupted writes in ``run_dir`` and its checkpoints; returns them.

    Only safe while holding the run's lock (no other writer can be midway through a write).
    """
    run_dir = Path(run_dir)
    found = [*run_dir.glob("*" + TMP_SUFFIX), *(run_dir / CHECKPOINTS).glob("*" + TMP_SUFFIX)]
    for path in found:
        path.unlink(missing_ok=True)
    return found


def clear_records(run_dir: Path) -> None:
    """Remove what a run wrote while training (records, TensorBoard events, task snapshots, the final model),
    keeping its configuration, ``run.json``, ``resumes.jsonl`` and ``usage.json`` (what the attempts cost is spent):
    the state of a run about to start."""
    run_dir = Path(run_dir)
    for name in (EVALS, BLOCKS, PLASTICITY, RETENTION, METRICS, MODEL):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / TB, ignore_errors=True)
    for path in (run_dir / CHECKPOINTS).glob("task-*.zip"):
        path.unlink()
    remove_temporaries(run_dir)


class UsageRecord:
    """``usage.json``: what each attempt of the run (its fresh start, then each ``--resume``) cost its own process.

    A list with one record per attempt: ``start`` (local time), ``mode`` (``fresh`` from step 0, ``resume`` from a
    checkpoint), ``from_step``, ``step`` (the step reached), ``cpu_s`` (user + system seconds of the process, all its
    threads), ``max_rss_mib`` (its peak resident memory), ``written`` (when these figures were taken) and, once the
    attempt ends in ``crl train``'s hands, ``outcome``: ``finished``, ``stopped`` (a signal: checkpointed) or
    ``failed``; an attempt without one was killed. A sweep records its attempts' cost only when a run's supervisor
    sees it exit, so killing the whole process tree at once (a machine's session ending) loses the attempt there;
    the run rewrites this file (atomically) when an attempt starts, at every checkpoint and at its end, so a SIGKILL
    loses at most the CPU time since the last checkpoint. Earlier attempts are kept as they are (a file that is not
    a JSON list, edited by hand, starts over).
    """

    def __init__(self, run_dir: Path, mode: str, from_step: int) -> None:
        self.path = Path(run_dir) / USAGE
        try:
            earlier = json.loads(self.path.read_text())
        except (OSError, ValueError):
            earlier = []
        self.earlier = earlier if isinstance(earlier, list) else []
        self.attempt: dict[str, Any] = {"start": time.strftime("%Y-%m-%dT%H:%M:%S"), "mode": mode,
                                        "from_step": int(from_step)}
        self.write(from_step)

    def write(self, step: int, outcome: str | None = None) -> None:
        """Take the process's figures now, at ``step``, and rewrite the file; ``outcome`` ends the attempt."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        rss_bytes = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB on Linux
        self.attempt.update(step=int(step), cpu_s=round(usage.ru_utime + usage.ru_stime, 1),
                            max_rss_mib=round(rss_bytes / (1 << 20), 1),
                            written=time.strftime("%Y-%m-%dT%H:%M:%S"))
        if outcome is not None:
            self.attempt["outcome"] = outcome
        write_json(self.path, [*self.earlier, self.attempt])


# --- the directory's one writer ----------------------------------------------------------------------


class RunDirBusy(Exception):
    """Another process holds the run directory's lock; the message names its pid."""


class RunLock:
    """An exclusive advisory lock (``flock``) on ``run_dir/.crl.lock``, held while a process writes the run.

    The kernel drops it when the process ends, however it ends (kill -9 included), so it is never stale; the file
    itself stays (deleting it would let a second process lock a new file while the first still holds the old one).
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunDirBusy(f"run directory {self.path.parent} is in use by another crl process (pid {holder}); "
                             "wait for it to end or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire() if self.fd is None else self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def is_empty(run_dir: Path) -> bool:
    """True if ``run_dir`` holds nothing but (perhaps) its lock file and ``usage.json``, the cost of attempts that
    left nothing to resume from: a run may start in it, and adds its attempt to that record."""
    return all(p.name in (LOCK, USAGE) for p in Path(run_dir).iterdir())


def clear_for_fresh_start(run_dir: Path) -> None:
    """Remove everything a run wrote but ``usage.json`` and the lock: a failed attempt that left no usable
    checkpoint is started over in the same directory, and what it cost stays on record."""
    for path in Path(run_dir).iterdir():
        if path.name in (LOCK, USAGE):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


# --- the experiment's fingerprint --------------------------------------------------------------------


def experiment(cfg: dict[str, Any]) -> dict[str, Any]:
    """The flat configuration keys that define the experiment (all but ``RESUME_MAY_CHANGE`` and ``run_dir``),
    normalised through JSON (tuples become lists) so that a saved copy compares equal."""
    from crl.run.config import flatten

    flat = {k: v for k, v in flatten(cfg).items() if k not in RESUME_MAY_CHANGE and k != "run_dir"}
    return json.loads(json.dumps(flat, sort_keys=True))


def fingerprint(cfg: dict[str, Any]) -> str:
    """A short hash of :func:`experiment`: equal for the same experiment, different after any change to it."""
    return hashlib.sha256(json.dumps(experiment(cfg), sort_keys=True).encode()).hexdigest()[:16]


def write_run_record(run_dir: Path, cfg: dict[str, Any]) -> None:
    """``run.json``: the fingerprint and the experiment keys, what a resume checks ``config.yaml`` against."""
    write_json(Path(run_dir) / RUN, {"fingerprint": fingerprint(cfg), "experiment": experiment(cfg)})


def read_run_record(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``run.json``, or None for a run directory written before it existed (or a damaged one)."""
    try:
        record = json.loads((Path(run_dir) / RUN).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("experiment"), dict) else None


def changed_keys(saved: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    """Experiment keys whose value in ``cfg`` differs from ``saved`` (an :func:`experiment` dict). Keys on one side
    only (added to or removed from crl since the run started) are not counted: no configuration file can set them."""
    now = experiment(cfg)
    return sorted(k for k in saved if k in now and saved[k] != now[k])
