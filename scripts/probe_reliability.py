#!/usr/bin/env python3
"""Adversarial reliability probe for ``crl`` (issue #25: "records that cannot lie, part 2").

Drives the toolkit as a black box: only the ``crl`` command (``python -m crl ...``) and the public Python API of the
README (``agents.ContinualDQN``, ``crl.methods.TaskInfo``/``make_method``, ``envs.make_vec_env``). No internal crl
module is imported, so the probe survives refactors and measures whatever code ``python -m crl`` resolves to
(``PYTHONPATH=/path/to/checkout`` measures another checkout).

Families of cases:

  a  bad CLI input, bad config values, bad YAML
  b  corrupt records under ``crl report``
  c  sweep specs and sweep.json
  d  Python API misuse
  e  kill / interrupt / resume faults, compared with an uninterrupted reference run of the same seed
  f  hangs (every command runs under a bounded timeout)

Every case is classified as one of:

  held          the toolkit did what the issue asks
  traceback     stderr (or the API's exception) is an unexplained traceback
  bad-exit      no traceback, but not a one-line error, the wrong exit status, or a refusal that left files behind
  silent-wrong  exit 0 but the records disagree with the reference, are non-finite, or a bad input was accepted
  stranded      neither ``--resume`` nor a fresh ``crl train`` into the directory works
  hang          the command did not end within its timeout
  probe-error   the probe itself could not set the case up (e.g. a kill trigger never fired); not a verdict

Usage (run from anywhere; keep it on one core on shared machines):

  taskset -c 0 python scripts/probe_reliability.py                     # every case
  python scripts/probe_reliability.py --families a,b --jobs 2 --out /tmp/probe.json
  python scripts/probe_reliability.py --list                           # the cases, nothing run
  python scripts/probe_reliability.py -k resume                        # cases whose name contains "resume"

Exit status 0 when every case held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import glob
import io
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import zipfile
from dataclasses import dataclass, field
from typing import Callable

CLASSES = ["held", "traceback", "bad-exit", "silent-wrong", "stranded", "hang", "probe-error"]
FAMILIES = {"a": "bad CLI/config/YAML input", "b": "corrupt records (crl report)", "c": "sweeps",
            "d": "Python API misuse", "e": "kill/interrupt/resume", "f": "hangs"}

# --------------------------------------------------------------------------------------------------------------------
# Tiny runs

GAMES = "minatar/breakout,minatar/space_invaders"
# family a: the smallest run that trains, evaluates and finishes (a bad value that is accepted costs ~10 s)
TINY = ["--games", GAMES, "--steps-per-game", "200", "--eval-every", "200", "--eval-episodes", "1",
        "--eval-max-steps", "50", "--n-envs", "2", "--set", "agent.learning_starts=100",
        "--set", "agent.buffer_size=2000"]
# family e (and the report reference): resume points at every 400 steps with replay, so a resume is exact
RUN_E = ["--games", GAMES, "--steps-per-game", "800", "--eval-every", "400", "--eval-episodes", "1",
         "--eval-max-steps", "100", "--n-envs", "2", "--set", "agent.learning_starts=200",
         "--set", "agent.buffer_size=2000", "--checkpoint-every", "400", "--checkpoint-replay"]
RECORDS = ["evals.jsonl", "blocks.jsonl", "retention.csv", "metrics.json"]
SWEEP_BASE = textwrap.dedent("""\
    base:
      games: [minatar/breakout, minatar/space_invaders]
      steps_per_game: 200
      n_envs: 2
      device: cpu
      eval: {every: 200, episodes: 1, max_steps: 50}
      agent: {learning_starts: 100, buffer_size: 2000}
    """)
SWEEP_OK = SWEEP_BASE + "axes:\n  method: [finetune]\n  seed: [0, 1]\n"


def crl(*args: str) -> list[str]:
    return [sys.executable, "-m", "crl", *args]


@dataclass
class Proc:
    rc: int | None
    out: str
    err: str
    secs: float
    timed_out: bool = False

    @property
    def text(self) -> str:
        return self.out + self.err


def run(argv: list[str], cwd: str, timeout: float = 120, stdin: bytes | None = None) -> Proc:
    t0 = time.time()
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                         start_new_session=True)
    try:
        out, err = p.communicate(stdin, timeout=timeout)
        return Proc(p.returncode, out.decode(errors="replace"), err.decode(errors="replace"), time.time() - t0)
    except subprocess.TimeoutExpired:
        _kill_group(p)
        out, err = p.communicate()
        return Proc(None, out.decode(errors="replace"), err.decode(errors="replace"), time.time() - t0, True)


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def error_lines(err: str) -> list[str]:
    """stderr without progress bars and the run's header line: what a one-line error must be one line of."""
    keep = []
    for line in err.splitlines():
        s = line.strip()
        if not s or (s.startswith("[") and "steps" in s) or s.startswith("training ") or "rounded up" in s:
            continue
        keep.append(s)
    return keep


# --------------------------------------------------------------------------------------------------------------------
# Reading records

def nonfinite_json(path: str) -> bool:
    bad = []
    try:
        with open(path) as f:
            json.load(f, parse_constant=lambda c: bad.append(c))
    except (OSError, ValueError):
        return True
    return bool(bad)


def model_nonfinite(path: str) -> str | None:
    """None if every tensor in the zip's .pth files is finite, else a reason."""
    import torch

    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith(".pth")]
            for n in names:
                obj = torch.load(io.BytesIO(z.read(n)), map_location="cpu", weights_only=False)
                stack = [obj]
                while stack:
                    o = stack.pop()
                    if isinstance(o, torch.Tensor):
                        if o.is_floating_point() and not torch.isfinite(o).all():
                            return f"{os.path.basename(path)}:{n} has non-finite weights"
                    elif isinstance(o, dict):
                        stack.extend(o.values())
                    elif isinstance(o, (list, tuple)):
                        stack.extend(o)
    except Exception as e:  # noqa: BLE001 - a broken zip is a verdict, not a probe crash
        return f"{os.path.basename(path)} unreadable ({type(e).__name__})"
    return None


_TB_LOCK = threading.Lock()


def tb_scalars(run_dir: str) -> dict[str, list[int]]:
    """tag -> steps as TensorBoard shows them (EventAccumulator with its default purge of orphaned data)."""
    import logging

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.ERROR)   # its purge notices are expected after a resume

    tb = os.path.join(run_dir, "tb")
    if not os.path.isdir(tb):
        return {}
    with _TB_LOCK:
        acc = EventAccumulator(tb, size_guidance={"scalars": 0, "images": 1, "tensors": 0, "histograms": 1})
        acc.Reload()
        return {t: [e.step for e in acc.Scalars(t)] for t in acc.Tags().get("scalars", [])}


def read_jsonl(path: str) -> list:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def compare_runs(run_dir: str, ref_dir: str, mode: str) -> str | None:
    """None when run_dir's records equal the reference's; else what differs.

    exact: the four record files byte-identical, TensorBoard steps per tag identical.
    structure (a resume from a mid-segment signal checkpoint, whose values legitimately differ): the same
    evaluations, blocks, retention rows and metrics keys, every number finite, every TensorBoard tag with the
    reference's steps (each once).
    """
    for name in RECORDS:
        p = os.path.join(run_dir, name)
        if not os.path.exists(p):
            return f"{name} missing"
    if not os.path.exists(os.path.join(run_dir, "model.zip")):
        return "model.zip missing"
    if nonfinite_json(os.path.join(run_dir, "metrics.json")):
        return "metrics.json non-finite or unreadable"
    if mode == "exact":
        for name in RECORDS:
            a = open(os.path.join(run_dir, name), "rb").read()
            b = open(os.path.join(ref_dir, name), "rb").read()
            if a != b:
                if name.endswith(".jsonl"):
                    na, nb = len(a.splitlines()), len(b.splitlines())
                    return f"{name}: {na} lines vs reference {nb}, content differs"
                return f"{name} differs from the reference"
    else:
        try:
            ev, rev = read_jsonl(os.path.join(run_dir, "evals.jsonl")), read_jsonl(os.path.join(ref_dir, "evals.jsonl"))
            keys = [(r.get("step"), r.get("game")) for r in ev]
            if len(keys) != len(set(keys)):
                dup = next(k for k in keys if keys.count(k) > 1)
                return f"evals.jsonl: the evaluation {dup} appears twice"
            if [r.get("step") for r in ev] != sorted(r.get("step") for r in ev):
                return "evals.jsonl: steps out of order"
            final = lambda rs: [(r.get("block"), r.get("game")) for r in rs if r.get("final")]  # noqa: E731
            if final(ev) != final(rev):
                return f"evals.jsonl: block-end evaluations {final(ev)[:4]}... differ from the reference's"
            bl, rbl = read_jsonl(os.path.join(run_dir, "blocks.jsonl")), read_jsonl(os.path.join(ref_dir, "blocks.jsonl"))
            if [(r.get("block"), r.get("game")) for r in bl] != [(r.get("block"), r.get("game")) for r in rbl]:
                return "blocks.jsonl differs from the reference in its blocks"
        except ValueError as e:
            return f"records unreadable: {e}"
        a = open(os.path.join(run_dir, "retention.csv")).read().splitlines()
        b = open(os.path.join(ref_dir, "retention.csv")).read().splitlines()
        if len(a) != len(b) or a[:1] != b[:1]:
            return "retention.csv rows differ from the reference"
        if sorted(json.load(open(os.path.join(run_dir, "metrics.json")))) != sorted(
                json.load(open(os.path.join(ref_dir, "metrics.json")))):
            return "metrics.json keys differ"
    why = model_nonfinite(os.path.join(run_dir, "model.zip"))
    if why:
        return why
    got, ref = tb_scalars(run_dir), tb_scalars(ref_dir)
    for tag in sorted(set(got) | set(ref)):
        g, r = got.get(tag, []), ref.get(tag, [])
        if mode != "exact":
            # values and the exact steps of a mid-segment resume may differ; a step logged twice may not (unless the
            # reference logs it twice too: two environments can end an episode in the same step)
            if len(g) != len(set(g)) and len(r) == len(set(r)):
                dup = sorted({s for s in g if g.count(s) > 1})
                return f"TensorBoard {tag}: steps {dup[:3]} appear more than once"
            if not g:
                return f"TensorBoard {tag} missing"
            continue
        if g != r:
            dup = sorted({s for s in g if g.count(s) > 1})
            miss = sorted(set(r) - set(g))
            extra = sorted(set(g) - set(r))
            return (f"TensorBoard {tag}: " + (f"steps {dup[:3]} twice " if dup else "") +
                    (f"missing {miss[:3]} " if miss else "") + (f"extra {extra[:3]}" if extra else "")).strip()
    return None


