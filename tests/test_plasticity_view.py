"""The plasticity view's arithmetic on hand-built rows: per-visit gaps to a fresh network, and later visits in one
number (every block after a game's first visit, per run, then over runs)."""

from __future__ import annotations

import pytest

from crl.report.compute import later_visits_auc_gap, later_visits_auc_gap_by_game, plasticity_by_visit


def row(game: str, visit: int, auc: float | None, fresh: float | None = 0.2) -> dict:
    return {"block": 0, "game": game, "visit": visit, "auc": auc, "final": auc, "fresh_auc": fresh,
            "fresh_final": fresh}


def test_later_visits_average_every_block_after_a_first_visit_per_run_then_over_runs() -> None:
    run_a = [row("a", 1, 0.9), row("b", 1, 0.9), row("a", 2, 0.1), row("b", 2, 0.3), row("a", 3, 0.2)]
    run_b = [row("a", 1, 0.0), row("a", 2, 0.5)]
    stat = later_visits_auc_gap([run_a, run_b])
    # run a: gaps -0.1, 0.1, 0.0 -> 0.0; run b: 0.3; first visits (0.9, 0.0) count for nothing
    assert stat["n"] == 2
    assert stat["mean"] == pytest.approx(0.15)


def test_a_run_without_later_visits_or_references_has_no_value() -> None:
    stat = later_visits_auc_gap([[row("a", 1, 0.5)], [row("a", 2, 0.5, fresh=None)]])
    assert stat["n"] == 0 and stat["mean"] is None


def test_the_per_visit_gap_is_the_agents_learning_minus_the_fresh_networks() -> None:
    by_visit = plasticity_by_visit([[row("a", 1, 0.5, fresh=0.2), row("a", 2, 0.1, fresh=0.2)]])
    assert [v["visit"] for v in by_visit] == [1, 2]
    assert by_visit[0]["auc_gap"]["mean"] == pytest.approx(0.3)
    assert by_visit[1]["auc_gap"]["mean"] == pytest.approx(-0.1)


def test_each_games_later_visits_alone_show_a_loss_the_average_hides() -> None:
    rows = [row("a", 1, 0.3), row("b", 1, 0.3), row("a", 2, 0.0), row("b", 2, 0.5)]
    assert later_visits_auc_gap([rows])["mean"] == pytest.approx(0.05)
    by_game = later_visits_auc_gap_by_game([rows])
    assert list(by_game) == ["a", "b"]
    assert by_game["a"]["mean"] == pytest.approx(-0.2)
    assert by_game["b"]["mean"] == pytest.approx(0.3)
