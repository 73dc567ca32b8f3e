"""Metrics with hand-computed answers."""

import math

import numpy as np
import pytest

from crl.analysis import metrics, normalization

# 3 games, trained in order 0, 1, 2 (rows: after block i)
R = np.array([
    [10.0, 1.0, 0.0],
    [6.0, 8.0, 1.0],
    [4.0, 5.0, 9.0],
])


def test_reference_scores_shipped_with_the_package():
    refs = normalization.reference_scores()
    assert len(refs) == 57
    assert refs["pong"] == (-20.7, 14.6)


def test_human_normalized_score():
    assert normalization.human_normalized_score("pong", -20.7) == pytest.approx(0.0)
    assert normalization.human_normalized_score("pong", 14.6) == pytest.approx(1.0)
    assert normalization.human_normalized_score("pong", -3.05) == pytest.approx(0.5)
    assert math.isnan(normalization.human_normalized_score("adventure", 0.0))  # no reference figures


def test_forgetting_is_best_earlier_value_minus_final():
    f = metrics.forgetting(R, [0, 1, 2])
    assert f[0] == pytest.approx(10.0 - 4.0)  # best of rows 0..1 is 10
    assert f[1] == pytest.approx(8.0 - 5.0)  # best of row 1 is 8
    assert math.isnan(f[2])  # trained in the final block


def test_backward_transfer():
    # game 0: 4 - 10, game 1: 5 - 8 -> mean -4.5
    assert metrics.backward_transfer(R, [0, 1, 2]) == pytest.approx(-4.5)
    assert math.isnan(metrics.backward_transfer(R[:1], [0]))


def test_revisits_use_last_training_block():
    R2 = np.array([[5.0, 0.0], [2.0, 6.0], [7.0, 3.0], [6.0, 6.0]])
    order = [0, 1, 0, 1]
    assert metrics.backward_transfer(R2, order) == pytest.approx(6.0 - 7.0)  # game 0 last trained in block 2
    f = metrics.forgetting(R2, order)
    assert f[0] == pytest.approx(7.0 - 6.0) and f[1] == pytest.approx(6.0 - 6.0)


def test_total_clipped_hns_clips_each_game_at_one():
    assert metrics.total_clipped_hns(np.array([0.5, 2.0, -0.25, np.nan])) == pytest.approx(0.5 + 1.0 - 0.25)


def test_summarize():
    games = ["pong", "breakout", "adventure"]
    s = metrics.summarize(R, games, [0, 1, 2])
    assert s["final_return"] == {"pong": 4.0, "breakout": 5.0, "adventure": 9.0}
    assert s["average_final_return"] == pytest.approx(6.0)
    hns_pong = (4.0 + 20.7) / (14.6 + 20.7)
    hns_breakout = (5.0 - 1.7) / (30.5 - 1.7)
    assert s["final_hns"]["pong"] == pytest.approx(hns_pong) and s["final_hns"]["adventure"] is None
    assert s["average_final_hns"] == pytest.approx((hns_pong + hns_breakout) / 2)
    assert s["total_clipped_hns"] == pytest.approx(min(hns_pong, 1) + min(hns_breakout, 1))
    assert s["average_forgetting"] == pytest.approx(4.5) and s["forgetting"]["adventure"] is None
    assert s["backward_transfer"] == pytest.approx(-4.5)


ATARI_KEYS = {"games", "after_last_block_return", "final_return", "final_hns", "average_final_return", "average_final_hns", "forgetting",
              "average_forgetting", "backward_transfer", "total_clipped_hns", "retention_matrix", "trained_at",
              "cut_final_episodes"}


def test_summarize_keys_of_an_atari_run_are_the_hns_ones():
    assert set(metrics.summarize(R, ["pong", "breakout", "adventure"], [0, 1, 2])) == ATARI_KEYS


def test_summarize_of_a_minatar_run_is_dqn_normalized():
    # (return - random) / (dqn - random) with crl/data/minatar_scores.csv: breakout 0.503 / 10.0, freeway 0.122 / 50.2,
    # space_invaders 2.749 / 43.6; final returns at 2x, 1/2 and 0x the DQN reference's gain over random play
    games = ["minatar/breakout", "minatar/freeway", "minatar/space_invaders"]
    final = [0.503 + 2 * (10.0 - 0.503), 0.122 + 0.5 * (50.2 - 0.122), 2.749]
    s = metrics.summarize(np.vstack([R[:2], final]), games, [0, 1, 2])
    assert set(s) == {k.replace("hns", "dqn_normalized") for k in ATARI_KEYS}
    assert s["final_dqn_normalized"] == pytest.approx(dict(zip(games, [2.0, 0.5, 0.0])))
    assert s["average_final_dqn_normalized"] == pytest.approx(2.5 / 3)
    assert s["total_clipped_dqn_normalized"] == pytest.approx(1.0 + 0.5 + 0.0)  # 2.0 clipped at the reference


def test_normalized_matrix_follows_the_family():
    breakout_random, breakout_dqn = 0.503, 10.0
    M = metrics.normalized_matrix([[breakout_dqn, 0.0], [breakout_random, 1.0]], ["minatar/breakout", "minatar/nope"])
    np.testing.assert_allclose(M, [[1.0, np.nan], [0.0, np.nan]])
    np.testing.assert_allclose(metrics.normalized_matrix([[14.6]], ["pong"]), [[1.0]])  # Atari: HNS


def test_total_clipped_is_the_family_free_sum():
    assert metrics.total_clipped(np.array([0.5, 2.0, np.nan])) == pytest.approx(1.5)
    assert metrics.total_clipped_hns is metrics.total_clipped


def test_normalization_names_per_family():
    from crl.analysis.normalization import normalization, normalization_of

    atari, minatar = normalization_of(["Pong", "breakout"]), normalization_of(["MinAtar/Breakout-v1"])
    assert (atari.key, atari.short, atari.name) == ("hns", "HNS", "human-normalized score")
    assert (minatar.key, minatar.label) == ("dqn_normalized", "DQN-normalized score")
    assert "Young & Tian 2019" in minatar.name and "human" not in minatar.name + minatar.level + minatar.references
    assert normalization("minatar") is minatar and normalization("pong") is atari
    with pytest.raises(ValueError, match="several families"):
        normalization_of(["pong", "minatar/breakout"])


def test_after_last_block_is_the_diagonal_of_each_games_last_visit():
    R = np.array([[1.0, 0.0], [0.5, 2.0], [3.0, 1.5], [2.5, 4.0]])  # blocks: game 0, 1, 0, 1
    assert metrics.after_last_block(R, [0, 1, 0, 1]).tolist() == [3.0, 4.0]
    assert np.isnan(metrics.after_last_block(R[:1], [0])[1])  # game 1 not trained yet


def test_a_cut_final_evaluation_gets_no_normalized_score() -> None:
    summary = metrics.summarize(np.array([[-5.0, 3.0]]), ["pong", "breakout"], [0], cut_final=[3, 0])
    assert summary["final_hns"]["pong"] is None and summary["final_hns"]["breakout"] is not None
    assert summary["cut_final_episodes"] == {"pong": 3, "breakout": 0}
    assert summary["average_final_hns"] == summary["final_hns"]["breakout"]
