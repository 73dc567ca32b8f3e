"""Game names of both families: accepted spellings, families, mixing them in one sequence, unknown names."""

import dataclasses

import pytest

from crl.run.config import ConfigError, env_options, resolve
from envs import UnknownGameError, check_one_family, game_family, known_games, resolve_game
from tests.conftest import run_crl


@pytest.mark.parametrize(
    "name, rom",
    [
        ("Pong", "pong"), ("pong", "pong"), ("SpaceInvaders", "space_invaders"), ("space_invaders", "space_invaders"),
        ("ALE/Pong-v5", "pong"), ("PongNoFrameskip-v4", "pong"), ("MsPacman", "ms_pacman"),
        ("ALE/MontezumaRevenge-v5", "montezuma_revenge"), ("BreakoutDeterministic-v4", "breakout"),
    ],
)
def test_accepted_spellings_map_to_rom_ids(name, rom):
    assert resolve_game(name) == rom
    assert rom in known_games() and rom in known_games("atari")
    assert game_family(name) == "atari"


@pytest.mark.parametrize(
    "name, game",
    [
        ("minatar/breakout", "minatar/breakout"), ("MinAtar/Breakout-v0", "minatar/breakout"),
        ("MinAtar/Breakout-v1", "minatar/breakout"), ("minatar-breakout", "minatar/breakout"),
        ("MinAtar/SpaceInvaders-v1", "minatar/space_invaders"), ("minatar/space_invaders", "minatar/space_invaders"),
        ("minatar/space-invaders", "minatar/space_invaders"), ("MinAtar/Asterix-v0", "minatar/asterix"),
        ("minatar/Freeway", "minatar/freeway"), (" MinAtar/Seaquest-v1 ", "minatar/seaquest"),
    ],
)
def test_minatar_spellings_map_to_prefixed_ids(name, game):
    assert resolve_game(name) == game
    assert game_family(name) == "minatar"


def test_known_games_by_family():
    minatar = known_games("minatar")
    assert minatar == ("minatar/asterix", "minatar/breakout", "minatar/freeway", "minatar/seaquest",
                       "minatar/space_invaders")
    assert "pong" in known_games("atari") and not set(minatar) & set(known_games("atari"))
    assert known_games() == known_games("atari") + minatar
    with pytest.raises(ValueError, match="families: atari, minatar"):
        known_games("nes")


def test_minatar_games_are_minatar_s_own():
    from importlib import resources

    modules = {p.name[:-3] for p in resources.files("minatar.environments").iterdir() if p.name.endswith(".py")}
    assert {g.split("/")[1] for g in known_games("minatar")} == modules - {"__init__"}


def test_unknown_game_names_it_and_the_closest_known_games():
    with pytest.raises(UnknownGameError) as err:
        resolve_game("Pongg")
    message = str(err.value)
    assert "'Pongg'" in message and "pong" in message
    with pytest.raises(UnknownGameError, match="crl games"):
        resolve_game("zzzzzzzzzz")
    with pytest.raises(UnknownGameError, match=r"'MinAtar/Breakot-v1'; closest known games: minatar/breakout"):
        resolve_game("MinAtar/Breakot-v1")
    with pytest.raises(UnknownGameError, match="minatar/space_invaders"):  # suggestions span both families
        resolve_game("minatar_space_invader")


def test_a_sequence_must_not_mix_families():
    check_one_family(["pong", "Breakout"])
    check_one_family(["minatar/breakout", "MinAtar/Freeway-v1"])
    with pytest.raises(ValueError) as err:
        check_one_family(["Pong", "minatar/breakout", "breakout"])
    message = str(err.value)
    assert "\n" not in message and "one family" in message
    assert "atari: pong, breakout" in message and "minatar: minatar/breakout" in message


def test_config_resolves_minatar_games_and_refuses_mixed_sequences():
    cfg = resolve({"games": ["MinAtar/Breakout-v1", "minatar-space-invaders"]})
    assert cfg.games == ["minatar/breakout", "minatar/space_invaders"]
    assert env_options(cfg, "minatar/breakout") == dataclasses.asdict(cfg.minatar)
    assert env_options(cfg, "pong") == dataclasses.asdict(cfg.env)
    assert dataclasses.asdict(cfg.minatar) == {"sticky_actions": 0.1, "difficulty_ramping": True, "clip_rewards": True,
                              "max_episode_steps": 10_000}
    with pytest.raises(ConfigError, match="one family"):
        resolve({"games": ["pong", "minatar/breakout"]})
    with pytest.raises(ConfigError, match=r"minatar.sticky_actions must be in \[0, 1\]"):
        resolve({"games": ["minatar/breakout"], "minatar.sticky_actions": 2.0})


@pytest.mark.e2e  # a real run or a `crl` subprocess: seconds, not milliseconds
def test_cli_refuses_a_mixed_sequence_in_one_line():
    proc = run_crl("train", "--games", "pong,minatar/breakout", check=False, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "one family" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.e2e  # a real run or a `crl` subprocess: seconds, not milliseconds
def test_crl_games_lists_both_families_with_their_references():
    out = run_crl("games", timeout=120).stdout
    assert "atari games (normalized score: hns)" in out and "minatar games (normalized score: dqn_normalized)" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("minatar/")}
    assert list(rows) == list(known_games("minatar"))
    assert rows["minatar/breakout"] == ["0.5", "10.0"]  # random play, Young & Tian 2019's DQN
