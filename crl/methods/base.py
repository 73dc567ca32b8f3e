"""The method contract, re-exported: it lives at the bottom, in ``agents.method`` (the agent calls it, so the agent
imports nothing from ``crl``); the classes are the same objects under both names."""

from agents.method import (
    HOOKS,
    METHODS,
    FineTune,
    HookContext,
    Method,
    MethodParams,
    Range,
    TaskInfo,
    method_class,
    override,
    param,
    register,
    seed_of,
)

__all__ = ["HOOKS", "METHODS", "FineTune", "HookContext", "Method", "MethodParams", "Range", "TaskInfo",
           "method_class", "override", "param", "register", "seed_of"]
