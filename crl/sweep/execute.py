"""Running a sweep's runs: each a ``crl train`` subprocess, in local worker threads or as Ray tasks.

:func:`run_one` is what a worker does for one run, here or on a Ray node: take the run's lock (a previous attempt
still stopping holds it), then resume the run from its newest good checkpoint (``crl train --resume``) or start it
fresh (a directory left without a usable checkpoint is cleared first, all but ``usage.json``: what the lost attempt
cost stays on record), wait, and report how it went. The child runs
in its own session, so a Ctrl-C at the terminal reaches the sweep alone, which stops each run once (SIGTERM: the run
checkpoints and exits); if the sweep dies, the child's parent-death signal does the same (crl.sweep.child).

:func:`execute` is the sweep process's loop: it keeps ``workers`` runs in flight, records every start and end in the
state file, and prints one progress line per change.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import crl
from crl.run import rundir
from crl.sweep import state as state_mod
from crl.sweep.child import USAGE_PREFIX

REPO = Path(crl.__file__).resolve().parents[1]
STOPPED = (128 + signal.SIGINT, 128 + signal.SIGTERM, -signal.SIGINT, -signal.SIGTERM)  # exit statuses of a stopped run


# --- one run, on a worker ------------------------------------------------------------------------------------


class StopFlag(Protocol):
    """Set when the sweep asks its runs to stop: a threading.Event here, the task's cancellation on Ray."""

    def is_set(self) -> bool: ...


def usable_checkpoint(run_dir: Path) -> int | None:
    """Step of the newest good resume checkpoint of ``run_dir`` that ``crl train --resume`` can use; None if none."""
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "checkpoints").is_dir():
        return None
    from crl.run import checkpoint  # torch: only where a run is started

    try:
        return checkpoint.newest_good(run_dir / "checkpoints", warn=lambda _: None).step
    except checkpoint.CheckpointError:
        return None


def run_one(job: dict[str, Any], stop: StopFlag | None = None) -> dict[str, Any]:
    """Run (or resume) one run of a sweep to its end; the attempt's record.

    ``job``: name, run_dir, config_file, log_file, lock_file (absolute paths). ``stop`` being set, or a
    KeyboardInterrupt, asks the run to checkpoint and stop.
    """
    run_dir, log_path = Path(job["run_dir"]), Path(job["log_file"])
    attempt: dict[str, Any] = {"start": state_mod.now(), "host": socket.gethostname(), "worker_pid": os.getpid()}
    started = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    Path(job["lock_file"]).parent.mkdir(parents=True, exist_ok=True)
    with open(job["lock_file"], "a") as lock, open(log_path, "ab") as log:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _note(log, "waiting for a previous attempt of this run to stop (it holds the run's lock)")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if (run_dir / "metrics.json").is_file():
            return {**attempt, "mode": "finished-before", "returncode": 0, "duration_s": 0.0}
        if stop is not None and stop.is_set():  # stopped while waiting for the lock: do not start
            return {**attempt, "mode": "not-started", "returncode": 128 + signal.SIGTERM, "duration_s": 0.0}
        step = usable_checkpoint(run_dir)
        if step is not None:
            attempt.update(mode="resume", resumed_from_step=step)
            command = ["train", "--resume", str(run_dir)]
        else:
            attempt["mode"] = "fresh"
            if run_dir.exists():  # an attempt that left no usable checkpoint: nothing to continue from
                _note(log, f"{run_dir} has no usable checkpoint; clearing it (but usage.json) and starting over")
                rundir.clear_for_fresh_start(run_dir)
            command = ["train", "--config", str(job["config_file"]), "--run-dir", str(run_dir)]
        argv = [sys.executable, "-m", "crl.sweep.child", str(os.getpid()), sys.executable, "-m", "crl", *command]
        _note(log, f"{attempt['mode']} attempt on {attempt['host']}: crl {' '.join(command)}")
        offset = log.tell()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=REPO, pass_fds=(lock.fileno(),), start_new_session=True)
        attempt["pid"] = proc.pid
        returncode = _wait(proc, stop, lambda why: _note(log, f"{why}: asking the run to checkpoint and stop"))
    attempt.update(returncode=returncode, duration_s=round(time.monotonic() - started, 1), end=state_mod.now())
    attempt.update(resource_usage(log_path, offset))
    if returncode != 0:
        attempt["error"] = last_line(log_path, offset) or f"exit status {returncode}"
    return attempt


