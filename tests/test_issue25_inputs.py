"""Bad input is one line, never a traceback, and is caught before anything is written (issue #25): YAML with a key
given twice, binary files, interpolations, settings that do not fit the games' family or the machine, corrupt records
under `crl report`, duplicate seeds, bad sweep specs and sweep states, an unreachable Ray address, Python API misuse.
No training here: each case is refused before a run starts."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from agents import ContinualDQN
from crl.cli.main import main
from crl.methods import TaskInfo
from crl.run import checkpoint, config
from crl.sweep import command as sweep_command
from crl.sweep import state as sweep_state
from crl.sweep.spec import SpecError
from envs import make_vec_env
from tests.test_report import BREAKOUT, PONG, run_report, write_run

GAMES = "minatar/breakout,minatar/space_invaders"


def train_error(capsys, *argv: str) -> str:
    """The one error line of a `crl train` that must be refused before anything is written."""
    assert main(["train", "--games", GAMES, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crl: error: "), err
    return err[0]


@pytest.mark.parametrize("text, message", [
    ("agent:\n  gamma: 0.9\nagent:\n  learning_rate: 0.1\n", "key 'agent' is given twice (line 3)"),
    ("agent:\n  gamma: 0.9\n  gamma: 0.5\n", "key 'gamma' is given twice (line 3)"),
    ("agent:\n  gamma: ${nope.x}\n", "agent.gamma: Interpolation key 'nope.x' not found"),
    ("agent:\n  gamma: ${agent.gamma}\n", "agent.gamma: Recursive interpolation"),
])
def test_config_files_that_yaml_or_omegaconf_would_misread_are_one_line(tmp_path, capsys, text, message) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    run_dir = tmp_path / "run"
    assert message in train_error(capsys, "--config", str(path), "--run-dir", str(run_dir))
    assert not run_dir.exists()


def test_binary_config_files_are_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(bytes(range(193, 256)) * 3)
    assert "is not UTF-8 text" in train_error(capsys, "--config", str(path), "--run-dir", str(tmp_path / "run"))
    assert "Interpolation key 'nope.x' not found" in train_error(capsys, "--set", "agent.gamma=${nope.x}",
                                                                 "--run-dir", str(tmp_path / "run"))
    run_dir = tmp_path / "old"  # a run whose config.yaml was overwritten with binary
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_bytes(b"\xc1\xff\x00binary")
    assert main(["train", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not UTF-8 text" in err[0] and "nothing to resume" in err[0]


@pytest.mark.parametrize("flags, message", [
    (["--set", "agent.buffer_size=1000000000000"], "agent.buffer_size 1000000000000 cannot fit"),
    (["--set", "network.conv_channels=[16,32]"], "network.conv_channels: the minatar torso has 1 convolution(s)"),
    (["--task-id", "fmn"], "task_id fmn: the Forget-Me-Not process models Atari's 84x84 frames"),
])
def test_settings_that_fail_only_once_training_starts_are_refused_before_anything_is_written(
        tmp_path, capsys, flags, message) -> None:
    run_dir = tmp_path / "run"
    assert message in train_error(capsys, *flags, "--run-dir", str(run_dir))
    assert not run_dir.exists()


def test_resume_into_another_run_dir_is_refused(tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(config.dump(config.resolve({"games": GAMES})))
    assert main(["train", "--resume", str(run_dir), "--run-dir", str(tmp_path / "elsewhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot also go to --run-dir" in err[0]


# --- crl report on corrupt records ---------------------------------------------------------------------------
def _append(path: Path, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


@pytest.mark.parametrize("name, line, message", [
    ("evals.jsonl", "[1, 2]", "a record must be a JSON object"),
    ("evals.jsonl", "{}", "no 'step'"),
    ("evals.jsonl", '{"step": 9, "block": 0, "game": "pong", "mean_return": "abc"}', "'mean_return' must be a number"),
    ("evals.jsonl", '{"step": "x", "block": 0, "game": "pong", "mean_return": 1}', "'step' must be an integer"),
    ("blocks.jsonl", '{"block": "x"}', "'block' must be a block index"),
    ("blocks.jsonl", '{"block": 0, "game": "nope", "start_step": 0, "end_step": 1}', "game 'nope' is not one of"),
    ("retention.csv", "2,abc,1", "could not convert string to float"),
    ("retention.csv", "2,1", "2 cells, the header has 3"),
])
def test_report_on_corrupt_records_names_the_file_and_line(tmp_path, capsys, name, line, message) -> None:
    run = write_run(tmp_path / "a", {"pong": PONG, "breakout": BREAKOUT})
    _append(run / name, line)
    if name == "evals.jsonl":  # a corrupt line before a good last one is not a torn write
        _append(run / name, '{"step": 1, "block": 0, "game": "pong", "mean_return": 1}')
    elif name == "blocks.jsonl":
        _append(run / name, '{"block": 1, "game": "pong", "start_step": 0, "end_step": 1}')
    assert run_report(run, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(run / name) in err[0] and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_report_on_a_wrong_shaped_retention_matrix_or_binary_records_is_one_line(tmp_path, capsys) -> None:
    run = write_run(tmp_path / "a", {"pong": PONG, "breakout": BREAKOUT})
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "retention_matrix": [1.0]}))
    assert run_report(run, "--out", tmp_path / "out") == 2
    assert "retention_matrix has shape [1]" in capsys.readouterr().err
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "evals.jsonl").write_bytes(b"\xc1\xff" * 50)
    assert run_report(run, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "evals.jsonl is not text" in err[0]


def test_report_refuses_the_same_seed_twice_in_a_group(tmp_path, capsys) -> None:
    """Two copies of one run are not two seeds (they would give a zero-width interval): an error naming both."""
    a = write_run(tmp_path / "a", {"pong": PONG, "breakout": BREAKOUT})
    b = write_run(tmp_path / "b", {"pong": PONG, "breakout": BREAKOUT})
    assert run_report(a, b, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "with the same seed 0" in err[0] and str(a) in err[0] and str(b) in err[0]


# --- sweeps ----------------------------------------------------------------------------------------------------
SPEC = ("base:\n  games: [minatar/breakout, minatar/space_invaders]\n  steps_per_game: 200\naxes:\n  seed: [0, 1]\n")


@pytest.mark.parametrize("text, message", [
    (SPEC + "resources: {cpus: .nan}\n", "resources.cpus must be a positive number, got nan"),
    (SPEC + "resources: {gpus: .inf}\n", "resources.gpus must be a non-negative number, got inf"),
    (SPEC + "axes:\n  seed: [2]\n", "key 'axes' is given twice"),
    (None, "is not UTF-8 text"),
])
def test_bad_sweep_specs_are_one_line(tmp_path, capsys, text, message) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(b"\xc1\xff" * 40 if text is None else text.encode())
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", ["[]", "{}", "null", '{"runs": {"a": "x"}}'])
def test_a_sweep_json_that_is_not_a_sweep_state_is_one_line_on_run_and_report(tmp_path, capsys, content) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / sweep_state.STATE).write_text(content)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    for argv in (["sweep", "--report", str(out)], ["sweep", str(spec), "--out", str(out)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "sweep.json is unreadable (not a sweep state" in err[0], err


def test_an_unreachable_ray_address_is_one_line_within_seconds() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(SpecError, match=f"--ray 127.0.0.1:{port}: cannot reach a Ray cluster there"):
        sweep_command.check_ray_address(f"127.0.0.1:{port}")
    with pytest.raises(SpecError, match=f"--ray ray://127.0.0.1:{port}: cannot reach"):
        sweep_command.check_ray_address(f"ray://127.0.0.1:{port}", timeout=0.5)
    assert time.monotonic() - start < 30
    sweep_command.check_ray_address("auto")  # Ray finds the cluster itself


def test_sweep_report_names_the_runs_it_leaves_out(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    runs = {name: {"kind": "sequence", "overrides": {}, "status": "done", "attempts": []}
            for name in ("finetune-s0", "finetune-s1")}
    out.mkdir()
    (out / sweep_state.STATE).write_text(json.dumps({"fingerprint": "x", "runs": runs}))
    write_run(sweep_state.run_dir(out, "finetune-s0"), {"pong": PONG, "breakout": BREAKOUT})
    main(["sweep", "--report", str(out)])
    assert "leaves out 1 of 2 runs, not finished (no metrics.json): finetune-s1" in capsys.readouterr().err


# --- the Python API ----------------------------------------------------------------------------------------------
def test_python_api_misuse_is_a_clear_error(tmp_path) -> None:
    for bad in (-1, "0", 1.5, True):
        with pytest.raises(ValueError, match="TaskInfo.task_id must be a non-negative integer"):
            TaskInfo(bad, "minatar/breakout")
    env = make_vec_env("minatar/breakout", n_envs=1, seed=0)
    agent = ContinualDQN(env, buffer_size=100, learning_starts=10)
    with pytest.raises(RuntimeError, match=r"learn\(\) before set_task\(\): call agent.set_task"):
        agent.learn(10)
    with pytest.raises(RuntimeError, match=r"end_task\(\) before set_task\(\)"):
        agent.end_task()
    agent.set_task(TaskInfo(0, "minatar/breakout"))
    agent.save(tmp_path / "a.zip")
    from crl.methods import make_method

    with pytest.raises(ValueError, match="ContinualDQN.load takes no method="):
        ContinualDQN.load(tmp_path / "a.zip", method=make_method("ewc"))


def test_orphans_and_unverified_points_are_discarded(tmp_path) -> None:
    """A point is not a point until its checksum is written: a zip without one, a checksum without its zip and
    temporary files are deleted, a verified point is kept."""
    good = tmp_path / "resume-8.zip"
    good.write_bytes(b"zip")
    (tmp_path / "resume-8.sha256").write_text(f"{checkpoint.sha256(good)}  resume-8.zip\n")
    for name in ("resume-16.zip", "resume-16.sha256.tmp", "resume-24.sha256", "resume-4.zip.tmp"):
        (tmp_path / name).write_bytes(b"x")
    bad = checkpoint.discard_unusable(tmp_path)
    assert [(p.step, why) for p, why in bad] == [(16, "incomplete (no checksum file)")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resume-8.sha256", "resume-8.zip"]


def test_a_full_disk_in_tensorboards_writer_thread_prints_no_traceback(capsys, monkeypatch) -> None:
    """The main thread reports a full disk in one line; the writer thread's OSError is not printed beside it."""
    import errno
    import threading

    from crl.cli import main as main_mod

    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    main_mod.quiet_disk_full_in_threads()

    def write() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert capsys.readouterr().err == ""


