"""Bad input: exit status 2, one clear line on stderr, no traceback, nothing written."""

import pytest

from tests.conftest import run_crl

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them


@pytest.mark.parametrize(
    "args, says",
    [
        (["--games", "Pong,Pongg"], "unknown game 'Pongg'"),
        (["--method", "magic"], "unknown method 'magic'"),
        (["--steps-per-game", "0"], "steps_per_game must be >= 1"),
        (["--steps-per-game", "-5"], "steps_per_game must be >= 1"),
        (["--n-envs", "10000"], "n_envs must be in [1, 256]"),
        (["--set", "agent.gamma=1.5"], "agent.gamma must be in [0, 1]"),
        (["--set", "agent.learning_rate=.nan"], "agent.learning_rate must be a finite number"),
        (["--set", "agent.gamma"], "malformed --set"),
        (["--set", "agent.gama=0.9"], "unknown config key 'agent.gama'"),
        (["--set", "agent.gamma=abc"], "agent.gamma: expected float"),
        (["--eval-episodes", "x"], "invalid int value"),
        (["--multitask", "--games", "minatar/breakout"], "multitask: give at least 2 games to train jointly"),
    ],
)
def test_bad_train_input(tmp_path, args, says):
    run_dir = tmp_path / "run"
    proc = run_crl("train", "--run-dir", str(run_dir), *args, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not run_dir.exists()


def test_existing_nonempty_run_dir_is_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    proc = run_crl("train", "--run-dir", str(tmp_path), check=False)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_yaml_config_with_unknown_key_or_wrong_type(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent:\n  gamma: 0.9\n  warp_speed: 9\n")
    proc = run_crl("train", "--config", str(bad), "--run-dir", str(tmp_path / "r"), check=False)
    assert proc.returncode == 2 and "unknown config key 'agent.warp_speed'" in proc.stderr
    bad.write_text("steps_per_game: lots\n")
    proc = run_crl("train", "--config", str(bad), "--run-dir", str(tmp_path / "r"), check=False)
    assert proc.returncode == 2 and "steps_per_game: expected int" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_config_file_and_set_override_defaults(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("games: [Breakout, SpaceInvaders]\nagent:\n  gamma: 0.9\n")
    proc = run_crl("train", "--config", str(good), "--set", "agent.gamma=0.95", "--cycles", "2", "--show-config")
    assert "- breakout\n- space_invaders" in proc.stdout and "gamma: 0.95" in proc.stdout and "cycles: 2" in proc.stdout


def test_games_lists_reference_scores():
    proc = run_crl("games")
    lines = proc.stdout.splitlines()
    pong = next(line for line in lines if line.startswith("pong "))
    assert "-20.7" in pong and "14.6" in pong
    assert len(lines) > 100
