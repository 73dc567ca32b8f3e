"""What scripts/export_records.py reports a run cost: every attempt of a stopped-and-resumed run counts."""

from __future__ import annotations

import importlib.util
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
