"""What scripts/export_records.py reports a run cost: every attempt of a stopped-and-resumed run counts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "export_records.py"
spec = importlib.util.spec_from_file_location("export_records", SCRIPT)
export_records = importlib.util.module_from_spec(spec)
spec.loader.exec_module(export_records)


def test_a_resumed_run_costs_all_its_attempts() -> None:
    entry = {"attempts": [{"returncode": 130, "duration_s": 300.0, "cpu_s": 200.0, "max_rss_mib": 500.0},
                          {"returncode": 0, "duration_s": 120.0, "cpu_s": 100.0, "max_rss_mib": 550.0}]}
    assert export_records.run_usage(entry) == {"duration_s": 420.0, "cpu_s": 300.0, "max_rss_mib": 550.0,
                                                    "first_attempt_lost": False}


def test_figures_no_attempt_recorded_are_left_out() -> None:
    entry = {"attempts": [{"returncode": 0, "duration_s": 60.0}]}  # a sweep from before CPU time was measured
    assert export_records.run_usage(entry) == {"duration_s": 60.0, "first_attempt_lost": False}


def test_env_steps_per_cpu_second_divides_the_run_by_all_its_attempts(tmp_path) -> None:
    run = tmp_path / "runs" / "finetune-s0"
    run.mkdir(parents=True)
    (run / "blocks.jsonl").write_text('{"block": 0, "start_step": 0, "end_step": 1000}\n'
                                      '{"block": 1, "start_step": 1000, "end_step": 3000}\n')
    (run / "network.json").write_text('{"q_net_values": 10}\n')
    attempts = [{"returncode": 130, "cpu_s": 10.0}, {"returncode": 0, "cpu_s": 20.0}]
    (tmp_path / "sweep.json").write_text(json.dumps({"runs": {"finetune-s0": {
        "kind": "run", "overrides": {"method": "finetune", "seed": 0}, "attempts": attempts}}}))
    row = export_records.costs(tmp_path).splitlines()[2]
    assert row.split(" | ")[4] == "100.0", row  # 3,000 steps over 30 CPU-seconds


def write_run(dest: Path, name: str, attempts: list[dict], own: list[dict] | None) -> Path:
    """A finished run's exported records as ``costs`` reads them; ``own``: its usage.json (None: none)."""
    run = dest / "runs" / name
    run.mkdir(parents=True)
    (run / "blocks.jsonl").write_text('{"block": 0, "start_step": 0, "end_step": 6000}\n')
    (run / "network.json").write_text('{"q_net_values": 10}\n')
    if own is not None:
        (run / "usage.json").write_text(json.dumps(own))
    state = json.loads((dest / "sweep.json").read_text()) if (dest / "sweep.json").exists() else {"runs": {}}
    state["runs"][name] = {"kind": "run", "overrides": {"method": name.split("-")[0], "seed": 0}, "attempts": attempts}
    (dest / "sweep.json").write_text(json.dumps(state))
    return run


def test_the_runs_own_usage_record_counts_the_attempts_a_killed_sweep_lost(tmp_path) -> None:
    """The ewc-s0 loss: a session's end killed the sweep with the run, so sweep.json lacks the first attempt; the
    run's usage.json has it. A sweep attempt that ended before usage.json began (a crl without it) still counts."""
    attempts = [{"start": "2025-01-01T09:00:00", "end": "2025-01-01T09:30:00", "mode": "fresh", "returncode": 143,
                 "duration_s": 1800.0, "cpu_s": 1000.0, "max_rss_mib": 900.0},  # before usage.json existed
                {"start": "2025-01-01T12:00:00", "end": "2025-01-01T12:50:00", "mode": "resume", "returncode": 0,
                 "duration_s": 3000.0, "cpu_s": 2510.0, "max_rss_mib": 700.0}]
    own = [{"start": "2025-01-01T10:00:02", "mode": "resume", "from_step": 1000, "step": 3000, "cpu_s": 2400.0,
            "max_rss_mib": 800.0},  # the attempt the killed sweep lost
           {"start": "2025-01-01T12:00:03", "mode": "resume", "from_step": 3000, "step": 6000, "cpu_s": 2500.0,
            "max_rss_mib": 700.0, "outcome": "finished"}]
    run = write_run(tmp_path, "ewc-s0", attempts, own)
    assert export_records.run_usage({"attempts": attempts}, run) == {
        "duration_s": 4800.0, "cpu_s": 5900.0, "max_rss_mib": 900.0, "first_attempt_lost": False}  # wall: the sweep's; CPU: 1000 + 2400 + 2500
    assert export_records.run_usage({"attempts": attempts}) == {  # without the run's directory: the sweep's alone
        "duration_s": 4800.0, "cpu_s": 3510.0, "max_rss_mib": 900.0, "first_attempt_lost": False}
    write_run(tmp_path, "finetune-s0", [{"returncode": 0, "duration_s": 60.0, "cpu_s": 60.0}], None)  # an old record
    lines = export_records.costs(tmp_path).splitlines()
    ewc = next(line for line in lines if line.startswith("| method=ewc "))
    assert ewc.split(" | ")[3:6] == ["98.3", f"{6000 / 5900:.1f}", "900.0"], ewc
    assert "| 99.3 in all (2 runs recorded) |" in lines[-1], lines[-1]  # 5900 + 60 CPU-seconds


