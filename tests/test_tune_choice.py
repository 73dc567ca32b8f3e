"""scripts/tune_choice.py: the tuning stage's choice rule on hand-built records, bad input and committed records."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import tune_choice  # noqa: E402


def records(tmp_path: Path, grids: dict[str, dict[str, list[Any]]], scores: dict[tuple[str, Any, int], float],
            seeds: tuple[int, ...] = (1000, 1001)) -> Path:
    """A sweep's records: a spec sweeping ``grids`` (method -> {param: values}) over ``seeds``; a finished run (with
    its metrics.json) for each (method, value, seed) in ``scores``, an unfinished one listed in sweep.json for the
    rest. A method with an empty grid has no method_axes entry; its runs are keyed by value None."""
    out = tmp_path / "sweep"
    spec = {"preset": "minatar", "axes": {"method": list(grids), "seed": list(seeds)},
            "method_axes": {m: g for m, g in grids.items() if g}}
    out.mkdir()
    (out / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    runs = {}
    for method, grid in grids.items():
        param = next(iter(grid), None)
        for value in grid.get(param, [None]) if param else [None]:
            for seed in seeds:
                name = f"{method}-{value}-s{seed}"
                overrides = {"method": method, "seed": seed, **({param: value} if param else {})}
                runs[name] = {"kind": "run", "overrides": overrides, "status": "pending", "attempts": []}
                if (method, value, seed) in scores:
                    (out / "runs" / name).mkdir(parents=True)
                    metrics = {"average_final_dqn_normalized": scores[(method, value, seed)]}
                    (out / "runs" / name / "metrics.json").write_text(json.dumps(metrics))
                    runs[name]["status"] = "done"
    (out / "sweep.json").write_text(json.dumps({"fingerprint": "x", "spec": "spec.yaml", "runs": runs}))
    return out


def both_seeds(method: str, means: dict[Any, float]) -> dict[tuple[str, Any, int], float]:
    """Scores whose mean over seeds 1000 and 1001 is ``means[value]`` (the seeds differ by 0.1)."""
    return {k: v for value, mean in means.items()
            for k, v in (((method, value, 1000), mean - 0.05), ((method, value, 1001), mean + 0.05))}


def summary(out: Path) -> dict[str, list[str]]:
    """Method -> the cells of its row in the second table."""
    lines = tune_choice.tables(out)
    second = lines[lines.index("") + 3:]
    return {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in second)}


def marks(out: Path, method: str) -> dict[str, str]:
    """Value -> the first table's "chosen" cell, for ``method``'s rows."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in tune_choice.tables(out)[2:]]
    return {cells[2]: cells[6] for cells in rows if len(cells) == 7 and cells[0] == method}


def test_a_smaller_value_within_the_tolerance_of_the_best_wins(tmp_path: Path) -> None:
    # best 0.23 at 100; 10 is 0.015 below it (within 0.02), 1 is 0.03 below (not): 10 is the smallest within
    out = records(tmp_path, {"ewc": {"ewc.lambda_": [1, 10, 100]}}, both_seeds("ewc", {1: 0.20, 10: 0.215, 100: 0.23}))
    assert summary(out)["ewc"] == ["ewc", "ewc.lambda_", "10", "0.215", "no"]
    assert marks(out, "ewc") == {"1": "", "10": "chosen", "100": "best"}


def test_the_best_wins_when_no_smaller_value_is_within_the_tolerance(tmp_path: Path) -> None:
    # 100 is within 0.02 of the best but larger; 1 is 0.2 below
    out = records(tmp_path, {"ewc": {"ewc.lambda_": [1, 10, 100]}}, both_seeds("ewc", {1: 0.10, 10: 0.30, 100: 0.29}))
    assert summary(out)["ewc"] == ["ewc", "ewc.lambda_", "10", "0.300", "no"]
    assert marks(out, "ewc") == {"1": "", "10": "chosen, best", "100": ""}


def test_smallest_is_numeric_order_not_the_specs_order(tmp_path: Path) -> None:
    out = records(tmp_path, {"l2": {"l2.lambda_": [10.0, 0.1, 1.0]}}, both_seeds("l2", {10.0: 0.3, 0.1: 0.3, 1.0: 0.3}))
    assert summary(out)["l2"] == ["l2", "l2.lambda_", "0.1", "0.300", "lowest"]


@pytest.mark.parametrize("means, chosen, edge", [
    ({0.1: 0.1, 1.0: 0.2, 10.0: 0.5}, "10.0", "highest"),
    ({0.1: 0.5, 1.0: 0.2, 10.0: 0.51}, "0.1", "lowest"),  # the best is the highest value, the lowest is within 0.02
    ({0.1: 0.1, 1.0: 0.5, 10.0: 0.2}, "1.0", "no"),
])
def test_a_choice_at_an_edge_of_the_grid_is_flagged(tmp_path: Path, means: dict[float, float], chosen: str,
                                                    edge: str) -> None:
    out = records(tmp_path, {"l2": {"l2.lambda_": [0.1, 1.0, 10.0]}}, both_seeds("l2", means))
    assert summary(out)["l2"][2] == chosen
    assert summary(out)["l2"][4] == edge


