"""The multi-task reference (``--multitask``, issue #26): every game at once in one joint block of all the run's
steps, reported as a group of its own beside the continual runs of the same games.

Unit tests of the sequence, the metrics of a joint block, the training-return labels and the report over synthetic
run directories; one end-to-end run (marked e2e) through ``crl train`` and ``crl report``.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from crl.analysis import metrics
from crl.analysis.normalization import score_name
from crl.report import compute, records
from crl.run import config
from crl.run.sequence import TaskSequence
from tests.test_report import BREAKOUT, GAMES, PONG, normalized, run_report, write_run

MINATAR = ["minatar/breakout", "minatar/space_invaders"]


# --- the sequence ------------------------------------------------------------------------------------------------


def test_a_joint_sequence_is_one_block_of_every_step():
    joint = TaskSequence(("a", "b", "c"), 100, cycles=2, joint=True)
    assert [(b.index, b.cycle, b.game, b.task_id, b.steps, b.joint) for b in joint.blocks] == [
        (0, 0, "a+b+c", 0, 600, True)]
    block = joint.blocks[0]
    assert block.games == ("a", "b", "c") and block.trained_at == [0, 1, 2]
    assert joint.total_steps == TaskSequence(("a", "b", "c"), 100, cycles=2).total_steps == 600
    turn = TaskSequence(("a", "b"), 100).blocks[1]
    assert turn.games == ("b",) and turn.trained_at == 1 and not turn.joint


def test_the_joint_block_rounds_the_total_to_whole_rollouts():
    from crl.run.loop import block_steps, task_sequence

    tiny = {"games": MINATAR, "n_envs": 2, "steps_per_game": 300}  # rollouts of 2 envs x train_freq 4 = 8 steps
    assert block_steps(config.resolve(tiny)) == 304 and task_sequence(config.resolve(tiny)).total_steps == 608
    joint = config.resolve({**tiny, "multitask": True})
    assert block_steps(joint) == 600 and task_sequence(joint).total_steps == 600  # 600 is on the grid: no rounding
    assert block_steps(config.resolve({**tiny, "multitask": True, "steps_per_game": 301})) == 608


# --- metrics of a joint block ------------------------------------------------------------------------------------


def test_one_joint_block_has_final_scores_and_no_sequence_metrics():
    m = metrics.summarize(np.array([[3.0, 7.0]]), MINATAR, [[0, 1]])
    assert m["final_return"] == m["after_last_block_return"] == {"minatar/breakout": 3.0, "minatar/space_invaders": 7.0}
    assert m["forgetting"] == {g: None for g in MINATAR} and m["average_forgetting"] is None
    assert m["backward_transfer"] is None and m["trained_at"] == [[0, 1]]
    assert m["average_final_dqn_normalized"] == pytest.approx(np.mean(list(m["final_dqn_normalized"].values())))


def test_a_joint_block_counts_as_training_each_of_its_games():
    R = np.array([[1.0, 0.0], [5.0, 6.0], [2.0, 6.0]])
    trained_at = [0, [0, 1], 1]
    np.testing.assert_allclose(metrics.forgetting(R, trained_at), [3.0, 0.0])  # game 1 first trained in block 1
    np.testing.assert_allclose(metrics.after_last_block(R, trained_at), [5.0, 6.0])
    assert metrics.backward_transfer(R, trained_at) == pytest.approx(-3.0)  # game 1's last block is the final one
    with pytest.raises(ValueError, match="game column"):
        metrics.check_columns(R, [0, [0, 2], 1])


# --- training returns ----------------------------------------------------------------------------------------------


def test_training_returns_are_logged_under_the_game_of_their_env():
    from crl.run.callbacks import LogEpisodeReturns
    from envs import make_joint_vec_env, make_vec_env

    def logged(env, infos: list[dict]) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        callback = LogEpisodeReturns(SimpleNamespace(episode_return=lambda game, r, step: out.append((game, r))),
                                     "+".join(MINATAR))
        callback.init_callback(SimpleNamespace(get_env=lambda: env, num_timesteps=8))
        callback.update_locals({"infos": infos})
        callback.on_step()
        env.close()
        return out

    infos = [{"episode": {"r": 1.0}}, {}, {"episode": {"r": 3.0}}, {"episode": {"r": 4.0}}]
    assert logged(make_joint_vec_env(MINATAR, n_envs=4, seed=0), infos) == [
        ("minatar/breakout", 1.0), ("minatar/space_invaders", 3.0), ("minatar/space_invaders", 4.0)]
    one = logged(make_vec_env("minatar/breakout", n_envs=2, seed=0), [{}, {"episode": {"r": 2.0}}])
    assert one == [("+".join(MINATAR), 2.0)]  # a one-game env: the callback's game


# --- the report -------------------------------------------------------------------------------------------------


def write_joint_run(path: Path, curves: dict[str, list[float]], *, seed: int = 0, games: list[str] = GAMES,
                    steps_per_game: int = 1000, every: int = 250) -> Path:
    """A multi-task run directory as `crl train --multitask` writes it: one joint block of every game's steps,
    every game evaluated every ``every`` steps (``curves[game]`` lists its returns), the last evaluation final."""
    path.mkdir(parents=True)
    total = len(games) * steps_per_game
    cfg = {"games": games, "method": "finetune", "multitask": True, "steps_per_game": steps_per_game, "cycles": 1,
           "seed": seed, "run_dir": str(path), "device": "cpu", "eval_every": every, "finetune": {}}
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    (path / "blocks.jsonl").write_text(json.dumps({"block": 0, "cycle": 0, "game": "+".join(games), "task_index": 0,
                                                   "task_id": 0, "start_step": 0, "end_step": total}) + "\n")
    n = total // every
    evals = [{"step": (e + 1) * every, "block": 0, "task_index": 0, "trained_game": "+".join(games), "game": g,
              "mean_return": curves[g][e], "std_return": 0.0, "episodes": 1, score_name(g): normalized(g, curves[g][e]),
              "final": e == n - 1} for e in range(n) for g in games]
    (path / "evals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    row = [curves[g][n - 1] for g in games]
    (path / "retention.csv").write_text(f"after_task,{','.join(games)}\n0,{','.join(map(str, row))}\n")
    summary = metrics.summarize(np.array([row]), games, [list(range(len(games)))])
    (path / "metrics.json").write_text(json.dumps(summary))
    return path


JOINT = {"pong": [-20.0, -15.0, -10.0, -5.0, 0.0, 5.0, 10.0, 15.0], "breakout": [2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0]}


def test_a_joint_run_reads_as_one_block_of_every_game(tmp_path):
    path = write_joint_run(tmp_path / "mt", JOINT)
    run = records.load_run(path)
    assert run.joint and run.sequence == ("pong+breakout",) and run.trained_at == [[0, 1]]
    assert [(b["start_step"], b["end_step"]) for b in run.blocks] == [(0, 2000)] and not run.partial
    np.testing.assert_allclose(run.retention, [[15.0, 16.0]])
    (path / "blocks.jsonl").unlink()  # not logged yet: planned from the config
    assert [(b["game"], b["end_step"]) for b in records.load_run(path).blocks] == [("pong+breakout", 2000)]
    (path / "blocks.jsonl").write_text(json.dumps({"block": 0, "game": "pong", "start_step": 0, "end_step": 9}) + "\n")
    with pytest.raises(records.BadInput, match="game 'pong' is not the joint block of the config's games pong,breakout"):
        records.load_run(path)


def test_a_joint_run_is_its_own_group_with_final_scores_and_no_sequence_metrics(tmp_path):
    joint = [records.load_run(write_joint_run(tmp_path / f"mt{s}", JOINT, seed=s)) for s in (0, 1)]
    turns = [records.load_run(write_run(tmp_path / f"ft{s}", {"pong": PONG, "breakout": BREAKOUT}, seed=s))
             for s in (0, 1)]
    groups = compute.group_runs(joint + turns)  # the multi-task runs first: the baseline must not be theirs
    assert [g.label for g in groups] == ["finetune (multitask=True)", "finetune (multitask=False)"]
    ref = records.load_run(write_run(tmp_path / "ref", {"pong": PONG}, games=["pong"]))
    m = compute.run_metrics(joint[0], {"pong": [ref]})
    assert m["final_return"] == m["after_last_block_return"] == {"pong": 15.0, "breakout": 16.0}
    assert m["average_forgetting"] is None and m["backward_transfer"] is None
    assert m["forward_transfer"] == {"pong": None} and m["average_forward_transfer"] is None
    assert compute.plasticity_rows(joint[0], {"pong": [ref]}) == []
    summary = compute.build_summary(groups, [])
    assert summary["sequence"] == ["pong", "breakout"] and [g["multitask"] for g in summary["groups"]] == [True, False]
    aggregate = summary["aggregate"]
    assert list(aggregate["groups"]) == ["finetune (multitask=True)", "finetune (multitask=False)"]
    assert aggregate["baseline"] == "finetune (multitask=False)"
    assert list(aggregate["probability_of_improvement"]) == ["finetune (multitask=True)"]


def test_report_with_a_joint_run(tmp_path, capsys):
    joint = [write_joint_run(tmp_path / f"mt{s}", JOINT, seed=s) for s in (0, 1)]
    turns = [write_run(tmp_path / f"ft{s}", {"pong": PONG, "breakout": BREAKOUT}, seed=s) for s in (0, 1)]
    out = tmp_path / "out"
    assert run_report(*joint, *turns, "--out", out) == 0
    assert "group 'finetune (multitask=True)'" in capsys.readouterr().out
    text = (out / "report.md").read_text()
    assert "Game sequence: pong → breakout, 1 cycle(s) (2 task blocks of 1000 environment steps)" in text
    assert "the multi-task reference: every game at once in one block of 2000 steps" in text
    assert "| finetune (multitask=True) | 15.00 | 16.00 |" in text  # final return per game
    assert "(multi-task references left out: one block, no sequence)" in text and (out / "retention.png").is_file()
    assert "| finetune (multitask=True) | 2 | 2 |" in text  # in the rliable aggregate
    alone = tmp_path / "alone"
    assert run_report(*joint, "--out", alone) == 0
    assert not (alone / "retention.png").exists() and "retention.png" not in (alone / "report.md").read_text()
    assert "trained jointly in one block" in (alone / "report.md").read_text()


def test_a_joint_run_of_other_games_is_bad_input(tmp_path, capsys):
    other = write_joint_run(tmp_path / "mt", JOINT, games=["breakout", "pong"])
    turn = write_run(tmp_path / "ft", {"pong": PONG, "breakout": BREAKOUT})
    assert run_report(turn, other, "--out", tmp_path / "out") == 2
    assert "trains breakout,pong jointly, not the games of" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- end to end --------------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_crl_train_multitask_then_report_beside_fine_tuning(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from crl.run import rundir
    from tests.conftest import TINY, run_crl

    games = ",".join(MINATAR)
    mt, ft = tmp_path / "mt", tmp_path / "ft"
    proc = run_crl("train", "--games", games, "--multitask", "--run-dir", str(mt), *TINY)
    assert "jointly (multitask), one block of 600 steps" in proc.stderr
    run_crl("train", "--games", games, "--run-dir", str(ft), *TINY)

    blocks = rundir.read_jsonl(mt / rundir.BLOCKS)
    assert [(b["game"], b["start_step"], b["end_step"]) for b in blocks] == [("+".join(MINATAR), 0, 600)]
    evals = rundir.read_jsonl(mt / rundir.EVALS)
    assert {(e["step"], e["game"]) for e in evals} == {(s, g) for s in (150, 300, 450, 600) for g in MINATAR}
    finals = {e["game"]: e["mean_return"] for e in evals if e["final"]}
    summary = json.loads((mt / rundir.METRICS).read_text())
    assert summary["trained_at"] == [[0, 1]] and summary["final_return"] == finals
    assert summary["average_forgetting"] is None and summary["backward_transfer"] is None
    tb = EventAccumulator(str(mt / rundir.TB))
    tb.Reload()
    returns = {tag for tag in tb.Tags()["scalars"] if tag.endswith("/episode_return")}
    assert returns == {f"train/{g}/episode_return" for g in MINATAR}

    out = tmp_path / "report"
    proc = run_crl("report", str(ft), str(mt), "--out", str(out))
    assert "group 'finetune (multitask=True)'" in proc.stdout and "group 'finetune (multitask=False)'" in proc.stdout
    report = json.loads((out / "summary.json").read_text())
    joint = next(g for g in report["groups"] if g["multitask"])
    assert joint["label"] == "finetune (multitask=True)"
    assert joint["runs"][0]["metrics"]["final_return"] == finals
    text = (out / "report.md").read_text()
    assert all(f"| finetune (multitask={flag}) |" in text for flag in (True, False))
