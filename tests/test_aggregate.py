"""Aggregates over runs x games with rliable (crl.analysis.aggregate) and the report section built on them: the numbers
are rliable's, reproducible byte for byte, and the section says why when it cannot be computed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rliable import library, metrics

from crl.analysis import aggregate
from crl.analysis.normalization import normalization
from crl.report.compute import aggregate_summary
from crl.report.render import aggregate_section, summary_csv

FEW = 200  # resamples where a test checks a property, not the report's setting

# runs x games of a normalized score: finetune, and a method that beats it on every run of every game
FINETUNE = np.array([[0.1, 0.0, 0.3], [0.2, 0.1, 0.2], [0.0, 0.2, 0.4]])
BETTER = FINETUNE + 1.0
# 10 runs x 3 games of distinct scores: their resampled IQMs are spread enough that another resampling gives another
# interval (on FINETUNE's few values, two resamplings often give the same percentiles)
SPREAD = np.random.default_rng(1).normal(size=(10, 3))


def test_iqm_and_its_interval_are_rliables():
    np.random.seed(aggregate.SEED)
    points, intervals = library.get_interval_estimates(
        {"x": SPREAD}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=aggregate.REPS)
    iqm = aggregate.aggregate_estimates({"x": SPREAD})["x"]["iqm"]
    assert iqm == aggregate.Estimate(float(points["x"][0]), float(intervals["x"][0, 0]), float(intervals["x"][1, 0]))
    assert iqm.low < iqm.value < iqm.high


def test_the_global_generator_is_left_as_it_was():
    np.random.seed(7)
    expected = np.random.rand()
    np.random.seed(7)
    aggregate.aggregate_estimates({"ft": FINETUNE}, reps=FEW)
    assert np.random.rand() == expected


def test_a_groups_interval_does_not_depend_on_the_other_groups():
    alone = aggregate.aggregate_estimates({"x": SPREAD}, reps=FEW)["x"]
    assert aggregate.aggregate_estimates({"better": BETTER, "x": SPREAD}, reps=FEW)["x"] == alone


def test_probability_of_improvement_over_itself_is_one_half_and_of_a_dominating_group_one():
    poi = aggregate.probability_of_improvement({"ft": FINETUNE, "same": FINETUNE.copy(), "better": BETTER}, "ft",
                                               reps=FEW)
    assert set(poi) == {"same", "better"}  # not the baseline against itself
    assert poi["same"].value == 0.5 and poi["same"].low <= 0.5 <= poi["same"].high
    assert poi["better"] == aggregate.Estimate(1.0, 1.0, 1.0)
    worse = aggregate.probability_of_improvement({"ft": BETTER, "worse": FINETUNE}, "ft", reps=FEW)["worse"]
    assert worse == aggregate.Estimate(0.0, 0.0, 0.0)


def test_a_performance_profile_falls_from_one_to_zero_and_its_band_holds_it():
    scores = {"ft": FINETUNE, "better": BETTER}
    taus = aggregate.tau_grid(scores)
    assert taus[0] <= 0.0 and taus[-1] >= BETTER.max()
    profiles = aggregate.performance_profiles(scores, taus, reps=FEW)
    for p in profiles.values():
        fraction = np.array(p.fraction)
        assert np.all(np.diff(fraction) <= 0), fraction  # non-increasing in tau
        assert np.all(np.array(p.low) <= fraction) and np.all(fraction <= np.array(p.high))
        assert fraction[-1] == 0.0  # nothing above the highest score
    assert np.all(np.array(profiles["better"].fraction) >= np.array(profiles["ft"].fraction))
    assert profiles["better"].fraction[int(np.searchsorted(taus, 0.5))] == 1.0  # every run of every game above 0.5


# --- the report's section ------------------------------------------------------------------------------

GAMES = ["pong", "breakout", "freeway"]
NORM = normalization("atari")


@pytest.fixture
def few_resamples(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report's settings with fewer resamples: the section's logic, in a fraction of the time."""
    monkeypatch.setattr(aggregate, "REPS", FEW)
    monkeypatch.setattr(aggregate, "POI_REPS", FEW)


def summary_group(label: str, method: str, scores: np.ndarray, partial: int = 0) -> dict:
    """A summary.json group whose runs have ``scores`` (runs x games) as their final HNS; ``partial`` runs more that
    stopped early."""
    runs = [{"partial": False, "metrics": {"final_hns": dict(zip(GAMES, map(float, row)))}} for row in scores]
    runs += [{"partial": True, "metrics": {"final_hns": dict(zip(GAMES, [9.0] * len(GAMES)))}}] * partial
    return {"label": label, "method": method, "runs": runs}


