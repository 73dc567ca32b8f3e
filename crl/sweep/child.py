"""Supervise one sweep run: ``python -m crl.sweep.child PARENT_PID PROGRAM ARG...``.

Starts ``PROGRAM ARG...`` (a ``crl train``) and turns every stop request into exactly one SIGTERM for it, so the run
writes a checkpoint and exits: a SIGTERM or SIGINT from the sweep, and on Linux the death of the sweep process
(the parent-death signal). The run cannot take that signal itself: the kernel sends it once per exiting thread of a
multi-threaded parent, and a second SIGTERM makes ``crl train`` exit without its checkpoint. Exits with the run's
status (128 + N if signal N killed it), after printing the run's CPU seconds and peak resident memory as one line
(``USAGE_PREFIX`` + JSON) that the sweep adds to the attempt's record. Imports nothing heavy: it lives as long as
the run.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

PR_SET_PDEATHSIG = 1
USAGE_PREFIX = "crl sweep: resources "  # the line this prints into the run's log when the run ends


def main(argv: list[str]) -> int:
    parent, program = int(argv[0]), argv[1:]
    asked = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal asked
        asked = True

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent or asked:  # the sweep died or stopped before the run began: do not start it
        return 128 + signal.SIGTERM
    proc = subprocess.Popen(program)
    sent = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # wait4: the run's own CPU time and peak memory
        if pid:
            break
        if asked and not sent:  # only this loop signals the run, so it is signalled once
            proc.send_signal(signal.SIGTERM)
            sent = True
        time.sleep(0.1)
    print(USAGE_PREFIX + json.dumps({"cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                                     "max_rss_mib": round(usage.ru_maxrss / 1024, 1)}), flush=True)
    returncode = os.waitstatus_to_exitcode(status)
    return 128 - returncode if returncode < 0 else returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
