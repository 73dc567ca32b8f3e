"""The contract between the agent and a continual-learning method, and the registry of methods by name.

The agent (``agents.ContinualDQN``) owns the DQN loop; a method is a small object that only

* chooses the Q-network (``q_network_spec``: a declarative spec, so SB3 can rebuild it on load),
* reacts to task boundaries (``before_task`` / ``after_task``: compute a Fisher, freeze a column, ...),
* adds a term to the loss (``penalty``: called once per gradient step),
* optionally sees every transition the agent collects (``on_transition``: to keep a sample of a task's experience),
* reports figures (``scalars``) and saves and restores its own state (``state_dict`` / ``load_state_dict``).

Hooks see a :class:`HookContext`, never the agent: the online network, the task, a sampler over the task's replay,
a seeded generator, the TD loss. This module is the bottom of the method stack: ``crl.methods`` builds on it, the agent
calls it, and it imports nothing above ``agents``. A subclass that sets ``name`` registers itself in :data:`METHODS`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.metadata
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np
import torch as th
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from agents.networks import TaskQNetwork


@dataclass(frozen=True)
class TaskInfo:
    """Where the sequence is: ``task_id`` is the agent's id of the task (given: the game's index in the sequence;
    inferred: whatever the task-inference process named it); ``game`` is the true game, for logs only; ``seed`` is
    the run's seed, so a method's own random draws (a Fisher's samples) are reproducible per (seed, block)."""

    task_id: int
    game: str
    block: int = 0
    cycle: int = 0
    first_visit: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        """Refuse what no sequence has: a task id, block or cycle that is not a non-negative integer."""
        for name in ("task_id", "block", "cycle", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"TaskInfo.{name} must be a non-negative integer, got {value!r}")
        if not isinstance(self.game, str):
            raise ValueError(f"TaskInfo.game must be a game name, got {self.game!r}")


def seed_of(*keys: int) -> int:
    """A 63-bit seed mixed from ``keys`` (e.g. run seed, block, stream), for a generator of its own."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> np.uint64(1))


# --- parameters ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Range:
    """The values a number may take: ``low`` to ``high`` inclusive (None: unbounded), ``low`` excluded when
    ``low_open``, plus the single values in ``also`` (e.g. -1 for "automatic")."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    also: tuple[float, ...] = ()

    def __contains__(self, value: float) -> bool:
        if value in self.also:
            return True
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def __str__(self) -> str:
        def fmt(v: float) -> str:
            return str(int(v)) if float(v).is_integer() else f"{v:g}"

        if self.high is not None:
            text = f"in {'(' if self.low_open else '['}{fmt(self.low)}, {fmt(self.high)}]"
        else:
            text = f"{'>' if self.low_open else '>='} {fmt(self.low)}"
        return " or ".join([*(fmt(v) for v in self.also), text])


def param(default: Any, help: str, *, low: float | None = None, high: float | None = None, low_open: bool = False,
          also: tuple[float, ...] = (), choices: tuple[str, ...] | None = None) -> Any:
    """A ``Params`` field: its default, a one-line help text and the values it may take (``low``/``high`` for a
    number or each number of a tuple, plus the single values ``also``, e.g. -1 for "automatic"; ``choices`` for a
    string; a boolean is true or false)."""
    bounds = Range(low, high, low_open, also) if low is not None or high is not None else None
    return field(default=default, metadata={"help": help, "range": bounds, "choices": choices})


def override(params: type, name: str, default: Any) -> Any:
    """Field ``name`` of the dataclass ``params`` with another default (its help and range kept)."""
    base = next(f for f in dataclasses.fields(params) if f.name == name)
    return field(default=default, metadata=base.metadata)


@dataclass(frozen=True)
class FieldType:
    """What a :func:`param` field holds, read from its annotation: ``kind`` is bool, int, float, str, list or tuple
    (or a dataclass: a section of fields); ``element`` the type of a list's or tuple's items; ``optional`` whether
    None is a value (``Optional[...]``)."""

    kind: type
    element: type | None = None
    optional: bool = False

    def __str__(self) -> str:
        return f"a list of {self.element.__name__}" if self.element is not None else self.kind.__name__


_SCALARS = (bool, int, float, str)


def _field_type(where: str, hint: Any) -> FieldType:
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            raise TypeError(f"{where}: a field holds one type (or None), got {hint}")
        hint = args[0]
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        items = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if len(items) != 1 or next(iter(items)) not in _SCALARS:
            raise TypeError(f"{where}: a list or tuple field holds one of {', '.join(t.__name__ for t in _SCALARS)}, "
                            f"got {hint}")
        return FieldType(origin, items.pop(), optional)
    if hint in _SCALARS or (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
        return FieldType(hint, None, optional)
    raise TypeError(f"{where}: unsupported field type {hint} (bool, int, float, str, a list or tuple of one of them, "
                    "Optional of those)")


@functools.lru_cache(maxsize=None)
def field_types(cls: type) -> dict[str, FieldType]:
    """Each field of the dataclass ``cls`` with its :class:`FieldType`, from its annotation resolved by
    ``typing.get_type_hints`` (never from the default)."""
    hints = typing.get_type_hints(cls)
    return {f.name: _field_type(f"{cls.__qualname__}.{f.name}", hints[f.name]) for f in dataclasses.fields(cls)}


def check_field(name: str, spec: dataclasses.Field, kind: FieldType, value: Any) -> None:
    """Raise ValueError naming ``name`` when ``value`` is not of the field's type ``kind`` or is outside its declared
    values: a bool; an int (not a bool); a float (an int is fine); a string among its choices; a list or tuple (either
    is fine) whose elements are each of the element type and in the range; None only where the type is Optional."""
    bounds, choices = spec.metadata.get("range"), spec.metadata.get("choices")
    if value is None:
        if not kind.optional:
            raise ValueError(f"{name} must be {_describe(kind.kind)}, got None")
        return
    if kind.element is not None:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list, got {value!r}")
        if not value and bounds is not None and kind.optional:
            raise ValueError(f"{name}: give at least one value (or null for the default)")
        items, element, each = list(value), kind.element, " per element"
    else:
        items, element, each = [value], kind.kind, ""
    for v in items:
        if element is bool:
            if not isinstance(v, bool):
                raise ValueError(f"{name} must be true or false{each}, got {value!r}")
        elif element is str:
            if choices and v not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}{each}, got {value!r}")
            if not isinstance(v, str):
                raise ValueError(f"{name} must be a string{each}, got {value!r}")
        elif element in (int, float):
            if isinstance(v, bool) or not isinstance(v, int if element is int else (int, float)):
                raise ValueError(f"{name} must be {_describe(element)}{each}, got {value!r}")
            if not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            if bounds is not None and v not in bounds:
                raise ValueError(f"{name} must be {bounds}{each}, got {value!r}")


def _describe(kind: type) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        kind, "a list" if kind in (list, tuple) else f"a {kind.__name__}")