# --------------------------------------------------------------------------------------------------------------------
# Context: work directory and the cached reference runs

class Ctx:
    def __init__(self, root: str, timeout_scale: float = 1.0) -> None:
        self.root = root
        self.scale = timeout_scale
        self._refs: dict[str, str] = {}
        self._lock = threading.Lock()

    def reference(self, name: str) -> str:
        """The uninterrupted run of a config, made once per probe (``e``: RUN_E; ``sweep``: a finished sweep)."""
        with self._lock:
            if name in self._refs:
                return self._refs[name]
            d = os.path.join(self.root, "ref-" + name)
            done = d + ".done"      # a --workdir reused across probes keeps its references
            if os.path.exists(done):
                self._refs[name] = d
                return d
            shutil.rmtree(d, ignore_errors=True)
            if name == "e":
                p = run(crl("train", *RUN_E, "--run-dir", d), self.root, timeout=300 * self.scale)
                ok = p.rc == 0 and os.path.exists(os.path.join(d, "metrics.json"))
            else:
                os.makedirs(d)
                open(os.path.join(d, "spec.yaml"), "w").write(SWEEP_OK)
                p = run(crl("sweep", "spec.yaml", "--out", "out"), d, timeout=400 * self.scale)
                ok = p.rc == 0
            if not ok:
                raise RuntimeError(f"reference run {name} failed (rc {p.rc}): {p.err.strip()[-400:]}")
            open(done, "w").close()
            self._refs[name] = d
            return d


def copy_ref(ctx: Ctx, name: str, dest: str) -> str:
    shutil.copytree(ctx.reference(name), dest, symlinks=True)
    return dest


# --------------------------------------------------------------------------------------------------------------------
# Verdicts

def verdict_of_failure(p: Proc, codes=(2,)) -> tuple[str, str] | None:
    """The common verdicts of a command: hang, traceback; None when neither."""
    if p.timed_out:
        return "hang", f"no exit within {p.secs:.0f} s"
    if "Traceback" in p.err:
        last = [x.strip() for x in p.err.strip().splitlines() if x.strip()]
        exc = [x for x in last if re.match(r"^[\w.]*(Error|Exception|Interrupt|Exit)\b", x)]
        return "traceback", ((exc or last or ["Traceback"])[-1][:160])
    return None


def check_refusal(p: Proc, run_dir: str | None = None, codes=(2,), one_line=True) -> tuple[str, str]:
    v = verdict_of_failure(p)
    if v:
        return v
    lines = error_lines(p.err)
    if p.rc == 0 and 0 not in codes:
        return "silent-wrong", "accepted (exit 0) where a one-line refusal was wanted"
    if p.rc not in codes:
        return "bad-exit", f"exit {p.rc} (want {'/'.join(map(str, codes))}): {(lines or ['(no stderr)'])[-1][:140]}"
    if one_line and len(lines) != 1:
        return "bad-exit", f"exit {p.rc} with {len(lines)} error lines: {' | '.join(lines)[:160]}"
    if run_dir and os.path.isdir(run_dir) and os.listdir(run_dir):
        return "bad-exit", f"refused ({lines[-1][:100]}) but left {sorted(os.listdir(run_dir))[:4]} in the run dir"
    return "held", lines[-1][:160] if lines else ""


def check_finished_run(run_dir: str) -> str | None:
    """None if a run that exited 0 left finite records."""
    for name in ("metrics.json", "model.zip", "evals.jsonl"):
        if not os.path.exists(os.path.join(run_dir, name)):
            return f"exit 0 but {name} missing"
    if nonfinite_json(os.path.join(run_dir, "metrics.json")):
        return "exit 0 but metrics.json has NaN/inf"
    try:
        for r in read_jsonl(os.path.join(run_dir, "evals.jsonl")):
            if not math.isfinite(float(r.get("mean_return", float("nan")))):
                return "exit 0 but evals.jsonl has a non-finite mean_return"
    except (ValueError, TypeError):
        return "exit 0 but evals.jsonl unreadable"
    return model_nonfinite(os.path.join(run_dir, "model.zip"))


# --------------------------------------------------------------------------------------------------------------------
# Case table

@dataclass
class Case:
    family: str
    name: str
    setup: Callable[[Ctx, str], None] | None   # prepares the case directory
    command: object                            # argv after "crl" ({d} = case directory), or a list of Phases
    check: Callable                            # (ctx, case dir, Proc) -> (class, detail)
    timeout: float = 120
    note: str = ""                             # why the case exists / the issue text it reproduces


@dataclass
class Phase:
    """One process of a fault scenario (family e)."""
    cmd: str                                   # train | resume | fresh | continue (resume if the dir was made)
    trigger: Callable[[str], bool] | None = None   # fires the signals when true of the run dir
    signals: tuple = (signal.SIGKILL,)
    tamper: Callable[[str], None] | None = None    # applied to the run dir after the process ended
    extra: tuple = ()
    delay: float = 0.0                         # seconds between the trigger and the first signal
    expect_rc: tuple | None = None             # exit statuses this phase may end with (None: any)


