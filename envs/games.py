"""Game names of both families: accept the spellings users type and map them to one canonical id per game.

Atari games are ALE ROM ids (``space_invaders``); MinAtar games carry the family as a prefix
(``minatar/space_invaders``), so a name alone says which emulator, observation shape and score reference it uses.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from typing import Iterable, Literal

from ale_py import roms

Family = Literal["atari", "minatar"]
FAMILIES: tuple[Family, ...] = ("atari", "minatar")
MINATAR_PREFIX = "minatar/"
# MinAtar's five games (its ``minatar/environments`` modules). Listed here rather than read from the package because
# importing ``minatar`` pulls in matplotlib and seaborn (~2 s), which resolving a name should not cost.
MINATAR_GAMES: tuple[str, ...] = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")


class UnknownGameError(ValueError):
    """A game name that is neither an ALE ROM nor a MinAtar game; the message names the closest known games."""


@lru_cache(maxsize=None)
def known_games(family: Family | None = None) -> tuple[str, ...]:
    """Canonical ids of ``family`` (``"atari"``: the ROMs shipped with ale-py that it can load; ``"minatar"``), or
    of both."""
    if family is None:
        return known_games("atari") + known_games("minatar")
    if family == "atari":
        return loadable_atari_games()
    if family == "minatar":
        return tuple(MINATAR_PREFIX + g for g in MINATAR_GAMES)
    raise ValueError(f"unknown game family {family!r}; families: {', '.join(FAMILIES)}")


@lru_cache(maxsize=None)
def loadable_atari_games() -> tuple[str, ...]:
    """ROM ids shipped with ale-py that its emulator supports. Some ROMs ship without support (combat, joust,
    maze_craze, warlords in ale-py 0.12): loading one ends the process, so each ROM's checksum is checked instead."""
    from ale_py import ALEInterface

    return tuple(g for g in sorted(roms.get_all_rom_ids()) if ALEInterface.isSupportedROM(roms.get_rom_path(g)) is not None)


def _snake(name: str) -> str:
    name = re.sub(r"-v\d+$", "", name)
    name = re.sub(r"(NoFrameskip|Deterministic)$", "", name)
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)  # CamelCase -> camel_case
    return name.replace("-", "_").replace(" ", "_").lower()


def _match(stem: str, games: Iterable[str]) -> str | None:
    """The game whose name is ``stem``, ignoring underscores (``spaceinvaders``, ``Space-Invaders``)."""
    games = tuple(games)
    if stem in games:
        return stem
    squashed = {g.replace("_", ""): g for g in games}
    return squashed.get(stem.replace("_", ""))


def resolve_game(name: str) -> str:
    """Canonical id for ``name``.

    Atari: ``Pong``, ``pong``, ``ALE/Pong-v5``, ``PongNoFrameskip-v4`` -> ``pong``.
    MinAtar: ``minatar/breakout``, ``MinAtar/Breakout-v0``, ``MinAtar/Breakout-v1``, ``minatar-breakout`` ->
    ``minatar/breakout`` (``-v0`` and ``-v1`` differ only in MinAtar's action set; every game here uses all 6).
    """
    text = name.strip()
    prefix = re.match(r"^minatar[/_\- ]", text, flags=re.IGNORECASE)
    if prefix:
        game = _match(_snake(text[prefix.end() :]), MINATAR_GAMES)
        if game is not None:
            return MINATAR_PREFIX + game
    else:
        game = _match(_snake(re.sub(r"^ALE/", "", text)), known_games("atari"))
        if game is not None:
            return game
    typed = MINATAR_PREFIX + _snake(text[prefix.end() :]) if prefix else _snake(text)
    unloadable = None if prefix else _match(_snake(re.sub(r"^ALE/", "", text)), roms.get_all_rom_ids())
    if unloadable is not None:
        raise UnknownGameError(f"game {name!r}: ale-py ships the {unloadable} ROM but cannot load it; choose another "
                               "game (`crl games` lists those that load)")
    close = difflib.get_close_matches(typed, known_games(), n=3, cutoff=0.5)
    hint = f"; closest known games: {', '.join(close)}" if close else "; run `crl games` for the list"
    raise UnknownGameError(f"unknown game {name!r}{hint}")


def game_family(game: str) -> Family:
    """``"atari"`` or ``"minatar"`` for any accepted spelling of a game."""
    return "minatar" if resolve_game(game).startswith(MINATAR_PREFIX) else "atari"


def check_one_family(games: Iterable[str]) -> None:
    """Raise ValueError (one line) if ``games`` mix families: one network plays the whole sequence."""
    by_family: dict[str, list[str]] = {}
    for game in games:
        by_family.setdefault(game_family(game), []).append(resolve_game(game))
    if len(by_family) > 1:
        parts = "; ".join(f"{family}: {', '.join(names)}" for family, names in by_family.items())
        raise ValueError(
            f"games: a sequence is played by one network, so its games must come from one family, got {parts}"
        )