def test_a_run_whose_first_attempt_is_lost_costs_at_least_its_record_and_has_no_rate(tmp_path) -> None:
    """ewc-s0 as committed: sweep.json holds only the resumed attempt, and the run had no usage.json yet."""
    resumed = [{"start": "2025-01-01T12:00:00", "end": "2025-01-01T12:50:00", "mode": "resume",
                "resumed_from_step": 4000, "returncode": 0, "duration_s": 3000.0, "cpu_s": 60.0}]
    write_run(tmp_path, "ewc-s0", resumed, None)
    write_run(tmp_path, "finetune-s0", [{**resumed[0], "mode": "fresh"}], None)
    assert export_records.run_usage({"attempts": resumed})["first_attempt_lost"] is True
    lines = export_records.costs(tmp_path).splitlines()
    ewc = next(line for line in lines if line.startswith("| method=ewc "))
    assert ewc.split(" | ")[2:5] == ["at least 50.0", "at least 1.0 (1 run(s) without their first attempt's record)",
                                     "not recorded"]
    finetune = next(line for line in lines if line.startswith("| method=finetune "))
    assert finetune.split(" | ")[3:5] == ["1.0", "100.0"]  # 6,000 steps over 60 CPU-seconds
    assert "| at least 100.0 in all | at least 2.0 in all (2 runs recorded; 1 without their first attempt) |" in \
        lines[-1], lines[-1]


def test_the_export_copies_the_runs_usage_record(tmp_path) -> None:
    from crl.sweep import state as state_mod

    sweep = tmp_path / "sweep"
    run = state_mod.run_dir(sweep, "ewc-s0")
    run.mkdir(parents=True)
    for name in ("config.yaml", "metrics.json", "usage.json"):
        (run / name).write_text("{}\n" if name != "usage.json" else '[{"start": "2025-01-01T10:00:00", "cpu_s": 1}]\n')
    (sweep / "spec.yaml").write_text("base: {}\n")
    state_mod.save(sweep, {"runs": {"ewc-s0": {"kind": "run", "overrides": {}, "attempts": []}}})
    assert export_records.export(sweep, tmp_path / "dest") == ["ewc-s0"]
    copied = state_mod.run_dir(tmp_path / "dest", "ewc-s0")
    assert sorted(p.name for p in copied.iterdir()) == ["config.yaml", "metrics.json", "usage.json"]
    assert (copied / "usage.json").read_bytes() == (run / "usage.json").read_bytes()


def finished_sweep(tmp_path: Path, name: str = "finetune-s0") -> tuple[Path, Path]:
    """A sweep directory with one finished run (its metrics.json) and no model: (sweep dir, the run's dir)."""
    from crl.sweep import state as state_mod

    sweep = tmp_path / "sweep"
    run = state_mod.run_dir(sweep, name)
    run.mkdir(parents=True)
    (run / "metrics.json").write_text("{}\n")
    (sweep / "spec.yaml").write_text("base: {}\n")
    state_mod.save(sweep, {"runs": {name: {"kind": "run", "overrides": {}, "attempts": []}}})
    return sweep, run


def test_a_reexport_keeps_the_network_size_when_the_sweep_no_longer_has_the_model(tmp_path) -> None:
    """Exporting a sweep again after its models were cleared (disk) must not drop the network.json exported before."""
    from crl.sweep import state as state_mod

    sweep, _ = finished_sweep(tmp_path)
    exported = state_mod.run_dir(tmp_path / "dest", "finetune-s0")
    exported.mkdir(parents=True)
    (exported / "network.json").write_text('{"q_net_values": 10}\n')
    export_records.export(sweep, tmp_path / "dest")
    assert (exported / "network.json").read_text() == '{"q_net_values": 10}\n'


def test_a_network_size_in_the_sweeps_run_directory_is_exported(tmp_path) -> None:
    """A run whose model was cleared but whose directory holds a network.json (measured there before) keeps it."""
    from crl.sweep import state as state_mod

    sweep, run = finished_sweep(tmp_path)
    (run / "network.json").write_text('{"q_net_values": 12}\n')
    export_records.export(sweep, tmp_path / "dest")
    assert (state_mod.run_dir(tmp_path / "dest", "finetune-s0") / "network.json").read_text() == '{"q_net_values": 12}\n'


def test_a_run_without_a_network_size_costs_a_row_that_says_so(tmp_path) -> None:
    write_run(tmp_path, "ewc-s0", [{"returncode": 0, "cpu_s": 60.0}], None)
    (write_run(tmp_path, "ewc-s1", [{"returncode": 0, "cpu_s": 60.0}], None) / "network.json").unlink()
    row = export_records.costs(tmp_path).splitlines()[2]
    assert row.endswith("| 10, not recorded (1 runs) |"), row


def test_an_attempt_killed_before_its_first_checkpoint_costs_what_the_sweep_saw(tmp_path) -> None:
    """The run's own record of such an attempt holds only its start (4 s); the sweep that saw it die has 600 s. The
    run was started over in the same directory, so usage.json holds both attempts: each is counted once, fully."""
    sweep = [{"start": "2026-01-01T09:00:00", "end": "2026-01-01T09:30:00", "mode": "fresh", "returncode": -9,
              "duration_s": 1800.0, "cpu_s": 600.0, "max_rss_mib": 900.0},
             {"start": "2026-01-01T10:00:00", "end": "2026-01-01T10:50:00", "mode": "fresh", "returncode": 0,
              "duration_s": 3000.0, "cpu_s": 3000.0, "max_rss_mib": 700.0}]
    own = [{"start": "2026-01-01T09:00:05", "mode": "fresh", "from_step": 0, "step": 0, "cpu_s": 4.0,
            "max_rss_mib": 400.0},
           {"start": "2026-01-01T10:00:05", "mode": "fresh", "from_step": 0, "step": 6000, "cpu_s": 2999.0,
            "max_rss_mib": 700.0, "outcome": "finished"}]
    run = write_run(tmp_path, "ewc-s0", sweep, own)
    usage = export_records.run_usage({"attempts": sweep}, run)
    assert usage["cpu_s"] == 3599.0 and usage["max_rss_mib"] == 900.0 and not usage["first_attempt_lost"]