def check_fields(params: Any, prefix: str = "") -> None:
    """Check every field of the dataclass ``params`` (and of each dataclass inside it, named ``section.field``) with
    :func:`check_field`; the one validator of every :func:`param` field, the run configuration's and each method's."""
    types_ = field_types(type(params))
    for spec in dataclasses.fields(params):
        value, kind = getattr(params, spec.name), types_[spec.name]
        if dataclasses.is_dataclass(kind.kind):
            check_fields(value, f"{prefix}{spec.name}.")
        else:
            check_field(prefix + spec.name, spec, kind, value)


@dataclass
class MethodParams:
    """Base of each method's parameters (the config section named after the method). Declare each field with
    :func:`param` (default, help, range); ``validate`` checks them all. Override ``validate`` (calling this one)
    only for a rule that ties several fields together."""

    def validate(self) -> None:
        """Raise ValueError naming the parameter when a value has the wrong type or is out of range."""
        check_fields(self)


# --- what a hook sees ---------------------------------------------------------------------------------------------
def _no_replay(batch_size: int, generator: th.Generator | None = None) -> ReplayBufferSamples:
    raise ValueError("this hook context has no replay buffer to sample")


def _no_td_loss(data: ReplayBufferSamples, task_id: int | None = None) -> th.Tensor:
    raise ValueError("this hook context has no TD loss")