def resource_usage(log_path: Path, offset: int) -> dict[str, Any]:
    """The run's CPU seconds and peak memory (MiB) that ``crl.sweep.child`` printed after ``offset`` of the log;
    empty when it printed none (killed before the run ended)."""
    with open(log_path, "rb") as log:
        log.seek(offset)
        lines = [line for line in log.read().decode(errors="replace").splitlines() if line.startswith(USAGE_PREFIX)]
    return json.loads(lines[-1][len(USAGE_PREFIX):]) if lines else {}


def _wait(proc: subprocess.Popen, stop: StopFlag | None, asked: Callable[[str], None]) -> int:
    """Wait for the child; on ``stop`` or a KeyboardInterrupt (Ray's cancel) send it one SIGTERM and wait for its
    checkpoint."""
    sent = False
    while True:
        try:
            return proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            if stop is not None and stop.is_set() and not sent:
                asked("the sweep is stopping")
                proc.send_signal(signal.SIGTERM)
                sent = True
        except KeyboardInterrupt:
            if not sent:
                asked("the task was cancelled")
                proc.send_signal(signal.SIGTERM)
                sent = True


def _note(log: Any, text: str) -> None:
    log.write(f"\n=== crl sweep {state_mod.now()}: {text}\n".encode())
    log.flush()


def last_line(path: Path, offset: int = 0) -> str:
    """The last non-empty line the run wrote to ``path`` after ``offset`` (a redrawn status line counts its last
    redraw; the supervisor's resource line is not the run's)."""
    with open(path, "rb") as f:
        f.seek(max(offset, os.path.getsize(path) - 65536))
        text = f.read().decode(errors="replace")
    lines = [seg.strip() for line in text.splitlines() for seg in line.split("\r")[-1:]
             if seg.strip() and not seg.startswith(USAGE_PREFIX)]
    return lines[-1][:300] if lines else ""


class _RayCancelled:
    """``stop`` for a run inside a Ray task: set once the sweep cancels the task. (Ray's cancel also raises a
    KeyboardInterrupt, but only where SIGINT is not ignored: workers of a cluster started from a background job
    inherit SIGINT ignored.)"""

    def is_set(self) -> bool:
        import ray

        return ray.get_runtime_context().is_canceled()


def ray_task(job: dict[str, Any]) -> dict[str, Any]:
    """What a Ray task runs: :func:`run_one`, stopped by the task's cancellation."""
    return run_one(job, _RayCancelled())


# --- backends --------------------------------------------------------------------------------------------------


