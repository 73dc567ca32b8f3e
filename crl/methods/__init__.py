"""Continual-learning methods, selected by name (``--method``)."""

from __future__ import annotations

from typing import Any

from crl.methods.base import FineTune, Method, MethodParams, TaskInfo

METHODS: dict[str, type[Method]] = {"finetune": FineTune}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to :data:`METHODS` under ``cls.name``."""
    METHODS[cls.name] = cls
    return cls


def make_method(name: str, params: dict[str, Any] | None = None) -> Method:
    """Instantiate the method called ``name`` with its parameter section (a dict)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))}")
    return METHODS[name](params)


def section_name(method_name: str) -> str:
    """Config section holding a method's parameters: ``online-ewc`` -> ``online_ewc``."""
    return method_name.replace("-", "_")


# Methods register themselves with @register on import; one import line per method module below.

__all__ = ["METHODS", "FineTune", "Method", "MethodParams", "TaskInfo", "make_method", "register", "section_name"]
from crl.methods import progressive  # noqa: E402,F401
from crl.methods import ewc  # noqa: E402,F401
from crl.methods import hypernet  # noqa: E402,F401
from crl.methods import distill  # noqa: E402,F401
from crl.methods import replay  # noqa: E402,F401
