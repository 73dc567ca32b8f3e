"""`crl report` on synthetic run directories: loading, grouping, metrics, bad input, written files."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.image import imread

from crl.analysis import metrics, normalization

from crl.report import command, compute, records
from crl.analysis.normalization import normalized_score, score_name

GAMES = ["pong", "breakout"]


def hns(game: str, value: float) -> float | None:
    """The HNS the trainer logs; null for a game without reference scores."""
    score = normalization.human_normalized_score(game, value)
    return None if math.isnan(score) else score


def normalized(game: str, value: float) -> float | None:
    """The family's normalized score the trainer logs (HNS for Atari); null for a game without reference scores."""
    score = normalized_score(game, value)
    return None if math.isnan(score) else score


def write_run(
    path: Path,
    curves: dict[str, list[float]],
    *,
    method: str = "finetune",
    seed: int = 0,
    games: list[str] = GAMES,
    cycles: int = 1,
    steps_per_game: int = 1000,
    evals_per_block: int = 4,
    finished_blocks: int | None = None,
    params: dict | None = None,
) -> Path:
    """A run directory as `crl train` writes it; ``curves[game]`` lists the return at every evaluation in order.

    Evaluations happen every ``steps_per_game / evals_per_block`` steps; the last one of a block is its final
    evaluation, whose values make the block's retention row. ``finished_blocks`` < all: a run stopped early.
    """
    path.mkdir(parents=True)
    n_blocks = len(games) * cycles
    finished = n_blocks if finished_blocks is None else finished_blocks
    config = {"games": games, "method": method, "steps_per_game": steps_per_game, "cycles": cycles, "seed": seed,
              "run_dir": str(path), "device": "cpu", "eval_every": steps_per_game // evals_per_block,
              method.replace("-", "_"): params or {}}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    evals, blocks, rows = [], [], []
    every = steps_per_game // evals_per_block
    n_evals = min(len(v) for v in curves.values())
    for b in range(min(n_blocks, finished + 1)):
        game = games[b % len(games)]
        blocks.append({"block": b, "cycle": b // len(games), "game": game, "task_index": games.index(game),
                       "start_step": b * steps_per_game, "end_step": (b + 1) * steps_per_game})
        for k in range(evals_per_block):
            e = b * evals_per_block + k
            if e >= n_evals:
                break
            for g in games:
                evals.append({"step": (e + 1) * every, "task_index": games.index(game), "trained_game": game, "game": g,
                              "mean_return": curves[g][e], "std_return": 0.0, "episodes": 1,
                              score_name(g): normalized(g, curves[g][e]), "block": b,
                              "final": k == evals_per_block - 1})
            if k == evals_per_block - 1 and b < finished:
                rows.append([curves[g][e] for g in games])
    (path / "evals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    (path / "blocks.jsonl").write_text("".join(json.dumps(b) + "\n" for b in blocks))
    with (path / "retention.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["after_task", *games])
        writer.writerows([i, *row] for i, row in enumerate(rows))
    if finished == n_blocks and rows:
        trained_at = [b % len(games) for b in range(n_blocks)]
        (path / "metrics.json").write_text(json.dumps(metrics.summarize(np.array(rows), games, trained_at)))
    return path


# Pong learned in block 0 then forgotten in block 1; Breakout learned in block 1.
PONG = [-20.0, -10.0, 0.0, 10.0, 5.0, 0.0, -5.0, -10.0]
BREAKOUT = [2.0, 2.0, 2.0, 2.0, 5.0, 10.0, 20.0, 30.0]


def run_report(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.main(parser.parse_args([str(a) for a in argv]))


def test_load_run_reads_every_file(tmp_path):
    run = records.load_run(write_run(tmp_path / "a", {"pong": PONG, "breakout": BREAKOUT}))
    assert run.games == GAMES and run.sequence == ("pong", "breakout")
    np.testing.assert_allclose(run.retention, [[10.0, 2.0], [-10.0, 30.0]])
    assert run.trained_at == [0, 1] and not run.partial and run.status() == "complete"
    assert [(b["start_step"], b["end_step"]) for b in run.blocks] == [(0, 1000), (1000, 2000)]


def test_retention_columns_follow_the_config_order(tmp_path):
    path = write_run(tmp_path / "a", {"pong": PONG, "breakout": BREAKOUT})
    (path / "retention.csv").write_text("after_task,breakout,pong\n0,2,10\n1,30,-10\n")
    np.testing.assert_allclose(records.load_run(path).retention, [[10.0, 2.0], [-10.0, 30.0]])
    (path / "retention.csv").write_text("after_task,breakout,seaquest\n0,2,10\n")
    with pytest.raises(records.BadInput, match="do not match the config's games"):
        records.load_run(path)


def test_run_metrics_equal_the_metrics_module(tmp_path):
    path = write_run(tmp_path / "a", {"pong": PONG, "breakout": BREAKOUT})
    m = compute.run_metrics(records.load_run(path), {})
    assert m["average_forgetting"] == pytest.approx(20.0)  # Pong: best 10 after block 0, final -10
    assert m["backward_transfer"] == pytest.approx(-20.0)
    assert m["average_final_return"] == pytest.approx(10.0)
    expected = json.loads((path / "metrics.json").read_text())
    for key in ("average_final_return", "average_final_hns", "average_forgetting", "backward_transfer",
                "total_clipped_hns"):
        assert m[key] == pytest.approx(expected[key])


def test_partial_run_is_reported_as_far_as_it_got(tmp_path):
    # Stopped during block 1 of 4 (two cycles): one retention row, block 1 logged, blocks 2-3 planned from the config.
    path = write_run(tmp_path / "a", {"pong": PONG, "breakout": BREAKOUT}, cycles=2, finished_blocks=1)
    run = records.load_run(path)
    assert run.partial and run.status() == "partial: 1/4 blocks finished"
    assert [b["game"] for b in run.blocks] == ["pong", "breakout", "pong", "breakout"]
    assert run.blocks[3]["start_step"] == 3000
    m = compute.run_metrics(run, {})
    assert m["average_final_return"] == pytest.approx(6.0) and m["average_forgetting"] is None


def test_forward_transfer_against_single_game_references(tmp_path):
    # Breakout first trained in block 1 (steps 1000-2000); evaluations at relative steps 250..1000.
    run = records.load_run(write_run(tmp_path / "a", {"pong": PONG, "breakout": BREAKOUT}))
    ref_curve = [2.0, 5.0, 8.0, 12.0]
    ref = records.load_run(write_run(tmp_path / "ref", {"breakout": ref_curve}, games=["breakout"]))
    ft = compute.forward_transfers(run, compute.references_by_game([ref]))
    clip = lambda v: min(max(hns("breakout", v), 0.0), 1.0)  # noqa: E731
    # Equal spacing: trapezoid time-average = (first/2 + middle + last/2) / 3.
    auc = (clip(5) / 2 + clip(10) + clip(20) + clip(30) / 2) / 3
    auc_ref = (clip(2) / 2 + clip(5) + clip(8) + clip(12) / 2) / 3
    assert ft["breakout"] == pytest.approx((auc - auc_ref) / (1 - auc_ref))
    m = compute.run_metrics(run, compute.references_by_game([ref]))
    assert m["average_forward_transfer"] == pytest.approx(ft["breakout"])


def test_a_run_resumed_mid_block_without_its_replay_says_so_in_its_status(tmp_path):
    path = write_run(tmp_path / "a", {"pong": PONG, "breakout": BREAKOUT})
    resumes = [{"note": "resumed from resume-5.zip at step 5", "step": 5, "replay_refilled": False},
               {"note": "resumed ...", "step": 700, "replay_refilled": True},
               {"note": "resumed ...", "step": 900, "replay_refilled": True}]
    (path / "resumes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in resumes))
    assert records.load_run(path).status() == "complete; resumed mid-block 2x, replay buffer refilled"


def test_groups_by_config_without_seed_and_labels_by_what_differs(tmp_path):
    curves = {"pong": PONG, "breakout": BREAKOUT}
    runs = [records.load_run(write_run(tmp_path / name, curves, method=method, seed=seed, params=params))
            for name, method, seed, params in [("f0", "finetune", 0, {}), ("e0", "ewc", 0, {"lambda_": 400}),
                                               ("f1", "finetune", 1, {}), ("e1", "ewc", 1, {"lambda_": 400}),
                                               ("e2", "ewc", 2, {"lambda_": 100})]]
    groups = compute.group_runs(runs)
    assert [[r.path.name for r in g.runs] for g in groups] == [["f0", "f1"], ["e0", "e1"], ["e2"]]
    assert [g.label for g in groups] == ["finetune", "ewc (ewc.lambda_=400)", "ewc (ewc.lambda_=100)"]
    one_method = compute.group_runs(runs[:1] + runs[2:3])
    assert [g.label for g in one_method] == ["finetune"]


def test_a_setting_shows_only_in_the_labels_of_the_method_whose_groups_it_tells_apart(tmp_path):
    """The benchmark varies task modulation for ewc alone: finetune's label must not carry the setting."""
    curves = {"pong": PONG, "breakout": BREAKOUT}
    paths = [write_run(tmp_path / name, curves, method=method) for name, method in
             [("f", "finetune"), ("e0", "ewc"), ("e1", "ewc")]]
    for path, modulated in zip(paths, (False, False, True)):
        config = yaml.safe_load((path / "config.yaml").read_text())
        (path / "config.yaml").write_text(yaml.safe_dump({**config, "network": {"task_modulation": modulated}}))
    groups = compute.group_runs([records.load_run(p) for p in paths])
    assert [g.label for g in groups] == ["finetune", "ewc (network.task_modulation=False)",
                                         "ewc (network.task_modulation=True)"]


def test_report_of_two_methods_writes_every_file(tmp_path, capsys):
    a = write_run(tmp_path / "ft-s0", {"pong": PONG, "breakout": BREAKOUT}, seed=0)
    b = write_run(tmp_path / "ft-s1", {"pong": [v + 2 for v in PONG], "breakout": BREAKOUT}, seed=1)
    c = write_run(tmp_path / "ewc-s0", {"pong": [v + 4 for v in PONG], "breakout": BREAKOUT}, method="ewc", seed=0,
                  cycles=1, finished_blocks=1)
    out = tmp_path / "out"
    assert run_report(a, b, c, "--out", out) == 0
    printed = capsys.readouterr().out
    assert "group 'finetune'" in printed and "ft-s1 (seed 1, complete)" in printed and "partial: 1/2" in printed
    for name in ("report.md", "curves.png", "retention.png", "total_hns.png", "summary.csv", "summary.json"):
        assert (out / name).is_file(), name
    for name in ("curves.png", "retention.png", "total_hns.png"):
        image = imread(out / name)
        assert image.shape[0] > 200 and image.shape[1] > 200 and image[..., :3].std() > 0.05, name
    summary = json.loads((out / "summary.json").read_text())
    ft, ewc = summary["groups"]
    assert ft["n_runs"] == 2 and not ft["partial"] and ewc["partial"]
    stat = ft["statistics"]["average_final_return"]
    assert stat["mean"] == pytest.approx((10.0 + 11.0) / 2) and stat["n"] == 2
    assert stat["ci_low"] <= stat["mean"] <= stat["ci_high"]
    assert ewc["statistics"]["average_final_return"]["note"] == "1 seed: no interval"
    rows = list(csv.DictReader((out / "summary.csv").open()))
    pairs = {(r["group"], r["metric"]) for r in rows}
    assert pairs >= {("finetune", "total_clipped_hns"), ("ewc", "backward_transfer")}
    text = (out / "report.md").read_text()
    assert "![retention matrix](retention.png)" in text and "partial: 1/2 blocks finished" in text
    # the aggregate over runs x games: finetune's two complete runs; ewc's one partial run is left out
    aggregate = summary["aggregate"]
    assert list(aggregate["groups"]) == ["finetune"] and aggregate["left_out"] == ["ewc"]
    assert aggregate["poi_skipped"] == "no group besides finetune to compare with it"
    assert "## Aggregate over runs x games (rliable)" in text and "| finetune | 2 | 2 |" in text
    assert "Left out (fewer than 2 complete runs): ewc." in text
    assert ("finetune", "aggregate_final_hns") in pairs
    for name in ("aggregate_iqm.png", "performance_profile.png"):
        assert imread(out / name)[..., :3].std() > 0.05, name


def test_single_run_defaults_to_its_report_directory(tmp_path):
    run = write_run(tmp_path / "a", {"pong": PONG, "breakout": BREAKOUT})
    assert run_report(run) == 0
    assert (run / "report" / "summary.json").is_file()
    assert not [p for p in (run / "report").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("case, message", [
    ("not_a_run", "is not a run directory (no config.yaml)"),
    ("no_evals", "has no evaluations yet"),
    ("other_sequence", "report runs of one game sequence together"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, case, message):
    good = write_run(tmp_path / "good", {"pong": PONG, "breakout": BREAKOUT})
    if case == "not_a_run":
        bad = tmp_path / "empty"
        bad.mkdir()
    elif case == "no_evals":
        bad = write_run(tmp_path / "bad", {"pong": [], "breakout": []})
    else:
        bad = write_run(tmp_path / "bad", {"breakout": BREAKOUT, "pong": PONG}, games=["breakout", "pong"])
    out = tmp_path / "out"
    assert run_report(good, bad, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and str(bad) in err[0]
    assert not out.exists()


def test_reference_must_train_one_game_of_the_sequence(tmp_path, capsys):
    run = write_run(tmp_path / "a", {"pong": PONG, "breakout": BREAKOUT})
    two_games = write_run(tmp_path / "r2", {"pong": PONG, "breakout": BREAKOUT}, seed=1)
    other = write_run(tmp_path / "r3", {"seaquest": [100.0] * 4}, games=["seaquest"])
    assert run_report(run, "--reference", two_games, other, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "trains 2 games" in err[0] and "not in the sequence" in err[1]


def test_a_torn_last_line_of_a_running_run_is_skipped(tmp_path):
    path = write_run(tmp_path / "a", {"pong": PONG, "breakout": BREAKOUT})
    lines = (path / "evals.jsonl").read_text().splitlines()
    (path / "evals.jsonl").write_text("\n".join(lines) + '\n{"step": 20')
    assert len(records.load_run(path).evals) == len(lines)


def test_trainer_facing_figures_show_the_numbers(tmp_path):
    from crl.analysis import plots

    run = records.load_run(write_run(tmp_path / "a", {"pong": PONG, "breakout": BREAKOUT}))
    fig = plots.retention_heatmap(run.retention, GAMES, trained_at=run.trained_at)
    raw, hns_ax = fig.axes[:2]
    assert [t.get_text() for t in raw.texts] == ["10.0", "2.0", "-10.0", "30.0"]
    assert [t.get_text() for t in hns_ax.texts] == [f"{hns(g, v):.2f}" for g, v in zip(GAMES * 2, [10, 2, -10, 30])]
    assert [t.get_text() for t in raw.get_xticklabels()] == GAMES
    assert [t.get_text() for t in raw.get_yticklabels()] == ["0: pong", "1: breakout"]

    fig = plots.return_curves(run.evals, GAMES, run.blocks)
    pong_return = fig.axes[0]
    assert pong_return.get_title() == "pong: episode return (game score)"
    line = pong_return.get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), [250 * (i + 1) for i in range(8)])
    np.testing.assert_allclose(line.get_ydata(), PONG)
    assert [t.get_text() for t in pong_return.texts] == ["pong", "breakout"]  # block labels


# --- MinAtar: scores normalized against random play and Young & Tian 2019's DQN, never called human-normalized ------

MINATAR = ["minatar/breakout", "minatar/space_invaders"]
REFS = {"minatar/breakout": (0.503, 10.0), "minatar/space_invaders": (2.749, 43.6)}  # crl/data/minatar_scores.csv


def dqn_normalized(game: str, value: float) -> float:
    random, dqn = REFS[game]
    return (value - random) / (dqn - random)


# Breakout learned in block 0 (to the DQN reference) then forgotten; Space Invaders learned in block 1 (past it).
M_BREAKOUT = [1.0, 4.0, 7.0, 10.0, 8.0, 5.0, 3.0, 2.0]
M_INVADERS = [3.0, 3.0, 3.0, 3.0, 10.0, 20.0, 30.0, 50.0]  # ends above the reference


def test_minatar_report_names_the_dqn_normalized_score(tmp_path):
    run = write_run(tmp_path / "m", {"minatar/breakout": M_BREAKOUT, "minatar/space_invaders": M_INVADERS},
                    games=MINATAR)
    assert "dqn_normalized" in json.loads((run / "evals.jsonl").read_text().splitlines()[0])
    out = tmp_path / "out"
    assert run_report(run, "--out", out) == 0
    assert (out / "total_dqn_normalized.png").is_file() and not (out / "total_hns.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    m = summary["groups"][0]["runs"][0]["metrics"]
    final = [dqn_normalized(g, v) for g, v in zip(MINATAR, [2.0, 50.0])]
    assert m["final_dqn_normalized"] == pytest.approx(dict(zip(MINATAR, final)))
    assert m["average_final_dqn_normalized"] == pytest.approx(np.mean(final))
    assert m["total_clipped_dqn_normalized"] == pytest.approx(sum(min(v, 1.0) for v in final))
    assert not [k for k in m if "hns" in k]
    metrics_rows = {r["metric"] for r in csv.DictReader((out / "summary.csv").open())}
    assert {"average_final_dqn_normalized", "total_clipped_dqn_normalized"} <= metrics_rows
    assert not [k for k in metrics_rows if "hns" in k]
    text = (out / "report.md").read_text()
    assert "| group | Final average return | Final average DQN-normalized score |" in text
    assert "**final DQN-normalized score**" in text
    assert "(score − random) / (dqn − random)" in text and "Young & Tian 2019" in text
    assert "HNS" not in text and "human" not in text.replace("human-readable", "")


def test_minatar_forward_transfer_uses_the_dqn_normalized_curves(tmp_path):
    run = records.load_run(write_run(tmp_path / "m", {"minatar/breakout": M_BREAKOUT,
                                                     "minatar/space_invaders": M_INVADERS}, games=MINATAR))
    ref_curve = [3.0, 5.0, 8.0, 12.0]
    ref = records.load_run(write_run(tmp_path / "ref", {"minatar/space_invaders": ref_curve},
                                    games=["minatar/space_invaders"]))
    ft = compute.forward_transfers(run, compute.references_by_game([ref]))
    clip = lambda v: min(max(dqn_normalized("minatar/space_invaders", v), 0.0), 1.0)  # noqa: E731
    auc = (clip(10) / 2 + clip(20) + clip(30) + clip(50) / 2) / 3
    auc_ref = (clip(3) / 2 + clip(5) + clip(8) + clip(12) / 2) / 3
    assert ft["minatar/space_invaders"] == pytest.approx((auc - auc_ref) / (1 - auc_ref))


def test_minatar_figures_label_and_compute_the_dqn_normalized_score(tmp_path):
    from crl.analysis import plots

    run = records.load_run(write_run(tmp_path / "m", {"minatar/breakout": M_BREAKOUT,
                                                     "minatar/space_invaders": M_INVADERS}, games=MINATAR))
    fig = plots.retention_heatmap(run.retention, MINATAR, trained_at=run.trained_at)
    _, scores, colorbar = fig.axes[:3]
    assert [t.get_text() for t in scores.texts] == [
        f"{dqn_normalized(g, v):.2f}" for g, v in zip(MINATAR * 2, [10.0, 3.0, 2.0, 50.0])]
    assert scores.get_title().endswith("DQN-normalized score (Young & Tian 2019 reference)")
    assert colorbar.get_ylabel() == "DQN-normalized score"

    fig = plots.return_curves(run.evals, MINATAR, run.blocks)
    titles = [ax.get_title() for ax in fig.axes]
    assert "minatar/breakout: DQN-normalized score" in titles and not [t for t in titles if "human" in t]
    breakout = fig.axes[titles.index("minatar/breakout: DQN-normalized score")]
    np.testing.assert_allclose(breakout.get_lines()[0].get_ydata(),
                               [dqn_normalized("minatar/breakout", v) for v in M_BREAKOUT])

    fig = plots.total_clipped_curves({"finetune": [run.evals]}, MINATAR, run.blocks)
    ax = fig.axes[0]
    assert "DQN-normalized" in ax.get_ylabel() and "DQN-normalized" in ax.get_title()
    total = [sum(min(dqn_normalized(g, c[i]), 1.0) for g, c in zip(MINATAR, (M_BREAKOUT, M_INVADERS)))
             for i in range(8)]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), total)
    labels = [line.get_label() for line in ax.get_lines()]
    assert "maximum (2 games at the level of Young & Tian 2019's DQN)" in labels


def test_a_run_mixing_families_is_one_line_exit_2(tmp_path, capsys):
    bad = write_run(tmp_path / "mixed", {"pong": PONG, "minatar/breakout": M_BREAKOUT},
                    games=["pong", "minatar/breakout"], finished_blocks=0)  # metrics.summarize refuses it too
    assert run_report(bad, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "several families" in err[0] and str(bad) in err[0]