def test_the_section_is_byte_reproducible_and_quotes_rliables_numbers(few_resamples):
    groups = [summary_group("finetune", "finetune", FINETUNE), summary_group("ewc", "ewc", BETTER, partial=1),
              summary_group("l2", "l2", SPREAD)]
    first, second = aggregate_summary(groups, GAMES, NORM), aggregate_summary(groups, GAMES, NORM)
    assert json.dumps(first) == json.dumps(second)
    text = "\n".join(aggregate_section(first, NORM))
    assert text == "\n".join(aggregate_section(second, NORM))
    assert first["groups"]["ewc"]["runs"] == 3  # the partial run is left out
    assert first["reps"] == FEW
    iqm = aggregate.aggregate_estimates({"l2": SPREAD}, reps=FEW)["l2"]["iqm"]
    assert f"| l2 | 10 | 3 | {iqm.value:.2f} | [{iqm.low:.2f}, {iqm.high:.2f}] |" in text
    assert "| group | P(X > finetune) | 95% CI |" in text and "| ewc | 1.00 | [1.00, 1.00] |" in text
    assert "Agarwal et al. 2021" in text and "![performance profiles](performance_profile.png)" in text


def test_the_csv_carries_the_aggregate_and_the_probability_of_improvement(few_resamples):
    groups = [summary_group("finetune", "finetune", FINETUNE), summary_group("ewc", "ewc", BETTER)]
    agg = aggregate_summary(groups, GAMES, NORM)
    rows = summary_csv({"games": GAMES, "groups": [], "aggregate": agg}).splitlines()
    assert [r.split(",")[:2] for r in rows[1:]] == [
        ["finetune", "aggregate_final_hns"], ["finetune", "optimality_gap_final_hns"],
        ["ewc", "aggregate_final_hns"], ["ewc", "optimality_gap_final_hns"], ["ewc", "probability_of_improvement"]]
    assert rows[-1].startswith("ewc,probability_of_improvement,3,1.0,1.0,1.0,")


def test_the_section_says_why_it_is_skipped(few_resamples):
    one_run = aggregate_summary([summary_group("finetune", "finetune", FINETUNE[:1], partial=2)], GAMES, NORM)
    assert aggregate_section(one_run, NORM)[-1] == \
        "Not computed: no group has 2 or more complete runs to bootstrap over."
    no_baseline = aggregate_summary([summary_group("ewc", "ewc", BETTER), summary_group("l2", "l2", FINETUNE)],
                                    GAMES, NORM)
    text = "\n".join(aggregate_section(no_baseline, NORM))
    assert "| l2 | 3 | 3 |" in text
    assert "Probability of improvement not computed: no finetune group with 2 or more complete runs" in text


def test_a_game_without_a_score_in_some_run_is_left_out_of_every_group(few_resamples):
    unscored = summary_group("ewc", "ewc", BETTER)
    unscored["runs"][0]["metrics"]["final_hns"]["freeway"] = None  # a cut final evaluation
    agg = aggregate_summary([summary_group("finetune", "finetune", FINETUNE), unscored], GAMES, NORM)
    assert agg["games"] == ["pong", "breakout"]
    assert {g["games"] for g in agg["groups"].values()} == {2}


@pytest.mark.parametrize("label", ["finetune", "ewc"])
def test_reference_level_one_bounds_the_optimality_gap(label):
    agg = aggregate.aggregate_estimates({"finetune": FINETUNE, "ewc": BETTER}, reps=FEW)[label]["optimality_gap"]
    expected = 1.0 - np.minimum({"finetune": FINETUNE, "ewc": BETTER}[label], 1.0).mean()
    assert agg.value == pytest.approx(expected)


def test_many_groups_get_a_panel_each_with_the_baseline_in_every_other_panel():
    from crl.analysis import plots

    taus = [0.0, 0.5, 1.0]
    profile = {"fraction": [1.0, 0.5, 0.0], "low": [1.0, 0.2, 0.0], "high": [1.0, 0.8, 0.0]}
    few = plots.performance_profiles(taus, {f"g{i}": profile for i in range(plots.PROFILES_IN_ONE_PANEL)}, "score",
                                     "g0")
    assert len(few.axes) == 1 and len(few.axes[0].lines) == plots.PROFILES_IN_ONE_PANEL
    groups = {f"g{i}": profile for i in range(9)}
    fig = plots.performance_profiles(taus, groups, "score", "g0")
    shown = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in shown] == list(groups)
    assert [len(ax.lines) for ax in shown] == [1] + [2] * 8  # the baseline's own panel has no second curve
    assert all(ax.lines[0].get_linestyle() == ":" and ax.lines[1].get_linestyle() == "-" for ax in shown[1:])


def test_up_to_forty_groups_never_share_a_colour_and_line_style():
    from crl.analysis import plots

    assert len({(str(plots._colour(i)), plots._dashes(i)) for i in range(40)}) == 40
    assert len({str(plots._colour(i)) for i in range(20)}) == 20
