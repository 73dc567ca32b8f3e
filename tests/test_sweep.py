"""``crl sweep``: spec expansion and checks (pure), spec errors through the real CLI, and real sweeps of MinAtar runs
here and on a local Ray cluster, killed mid-way and rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from crl.run import rundir
from crl.sweep import execute, spec
from tests.conftest import REPO, run_crl

GAMES = ["minatar/breakout", "minatar/space_invaders"]
# Tiny runs: two evaluations per run (block ends), a resume checkpoint every 100 steps, a 2-minibatch Fisher.
TINY_BASE = {
    "games": GAMES,
    "steps_per_game": 200,
    "n_envs": 2,
    "device": "cpu",
    "eval": {"every": 0, "episodes": 1, "max_steps": 30},
    "agent": {"learning_starts": 100, "buffer_size": 1000, "target_update_interval": 100},
    "ewc.fisher_batches": 2,
    "log_every": 100,
    "checkpoint.every": 100,
}


def expand(data: dict) -> spec.Sweep:
    return spec.expand(data, source="s.yaml")


# --- expansion and checks (pure) ----------------------------------------------------------------------------


def test_axes_cross_and_method_axes_multiply_only_their_method():
    sweep = expand({"base": {"games": GAMES}, "axes": {"method": ["finetune", "ewc"], "seed": [0, 1]},
                    "method_axes": {"ewc": {"ewc.lambda_": [100, 400]}}})
    names = [r.name for r in sweep.runs]
    assert names == ["finetune-s0", "finetune-s1", "ewc-lambda_100-s0", "ewc-lambda_400-s0",
                     "ewc-lambda_100-s1", "ewc-lambda_400-s1"]
    by_name = {r.name: r for r in sweep.runs}
    assert by_name["ewc-lambda_400-s1"].config.ewc.lambda_ == 400.0
    assert by_name["ewc-lambda_400-s1"].config.seed == 1
    assert by_name["finetune-s1"].config.method == "finetune"
    assert by_name["ewc-lambda_100-s0"].overrides == {"method": "ewc", "seed": 0, "ewc.lambda_": 100}
    assert all(r.kind == "run" and r.config.games == GAMES for r in sweep.runs)


def test_references_one_per_game_and_seed_single_game_finetune_one_cycle():
    sweep = expand({"base": {"games": GAMES, "steps_per_game": 500, "cycles": 2},
                    "axes": {"method": ["ewc", "l2"], "seed": [3, 4]}, "references": True})
    refs = [r for r in sweep.runs if r.kind == "reference"]
    assert [r.name for r in refs] == ["ref-minatar_breakout-s3", "ref-minatar_space_invaders-s3",
                                      "ref-minatar_breakout-s4", "ref-minatar_space_invaders-s4"]
    for ref in refs:
        assert ref.config.method == "finetune" and ref.config.cycles == 1
        assert ref.config.steps_per_game == 500 and len(ref.config.games) == 1
    assert {(r.config.games[0], r.config.seed) for r in refs} == {(g, s) for g in GAMES for s in (3, 4)}
    assert len(sweep.runs) == 4 + 4


def test_nested_and_dotted_keys_are_the_same_sweep_and_a_setting_change_is_not():
    nested = expand({"base": {"games": GAMES, "agent": {"gamma": 0.9}}, "axes": {"seed": [0, 1]}})
    dotted = expand({"axes": {"seed": [0, 1]}, "base": {"agent.gamma": 0.9, "games": GAMES},
                     "resources": {"cpus": 2}})
    other = expand({"base": {"games": GAMES, "agent.gamma": 0.95}, "axes": {"seed": [0, 1]}})
    assert nested.runs[0].config.agent.gamma == 0.9
    assert nested.fingerprint == dotted.fingerprint != other.fingerprint
    assert dotted.cpus == 2.0 and dotted.gpus is None


def test_names_show_only_axes_with_several_values_and_stay_unambiguous():
    sweep = expand({"base": {"games": GAMES}, "axes": {"agent.gamma": [0.9, 0.99], "agent.learning_rate": [0.001],
                                                        "seed": [0]}})
    assert [r.name for r in sweep.runs] == ["finetune-gamma_0.9-s0", "finetune-gamma_0.99-s0"]
    assert spec._short_names(["agent.gamma", "fmn.gamma", "ewc.lambda_"]) == {
        "agent.gamma": "agent.gamma", "fmn.gamma": "fmn.gamma", "ewc.lambda_": "lambda"}
    assert spec.slug(["minatar/breakout", "pong"]) == "minatar_breakout+pong"


def test_a_preset_draws_each_seeds_games():
    sweep = expand({"preset": "ewc-atari-2017-scaled-20", "axes": {"seed": [0, 1]}, "references": True})
    runs = [r for r in sweep.runs if r.kind == "run"]
    assert [r.name for r in runs] == ["ewc-s0", "ewc-s1"]  # the preset's method
    assert runs[0].config.games != runs[1].config.games
    refs = [r for r in sweep.runs if r.kind == "reference"]
    assert len(refs) == sum(len(r.config.games) for r in runs)
    assert all(r.config.steps_per_game == runs[0].config.steps_per_game for r in refs)


@pytest.mark.parametrize("data, says", [
    ({"axes": {"method": ["finetune", "ewk"]}}, "axes.method: unknown method 'ewk'"),
    ({"axes": {"seed": []}}, "axes.seed is empty"),
    ({"base": {"agent.gama": 0.9}}, "unknown config key 'agent.gama' (did you mean 'agent.gamma'?)"),
    ({"axes": {"agent": {"gama": [0.9]}}}, "axes: unknown config key 'agent.gama'"),
    ({"axis": {"seed": [0]}}, "unknown key 'axis' (did you mean 'axes'?)"),
    ({"axes": {"seed": 3}}, "axes.seed must be a list"),
    ({"axes": {"seed": [0, 0]}}, "axes.seed lists 0 twice"),
    ({"axes": {"method": ["finetune", "ewc"], "ewc.lambda_": [1, 2]}}, "axes.ewc.lambda_ only applies to ewc"),
    ({"method_axes": {"ewc": {"ewc.lambda_": [1]}}}, "method_axes.ewc: ewc is not among the sweep's methods"),
    ({"axes": {"method": ["ewc"]}, "method_axes": {"ewc": {"ewc.lambda_": []}}}, "method_axes.ewc.ewc.lambda_ is empty"),
    ({"axes": {"method": ["ewc"]}, "method_axes": {"ewc": {"ewc.lambda_": [-1]}}}, "run ewc-s0: ewc.lambda_ must be >= 0"),
    ({"base": {"run_dir": "x"}}, "base.run_dir: the sweep sets run_dir"),
    ({"base": {"games": ["pong", "pongg"]}}, "unknown game 'pongg'"),
    ({"preset": "ewc-atari-2099"}, "preset: unknown preset 'ewc-atari-2099'"),
    ({"references": "yes"}, "references must be true or false"),
    ({"resources": {"cpus": 0}}, "resources.cpus must be a positive number"),
])
def test_spec_errors_name_the_entry(data, says):
    with pytest.raises(spec.SpecError) as err:
        expand(data)
    message = str(err.value)
    assert message.startswith("s.yaml: ") and says in message and "\n" not in message


def test_eta_from_finished_runs():
    state = {"runs": {"a": {"status": "done", "attempts": [{"duration_s": 50.0}, {"duration_s": 10.0}]},
                      "b": {"status": "done", "attempts": [{"duration_s": 40.0}]},
                      "c": {"status": "pending", "attempts": []}}}
    # mean 50 s a run: 2 left and one running for 20 s (30 s to go) over 2 workers: (100 + 30) / 2
    assert execute.eta(state, left=2, running_for=[20.0], workers=2) == "1m05s"
    assert execute.eta({"runs": {"c": {"status": "pending", "attempts": []}}}, 1, [], 2) == "?"
    assert execute.format_seconds(7300) == "2h01m"


# --- the real command ----------------------------------------------------------------------------------------


def write_spec(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.e2e  # a `crl` subprocess
@pytest.mark.parametrize("data, says", [
    ({"base": {"agent": {"gama": 0.9}}}, "unknown config key 'agent.gama'"),
    ({"axes": {"method": ["finetune", "magic"]}}, "unknown method 'magic'"),
    ({"axes": {"seed": [0], "method": []}}, "axes.method is empty"),
])
def test_spec_error_exits_2_with_one_line_and_writes_nothing(tmp_path, data, says):
    path = write_spec(tmp_path / "bad.yaml", data)
    proc = run_crl("sweep", str(path), "--out", str(tmp_path / "out"), check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and str(path) in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.e2e  # a `crl` subprocess
def test_dry_run_prints_every_run_and_writes_nothing(tmp_path):
    path = write_spec(tmp_path / "s.yaml", {"base": TINY_BASE, "axes": {"method": ["finetune", "ewc"], "seed": [0, 1]},
                                            "method_axes": {"ewc": {"ewc.lambda_": [100, 400]}}, "references": True})
    proc = run_crl("sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run")
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("10 runs (6 sequence runs, 4 single-game references)")
    assert any(line.split()[:4] == ["ewc-lambda_400-s1", "method=ewc", "seed=1", "ewc.lambda_=400"] for line in lines)
    assert any(line.split()[0] == "ref-minatar_space_invaders-s1" for line in lines[2:])
    assert not (tmp_path / "out").exists()


@pytest.mark.e2e  # a `crl` subprocess
def test_ray_option_without_ray_says_how_to_install_it(tmp_path):
    path = write_spec(tmp_path / "s.yaml", {"base": {"games": GAMES}})
    code = ("import sys; sys.modules['ray'] = None; from crl.cli.main import main; "
            f"sys.exit(main(['sweep', {str(path)!r}, '--out', {str(tmp_path / 'out')!r}, '--ray']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ['crl: error: crl sweep --ray needs Ray, an optional extra: '
                                                'pip install -e ".[ray]"']


def sweep_state(out: Path) -> dict:
    return json.loads((out / "sweep.json").read_text())


def check_finished_run(run_dir: Path, games: list[str]) -> None:
    """A complete crl train run directory: config, metrics, one record per block, evaluations of every game."""
    config = yaml.safe_load((run_dir / rundir.CONFIG).read_text())
    assert config["games"] == games
    metrics = json.loads((run_dir / rundir.METRICS).read_text())
    assert len(metrics["retention_matrix"]) == len(games)
    blocks = rundir.read_jsonl(run_dir / rundir.BLOCKS)
    assert [b["block"] for b in blocks] == list(range(len(games)))
    evals = rundir.read_jsonl(run_dir / rundir.EVALS)
    assert {e["game"] for e in evals} == set(games)
    assert len({(e["step"], e["game"]) for e in evals}) == len(evals)  # nothing evaluated twice


@pytest.mark.e2e
def test_failed_run_is_recorded_the_others_go_on_and_another_spec_is_refused(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("the failing run is one on device cuda, which works here")
    data = {"base": {**TINY_BASE, "games": GAMES[:1]}, "axes": {"device": ["cpu", "cuda"]}, "references": True}
    path, out = write_spec(tmp_path / "s.yaml", data), tmp_path / "out"
    proc = run_crl("sweep", str(path), "--out", str(out), "--workers", "2", check=False)
    assert proc.returncode == 1, proc.stderr
    runs = sweep_state(out)["runs"]
    assert runs["finetune-device_cpu-s0"]["status"] == runs["ref-minatar_breakout-s0"]["status"] == "done"
    failed = runs["finetune-device_cuda-s0"]
    assert failed["status"] == "failed" and "no CUDA device" in failed["error"]
    assert "finetune-device_cuda-s0 FAILED: crl: error: device cuda" in proc.stderr
    summary = json.loads((out / "report" / "summary.json").read_text())  # over the finished runs
    assert [(g["label"], g["n_runs"]) for g in summary["groups"]] == [("finetune", 1)]
    assert summary["reference_runs"] == [str(out.resolve() / "runs" / "ref-minatar_breakout-s0")]

    again = run_crl("sweep", str(path), "--out", str(out), check=False)  # retries the failed run only
    assert again.returncode == 1
    runs = sweep_state(out)["runs"]
    assert len(runs["finetune-device_cpu-s0"]["attempts"]) == len(runs["ref-minatar_breakout-s0"]["attempts"]) == 1
    assert len(runs["finetune-device_cuda-s0"]["attempts"]) == 2

    data["base"]["steps_per_game"] = 300
    other = run_crl("sweep", str(write_spec(tmp_path / "other.yaml", data)), "--out", str(out), check=False)
    assert other.returncode == 2
    assert len(other.stderr.strip().splitlines()) == 1 and "holds another sweep" in other.stderr


def wait_until_stopped(out: Path, names: list[str], timeout: float = 120) -> None:
    """Until no process holds a run's lock: every run of the killed sweep has checkpointed and exited."""
    import fcntl

    deadline = time.time() + timeout
    for name in names:
        path = out / "locks" / f"{name}.lock"
        if not path.exists():
            continue
        with open(path) as lock:
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    assert time.time() < deadline, f"{name} still running"
                    time.sleep(0.2)


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the complete resume checkpoints of a run (none before its directory exists)."""
    return [int(p.stem.split("-")[1]) for p in (run_dir / "checkpoints").glob("resume-*.sha256")]


@pytest.mark.e2e
def test_local_sweep_killed_midway_resumes_without_repeating_or_losing_runs(tmp_path):
    data = {"base": TINY_BASE, "axes": {"method": ["finetune", "ewc"], "seed": [0, 1]}}
    path, out = write_spec(tmp_path / "s.yaml", data), tmp_path / "out"
    names = [r.name for r in expand(data).runs]
    argv = [sys.executable, "-m", "crl", "sweep", str(path), "--out", str(out), "--workers", "2"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    first = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    # kill it once a run has finished and another is under way with a resume checkpoint in its first block (so
    # it has a block left to train when it is told to stop)
    deadline, seen = time.time() + 300, {}
    while time.time() < deadline:
        done = [n for n in names if (out / "runs" / n / "metrics.json").is_file()]
        steps = {n: checkpoint_steps(out / "runs" / n) for n in names if n not in done}
        seen = {n: max(s) for n, s in steps.items() if s and max(s) < TINY_BASE["steps_per_game"]}
        if done and seen:
            break
        assert first.poll() is None, first.communicate()[1][-3000:]
        time.sleep(0.2)
    else:
        raise AssertionError("no run finished in time")
    os.killpg(first.pid, signal.SIGKILL)  # the sweep process dies at once; its runs are told to checkpoint and stop
    first.wait()
    wait_until_stopped(out, names)
    finished_before = {n: (out / "runs" / n / "metrics.json").stat().st_mtime_ns for n in names
                       if (out / "runs" / n / "metrics.json").is_file()}
    interrupted = {n: step for n, step in seen.items() if n not in finished_before}
    assert interrupted

    second = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"{len(finished_before)} finished before" in second.stderr

    state = sweep_state(out)
    assert sorted(state["runs"]) == sorted(names)
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(names)  # no run lost, none extra
    for name in names:
        entry = state["runs"][name]
        assert entry["status"] == "done"
        check_finished_run(out / "runs" / name, GAMES)
        log = (out / "logs" / f"{name}.log").read_text()
        if name in finished_before:  # not repeated: one attempt, its metrics untouched
            assert log.count(" attempt on ") == 1 and len(entry["attempts"]) == 1
            assert (out / "runs" / name / "metrics.json").stat().st_mtime_ns == finished_before[name]
    for name, step in interrupted.items():  # resumed from a checkpoint at or after the one seen, not restarted
        log = (out / "logs" / f"{name}.log").read_text()
        assert log.count("fresh attempt") == 1 and "starting over" not in log
        resumes = rundir.read_jsonl(out / "runs" / name / "resumes.jsonl")
        assert len(resumes) == 1, name
        last = state["runs"][name]["attempts"][-1]
        assert last["mode"] == "resume" and last["resumed_from_step"] >= step
        assert f"at step {last['resumed_from_step']}" in resumes[0]["note"]

    summary = json.loads((out / "report" / "summary.json").read_text())
    assert {g["label"]: g["n_runs"] for g in summary["groups"]} == {"finetune": 2, "ewc": 2}
    assert all(not g["partial"] for g in summary["groups"])
    assert (out / "report" / "retention.png").is_file()

    report_only = run_crl("sweep", "--report", str(out))
    assert "report written to" in report_only.stdout


@pytest.mark.e2e
def test_sweep_on_a_local_ray_cluster(tmp_path):
    ray = pytest.importorskip("ray")
    from crl.cli import main as cli

    data = {"base": TINY_BASE, "axes": {"method": ["finetune", "ewc"], "seed": [0, 1]}}
    path, out = write_spec(tmp_path / "s.yaml", data), tmp_path / "out"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert cli.main(["sweep", str(path), "--out", str(out), "--ray"]) == 0
    finally:
        ray.shutdown()
    state = sweep_state(out)
    names = [r.name for r in expand(data).runs]
    assert sorted(state["runs"]) == sorted(names) == sorted(p.name for p in (out / "runs").iterdir())
    for name in names:
        assert state["runs"][name]["status"] == "done"
        attempt, = state["runs"][name]["attempts"]
        assert attempt["mode"] == "fresh" and attempt["returncode"] == 0
        assert attempt["worker_pid"] != os.getpid()  # run by a Ray worker process, not by this (the driver)
        check_finished_run(out / "runs" / name, GAMES)
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert {g["label"]: g["n_runs"] for g in summary["groups"]} == {"finetune": 2, "ewc": 2}


@pytest.mark.e2e  # a real run or a `crl` subprocess: seconds, not milliseconds
def test_a_spec_that_only_adds_runs_extends_the_sweep(tmp_path):
    """More seeds for a finished sweep (the benchmark's later sessions): the finished run is kept, not rerun; only
    the added one runs. A spec that changes a finished run's settings is still another sweep."""
    data = {"base": {**TINY_BASE, "games": GAMES[:1]}, "axes": {"seed": [0]}}
    out = tmp_path / "out"
    run_crl("sweep", str(write_spec(tmp_path / "s.yaml", data)), "--out", str(out))
    data["axes"]["seed"] = [0, 1]
    more = run_crl("sweep", str(write_spec(tmp_path / "more.yaml", data)), "--out", str(out))
    assert "adds 1 runs" in more.stderr
    runs = sweep_state(out)["runs"]
    assert [len(runs[n]["attempts"]) for n in ("finetune-s0", "finetune-s1")] == [1, 1]
    assert runs["finetune-s1"]["status"] == "done"
    usage = runs["finetune-s1"]["attempts"][0]  # the run's own resources, measured by its supervisor (wait4)
    assert usage["cpu_s"] > 1.0 and usage["max_rss_mib"] > 100
    data["base"]["steps_per_game"] = 300
    other = run_crl("sweep", str(write_spec(tmp_path / "other.yaml", data)), "--out", str(out), check=False)
    assert other.returncode == 2 and "holds another sweep" in other.stderr


def test_a_sweep_continues_from_exported_records_that_hold_only_its_finished_runs(tmp_path):
    """scripts/export_records.py keeps the finished runs' state only: rerunning the spec on such a directory plans
    the others again (it used to fail with a KeyError)."""
    from crl.sweep import command
    from crl.sweep import state as state_mod

    spec_path = tmp_path / "s.yaml"
    spec_path.write_text(yaml.safe_dump({"base": {"games": GAMES}, "axes": {"seed": [0, 1]}}))
    sweep = spec.expand(spec.load(spec_path), source=str(spec_path))
    out = tmp_path / "out"
    lock, state = command.prepare(out, sweep, spec_path)
    lock.close()
    del state["runs"]["finetune-s1"]  # what an export of a sweep whose second run had not finished holds
    state_mod.save(out, state)
    lock, state = command.prepare(out, sweep, spec_path)
    lock.close()
    assert state["runs"]["finetune-s1"]["status"] == "pending" and state["runs"]["finetune-s0"]["status"] == "pending"


def test_a_run_dir_with_only_earlier_costs_is_empty_enough_to_start_in(tmp_path):
    (tmp_path / rundir.LOCK).touch()
    (tmp_path / rundir.USAGE).write_text("[]")
    assert rundir.is_empty(tmp_path)
    (tmp_path / rundir.EVALS).write_text("")
    assert not rundir.is_empty(tmp_path)


@pytest.mark.e2e
def test_starting_a_run_over_keeps_what_its_lost_attempt_cost(tmp_path):
    """An attempt killed before its first checkpoint leaves records but nothing to resume: the sweep starts the run
    over in the same directory, and usage.json keeps the lost attempt's CPU time beside the new attempt's."""
    run_dir, config = tmp_path / "runs" / "finetune-s0", tmp_path / "finetune-s0.yaml"
    config.write_text(yaml.safe_dump({**TINY_BASE, "method": "finetune", "seed": 0}))
    run_dir.mkdir(parents=True)
    lost = {"start": "2026-01-01T09:00:00", "mode": "fresh", "from_step": 0, "step": 100, "cpu_s": 7.5,
            "max_rss_mib": 500.0, "written": "2026-01-01T09:00:09"}
    (run_dir / rundir.USAGE).write_text(json.dumps([lost]))
    (run_dir / rundir.EVALS).write_text('{"junk": true}\n')
    (run_dir / "tb").mkdir()
    job = {"name": "finetune-s0", "run_dir": str(run_dir), "config_file": str(config),
           "log_file": str(tmp_path / "logs" / "finetune-s0.log"), "lock_file": str(tmp_path / "locks" / "l")}
    attempt = execute.run_one(job)
    assert attempt["returncode"] == 0 and attempt["mode"] == "fresh", attempt
    usage = json.loads((run_dir / rundir.USAGE).read_text())
    assert usage[0] == lost and len(usage) == 2
    assert usage[1]["mode"] == "fresh" and usage[1]["outcome"] == "finished"
    assert "junk" not in (run_dir / rundir.EVALS).read_text()
    assert "clearing it (but usage.json)" in (tmp_path / "logs" / "finetune-s0.log").read_text()


@pytest.mark.parametrize("path", sorted((REPO / "benchmarks").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_committed_benchmark_spec_expands_into_runs_that_resolve(path):
    """A committed spec whose runs would fail to resolve (an unknown key, a value out of range, methods that cannot
    be combined) is caught here, not hours into a sweep: expand resolves and builds every run's configuration."""
    sweep = spec.expand(spec.load(path), source=str(path))
    assert sweep.runs and all(r.config.method for r in sweep.runs)