def test_more_python_api_misuse_is_a_clear_error(tmp_path, capsys) -> None:
    """Found by the probe beyond the issue's list: set_task without a TaskInfo, a negative env seed, set_env with
    another number of environments, a sweep --out that cannot be created."""
    env = make_vec_env("minatar/breakout", n_envs=2, seed=0)
    agent = ContinualDQN(env, buffer_size=100, learning_starts=10)
    for bad in ("breakout", None):
        with pytest.raises(TypeError, match="set_task takes a TaskInfo"):
            agent.set_task(bad)
    with pytest.raises(ValueError, match="seed must be an integer in"):
        make_vec_env("minatar/breakout", n_envs=1, seed=-1)
    with pytest.raises(ValueError, match="built for 2 environments, got 1"):
        agent.set_env(make_vec_env("minatar/breakout", n_envs=1, seed=0))
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    assert main(["sweep", str(spec), "--out", "/proc/x/out"]) == 2
    assert "cannot create --out /proc/x/out" in capsys.readouterr().err


def test_plasticity_figure_of_a_run_without_measures_yet_draws() -> None:
    """A tiny run's plasticity.jsonl may hold no value of the first panel's measure: no legend entries, no error
    (matplotlib refuses ncol=0; every `crl report` and `crl sweep` of a short run failed on it)."""
    from crl.analysis import plots

    record = {"step": 100, "block": 0, "network": {}, "games": {}}
    plots.plasticity_curves({"finetune": [[record]]}, [])


def test_a_ray_address_ray_cannot_use_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    """What Ray itself refuses (an address it cannot parse, a cluster it cannot join) is one line, not its traceback."""
    from crl.sweep import execute

    def refuse(address: str) -> None:
        raise ConnectionError(f"Failed to connect to Ray cluster at {address}")

    monkeypatch.setattr(execute, "RayBackend", refuse)
    monkeypatch.setattr(sweep_command, "check_ray_address", lambda address: None, raising=False)  # it answers
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    assert main(["sweep", str(spec), "--ray", "10.255.255.1:6379", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("crl: error: --ray 10.255.255.1:6379: cannot connect to a Ray cluster there: Failed to connect "
                       "to Ray cluster at 10.255.255.1:6379"), err
