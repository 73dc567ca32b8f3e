"""Known answers for the plain-words summary printed at the end of ``crl train``."""

from crl.analysis.words import describe_game, retention_in_words


def test_forgetting_is_put_in_words() -> None:
    line = describe_game("minatar/space_invaders", own=22.75, final=4.75, random=2.75)
    assert line == ("minatar/space_invaders: 22.8 after its own block (random play: 2.8; learned), 4.8 at the end: "
                    "forgot 90% of what it had gained over random play.")


def test_kept_and_last_block() -> None:
    assert describe_game("g", own=12.0, final=9.5, random=2.0).endswith("kept 75% of what it had gained over random play.")
    assert describe_game("g", own=12.0, final=13.0, random=2.0).endswith("kept all of it.")
    assert "nothing came after it" in describe_game("g", own=3.0, final=None, random=2.75)
    assert "no better than random play" in describe_game("g", own=1.0, final=None, random=2.0)


def test_each_trained_game_uses_its_first_block() -> None:
    R = [[20.0, 0.5], [5.0, 6.0]]
    lines = retention_in_words(["a", "b"], R, [0, 1], {"a": 2.0, "b": 0.5})
    assert lines[0].startswith("a: 20.0 after its own block") and "5.0 at the end" in lines[0]
    assert lines[1].startswith("b: 6.0 after its own block") and "nothing came after it" in lines[1]


def test_cut_episodes_are_neither_called_learned_nor_compared_with_random_play() -> None:
    line = describe_game("pong", own=-5.0, final=-8.0, random=-20.7, own_cut=2, final_cut=0)
    assert "learned" not in line and "random play:" not in line and "forgot" not in line
    assert "cut by eval.max_steps" in line and "-8.0 at the end" in line
    assert "cut by eval.max_steps" in describe_game("pong", own=-5.0, final=None, random=-20.7, own_cut=1)
    assert "learned" in describe_game("pong", own=-5.0, final=None, random=-20.7)
    lines = retention_in_words(["pong", "breakout"], [[-5.0, 0.0], [-9.0, 3.0]], [0, 1], {"pong": -20.7, "breakout": 1.7},
                               cut=[[2, 0], [0, 0]])
    assert "cut by eval.max_steps" in lines[0] and "cut" not in lines[1]