def _no_fresh_parameters() -> dict[str, th.Tensor]:
    raise ValueError("this hook context cannot build a fresh network")


def _no_weights_changed(masks: dict[th.nn.Parameter, th.Tensor | None], reset_optimizer: bool = True,
                        sync_target: bool = False) -> None:
    raise ValueError("this hook context cannot change weights")


@dataclass
class HookContext:
    """What a method's hook may use of the agent, built by the agent for each call.

    :param q_net: the online Q-network, set to the current task (whatever its class offers: ``generate``, ...)
    :param task: the task being trained (``before_task`` / ``after_task`` also get it as their argument)
    :param task_steps: env steps trained on ``task.task_id`` so far, over all its blocks
    :param device: where the network and the training tensors live
    :param generator: the method's random draws: a CPU generator the agent seeds per (run seed, block) and saves with
        itself, so they are reproducible and leave the global RNGs (exploration, minibatches) alone
    :param sample: ``sample(batch_size, generator=None)``: transitions uniform over the current task's replay buffer,
        indices drawn with ``generator`` (None: the context's)
    :param td_loss: ``td_loss(batch, task_id=None)``: the agent's TD loss of a minibatch evaluated as ``task_id``
        (None: the current task), e.g. for stored transitions of an earlier game
    :param batch: in ``after_gradient_step``, the minibatch the step trained on (None elsewhere)
    :param fresh_parameters: ``fresh_parameters()``: the named parameters of a newly initialized network of the same
        structure, drawn from the hooks' generator (re-initialization and perturbation noise; the global RNGs untouched)
    :param weights_changed: ``weights_changed(masks, reset_optimizer=True, sync_target=False)``: a hook that wrote
        parameters of ``q_net`` says which (``{parameter: bool mask of the entries written, or None for all}``); the
        agent zeroes the optimizer's moments of those entries, copies the online network to the target network if
        asked, and declares the parameters changed. The only way a hook may change weights.
    """

    q_net: TaskQNetwork
    task: TaskInfo
    task_steps: int = 0
    device: th.device = field(default_factory=lambda: th.device("cpu"))
    generator: th.Generator = field(default_factory=th.Generator)
    sample: Callable[..., ReplayBufferSamples] = _no_replay
    td_loss: Callable[..., th.Tensor] = _no_td_loss
    batch: ReplayBufferSamples | None = None
    fresh_parameters: Callable[[], dict[str, th.Tensor]] = _no_fresh_parameters
    weights_changed: Callable[..., None] = _no_weights_changed


# --- the method base class and the registry ------------------------------------------------------------------------
METHODS: dict[str, type["Method"]] = {}  # name -> class: ``--method NAME``, and how a saved agent finds its method

# The names the loop calls, and the prefixes that make a method name look like one (a misspelt hook is an error).
HOOKS = ("q_network_spec", "before_task", "after_task", "on_transition", "penalty", "after_gradient_step",
         "scalars")
HOOK_PREFIXES = ("before_", "after_", "on_")


def register(cls: type["Method"]) -> type["Method"]:
    """Add ``cls`` to :data:`METHODS` under ``cls.name``. Subclasses that set ``name`` are registered when defined;
    another class under a taken name is a TypeError."""
    taken = METHODS.get(cls.name)
    if taken is not None and (taken.__module__, taken.__qualname__) != (cls.__module__, cls.__qualname__):
        raise TypeError(f"method name {cls.name!r} of {cls.__module__}.{cls.__qualname__} is already taken by "
                        f"{taken.__module__}.{taken.__qualname__}")
    METHODS[cls.name] = cls
    return cls


ENTRY_POINTS = "crl.methods"  # the entry-point group where packages (crl itself included) declare their methods


