"""Continual-learning methods, selected by name (``--method``).

Every module of this package is imported here, and every ``Method`` subclass that sets ``name`` registers itself in
:data:`METHODS` (``agents.method``); then every method other installed packages declare in the ``crl.methods``
entry-point group is loaded too. ``setup.cfg`` declares crl's own methods in that group, so an agent saved with one
loads (``ContinualDQN.load``) in an interpreter that never imported this package. Helpers the methods share live
beside them: ``anchored.py`` (the quadratic penalty), ``memory.py`` (rehearsal samples), ``fisher.py``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from typing import Any

from agents.composition import build_method, component_names
from agents.method import (
    ENTRY_POINTS,
    METHODS,
    FineTune,
    HookContext,
    Method,
    MethodParams,
    TaskInfo,
    method_class,
    register,
)

# Imported first, in this order: the order methods register in is the order of their sections in config.yaml.
FIRST = ("progressive", "l2", "ewc", "online_ewc", "hypernet", "distill", "replay")


def make_method(name: str, params: MethodParams | dict[str, Any] | None = None) -> Method:
    """Instantiate the method called ``name`` with its parameters (its ``Params``, or a dict of them); a composed
    name (``ewc+redo``) takes a dict from each component's name to its parameters."""
    return build_method(name, params)


def unknown_components(name: str) -> list[str]:
    """The components of a (possibly composed) method name that no registered method has."""
    return [c for c in component_names(name) if c not in METHODS]


def section_name(method_name: str) -> str:
    """Config section holding a method's parameters: ``online-ewc`` -> ``online_ewc``."""
    return method_name.replace("-", "_")


def method_sections(name: str) -> list[str]:
    """The config sections a (possibly composed) method reads: ``ewc+redo`` -> ``["ewc", "redo"]``."""
    return [section_name(c) for c in component_names(name)]


def method_table() -> str:
    """The README's table of methods, one row per registered method: its summary, ``--method`` name and paper."""
    rows = ["| method | `--method` | paper |", "|---|---|---|"]
    for name, cls in METHODS.items():
        rows.append(f"| {cls.summary or cls.__name__} | `{name}` | {cls.paper or '—'} |")
    return "\n".join(rows)


def _import_all() -> None:
    """Import every module of the package (the ones in :data:`FIRST` in that order, then the rest by name), then
    load the methods other packages declare in the entry-point group."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__))
    for module in [*(m for m in FIRST if m in names), *(m for m in names if m not in FIRST)]:
        importlib.import_module(f"{__name__}.{module}")
    for entry in importlib.metadata.entry_points(group=ENTRY_POINTS):
        if entry.name not in METHODS:
            entry.load()


_import_all()

__all__ = ["METHODS", "FineTune", "HookContext", "Method", "MethodParams", "TaskInfo", "component_names",
           "make_method", "method_sections", "method_table", "register", "section_name", "unknown_components"]