def test_a_method_missing_a_seed_is_incomplete_and_gets_no_choice(tmp_path: Path) -> None:
    scores = {**both_seeds("ewc", {4: 0.2, 40: 0.3}), **both_seeds("l2", {1.0: 0.2, 10.0: 0.1})}
    del scores[("ewc", 40, 1001)]
    out = records(tmp_path, {"ewc": {"ewc.lambda_": [4, 40]}, "l2": {"l2.lambda_": [1.0, 10.0]}}, scores)
    assert summary(out)["ewc"] == ["ewc", "ewc.lambda_", "incomplete: 3 of 4 runs", "", ""]
    assert marks(out, "ewc") == {"4": "", "40": ""}
    row = next(line for line in tune_choice.tables(out) if line.startswith("| ewc | ewc.lambda_ | 40 |"))
    assert row == "| ewc | ewc.lambda_ | 40 | 1 of 2 | 0.250, n/a | n/a |  |"
    assert summary(out)["l2"] == ["l2", "l2.lambda_", "1.0", "0.200", "lowest"]  # the complete method still chooses


def test_a_method_without_one_swept_parameter_gets_rows_but_no_choice(tmp_path: Path) -> None:
    out = records(tmp_path, {"finetune": {}, "ewc": {"ewc.lambda_": [4]}},
                  {("finetune", None, 1000): 0.1, ("finetune", None, 1001): 0.2, **both_seeds("ewc", {4: 0.3})})
    lines = tune_choice.tables(out)
    assert "| finetune | none | none | 2 of 2 | 0.100, 0.200 | 0.150 |  |" in lines
    assert summary(out)["finetune"] == ["finetune", "none", "no rule: no swept parameter", "", ""]
    assert summary(out)["ewc"] == ["ewc", "ewc.lambda_", "4", "0.300", "only value"]


def bad_spec(out: Path) -> None:
    (out / "spec.yaml").write_text("axes: [method\n")


@pytest.mark.parametrize("spoil", [
    lambda out: (out / "spec.yaml").unlink(),
    lambda out: (out / "sweep.json").unlink(),
    bad_spec,
    lambda out: (out / "spec.yaml").write_text("axes: {seed: [1000]}\n"),  # no methods
    lambda out: (out / "sweep.json").write_text("{not json"),
    lambda out: (out / "sweep.json").write_text(json.dumps({"runs": {}})),
    lambda out: (out / "runs" / "ewc-4-s1000" / "metrics.json").write_text("{}"),
], ids=["no spec", "no sweep.json", "spec not YAML", "spec without methods", "sweep.json not JSON", "no runs",
        "metrics without the score"])
def test_bad_input_is_one_line_and_exit_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 spoil: Any) -> None:
    out = records(tmp_path, {"ewc": {"ewc.lambda_": [4]}}, both_seeds("ewc", {4: 0.3}))
    spoil(out)
    assert tune_choice.main([str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1
    assert captured.err.startswith("tune_choice: error: ")


def test_committed_tuning_stage(capsys: pytest.CaptureFixture[str]) -> None:
    # l2 has both seeds for all 5 values (runs/l2-l2.lambda__*-s100{0,1}/metrics.json): means 0.032, 0.059, 0.117,
    # 0.143, 0.129; the best is 10 (0.143); 100 (0.129) is within 0.02 but larger, 1 (0.117) is not within.
    # replay: 0.1 is the best (0.282), 0.03 (0.273) is within 0.02 and smaller, so it is chosen, at the grid's edge
    out = ROOT / "benchmarks/results/minatar/tune"
    assert tune_choice.main([str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == tune_choice.tables(out)  # deterministic: the same lines every time
    assert "| l2 | l2.lambda_ | 10.0 | 2 of 2 | 0.093, 0.193 | 0.143 | chosen, best |" in lines
    assert "| l2 | l2.lambda_ | 100.0 | 2 of 2 | 0.142, 0.117 | 0.129 |  |" in lines
    assert "| l2 | l2.lambda_ | 10.0 | 0.143 | no |" in lines
    assert "| replay | replay.weight | 0.03 | 0.273 | lowest |" in lines
    assert "| finetune | none | no rule: no swept parameter |  |  |" in lines
    assert not [line for line in lines if "incomplete" in line]


def test_committed_first_stage_reproduces_the_choices_its_successor_states() -> None:
    # benchmarks/minatar-tune.yaml: the first stage (seed 1000) chose l2 1 (largest), ewc 40, online-ewc 5,
    # hypernet 0.001 and distill 0.3 (smallest); online-ewc 5 and replay 1 win by the tolerance, not as the best
    got = {m: cells[2:] for m, cells in summary(ROOT / "benchmarks/results/minatar/superseded/tune-seed-1000").items()}
    assert got == {"l2": ["1.0", "0.115", "highest"], "ewc": ["40", "0.290", "lowest"],
                   "online-ewc": ["5", "0.192", "lowest"], "hypernet": ["0.001", "0.290", "lowest"],
                   "replay": ["1.0", "0.220", "no"], "distill": ["0.3", "0.251", "lowest"]}