def write(path: str, data: bytes | str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def files(**named: bytes | str) -> Callable[[Ctx, str], None]:
    def setup(ctx: Ctx, d: str) -> None:
        for name, data in named.items():
            write(os.path.join(d, name.replace("__", "/").replace("_DOT_", ".")), data)
    return setup


RANDOM_BYTES = bytes(random.Random(25).randrange(256) for _ in range(512))


# ---- family a ----------------------------------------------------------------------------------------------------

def refuse_a(ctx, d, p):
    return check_refusal(p, os.path.join(d, "run"))


def either_a(codes=(2,)):
    """A value that may be legal: exit 0 with finite records, or a one-line refusal."""
    def check(ctx, d, p):
        v = verdict_of_failure(p)
        if v:
            return v
        if p.rc == 0:
            why = check_finished_run(os.path.join(d, "run"))
            return ("silent-wrong", why) if why else ("held", "accepted; records finite")
        # exit 2 (bad input) writes nothing; exit 1 (training stopped: diverged) keeps its last good checkpoint, but
        # never results written as if it were healthy
        if p.rc == 1 and any(os.path.exists(os.path.join(d, "run", n)) for n in ("metrics.json", "model.zip")):
            return "silent-wrong", "exit 1, but metrics.json or model.zip written"
        return check_refusal(p, os.path.join(d, "run") if p.rc == 2 else None, codes=codes, one_line=True)
    return check


def a_cases() -> list[Case]:
    cases = []
    base = TINY + ["--run-dir", "{d}/run"]
    # every key x several values that are never legal for it (rotated so each key meets different ones)
    bad_values = ["-1", ".nan", ".inf", "-.inf", "abc", "[1]", "", "1e400", "true", "{a: 1}", "0x", "null"]
    keys = ["agent.learning_rate", "agent.gamma", "agent.batch_size", "agent.train_freq", "agent.target_update_interval",
            "agent.exploration_final_eps", "agent.max_grad_norm", "agent.learning_starts", "agent.buffer_size",
            "eval.epsilon", "eval.episodes", "eval.max_steps", "minatar.sticky_actions", "checkpoint.keep",
            "log_every", "env.frame_skip", "ewc.lambda_", "replay.per_task", "network.hidden", "seed"]
    for i, key in enumerate(keys):
        for j in range(3):
            v = bad_values[(i + j * 2) % len(bad_values)]
            if key == "network.hidden" and v in ("null", ""):
                v = "-5"   # null is network.hidden's legal default
            cases.append(Case("a", f"set {key}={v or '(empty)'}", None, base + ["--set", f"{key}={v}"], refuse_a))
    # the same values through a YAML config
    # (keys that TINY's flags do not override)
    yaml_bad = {"agent.gamma": ".nan", "agent.learning_rate": "-.inf", "eval.epsilon": "-3", "agent.batch_size": "1.5",
                "minatar.sticky_actions": "2", "agent.train_freq": "0", "agent.gradient_steps": "abc", "cycles": "0",
                "seed": "-1", "checkpoint.every": "-400"}
    for key, v in yaml_bad.items():
        sect, _, leaf = key.rpartition(".")
        text = f"{sect}:\n  {leaf}: {v}\n" if sect else f"{leaf}: {v}\n"
        cases.append(Case("a", f"yaml {key}: {v}", files(c_DOT_yaml=text), ["--config", "{d}/c.yaml"] + base, refuse_a))
    # broken YAML files
    bad_yaml = {
        "random bytes": RANDOM_BYTES, "empty file": "", "top-level list": "- 1\n- 2\n", "top-level scalar": "3\n",
        "duplicate section agent": "agent:\n  gamma: 0.5\nagent:\n  learning_rate: 0.01\n",
        "duplicate key gamma": "agent:\n  gamma: 0.5\n  gamma: 0.9\n",
        "interpolation to missing key": "agent:\n  gamma: ${nope.x}\n",
        "interpolation to a section": "agent:\n  learning_rate: ${eval}\n",
        "self-referencing interpolation": "agent:\n  gamma: ${agent.gamma}\n",
        "resolver call": "agent:\n  gamma: ${oc.env:HOME}\n",
        "unterminated string": "agent:\n  optimizer: 'adam\n",
        "tab indentation": "agent:\n\tgamma: 0.5\n",
        "unknown top key": "agnet:\n  gamma: 0.5\n",
        "unknown nested key": "agent:\n  gama: 0.5\n",
        "section as scalar": "agent: 5\n",
        "python object tag": "agent: !!python/object/apply:os.system ['touch PWNED']\n",
        "non-utf8": b"agent:\n  optimizer: \xff\xfe\n",
        "nul bytes": b"agent:\n  gamma: 0.5\x00\x00\n",
        "very deep nesting": "a: " + "[" * 5000 + "]" * 5000 + "\n",
        "method not a string": "method: 7\n",
        "bool learning rate": "agent:\n  learning_rate: yes\n",
    }
    for name, text in bad_yaml.items():
        cases.append(Case("a", f"config: {name}", files(c_DOT_yaml=text), ["--config", "{d}/c.yaml"] + base,
                          either_a() if name == "empty file" else refuse_a))
    cases += [
        Case("a", "config path is a directory", files(cdir__x="x"), ["--config", "{d}/cdir"] + base, refuse_a),
        Case("a", "config path missing", None, ["--config", "{d}/nope.yaml"] + base, refuse_a),
        Case("a", "config /dev/null", None, ["--config", "/dev/null"] + base, either_a()),
    ]
    # flags
    flag_cases = {
        "--games ''": ["--games", ""], "--games minatar/nope": ["--games", "minatar/nope"],
        "--games mixed families": ["--games", "minatar/breakout,Pong"], "--games ,,": ["--games", ",,"],
        "--method nope": ["--method", "nope"], "--steps-per-game 0": ["--steps-per-game", "0"],
        "--steps-per-game -5": ["--steps-per-game", "-5"], "--steps-per-game abc": ["--steps-per-game", "abc"],
        "--steps-per-game 1e3": ["--steps-per-game", "1e3x"], "--n-envs 0": ["--n-envs", "0"],
        "--n-envs 100000": ["--n-envs", "100000"], "--seed -1": ["--seed", "-1"], "--seed 2**31": ["--seed", "2147483648"],
        "--cycles 0": ["--cycles", "0"], "--eval-every -1": ["--eval-every", "-1"],
        "--eval-episodes 0": ["--eval-episodes", "0"], "--eval-max-steps 0": ["--eval-max-steps", "0"],
        "--task-id bogus": ["--task-id", "bogus"], "--eval-task-id bogus": ["--eval-task-id", "bogus"],
        "--device tpu": ["--device", "tpu"], "--preset nope": ["--preset", "nope"],
        "--checkpoint-every -1": ["--checkpoint-every", "-1"], "--set without =": ["--set", "agent.gamma"],
        "--set =1": ["--set", "=1"], "--set agent.gama=0.9 (typo)": ["--set", "agent.gama=0.9"],
        "--set agent=1": ["--set", "agent=1"], "--set agent.replay=bogus": ["--set", "agent.replay=bogus"],
        "--set agent.optimizer=sgd": ["--set", "agent.optimizer=sgd"], "--set on_divergence=bogus": ["--set", "on_divergence=bogus"],
        "--set network.conv_channels=[16,-1,32]": ["--set", "network.conv_channels=[16,-1,32]"],
        "--set network.hidden=[]": ["--set", "network.hidden=[]"],
        "--set agent.gamma=${nope.x}": ["--set", "agent.gamma=${nope.x}"],
        "--run-dir /proc/x": ["--run-dir", "/proc/x/run"],
    }
    for name, extra in flag_cases.items():
        cases.append(Case("a", name, None, base + extra, refuse_a))
    cases += [
        # named in the issue: tracebacks after the run directory is written
        Case("a", "--set agent.buffer_size=1000000000000", None, base + ["--set", "agent.buffer_size=1000000000000"],
             refuse_a, timeout=180, note="issue: traceback after the run dir is written"),
        Case("a", "--set network.conv_channels=[16,32] on MinAtar", None,
             base + ["--set", "network.conv_channels=[16,32]"], either_a(), note="issue: traceback"),
        Case("a", "--task-id fmn on MinAtar", None, base + ["--task-id", "fmn"], either_a(), note="issue: traceback"),
        # named in the issue: a diverged network recorded as a normal run
        Case("a", "--set agent.learning_rate=1e308", None, base + ["--set", "agent.learning_rate=1e308"],
             either_a(codes=(1, 2)), note="issue: exit 0 with an all-NaN model.zip"),
        Case("a", "--set agent.learning_rate=1e30", None, base + ["--set", "agent.learning_rate=1e30"],
             either_a(codes=(1, 2))),
        Case("a", "--games duplicated game", None, base + ["--games", "minatar/breakout,minatar/breakout"], either_a()),
        Case("a", "--run-dir is a file", files(afile="x"), TINY + ["--run-dir", "{d}/afile"],
             lambda c, d, p: check_refusal(p)),
        Case("a", "--run-dir not empty", files(run__x="x"), base, lambda c, d, p: check_refusal(p)),
        Case("a", "--resume nonexistent dir", None, ["--resume", "{d}/nope"], lambda c, d, p: check_refusal(p)),
        Case("a", "--resume a file", files(afile="x"), ["--resume", "{d}/afile"], lambda c, d, p: check_refusal(p)),
        Case("a", "--resume with binary config.yaml", _ref_with("config.yaml", RANDOM_BYTES), ["--resume", "{d}/run"],
             _refuse_unchanged, note="issue: traceback before anything is written"),
        Case("a", "--resume with empty config.yaml", _ref_with("config.yaml", ""), ["--resume", "{d}/run"], _refuse_unchanged),
        Case("a", "--resume with config.yaml a list", _ref_with("config.yaml", "- 1\n"), ["--resume", "{d}/run"],
             _refuse_unchanged),
        Case("a", "--resume with ${nope.x} in config.yaml", _ref_append("config.yaml", "extra: ${nope.x}\n"),
             ["--resume", "{d}/run"], _refuse_unchanged),
        Case("a", "--resume with binary run.json", _ref_with("run.json", RANDOM_BYTES), ["--resume", "{d}/run"],
             _refuse_unchanged),
        Case("a", "--resume with run.json = []", _ref_with("run.json", "[]"), ["--resume", "{d}/run"], _refuse_unchanged),
    ]
    for c in cases:
        c.command = ["train", *c.command]
    return cases


def _ref_setup(ctx: Ctx, d: str, cut_to_first_block: bool = True) -> str:
    """A copy of the e reference as an unfinished run (newest resume point and final files removed)."""
    run_dir = copy_ref(ctx, "e", os.path.join(d, "run"))
    if cut_to_first_block:
        for p in glob.glob(os.path.join(run_dir, "checkpoints", "resume-1600*")) + [
                os.path.join(run_dir, "model.zip"), os.path.join(run_dir, "metrics.json")]:
            os.remove(p)
    return run_dir


def _ref_with(name: str, data) -> Callable:
    def setup(ctx, d):
        write(os.path.join(_ref_setup(ctx, d), name), data)
    return setup


def _ref_append(name: str, text: str) -> Callable:
    def setup(ctx, d):
        with open(os.path.join(_ref_setup(ctx, d), name), "a") as f:
            f.write(text)
    return setup


def _snapshot(run_dir: str) -> dict:
    out = {}
    for root, _, names in os.walk(run_dir):
        for n in names:
            p = os.path.join(root, n)
            if n != ".crl.lock":
                out[os.path.relpath(p, run_dir)] = os.path.getsize(p)
    return out


def _refuse_unchanged(ctx, d, p):
    return check_refusal(p)


# ---- family b ----------------------------------------------------------------------------------------------------

def _lines_edit(fn: Callable[[list[str]], list[str]]) -> Callable[[str], str]:
    def edit(text: str) -> str:
        return "".join(x + "\n" for x in fn(text.splitlines()))
    return edit


def _json_edit(fn: Callable[[dict], None]) -> Callable[[str], str]:
    def edit(text: str) -> str:
        obj = json.loads(text)
        fn(obj)
        return json.dumps(obj, indent=2)
    return edit


def _set_field(field_: str, value, line: int = 0) -> Callable[[str], str]:
    def fn(lines):
        rec = json.loads(lines[line])
        rec[field_] = value
        lines[line] = json.dumps(rec)
        return lines
    return _lines_edit(fn)


def _del_field(field_: str, line: int = 0) -> Callable[[str], str]:
    def fn(lines):
        rec = json.loads(lines[line])
        rec.pop(field_, None)
        lines[line] = json.dumps(rec)
        return lines
    return _lines_edit(fn)


DELETE = object()
GENERIC = {   # every record file x each of these
    "deleted": DELETE, "empty": lambda t: "", "random bytes": lambda t: RANDOM_BYTES.decode("latin-1"),
    "truncated mid-file": lambda t: t[: len(t) // 2], "is a directory": "DIR",
}
PER_FILE = {
    "evals.jsonl": {
        "line [1, 2]": _lines_edit(lambda ls: ls + ["[1, 2]"]), "line {}": _lines_edit(lambda ls: ls + ["{}"]),
        "mean_return 'abc'": _set_field("mean_return", "abc"), "mean_return null": _set_field("mean_return", None),
        "mean_return NaN": lambda t: t.replace('"mean_return": 0.0', '"mean_return": NaN', 1) if '"mean_return": 0.0' in t
        else _set_field("mean_return", float("nan"))(t),
        "step 'x'": _set_field("step", "x"), "step negative": _set_field("step", -400), "game unknown": _set_field("game", "nope"),
        "game missing": _del_field("game"), "block 99": _set_field("block", 99), "line 'null'": _lines_edit(lambda ls: ls + ["null"]),
        "duplicated lines": _lines_edit(lambda ls: ls + ls), "torn last line": lambda t: t[:-40],
        "huge step": _set_field("step", 10 ** 30),
    },
    "blocks.jsonl": {
        'block "x"': _set_field("block", "x"), "line [1, 2]": _lines_edit(lambda ls: ls + ["[1, 2]"]),
        "line {}": _lines_edit(lambda ls: ls + ["{}"]), "end_step null": _set_field("end_step", None),
        "end_step before start": _set_field("end_step", -5), "game unknown": _set_field("game", "nope"),
        "duplicated lines": _lines_edit(lambda ls: ls + ls), "task_index 7": _set_field("task_index", 7),
    },
    "retention.csv": {
        "non-numbers": lambda t: t.replace("0,", "zero,", 1) if "\n0," in t else t + "x,y,z\n",
        "short row": _lines_edit(lambda ls: ls[:1] + [ls[1].split(",")[0]] + ls[2:]),
        "long row": _lines_edit(lambda ls: ls[:1] + [ls[1] + ",1,2"] + ls[2:]),
        "header only": _lines_edit(lambda ls: ls[:1]), "no header": _lines_edit(lambda ls: ls[1:]),
        "nan cell": _lines_edit(lambda ls: ls[:1] + [ls[1].split(",")[0] + ",nan,nan"] + ls[2:]),
        "unknown game column": _lines_edit(lambda ls: [ls[0].replace("minatar/breakout", "nope")] + ls[1:]),
    },
    "metrics.json": {
        "retention matrix of the wrong shape": _json_edit(lambda m: m.__setitem__(
            next((k for k in m if "retention" in k), "retention"), [[1.0]])),
        "a list": lambda t: "[1, 2]", "null": lambda t: "null", "games not a list": _json_edit(lambda m: m.__setitem__("games", 5)),
        "final_return strings": _json_edit(lambda m: m.__setitem__("final_return", {g: "abc" for g in m.get("games", [])})),
        "NaN average": lambda t: re.sub(r'("average_final_return": )[^,\n]+', r"\1NaN", t),
        "games missing": _json_edit(lambda m: m.pop("games", None)),
    },
    "run.json": {"a list": lambda t: "[]", "fingerprint number": _json_edit(lambda m: m.__setitem__("fingerprint", 5))},
    "config.yaml": {"a list": lambda t: "- 1\n", "games: 5": lambda t: t + "\ngames: 5\n",
                    "interpolation to a missing key": lambda t: t + "\nextra: ${nope.x}\n",
                    "seed 'abc'": lambda t: re.sub(r"(?m)^seed: .*$", "seed: abc", t)},
}


def report_setup(fname: str, edit) -> Callable:
    def setup(ctx, d):
        run_dir = copy_ref(ctx, "e", os.path.join(d, "run"))
        p = os.path.join(run_dir, fname)
        if edit is DELETE:
            os.remove(p)
        elif edit == "DIR":
            os.remove(p)
            os.makedirs(p)
        else:
            text = open(p, encoding="latin-1").read()
            write(p, edit(text).encode("latin-1", errors="replace") if isinstance(edit(text), str) else edit(text))
    return setup


def check_report(ctx, d, p):
    """crl report on a corrupt record: a one-line error (exit 2), or a report (exit 0) with finite numbers."""
    v = verdict_of_failure(p)
    if v:
        return v
    if p.rc == 2:
        return check_refusal(p)
    if p.rc == 0:
        bad = [f for f in glob.glob(os.path.join(d, "rep", "**", "*.json"), recursive=True) if nonfinite_json(f)]
        if bad:
            return "silent-wrong", f"exit 0 but {os.path.relpath(bad[0], d)} holds NaN/inf"
        return "held", "reported"
    return "bad-exit", f"exit {p.rc}: {(error_lines(p.err) or ['(no stderr)'])[-1][:140]}"


def check_duplicate_seeds(ctx, d, p):
    v = verdict_of_failure(p)
    if v:
        return v
    if p.rc == 2:
        return check_refusal(p)
    if re.search(r"duplicate|same (seed|run|records)|identical", p.text, re.I):
        return "held", "duplicates named"
    return "silent-wrong", "two copies of one run reported as independent seeds: " + \
        next((x.strip() for x in p.text.splitlines() if "group" in x), "")[:120]


def b_cases() -> list[Case]:
    cases = []
    cmd = ["report", "{d}/run", "--out", "{d}/rep"]
    for fname in RECORDS + ["run.json", "config.yaml"]:
        kinds = dict(GENERIC) if fname in RECORDS else {"random bytes": GENERIC["random bytes"], "empty": GENERIC["empty"]}
        kinds.update(PER_FILE.get(fname, {}))
        for kind, edit in kinds.items():
            cases.append(Case("b", f"report: {fname} {kind}", report_setup(fname, edit), cmd, check_report, timeout=120))
    cases += [
        Case("b", "report: runA runB the same run (duplicate seed)",
             lambda c, d: (copy_ref(c, "e", os.path.join(d, "runA")), copy_ref(c, "e", os.path.join(d, "runB"))),
             ["report", "{d}/runA", "{d}/runB", "--out", "{d}/rep"], check_duplicate_seeds,
             note="issue: grouped as 2 seeds with a zero-width interval"),
        Case("b", "report: empty run directory", lambda c, d: os.makedirs(os.path.join(d, "empty")),
             ["report", "{d}/empty", "--out", "{d}/rep"], lambda c, d, p: check_refusal(p)),
        Case("b", "report: --reference corrupt (evals [1,2])",
             lambda c, d: (copy_ref(c, "e", os.path.join(d, "run")),
                           report_setup("evals.jsonl", PER_FILE["evals.jsonl"]["line [1, 2]"])(c, os.path.join(d, "r2"))),
             ["report", "{d}/run", "--reference", "{d}/r2/run", "--out", "{d}/rep"], check_report),
    ]
    return cases


# ---- family c ----------------------------------------------------------------------------------------------------

SWEEP_SPECS = {
    "binary spec": RANDOM_BYTES, "empty spec": "", "spec a list": "- 1\n", "spec a scalar": "3\n",
    "resources cpus .nan": SWEEP_OK + "resources: {cpus: .nan}\n", "resources cpus -1": SWEEP_OK + "resources: {cpus: -1}\n",
    "resources cpus 0": SWEEP_OK + "resources: {cpus: 0}\n", "resources gpus .inf": SWEEP_OK + "resources: {gpus: .inf}\n",
    "resources cpus abc": SWEEP_OK + "resources: {cpus: abc}\n", "resources a scalar": SWEEP_OK + "resources: 5\n",
    "resources unknown key": SWEEP_OK + "resources: {cpu: 2}\n",
    "unknown top key": SWEEP_OK + "axis: {seed: [0]}\n", "empty axis": SWEEP_BASE + "axes: {seed: []}\n",
    "axis not a list": SWEEP_BASE + "axes: {seed: 0}\n", "unknown method": SWEEP_BASE + "axes: {method: [nope]}\n",
    "seed -1": SWEEP_BASE + "axes: {seed: [-1]}\n", "seed .nan": SWEEP_BASE + "axes: {seed: [.nan]}\n",
    "gamma 2 on an axis": SWEEP_BASE + "axes: {agent.gamma: [2]}\n", "key typo in base": SWEEP_OK.replace("buffer_size", "bufer_size"),
    "base a scalar": "base: 3\naxes: {seed: [0]}\n", "references: maybe": SWEEP_OK + "references: maybe\n",
    "method_axes unknown method": SWEEP_OK + "method_axes: {nope: {ewc.lambda_: [1]}}\n",
    "method_axes out of range": SWEEP_BASE + "axes: {method: [ewc]}\nmethod_axes: {ewc: {ewc.lambda_: [-1]}}\n",
    "preset nope": "preset: nope\n" + SWEEP_OK, "duplicate axes key": SWEEP_OK + "axes: {seed: [3]}\n",
    "interpolation to a missing key": SWEEP_OK + "extra: ${nope.x}\n",
    "interpolation in base": SWEEP_OK.replace("steps_per_game: 200", "steps_per_game: ${nope.x}"),
    "python object tag": SWEEP_OK + "x: !!python/object/apply:os.system ['touch PWNED']\n",
    "games mixed families": SWEEP_OK.replace("minatar/space_invaders", "Pong"),
    "duplicate seeds on an axis": SWEEP_BASE + "axes: {method: [finetune], seed: [0, 0]}\n",
    "non-utf8": b"base:\n  games: [\xff]\n",
}
SWEEP_JSON = {"[]": "[]", "{}": "{}", "random bytes": RANDOM_BYTES, "empty": "", "truncated": None, "null": "null",
              "runs a list": '{"runs": []}', "runs values strings": None}


def sweep_spec_setup(text) -> Callable:
    return files(spec_DOT_yaml=text)


def check_sweep_spec(legal: bool = False):
    def check(ctx, d, p):
        if os.path.exists(os.path.join(d, "PWNED")):
            return "silent-wrong", "a !!python tag in the spec ran a shell command"
        v = verdict_of_failure(p)
        if v:
            return v
        if p.rc == 0 and legal:
            return "held", "accepted"
        if p.rc == 0:
            return "silent-wrong", "bad spec accepted, sweep ran"
        return check_refusal(p, one_line=True)
    return check


def sweep_json_setup(name: str) -> Callable:
    def setup(ctx, d):
        shutil.copytree(os.path.join(ctx.reference("sweep"), "out"), os.path.join(d, "out"), symlinks=True)
        write(os.path.join(d, "spec.yaml"), SWEEP_OK)
        p = os.path.join(d, "out", "sweep.json")
        text = open(p).read()
        if name == "truncated":
            data = text[: len(text) // 2]
        elif name == "runs values strings":
            obj = json.loads(text)
            obj["runs"] = {k: "x" for k in obj.get("runs", {})}
            data = json.dumps(obj)
        else:
            data = SWEEP_JSON[name]
        write(p, data)
    return setup


def check_either(ctx, d, p):
    """No traceback, no hang: exit 0, or a one-line error with exit 2."""
    v = verdict_of_failure(p)
    if v:
        return v
    if p.rc == 0:
        return "held", "exit 0"
    return check_refusal(p)


def partial_sweep_setup(remove: str) -> Callable:
    def setup(ctx, d):
        shutil.copytree(os.path.join(ctx.reference("sweep"), "out"), os.path.join(d, "out"), symlinks=True)
        run_dir = os.path.join(d, "out", "runs", "finetune-s1")
        if remove == "metrics":
            os.remove(os.path.join(run_dir, "metrics.json"))
        else:
            shutil.rmtree(run_dir)
    return setup


def check_names_missing(ctx, d, p):
    v = verdict_of_failure(p)
    if v:
        return v
    if "finetune-s1" in p.text and re.search(r"missing|not finished|unfinished|partial|incomplete|no metrics", p.text, re.I):
        return "held", "names finetune-s1"
    return "silent-wrong", f"exit {p.rc}; the partial sweep's report does not say finetune-s1 is missing"


def c_cases() -> list[Case]:
    cases = []
    legal = {"duplicate seeds on an axis"}
    for name, text in SWEEP_SPECS.items():
        cases.append(Case("c", f"sweep spec: {name}", sweep_spec_setup(text), ["sweep", "{d}/spec.yaml", "--out", "{d}/out"],
                          check_either if name in legal else check_sweep_spec(), timeout=240))
    for name in SWEEP_JSON:
        cases.append(Case("c", f"sweep.json {name}: run", sweep_json_setup(name),
                          ["sweep", "{d}/spec.yaml", "--out", "{d}/out"], check_either, timeout=240))
        cases.append(Case("c", f"sweep.json {name}: --report", sweep_json_setup(name),
                          ["sweep", "--report", "{d}/out"], check_either, timeout=120))
    cases += [
        Case("c", "sweep --report on a partial sweep (metrics.json removed)", partial_sweep_setup("metrics"),
             ["sweep", "--report", "{d}/out"], check_names_missing, note="issue: must say which runs are missing"),
        Case("c", "sweep --report on a partial sweep (run dir removed)", partial_sweep_setup("dir"),
             ["sweep", "--report", "{d}/out"], check_names_missing),
        Case("c", "sweep --report on a non-sweep directory", files(x__y="1"), ["sweep", "--report", "{d}/x"],
             lambda c, d, p: check_refusal(p)),
        Case("c", "sweep --out /proc/x", sweep_spec_setup(SWEEP_OK), ["sweep", "{d}/spec.yaml", "--out", "/proc/x/y"],
             lambda c, d, p: check_refusal(p)),
        Case("c", "sweep --workers -1", sweep_spec_setup(SWEEP_OK), ["sweep", "{d}/spec.yaml", "--out", "{d}/out",
                                                                     "--workers", "-1"], lambda c, d, p: check_refusal(p)),
        Case("c", "sweep spec missing", None, ["sweep", "{d}/nope.yaml"], lambda c, d, p: check_refusal(p)),
    ]
    return cases


# ---- family d ----------------------------------------------------------------------------------------------------

API_PRELUDE = textwrap.dedent("""\
    import sys
    from envs import make_vec_env
    from agents import ContinualDQN
    from crl.methods import TaskInfo, make_method
    def mk(method="finetune"):
        return ContinualDQN(make_vec_env("minatar/breakout", n_envs=2, seed=0), method=make_method(method),
                            buffer_size=1000, learning_starts=50)
    """)
API_WRAP = textwrap.dedent("""\
    try:
    {body}
    except BaseException as e:
        print("EXC", ",".join(c.__name__ for c in type(e).__mro__), "|", " ".join(str(e).split())[:300])
        sys.exit(0)
    print("NOEXC")
    """)
API_SAVE = "a = mk(); a.set_task(TaskInfo(0, 'minatar/breakout')); a.learn(64); a.end_task(); a.save('agent.zip')\n"
API_CASES = [  # name, setup code (run before the try), body, accepted exception types, message regex
    ("learn() before set_task()", "a = mk()", "a.learn(64)", ("RuntimeError",), r"set_task"),
    ("end_task() before set_task()", "a = mk()", "a.end_task()", ("RuntimeError",), r"set_task"),
    ("TaskInfo(-1, game)", "", "TaskInfo(-1, 'minatar/breakout')", ("ValueError",), r"-1|negative|>= ?0"),
    ("TaskInfo('0', game)", "", "TaskInfo('0', 'minatar/breakout')", ("TypeError", "ValueError"), r"."),
    ("TaskInfo(1.5, game)", "", "TaskInfo(1.5, 'minatar/breakout')", ("TypeError", "ValueError"), r"."),
    ("set_task('breakout') (not a TaskInfo)", "a = mk()", "a.set_task('breakout')", ("TypeError", "ValueError"), r"TaskInfo"),
    ("set_task(None)", "a = mk()", "a.set_task(None)", ("TypeError", "ValueError"), r"TaskInfo"),
    ("ContinualDQN.load(zip, method=other)", API_SAVE, "b = ContinualDQN.load('agent.zip', method=make_method('ewc'))",
     ("ValueError", "TypeError"), r"^(?!.*got multiple values).*method"),   # not SB3's own keyword clash
    ("ContinualDQN.load(missing file)", "", "ContinualDQN.load('nope.zip')", ("FileNotFoundError", "ValueError"), r"nope"),
    ("ContinualDQN.load(random bytes)", f"open('bad.zip','wb').write({RANDOM_BYTES[:200]!r})",
     "ContinualDQN.load('bad.zip')", ("ValueError",), r"bad\.zip"),
    ("ContinualDQN.load(empty zip)", "import zipfile; zipfile.ZipFile('e.zip','w').close()",
     "ContinualDQN.load('e.zip')", ("ValueError",), r"e\.zip"),
    ("make_method('nope')", "", "make_method('nope')", ("ValueError", "KeyError"), r"nope"),
    ("make_vec_env('minatar/nope')", "", "make_vec_env('minatar/nope', n_envs=1, seed=0)", ("ValueError", "KeyError"), r"nope"),
    ("make_vec_env(n_envs=0)", "", "make_vec_env('minatar/breakout', n_envs=0, seed=0)", ("ValueError",), r"n_envs"),
    ("make_vec_env(seed=-1)", "", "make_vec_env('minatar/breakout', n_envs=1, seed=-1)", ("ValueError",), r"seed"),
    ("set_env to another family's observation space", "a = mk(); a.set_task(TaskInfo(0, 'minatar/breakout'))",
     "a.set_env(make_vec_env('Pong', n_envs=2, seed=0)); a.learn(16)", ("ValueError", "TypeError"), r"."),
    ("save to an unwritable path", API_SAVE, "a.save('/proc/x/agent.zip')", ("OSError", "FileNotFoundError",
                                                                            "PermissionError", "ValueError"), r"/proc/x"),
]


def d_cases() -> list[Case]:
    cases = []
    for name, pre, body, excs, rx in API_CASES:
        code = API_PRELUDE + pre + "\n" + API_WRAP.replace("{body}", textwrap.indent(body, "    "))

        def check(ctx, d, p, excs=excs, rx=rx):
            if p.timed_out:
                return "hang", "no exit"
            m = re.search(r"^EXC ([\w,]+) \| (.*)$", p.out, re.M)
            if m:   # the exception's class and its bases: a subclass of a wanted type is fine
                mro = m.group(1).split(",")
                if set(mro) & set(excs) and re.search(rx, m.group(2)):
                    return "held", f"{mro[0]}: {m.group(2)[:100]}"
                return "traceback", f"{mro[0]}: {m.group(2)[:130]} (want {'/'.join(excs)} matching /{rx}/)"
            if "NOEXC" in p.out:
                return "silent-wrong", "accepted without an error"
            last = (p.err.strip().splitlines() or ["(no output)"])[-1]
            return "probe-error", f"setup failed (rc {p.rc}): {last[:140]}"
        cases.append(Case("d", f"api: {name}", None, [sys.executable, "-c", code], check, timeout=180))
    return cases


# ---- family e ----------------------------------------------------------------------------------------------------

def exists(pattern: str) -> Callable[[str], bool]:
    return lambda d: bool(glob.glob(os.path.join(d, pattern)))


def lines_at_least(name: str, n: int) -> Callable[[str], bool]:
    def cond(d):
        try:
            with open(os.path.join(d, name), "rb") as f:
                return f.read().count(b"\n") >= n
        except OSError:
            return False
    return cond


def t_rm(*patterns: str) -> Callable[[str], None]:
    def tamper(d):
        for pat in patterns:
            for p in glob.glob(os.path.join(d, pat)):
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    return tamper


def t_keep_lines(name: str, n: int) -> Callable[[str], None]:
    def tamper(d):
        p = os.path.join(d, name)
        lines = open(p, "rb").read().splitlines(keepends=True)
        open(p, "wb").write(b"".join(lines[:n]))
    return tamper


def t_edit(name: str, fn: Callable[[bytes], bytes]) -> Callable[[str], None]:
    def tamper(d):
        p = os.path.join(d, name)
        write(p, fn(open(p, "rb").read() if os.path.exists(p) else b""))
    return tamper


def _newest(d: str, ext: str) -> list[str]:
    pts = sorted(glob.glob(os.path.join(d, "checkpoints", f"resume-*{ext}")),
                 key=lambda p: int(re.search(r"resume-(\d+)", p).group(1)))
    return pts[-1:]


def t_newest(ext: str, how: str) -> Callable[[str], None]:
    def tamper(d):
        for p in _newest(d, ext):
            if how == "rm":
                os.remove(p)
            elif how == "truncate":
                data = open(p, "rb").read()
                open(p, "wb").write(data[: len(data) // 2])
            else:   # flip bytes in the middle
                data = bytearray(open(p, "rb").read())
                for i in range(len(data) // 2, len(data) // 2 + 64):
                    data[i] ^= 0xFF
                open(p, "wb").write(bytes(data))
    return tamper


def t_all_points(how: str) -> Callable[[str], None]:
    def tamper(d):
        for p in glob.glob(os.path.join(d, "checkpoints", "resume-*.zip")):
            if how == "corrupt":
                data = bytearray(open(p, "rb").read())
                data[len(data) // 2] ^= 0xFF
                open(p, "wb").write(bytes(data))
        if how == "rm-sha":
            t_rm("checkpoints/resume-*.sha256")(d)
    return tamper


def t_chain(*fns) -> Callable[[str], None]:
    def tamper(d):
        for fn in fns:
            fn(d)
    return tamper


def t_stale_tmp(d: str) -> None:
    for name in ("resume-999.zip.tmp", "resume-1200.zip.tmp", "resume-1200.sha256.tmp", "resume-1200.replay.pkl.tmp"):
        write(os.path.join(d, "checkpoints", name), b"stale")


K, I, T = signal.SIGKILL, signal.SIGINT, signal.SIGTERM
AFTER_1200 = exists("checkpoints/resume-1200.sha256")
AFTER_800 = exists("checkpoints/resume-800.sha256")


def resume_case(name, phases, mode="exact", allow_refuse=False, restart=False, after=None, note="", timeout=240):
    """A fault scenario: phases run in order in one run dir, then the records are compared with the reference.

    allow_refuse: a one-line refusal (exit 2) of the last --resume is a held verdict (records that disagree).
    restart: the run has no usable checkpoint; --resume must train it from step 0 (else: stranded or bad-exit).
    after: an extra check of the run dir (returns a failure reason or None).
    """
    return Case("e", name, None, phases, _ResumeCheck(mode, allow_refuse, restart, after), timeout=timeout, note=note)


@dataclass
class _ResumeCheck:
    mode: str
    allow_refuse: bool
    restart: bool
    after: Callable | None = None

    def __call__(self, ctx, d, p):
        run_dir = os.path.join(d, "run")
        v = verdict_of_failure(p)
        if v:
            return v
        if p.rc != 0:
            if self.allow_refuse and p.rc == 2:
                return check_refusal(p)
            fresh = run(crl("train", *RUN_E, "--run-dir", run_dir), d, timeout=120 * ctx.scale)
            lines = error_lines(p.err)
            if fresh.rc != 0:
                return "stranded", (f"--resume: exit {p.rc} ({(lines or ['?'])[-1][:90]}); fresh train: "
                                    f"{(error_lines(fresh.err) or ['?'])[-1][:60]}")
            return "bad-exit", f"--resume: exit {p.rc} ({(lines or ['?'])[-1][:100]}); a fresh train works"
        why = compare_runs(run_dir, ctx.reference("e"), self.mode)
        if not why and self.after:
            why = self.after(run_dir)
        return ("silent-wrong", why) if why else ("held", "records match the reference")


def no_tmp_left(run_dir: str) -> str | None:
    left = glob.glob(os.path.join(run_dir, "checkpoints", "*.tmp"))
    return f"stale {os.path.basename(left[0])} survived the resume" if left else None


def run_phases(ctx: Ctx, d: str, phases: list[Phase], timeout: float) -> Proc:
    """Runs the phases; returns the last process (a failed trigger raises ProbeError)."""
    run_dir = os.path.join(d, "run")
    last = None
    for ph in phases:
        cmd = ph.cmd
        if cmd == "continue":   # what a user does next: --resume if the run dir was made, else train afresh
            cmd = "resume" if os.path.exists(os.path.join(run_dir, "config.yaml")) else "fresh"
        argv = {"train": crl("train", *RUN_E, "--run-dir", run_dir, *ph.extra),
                "resume": crl("train", "--resume", run_dir, *ph.extra),
                "fresh": crl("train", *RUN_E, "--run-dir", run_dir, *ph.extra)}[cmd]
        if ph.trigger is None:
            last = run(argv, d, timeout=timeout)
        else:
            last = _run_triggered(argv, d, run_dir, ph, timeout)
        if last.timed_out or "Traceback" in last.err:
            return last
        if ph is not phases[-1] and ph.expect_rc is not None and last.rc not in ph.expect_rc:
            lines = error_lines(last.err)
            raise PhaseVerdict("bad-exit", f"{ph.cmd} phase: exit {last.rc} (want {ph.expect_rc}): "
                               f"{(lines or ['(no stderr)'])[-1][:120]}")
        if ph.tamper:
            ph.tamper(run_dir)
    return last


class ProbeError(Exception):
    pass


class PhaseVerdict(Exception):
    """An intermediate phase already decided the case (e.g. SIGINT did not exit 130)."""


def _run_triggered(argv, cwd, run_dir, ph: Phase, timeout) -> Proc:
    t0 = time.time()
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    outs: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda s=s, k=k: outs.__setitem__(k, s.read()), daemon=True)
               for k, s in (("out", p.stdout), ("err", p.stderr))]
    for r in readers:
        r.start()
    fired = False
    while p.poll() is None and time.time() - t0 < timeout:
        if ph.trigger(run_dir):
            if ph.delay:
                time.sleep(ph.delay)
            for i, sig in enumerate(ph.signals):
                if i:
                    time.sleep(0.05)
                try:
                    os.kill(p.pid, sig)
                except ProcessLookupError:
                    pass
            fired = True
            break
        time.sleep(0.005)
    try:
        p.wait(timeout=max(1.0, timeout - (time.time() - t0)))
    except subprocess.TimeoutExpired:
        _kill_group(p)
        p.wait()
        for r in readers:
            r.join()
        return Proc(None, outs.get("out", b"").decode(errors="replace"), outs.get("err", b"").decode(errors="replace"),
                    time.time() - t0, True)
    for r in readers:
        r.join()
    if not fired:
        raise ProbeError(f"trigger never fired (the {ph.cmd} exited {p.returncode} first)")
    return Proc(p.returncode, outs.get("out", b"").decode(errors="replace"), outs.get("err", b"").decode(errors="replace"),
                time.time() - t0)


def finished_then(tamper) -> list[Phase]:
    return [Phase("train", tamper=tamper), Phase("resume")]


def check_unchanged_finished(ctx, d, p):
    v = verdict_of_failure(p)
    if v:
        return v
    if p.rc != 0 or not re.search(r"finished", p.text):
        return "bad-exit", f"exit {p.rc}: {(error_lines(p.err) or [p.out.strip()[-100:]])[-1][:120]}"
    why = compare_runs(os.path.join(d, "run"), ctx.reference("e"), "exact")
    if not why and os.path.exists(os.path.join(d, "run", "resumes.jsonl")):
        why = "resumes.jsonl written by a resume of a finished run"
    return ("silent-wrong", why) if why else ("held", "finished; nothing changed")


def check_resume_with_run_dir(ctx, d, p):
    v = verdict_of_failure(p)
    if v:
        return v
    if p.rc == 0:
        if not os.path.exists(os.path.join(d, "other")):
            return "silent-wrong", "--run-dir Y ignored silently by --resume X"
        return "held", "wrote to Y"
    return check_refusal(p)


def disk_full_case(size: str) -> Case:
    def setup(ctx, d):
        mnt = os.path.join(d, "mnt")
        os.makedirs(mnt)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", mnt], capture_output=True)
        if r.returncode:
            raise ProbeError(f"cannot mount a {size} tmpfs: {r.stderr.decode().strip()[:100]}")

    def check(ctx, d, p):
        try:
            if p.rc == 0:
                return "probe-error", f"the run fit in {size}"
            return check_refusal(p, codes=(2,), one_line=True)
        finally:
            subprocess.run(["umount", "-l", os.path.join(d, "mnt")], capture_output=True)
    return Case("e", f"disk full ({size} tmpfs) mid-run", setup, ["train", *RUN_E, "--run-dir", "{d}/mnt/run"], check,
                timeout=240, note="issue: TensorBoard's writer thread prints an OSError traceback")


def e_cases() -> list[Case]:
    R = Phase("resume")
    cases = [
        # SIGKILL at various times, then resume: exact
        resume_case("kill -9 after resume-400 (first point), resume", [Phase("train", exists("checkpoints/resume-400.sha256")), R]),
        resume_case("kill -9 after resume-800 (block end), resume", [Phase("train", AFTER_800), R]),
        resume_case("kill -9 after resume-1200 (second game), resume", [Phase("train", AFTER_1200), R]),
        resume_case("kill -9 after the first evaluation, resume", [Phase("train", lines_at_least("evals.jsonl", 2)), R]),
        resume_case("kill -9 after the block-end evaluation, resume", [Phase("train", lines_at_least("evals.jsonl", 4)), R]),
        resume_case("kill -9 after the step-1200 evaluation, resume", [Phase("train", lines_at_least("evals.jsonl", 6)), R]),
        resume_case("kill -9 after the step-1600 evaluation, resume", [Phase("train", lines_at_least("evals.jsonl", 8)), R]),
        resume_case("kill -9 after task-0.zip, resume", [Phase("train", exists("checkpoints/task-0.zip")), R]),
        resume_case("kill -9 before the first point (TB file exists), resume", [Phase("train", exists("tb/*")), R],
                    note="restarts from the beginning"),
        resume_case("kill -9 while model.zip is written, resume", [Phase("train", exists("model.zip*")), R],
                    note="issue: hparams/* twice"),
        resume_case("kill -9 after metrics.json, resume", [Phase("train", exists("metrics.json")), R]),
        resume_case("kill -9 after resume-1600.zip (final point), resume", [Phase("train", exists("checkpoints/resume-1600.zip")), R]),
        resume_case("kill -9 twice (after 1200, then after 1600.zip), resume",
                    [Phase("train", AFTER_1200), Phase("resume", exists("checkpoints/resume-1600.zip")), R]),
        resume_case("kill -9 in block 1, resume, kill -9 in block 2, resume",
                    [Phase("train", exists("checkpoints/resume-400.sha256")), Phase("resume", AFTER_1200), R]),
        # stranded: no usable checkpoint -> --resume restarts from step 0
        resume_case("kill -9 between the first resume-N.zip and its .sha256, resume",
                    [Phase("train", exists("checkpoints/resume-400.zip"),
                           tamper=t_chain(t_rm("checkpoints/resume-*.sha256"), t_rm("checkpoints/resume-8*"),
                                          t_rm("checkpoints/resume-12*"), t_rm("checkpoints/resume-16*"))), R],
                    restart=True, note="issue: stranded"),
        resume_case("first point without .sha256 plus an orphan .sha256.tmp (Ctrl-C twice, simulated), resume",
                    [Phase("train", exists("checkpoints/resume-400.zip"),
                           tamper=t_chain(t_rm("checkpoints/resume-*.sha256"), t_rm("checkpoints/resume-8*"),
                                          t_rm("checkpoints/resume-12*"), t_rm("checkpoints/resume-16*"),
                                          t_edit("checkpoints/resume-400.sha256.tmp", lambda b: b"0" * 30))), R],
                    restart=True, note="issue: stranded (the state Ctrl-C twice leaves)"),
        resume_case("every resume point corrupt, resume", [Phase("train", AFTER_1200, tamper=t_all_points("corrupt")), R],
                    restart=True, note="issue: stranded"),
        resume_case("every .sha256 deleted, resume", [Phase("train", AFTER_1200, tamper=t_all_points("rm-sha")), R],
                    restart=True),
        resume_case("checkpoints/ deleted, resume", [Phase("train", AFTER_1200, tamper=t_rm("checkpoints")), R],
                    restart=True),
        resume_case("Ctrl-C twice in the first block, resume",
                    [Phase("train", exists("tb/*"), signals=(I, I), delay=0.5), R], mode="structure", restart=True,
                    note="issue: resume-410.zip without a valid .sha256 plus an orphan .sha256.tmp"),
        # corrupt or missing records, then resume: repair (exact) or a one-line refusal
        resume_case("evals.jsonl truncated to 2 lines, resume",
                    [Phase("train", AFTER_1200, tamper=t_keep_lines("evals.jsonl", 2)), R], allow_refuse=True,
                    note="issue: records trimmed by line count"),
        resume_case("evals.jsonl deleted, resume", [Phase("train", AFTER_1200, tamper=t_rm("evals.jsonl")), R],
                    allow_refuse=True, note="issue"),
        resume_case("evals.jsonl truncated, resume, kill -9 after the next evaluation, resume",
                    [Phase("train", AFTER_800, tamper=t_keep_lines("evals.jsonl", 2)),
                     Phase("resume", lines_at_least("evals.jsonl", 4)), R], allow_refuse=True,
                    note="issue: an evaluation appears twice"),
        resume_case("blocks.jsonl deleted, resume", [Phase("train", AFTER_1200, tamper=t_rm("blocks.jsonl")), R],
                    allow_refuse=True),
        resume_case("blocks.jsonl emptied, resume", [Phase("train", AFTER_1200, tamper=t_keep_lines("blocks.jsonl", 0)), R],
                    allow_refuse=True),
        resume_case("evals.jsonl torn last line, resume",
                    [Phase("train", AFTER_1200, tamper=t_edit("evals.jsonl", lambda b: b[:-30])), R], allow_refuse=True),
        resume_case("evals.jsonl garbage line appended, resume",
                    [Phase("train", AFTER_1200, tamper=t_edit("evals.jsonl", lambda b: b + b"garbage\n")), R],
                    allow_refuse=True),
        resume_case("evals.jsonl last line duplicated, resume",
                    [Phase("train", AFTER_1200, tamper=t_edit("evals.jsonl", lambda b: b + b.splitlines(True)[-1])), R],
                    allow_refuse=True),
        resume_case("evals.jsonl a foreign record appended, resume",
                    [Phase("train", AFTER_1200, tamper=t_edit("evals.jsonl", lambda b: b + b.splitlines(True)[0].replace(
                        b'"step": 400', b'"step": 99999'))), R], allow_refuse=True),
        resume_case("evals.jsonl first record edited, resume",
                    [Phase("train", AFTER_1200, tamper=t_edit("evals.jsonl", lambda b: b.replace(
                        b'"mean_return": ', b'"mean_return": 7', 1))), R], allow_refuse=True),
        resume_case("blocks.jsonl binary garbage appended, resume",
                    [Phase("train", AFTER_1200, tamper=t_edit("blocks.jsonl", lambda b: b + RANDOM_BYTES[:64])), R],
                    allow_refuse=True),
        resume_case("retention.csv deleted, resume", [Phase("train", AFTER_1200, tamper=t_rm("retention.csv")), R],
                    allow_refuse=True),
        resume_case("retention.csv garbage, resume",
                    [Phase("train", AFTER_1200, tamper=t_edit("retention.csv", lambda b: RANDOM_BYTES[:100])), R],
                    allow_refuse=True),
        # checkpoints
        resume_case("newest resume point corrupted, resume", [Phase("train", AFTER_1200, tamper=t_newest(".zip", "flip")), R]),
        resume_case("newest resume point truncated, resume", [Phase("train", AFTER_1200, tamper=t_newest(".zip", "truncate")), R]),
        resume_case("newest .sha256 deleted, resume", [Phase("train", AFTER_1200, tamper=t_newest(".sha256", "rm")), R]),
        resume_case("newest replay pickle deleted, resume", [Phase("train", AFTER_1200, tamper=t_newest(".replay.pkl", "rm")), R]),
        resume_case("newest .sha256 garbage, resume", [Phase("train", AFTER_1200, tamper=t_newest(".sha256", "flip")), R]),
        resume_case("stale checkpoints/*.tmp, resume", [Phase("train", AFTER_1200, tamper=t_stale_tmp), R],
                    after=no_tmp_left, note="issue: a stale resume-*.zip.tmp survives a resume"),
        resume_case("tb/ deleted, resume", [Phase("train", AFTER_1200, tamper=t_rm("tb")), R], allow_refuse=True,
                    note="TensorBoard history lost: refusing or restoring are both held; continuing silently is not"),
        # finished runs
        resume_case("finished run, model.zip deleted, resume", finished_then(t_rm("model.zip")),
                    note="issue: every hparams/* scalar twice"),
        resume_case("finished run, metrics.json deleted, resume", finished_then(t_rm("metrics.json"))),
        resume_case("finished run, model.zip and metrics.json deleted, resume", finished_then(t_rm("model.zip", "metrics.json"))),
        Case("e", "finished run, resume changes nothing", None, [Phase("train"), R], check_unchanged_finished),
        # signals: the checkpoint is mid-segment, so the values may differ; the structure may not
        resume_case("SIGINT after resume-400, resume", [Phase("train", exists("checkpoints/resume-400.sha256"), signals=(I,),
                                                              expect_rc=(130,)), R], mode="structure"),
        resume_case("SIGTERM after the step-1200 evaluation, resume",
                    [Phase("train", lines_at_least("evals.jsonl", 6), signals=(T,), expect_rc=(143,)), R], mode="structure"),
        resume_case("SIGINT twice in the second game, resume",
                    [Phase("train", AFTER_1200, signals=(I, I)), R], mode="structure"),
        resume_case("SIGINT during start-up, resume", [Phase("train", lambda d: True, signals=(I,), delay=0.8,
                                                             expect_rc=(130,)), Phase("continue")],
                    mode="structure", restart=True, note="timing-dependent: the signal may land before or after the run dir"),
        resume_case("SIGINT, resume, SIGINT, resume",
                    [Phase("train", exists("checkpoints/resume-400.sha256"), signals=(I,)),
                     Phase("resume", exists("checkpoints/resume-12*.sha256"), signals=(I,)), R], mode="structure"),
        # other
        Case("e", "--resume X --run-dir Y", None, [Phase("train", AFTER_1200), Phase("resume", extra=("--run-dir", "{d}/other"))],
             check_resume_with_run_dir, timeout=240, note="issue: Y silently ignored"),
        Case("e", "--resume --cycles 0 (fewer)", None, [Phase("train", AFTER_1200), Phase("resume", extra=("--cycles", "0"))],
             lambda c, d, p: check_refusal(p), timeout=240),
        Case("e", "fresh train into a killed run's dir", None, [Phase("train", AFTER_1200), Phase("fresh")],
             lambda c, d, p: check_refusal(p), timeout=240),
        disk_full_case("1M"),
        disk_full_case("5M"),
    ]
    return cases


# ---- family f ----------------------------------------------------------------------------------------------------

def check_fast_refusal(limit: float):
    def check(ctx, d, p):
        v = verdict_of_failure(p)
        if v:
            return v
        if p.secs > limit * ctx.scale:
            return "hang", f"took {p.secs:.0f} s (want < {limit:.0f} s)"
        return check_refusal(p)
    return check


def locked_setup(ctx, d):
    """A run in progress in {d}/run (killed when the case ends)."""
    run_dir = os.path.join(d, "run")
    p = subprocess.Popen(crl("train", *RUN_E, "--steps-per-game", "100000", "--run-dir", run_dir), cwd=d,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _BACKGROUND[d] = p
    t0 = time.time()
    while not glob.glob(os.path.join(run_dir, "tb", "*")):
        if p.poll() is not None or time.time() - t0 > 120:
            raise ProbeError("the background run did not start")
        time.sleep(0.1)


_BACKGROUND: dict[str, subprocess.Popen] = {}


def f_cases() -> list[Case]:
    spec = sweep_spec_setup(SWEEP_OK)
    return [
        Case("f", "sweep --ray 127.0.0.1:1", spec, ["sweep", "{d}/spec.yaml", "--out", "{d}/out", "--ray", "127.0.0.1:1"],
             check_fast_refusal(30), timeout=60, note="issue: never ends"),
        Case("f", "sweep --ray 10.255.255.1:6379 (unroutable)", spec,
             ["sweep", "{d}/spec.yaml", "--out", "{d}/out", "--ray", "10.255.255.1:6379"], check_fast_refusal(30), timeout=60),
        Case("f", "sweep --ray not-an-address", spec, ["sweep", "{d}/spec.yaml", "--out", "{d}/out", "--ray", "::::"],
             check_fast_refusal(30), timeout=60),
        Case("f", "sweep --workers 0", spec, ["sweep", "{d}/spec.yaml", "--out", "{d}/out", "--workers", "0"],
             check_fast_refusal(30), timeout=60),
        Case("f", "--resume while the run is going", locked_setup, ["train", "--resume", "{d}/run"],
             check_fast_refusal(20), timeout=40),
        Case("f", "second crl train on a running run dir", locked_setup, ["train", *TINY, "--run-dir", "{d}/run"],
             check_fast_refusal(20), timeout=40),
        Case("f", "train --config /dev/stdin with no input", None, ["train", "--config", "/dev/stdin", *TINY, "--run-dir",
                                                                    "{d}/run"], either_a(), timeout=60),
    ]


ALL = {"a": a_cases, "b": b_cases, "c": c_cases, "d": d_cases, "e": e_cases, "f": f_cases}


# --------------------------------------------------------------------------------------------------------------------
# Runner

def describe(case: Case) -> str:
    """The case's command line (or fault scenario) in one line, for the list of non-held cases."""
    if case.command and isinstance(case.command[0], Phase):
        parts = []
        for ph in case.command:
            sig = "" if ph.trigger is None else " +" + "+".join(signal.Signals(s).name for s in ph.signals)
            parts.append(f"{ph.cmd}{sig}{' ' + ' '.join(ph.extra) if ph.extra else ''}{' +tamper' if ph.tamper else ''}")
        return "crl train RUN_E; " + " -> ".join(parts)
    if case.command[0] == sys.executable:
        return "python -c <api snippet>"
    short = {" ".join(TINY): "TINY", " ".join(RUN_E): "RUN_E"}
    text = "crl " + " ".join(x if x and " " not in x else repr(x) for x in case.command)
    for long, name in short.items():
        text = text.replace(long, name)
    return text


def fmt(x, d: str):
    return x.replace("{d}", d) if isinstance(x, str) else x


def run_case(ctx: Ctx, case: Case, idx: int) -> dict:
    d = os.path.join(ctx.root, f"case-{idx:03d}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    t0 = time.time()
    timeout = case.timeout * ctx.scale
    try:
        if case.setup:
            case.setup(ctx, d)
        if case.command and isinstance(case.command[0], Phase):
            phases = [Phase(ph.cmd, ph.trigger, ph.signals, ph.tamper, tuple(fmt(x, d) for x in ph.extra), ph.delay,
                            ph.expect_rc) for ph in case.command]
            p = run_phases(ctx, d, phases, timeout)
        else:
            argv = [fmt(x, d) for x in case.command]
            if argv[0] != sys.executable:
                argv = crl(*argv)
            p = run(argv, d, timeout=timeout)
        if "argument command: invalid choice" in p.err:
            raise ProbeError("the probe built a bad command line: " + p.err.strip()[-120:])
        cls, detail = case.check(ctx, d, p)
    except ProbeError as e:
        cls, detail, p = "probe-error", str(e), None
    except PhaseVerdict as e:
        cls, detail, p = e.args[0], e.args[1], None
    except Exception as e:  # noqa: BLE001 - the probe reports its own failures as probe-error
        cls, detail, p = "probe-error", f"{type(e).__name__}: {e}"[:200], None
    finally:
        bg = _BACKGROUND.pop(d, None)
        if bg is not None:
            _kill_group(bg)
            bg.wait()
    if cls == "held" and not ctx.keep:
        shutil.rmtree(d, ignore_errors=True)
    return {"family": case.family, "name": case.name, "class": cls, "detail": detail, "note": case.note,
            "command": describe(case),
            "rc": None if p is None else p.rc, "secs": round(time.time() - t0, 1), "dir": d,
            "stderr_tail": None if p is None or cls == "held" else p.err.strip()[-600:]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default="a,b,c,d,e,f", help="comma-separated subset of a,b,c,d,e,f")
    ap.add_argument("--jobs", type=int, default=1, help="cases run at once (default 1)")
    ap.add_argument("--out", help="write per-case results to this JSON file")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("-k", dest="match", help="only cases whose name contains this substring (case-insensitive)")
    ap.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every timeout (slow machines)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (non-held cases are always kept)")
    ap.add_argument("--workdir", help="work directory (default: a new one under $TMPDIR)")
    args = ap.parse_args(argv)
    fams = [f.strip() for f in args.families.split(",") if f.strip()]
    bad = [f for f in fams if f not in ALL]
    if bad:
        ap.error(f"unknown families {bad}; choose from {','.join(ALL)}")
    cases = [c for f in fams for c in ALL[f]()]
    if args.match:
        cases = [c for c in cases if args.match.lower() in c.name.lower()]
    if args.list:
        for c in cases:
            print(f"{c.family}  {c.name}" + (f"   [{c.note}]" if c.note else ""))
        print(f"{len(cases)} cases: " + ", ".join(f"{f}={sum(c.family == f for c in cases)}" for f in fams))
        return 0
    root = args.workdir or tempfile.mkdtemp(prefix="crl-probe-")
    os.makedirs(root, exist_ok=True)
    ctx = Ctx(root, args.timeout_scale)
    ctx.keep = args.keep
    print(f"{len(cases)} cases, work directory {root}", file=sys.stderr)
    results: list[dict | None] = [None] * len(cases)
    t0 = time.time()
    with futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        todo = {pool.submit(run_case, ctx, c, i): i for i, c in enumerate(cases)}
        for n, fut in enumerate(futures.as_completed(todo), 1):
            i = todo[fut]
            r = results[i] = fut.result()
            print(f"[{n}/{len(cases)} {time.time() - t0:5.0f}s] {r['class']:<12} {r['family']} {r['name']}"
                  + ("" if r["class"] == "held" else f"  -- {r['detail']}"), file=sys.stderr, flush=True)
            if args.out:
                with open(args.out, "w") as f:
                    json.dump([x for x in results if x], f, indent=1)
    # tables
    print(f"\n{'family':<36}" + "".join(f"{c:>13}" for c in CLASSES) + f"{'total':>8}")
    for f in fams:
        rs = [r for r in results if r["family"] == f]
        print(f"{f + ' ' + FAMILIES[f]:<36}" + "".join(f"{sum(r['class'] == c for r in rs):>13}" for c in CLASSES)
              + f"{len(rs):>8}")
    print(f"{'all':<36}" + "".join(f"{sum(r['class'] == c for r in results):>13}" for c in CLASSES) + f"{len(results):>8}")
    bad = [r for r in results if r["class"] != "held"]
    if bad:
        print(f"\nnot held ({len(bad)}):")
        for r in sorted(bad, key=lambda r: (CLASSES.index(r["class"]), r["family"])):
            print(f"  {r['class']:<12} {r['family']}  {r['name']}: {r['detail']}")
    if not args.keep and not bad and not args.workdir:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