class LocalBackend:
    """Runs in threads of this process, each waiting on its ``crl train`` subprocess."""

    def __init__(self, workers: int) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crl-sweep")
        self.stop_event = threading.Event()

    def submit(self, job: dict[str, Any], cpus: float, gpus: float) -> Any:
        return self.pool.submit(run_one, job, self.stop_event)

    def wait(self, handles: list[Any], timeout: float) -> list[Any]:
        done, _ = concurrent.futures.wait(handles, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED)
        return list(done)

    def result(self, handle: Any) -> dict[str, Any]:
        try:
            return handle.result()
        except Exception as e:  # the worker itself broke (disk full, permissions): the run failed
            return {"returncode": None, "error": f"{type(e).__name__}: {e}".splitlines()[0]}

    def stop(self, handles: list[Any]) -> None:
        self.stop_event.set()

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class RayBackend:
    """Runs as Ray tasks, each asking for the run's CPUs and GPUs; the task runs the same subprocess."""

    def __init__(self, address: str | None) -> None:
        import ray

        self.ray = ray
        self.owned = not ray.is_initialized()
        if self.owned:
            ray.init(address=address or None, include_dashboard=False, log_to_driver=False, configure_logging=False)
        self.task = ray.remote(ray_task)

    def capacity(self, cpus: float, gpus: float) -> int:
        """Runs the cluster can hold at once (at least one: an autoscaling cluster may grow to fit it)."""
        total = self.ray.cluster_resources()
        fits = int(total.get("CPU", 0) // cpus) if cpus else 1
        if gpus:
            fits = min(fits, int(total.get("GPU", 0) // gpus))
        if not fits:
            print(f"crl sweep: warning: the Ray cluster has {total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} "
                  f"GPUs now; a run asks for {cpus:g} and {gpus:g}, so runs wait until the cluster grows",
                  file=sys.stderr, flush=True)
        return max(1, fits)

    def submit(self, job: dict[str, Any], cpus: float, gpus: float) -> Any:
        return self.task.options(num_cpus=cpus, num_gpus=gpus, name=f"crl-sweep:{job['name']}").remote(job)

    def wait(self, handles: list[Any], timeout: float) -> list[Any]:
        ready, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        return ready

    def result(self, handle: Any) -> dict[str, Any]:
        try:
            return self.ray.get(handle)
        except self.ray.exceptions.TaskCancelledError:
            return {"returncode": -signal.SIGTERM, "error": "cancelled"}
        except self.ray.exceptions.RayError as e:  # the worker or its node died, or the task raised
            return {"returncode": None, "error": (str(e).strip().splitlines() or [type(e).__name__])[-1][:300]}

    def stop(self, handles: list[Any]) -> None:
        for handle in handles:
            self.ray.cancel(handle)  # sets the task's cancellation flag: run_one asks its run to checkpoint and stop

    def close(self) -> None:
        if self.owned:
            self.ray.shutdown()


# --- the sweep process's loop ----------------------------------------------------------------------------------


class Stop:
    """SIGINT/SIGTERM: the first stops the sweep after its runs checkpoint; a second ends it at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        self.signum = signum
        print(f"crl sweep: {signal.Signals(signum).name}: stopping the running runs at a checkpoint "
              "(again to exit at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> "Stop":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def eta(state: dict[str, Any], left: int, running_for: list[float], workers: int) -> str:
    """Time left: the mean time of a finished run, for each run left and for the rest of each running one, spread
    over the workers. '?' until a run has finished."""
    times = [t for e in state["runs"].values() if e["status"] == "done" and (t := state_mod.run_seconds(e)) > 0]
    if not left and not running_for:
        return "0s"
    if not times:
        return "?"
    mean = sum(times) / len(times)
    work = mean * left + sum(max(mean - elapsed, 0.0) for elapsed in running_for)
    return format_seconds(work / max(1, min(workers, left + len(running_for))))


def execute(out: Path, state: dict[str, Any], jobs: list[dict[str, Any]], backend: Any, workers: int,
            save: Callable[[], None]) -> int | None:
    """Run ``jobs`` (in order, ``workers`` at a time); None when all were attempted, else the stopping signal."""
    runs = state["runs"]
    queue = list(jobs)
    inflight: dict[Any, dict[str, Any]] = {}
    started: dict[str, float] = {}
    stopping = False

    def progress(event: str) -> None:
        counts = {s: sum(e["status"] == s for e in runs.values()) for s in state_mod.STATUSES}
        left = counts["pending"] + counts["interrupted"]
        running_for = [time.monotonic() - t for t in started.values()]
        print(f"crl sweep: {counts['done']}/{len(runs)} done, {counts['running']} running, {counts['failed']} failed, "
              f"{left} left, ETA {eta(state, left, running_for, workers)} | {event}", file=sys.stderr, flush=True)

    with Stop() as stop:
        while queue or inflight:
            while queue and len(inflight) < workers and stop.signum is None:
                job = queue.pop(0)
                inflight[backend.submit(job, job["cpus"], job["gpus"])] = job
                started[job["name"]] = time.monotonic()
                runs[job["name"]]["status"] = "running"
                save()
                progress(f"started {job['name']}")
            if stop.signum is not None and not stopping:
                stopping = True
                queue.clear()
                backend.stop(list(inflight))
            if not inflight:
                break
            for handle in backend.wait(list(inflight), timeout=0.5):
                job = inflight.pop(handle)
                started.pop(job["name"], None)
                attempt = backend.result(handle)
                entry = runs[job["name"]]
                entry["attempts"].append(attempt)
                if state_mod.finished(out, job["name"]):
                    entry["status"] = "done"
                    event = f"{job['name']} done in {format_seconds(attempt.get('duration_s') or 0)}"
                    if attempt.get("mode") == "resume":
                        event += f" (resumed from step {attempt['resumed_from_step']})"
                elif stop.signum is not None and attempt.get("returncode") in STOPPED:
                    entry["status"] = "interrupted"
                    event = f"{job['name']} stopped at a checkpoint"
                else:
                    entry["status"] = "failed"
                    entry["error"] = attempt.get("error") or f"exit status {attempt.get('returncode')}"
                    event = f"{job['name']} FAILED: {entry['error']} (log {state_mod.log_file(out, job['name'])})"
                if entry["status"] != "failed":
                    entry.pop("error", None)
                save()
                progress(event)
        return stop.signum
