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
    assert export_records.run_usage(entry) == {"duration_s": 420.0, "cpu_s": 300.0, "max_rss_mib": 550.0}


def test_figures_no_attempt_recorded_are_left_out() -> None:
    entry = {"attempts": [{"returncode": 0, "duration_s": 60.0}]}  # a sweep from before CPU time was measured
    assert export_records.run_usage(entry) == {"duration_s": 60.0}


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