def method_class(name: str) -> type["Method"]:
    """The method called ``name``: registered already, or found in the ``crl.methods`` entry-point group, whose
    object is loaded (defining the class registers it). An unknown name is a ValueError listing the known ones."""
    if name not in METHODS:
        for entry in importlib.metadata.entry_points(group=ENTRY_POINTS, name=name):
            entry.load()
    if name not in METHODS:
        known = sorted({*METHODS, *(e.name for e in importlib.metadata.entry_points(group=ENTRY_POINTS))})
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(known)}")
    return METHODS[name]


class Method:
    """Base of every method; its hooks do nothing (the agent with no method: no penalty, no hooks).

    A subclass sets ``name`` (the ``--method`` value; it registers itself), declares ``Params`` (a
    :class:`MethodParams` dataclass: the config section) and overrides the hooks it needs.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # what it is, in a few words, and where it comes from: the README's method table
    paper: ClassVar[str] = ""
    Params: ClassVar[type[MethodParams]] = MethodParams
    # The network kinds the method works with (None: any). A method that rewrites units of the shared network
    # (ReDo, continual backprop, resets) needs the plain conv network: it cannot touch frozen progressive columns.
    network_kinds: ClassVar[tuple[str, ...] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attr, value in vars(cls).items():
            if callable(value) and attr not in HOOKS and (
                    attr.startswith(HOOK_PREFIXES) or difflib.get_close_matches(attr, HOOKS, n=1, cutoff=0.85)):
                raise TypeError(f"{cls.__qualname__}.{attr} looks like a hook but the training loop never calls it; "
                                f"the hooks are {', '.join(HOOKS)}")
        if "name" in vars(cls):
            register(cls)

    def __init__(self, params: MethodParams | dict[str, Any] | None = None) -> None:
        if params is None:
            params = self.Params()
        elif isinstance(params, dict):
            params = self.Params(**params)
        params.validate()
        self.params = params

    @classmethod
    def overrides(cls, hook: str) -> bool:
        """Whether this class replaces the base class's do-nothing ``hook`` (the agent skips calls that do nothing)."""
        return getattr(cls, hook) is not getattr(Method, hook)

    # --- hooks ---------------------------------------------------------------------------------------
    def q_network_spec(self, network: dict[str, Any]) -> dict[str, Any]:
        """The Q-network to build: ``{"kind": ..., **kwargs}`` for ``agents.networks.build_q_network``."""
        return {"kind": "conv", **network}

    def before_task(self, ctx: HookContext, task: TaskInfo) -> None:
        """Called after the agent switched to ``task`` and before it trains on it."""

    def after_task(self, ctx: HookContext, task: TaskInfo) -> None:
        """Called after a task block's training, with that task's replay buffer still in place."""

    def on_transition(
        self, ctx: HookContext, obs: np.ndarray, next_obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
        dones: np.ndarray,
    ) -> None:
        """Called after every vector-env step with its transitions, one row per env, for ``ctx.task``.

        ``next_obs`` is the real last observation where an episode ended (not the reset one that follows), and
        ``dones`` marks true terminations only: a time-limit cut is not an end (its value is bootstrapped, as in the
        replay buffer). The arrays are the agent's: copy what you keep. Replay and distillation sample from here.
        """

    def penalty(self, ctx: HookContext) -> th.Tensor | None:
        """Term added to the TD loss at every gradient step: a scalar with a gradient, or None (nothing to add)."""
        return None

    def after_gradient_step(self, ctx: HookContext) -> None:
        """Called after every optimizer step, with the step's minibatch in ``ctx.batch``; a hook that writes weights
        reports them through ``ctx.weights_changed``."""

    def scalars(self) -> dict[str, float]:
        """Figures to log to TensorBoard at task boundaries (tag -> value)."""
        return {}

    # --- persistence ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue, as tensors and plain Python values."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def to(self, device: th.device) -> "Method":
        """Move stored tensors to ``device`` (called when the agent is built or loaded)."""
        return self

    def params_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.params)


class FineTune(Method):
    """The baseline that forgets: train on each game in turn with no penalty (the agent's method when given none)."""

    name = "finetune"
    summary = "fine-tuning (the baseline that forgets)"
    paper = "—"
