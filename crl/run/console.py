"""What the trainer shows on the console while it runs: a progress line, and the stop signals it obeys."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any


class TrainingInterrupted(Exception):
    """A stop signal arrived; a checkpoint was written. ``exit_status`` is 128 + the signal number."""

    def __init__(self, signum: int, checkpoint_path: Path) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}; checkpoint {checkpoint_path}")
        self.exit_status = 128 + signum
        self.checkpoint_path = checkpoint_path


class Progress:
    """One status line on stderr: redrawn in place on a terminal, a line every ~10% otherwise.

    Not tqdm or rich: the line is twenty lines here; with tqdm it would be a bar_format, a postfix for the label and
    a per-decile rule for logs (tqdm's non-terminal output is time-based), no shorter, one more dependency, and a
    different line from the one users, sweep logs and the tests read."""

    def __init__(self, total_steps: int, done: int = 0) -> None:
        self.total, self.first = total_steps, done
        self.tty = sys.stderr.isatty()
        self.start = time.time()
        self.last_draw = 0.0
        self.last_decile = -1

    def update(self, done: int, label: str) -> None:
        now = time.time()
        decile = int(10 * done / max(self.total, 1))
        if self.tty and now - self.last_draw < 0.5 and done < self.total:
            return
        if not self.tty and decile == self.last_decile:
            return
        self.last_draw, self.last_decile = now, decile
        width = 30
        filled = int(width * min(done, self.total) / max(self.total, 1))
        rate = (done - self.first) / max(now - self.start, 1e-9)
        eta = f"{(self.total - done) / rate / 60:.1f} min" if rate > 0 else "?"
        line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} steps  {rate:.0f} steps/s  eta {eta}  {label}"
        sys.stderr.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


class StartupInterrupt:
    """The SIGINT handler while a command starts: raises KeyboardInterrupt, and remembers that it did.

    CPython drops a KeyboardInterrupt raised inside its import machinery's callbacks ("Exception ignored in"), so a
    Ctrl-C during an import can vanish; whoever takes over SIGINT next (``StopSignals``) asks ``received``.
    """

    def __init__(self) -> None:
        self.received = False

    def __call__(self, _signum: int, _frame: Any) -> None:
        self.received = True
        raise KeyboardInterrupt

    def install(self) -> "StartupInterrupt":
        signal.signal(signal.SIGINT, self)
        return self


class StopSignals:
    """SIGINT/SIGTERM ask the trainer to stop after the current step; a second signal exits at once.

    ``signum`` is the first signal received (None until then); the trainer reads it between steps.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum is not None:
            sys.stderr.write(f"\nsecond {signal.Signals(signum).name}: exiting now without a checkpoint\n")
            sys.stderr.flush()
            os._exit(128 + signum)
        self.signum = signum
        sys.stderr.write(f"\n{signal.Signals(signum).name}: finishing the current step and writing a checkpoint "
                         "(send it again to exit at once)\n")

    def __enter__(self) -> "StopSignals":
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        startup = self._previous[signal.SIGINT]
        if isinstance(startup, StartupInterrupt) and startup.received and self.signum is None:
            self._handle(signal.SIGINT, None)  # a Ctrl-C that an import swallowed
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
