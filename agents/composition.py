"""Methods that compose: ``ewc+redo`` is EWC's penalty and ReDo's recycling in one agent.

A composed method runs every component's hooks in the order the name gives them, adds their penalties, and keeps
each component's parameters and state under its own name, so ``ewc+redo`` saves and loads like any method. It
refuses, with one line, a combination that cannot work: a component named twice, two components that each choose
the Q-network, or a component that needs the plain conv network (it rewrites units) next to one that chooses
another (progressive columns, frozen once trained; hypernetwork-generated weights).
"""

from __future__ import annotations

from typing import Any

import torch as th

from agents.method import HookContext, Method, MethodParams, TaskInfo, method_class

SEPARATOR = "+"


class ComposedMethod(Method):
    """Several methods as one: hooks in order, penalties summed, parameters and state per component."""

    def __init__(self, components: list[Method]) -> None:
        names = [c.name for c in components]
        if len(components) < 2:
            raise ValueError("a composed method needs at least two components")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"method {SEPARATOR.join(names)!r} names {', '.join(twice)} twice")
        choosers = [c.name for c in components if c.overrides("q_network_spec")]
        if len(choosers) > 1:
            raise ValueError(f"methods {' and '.join(choosers)} each choose the Q-network; they cannot be combined")
        self.components = components
        self.name = SEPARATOR.join(names)  # type: ignore[misc]  # an instance's name: composed names are not registered
        self.params = MethodParams()
        self._spec_owner = next((c for c in components if c.overrides("q_network_spec")), components[0])
        kind = self._spec_owner.q_network_spec({}).get("kind", "conv")
        for c in components:
            if c.network_kinds is not None and kind not in c.network_kinds:
                raise ValueError(f"{c.name} needs the {' or '.join(c.network_kinds)} network and "
                                 f"{self._spec_owner.name} chooses the {kind} network: they cannot be combined")

    def overrides(self, hook: str) -> bool:  # type: ignore[override]
        return any(c.overrides(hook) for c in self.components)

    # --- hooks, in the order of the name -----------------------------------------------------------
    def q_network_spec(self, network: dict[str, Any]) -> dict[str, Any]:
        return self._spec_owner.q_network_spec(network)

    def before_task(self, ctx: HookContext, task: TaskInfo) -> None:
        for c in self.components:
            c.before_task(ctx, task)

    def after_task(self, ctx: HookContext, task: TaskInfo) -> None:
        for c in self.components:
            c.after_task(ctx, task)

    def on_transition(self, ctx: HookContext, *transition: Any) -> None:
        for c in self.components:
            if c.overrides("on_transition"):
                c.on_transition(ctx, *transition)

    def penalty(self, ctx: HookContext) -> th.Tensor | None:
        terms = [t for c in self.components if c.overrides("penalty") for t in [c.penalty(ctx)] if t is not None]
        return sum(terms[1:], terms[0]) if terms else None

    def after_gradient_step(self, ctx: HookContext) -> None:
        for c in self.components:
            if c.overrides("after_gradient_step"):
                c.after_gradient_step(ctx)

    def scalars(self) -> dict[str, float]:
        return {tag: value for c in self.components for tag, value in c.scalars().items()}

    # --- persistence, per component ----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {c.name: c.state_dict() for c in self.components}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for c in self.components:
            c.load_state_dict(state[c.name])

    def to(self, device: th.device) -> "ComposedMethod":
        for c in self.components:
            c.to(device)
        return self

    def params_dict(self) -> dict[str, Any]:
        return {c.name: c.params_dict() for c in self.components}


def component_names(name: str) -> list[str]:
    """``"ewc+redo"`` -> ``["ewc", "redo"]``; a single method's name -> ``[name]``."""
    return name.split(SEPARATOR)


def build_method(name: str, params: dict[str, Any] | MethodParams | None = None) -> Method:
    """The method called ``name``, a registered name or registered names joined by ``+``.

    ``params``: a single method's parameters (its ``Params`` or a dict), or for a composed name a dict from each
    component's name to its parameters (missing components take their defaults)."""
    names = component_names(name)
    if len(names) == 1:
        return method_class(name)(params)
    given = dict(params or {})
    return ComposedMethod([method_class(n)(given.get(n)) for n in names])


def is_buildable(method: Method) -> bool:
    """Whether :func:`build_method` rebuilds ``method`` from its name (what a saved agent relies on)."""
    if isinstance(method, ComposedMethod):
        return all(is_buildable(c) for c in method.components)
    try:
        return method_class(method.name) is type(method)
    except ValueError:
        return False
