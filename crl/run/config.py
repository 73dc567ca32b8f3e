"""The run configuration: one tree of dataclasses that is the single source of every key's default, type, range,
choices and help; presets, ``--config`` YAML, flags and ``--set`` merge into it through OmegaConf.

A field is declared with :func:`agents.method.param` (default, one-line help, ``low``/``high`` or ``choices``), the
same declaration a method's ``Params`` uses, so a method's section is validated exactly like the rest. OmegaConf
merges and converts types; :func:`resolve` then checks ranges and choices once, and turns OmegaConf's errors into one
line naming the key (an unknown key names the closest valid ones).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from agents.method import FieldType, Range, check_fields, field_types, param
from crl.methods import METHODS, component_names, make_method, section_name, unknown_components
from crl.run.seeds import SEED_MAX
from crl.task_inference.fmn import ForgetMeNotParams


class ConfigError(ValueError):
    """Bad configuration; the message is one line meant for the user."""


MAX_N_ENVS = 256  # far beyond what one process steps usefully; more only costs minutes of start-up


def listed(default: list[Any], help: str, **bounds: Any) -> Any:
    """A field whose default is a list (or None for "the torso's own" with ``nullable``), declared like :func:`param`."""
    spec = param(None, help, **bounds)
    return field(default_factory=lambda: list(default), metadata=spec.metadata) if default is not None else spec


def flagged(spec: Any) -> Any:
    """``spec`` (a :func:`param` or :func:`listed` field) that also has its own ``crl train`` flag, named after its
    key: ``eval.every`` -> ``--eval-every``."""
    return field(default=spec.default, default_factory=spec.default_factory, metadata={**spec.metadata, "flag": True})


def flag_name(key: str) -> str:
    """The ``crl train`` flag of a flagged key."""
    return "--" + key.replace(".", "-").replace("_", "-")


@dataclass
class EvalConfig:
    every: int = flagged(param(20_000, "env steps between periodic evaluations of every game (0: block ends only)", low=0))
    episodes: int = flagged(param(10, "episodes per game per evaluation", low=1))
    max_steps: int = flagged(param(5_000, "agent steps at most per evaluation episode", low=1))
    epsilon: float = param(0.05, "exploration rate while evaluating", low=0, high=1)
    task_id: str = flagged(param("oracle", "task id used in evaluation: given, or inferred from the Q-values' entropy",
                         choices=("oracle", "inferred")))


@dataclass
class AtariConfig:
    sticky_actions: float = param(0.25, "probability that the previous action repeats (ALE v5)", low=0, high=1)
    full_action_space: bool = param(True, "all 18 actions in every game (one shared head)")
    frame_skip: int = param(4, "emulator frames per agent step", low=1)
    noop_max: int = param(30, "random no-op actions at most after a reset", low=0)
    clip_rewards: bool = param(True, "train on the sign of each reward")
    max_episode_steps: int = param(27_000, "agent steps per episode at most (108,000 frames; 0: no cap)", low=0)
    fire_reset: bool = param(True, "press FIRE after each reset in games that have it (ale_py's default; the DQN "
                                   "papers: no)")


@dataclass
class MinAtarConfig:
    sticky_actions: float = param(0.1, "probability that the previous action repeats (MinAtar's default)", low=0,
                                  high=1)
    difficulty_ramping: bool = param(True, "games speed up as they go on (MinAtar's default)")
    clip_rewards: bool = param(True, "train on the sign of each reward")
    # 4x Freeway's fixed 2,500, far beyond random or DQN-reference play, but a bound on Seaquest/Asterix episodes a
    # good policy could otherwise make endless
    max_episode_steps: int = param(10_000, "agent steps (= MinAtar frames) per episode at most (0: no cap)", low=0)


@dataclass
class AgentConfig:
    learning_rate: float = param(1e-3, "optimizer step size (0: the no-learning control)", low=0)
    optimizer: str = param("adam", "optimizer", choices=("adam", "rmsprop"))
    rmsprop_alpha: float = param(0.95, "RMSprop's smoothing constant", low=0, high=1)
    optimizer_eps: float = param(1.5e-4, "the optimizer's epsilon", low=0)
    buffer_size: int = param(50_000, "replay capacity in transitions", low=1)
    replay: str = param("fresh", "replay across tasks: emptied at each switch, one shared, or one per task",
                        choices=("fresh", "shared", "per-task"))
    learning_starts: int = param(1_000, "transitions of a task before its first gradient step", low=0)
    batch_size: int = param(32, "minibatch size", low=1)
    gamma: float = param(0.99, "discount factor", low=0, high=1)
    train_freq: int = param(4, "vector env steps between gradient phases", low=1)
    gradient_steps: int = param(-1, "gradient steps per phase (-1: n_envs, one per 4 transitions)", low=1, also=(-1,))
    target_update_interval: int = param(1_000, "env steps between target network copies", low=1)
    exploration_initial_eps: float = param(1.0, "epsilon at the start of each task's timer", low=0, high=1)
    exploration_final_eps: float = param(0.05, "epsilon after the decay", low=0, high=1)
    exploration_steps: int = param(10_000, "env steps of a task over which epsilon decays, after its warm-up", low=0)
    max_grad_norm: float = param(10.0, "gradient norm clip", low=0, low_open=True)
    double_q: bool = param(True, "Double DQN targets")
    reset_optimizer: bool = param(False, "fresh optimizer state at every task switch")


@dataclass
class NetworkConfig:
    task_modulation: bool = param(False, "per-task biases and gains on every layer (Kirkpatrick et al. 2017)")
    conv_channels: Optional[list[int]] = listed(None, "one width per conv layer (null: the torso's own: Nature CNN "
                                                      "32,64,64 on Atari, 16 on MinAtar)", low=1)
    hidden: Optional[int] = param(None, "dense layer width (null: the torso's own: 512 on Atari, 128 on MinAtar)", low=1)
    activation: str = param("relu", "hidden units' activation: relu, or crelu (relu(h) and relu(-h), Abbas et al. "
                                    "2023)", choices=("relu", "crelu"))
    layer_norm: bool = param(False, "layer norm on every hidden layer, before its activation")


@dataclass
class PlasticityConfig:
    measure: bool = param(True, "measure plasticity at every evaluation (dormant units, feature rank, weight and "
                                "gradient norms) on a fixed probe batch per game")
    probe_size: int = param(256, "observations in each game's probe batch (and transitions for the gradient norm)",
                            low=2)


@dataclass
class CheckpointConfig:
    every: int = flagged(param(0, "env steps between resume checkpoints inside a block (0: at block ends only)", low=0))
    replay: bool = flagged(param(False, "save the replay buffers with each resume checkpoint (large; exact resume)"))
    keep: int = param(2, "complete resume checkpoints kept", low=1)


@dataclass
class RunConfig:
    """The keys every run has; :func:`schema` adds ``fmn`` and one section per registered method."""

    # `crl train` with no arguments: two MinAtar games in a few minutes on a 2-core CPU (docs/minatar.md)
    games: list[str] = flagged(listed(["minatar/space_invaders", "minatar/breakout"],
                                      "comma-separated games, e.g. Pong,Breakout,SpaceInvaders or minatar/breakout"))
    method: str = flagged(param("finetune", "continual-learning method (crl.methods registry)"))
    steps_per_game: int = flagged(param(60_000, "env steps per game block", low=1))
    cycles: int = flagged(param(1, "passes over the game sequence (revisits)", low=1))
    multitask: bool = flagged(param(False, "the multi-task reference: every game at once in one block of all the "
                                           "run's steps (games x cycles x steps_per_game), n_envs split evenly over "
                                           "the games, one network and one replay"))
    seed: int = flagged(param(0, "the run's seed", low=0, high=SEED_MAX))
    device: str = flagged(param("auto", "torch device", choices=("auto", "cpu", "cuda")))
    torch_threads: int = param(0, "torch threads (0: one on the CPU, the emulators use the other cores; torch's "
                                  "default on a GPU)", low=0)
    run_dir: Optional[str] = flagged(param(None, "output directory (null: runs/<method>-<games>-s<seed>-<time>)"))
    n_envs: int = flagged(param(4, "parallel training environments", low=1, high=MAX_N_ENVS))
    task_id: str = flagged(param("oracle", "task identity: given, or inferred by Forget-Me-Not", choices=("oracle", "fmn")))
    eval: EvalConfig = field(default_factory=EvalConfig)
    env: AtariConfig = field(default_factory=AtariConfig)
    minatar: MinAtarConfig = field(default_factory=MinAtarConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    plasticity: PlasticityConfig = field(default_factory=PlasticityConfig)
    log_every: int = param(500, "env steps between TensorBoard training scalars (and divergence checks)", low=1)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    on_divergence: str = param("stop", "stop: end the run at the last good checkpoint | skip: drop non-finite "
                                       "batches", choices=("stop", "skip"))




@functools.lru_cache(maxsize=None)
def _schema(methods: tuple[str, ...]) -> type:
    sections = [(section_name(name), METHODS[name].Params, field(default_factory=METHODS[name].Params))
                for name in methods if dataclasses.fields(METHODS[name].Params)]
    return dataclasses.make_dataclass("RunConfig", [("fmn", ForgetMeNotParams, field(default_factory=ForgetMeNotParams)),
                                                    *sections], bases=(RunConfig,))


def schema() -> type:
    """The configuration's dataclass: :class:`RunConfig` plus ``fmn`` and a section per registered method."""
    return _schema(tuple(METHODS))


def fields_by_key() -> dict[str, dataclasses.Field]:
    """Every leaf key (``agent.gamma``) with its field: default, help, range, choices (its type: :func:`field_type`)."""
    return {key: spec for key, (spec, _) in _leaves(schema()).items()}


@functools.lru_cache(maxsize=None)
def _leaves(cls: type) -> dict[str, tuple[dataclasses.Field, FieldType]]:
    """Every leaf key of the dataclass tree ``cls`` with its field and the type its annotation declares."""
    out: dict[str, tuple[dataclasses.Field, FieldType]] = {}

    def walk(cls: type, prefix: str) -> None:
        kinds = field_types(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(kinds[f.name].kind):
                walk(kinds[f.name].kind, f"{prefix}{f.name}.")
            else:
                out[prefix + f.name] = (f, kinds[f.name])

    walk(cls, "")
    return out


def field_type(spec: dataclasses.Field) -> FieldType:
    """The type a field of :func:`fields_by_key` declares (:func:`agents.method.field_types`: its annotation)."""
    return next(kind for f, kind in _leaves(schema()).values() if f is spec)


def field_kind(spec: dataclasses.Field) -> type:
    """``list``, ``tuple``, ``str``, ``bool``, ``int`` or ``float``: what a field holds (None aside)."""
    return field_type(spec).kind


def defaults() -> dict[str, Any]:
    """The full default configuration as a nested dict (what ``--show-config`` prints with no overrides)."""
    return to_dict(schema()())


def to_dict(cfg: Any) -> dict[str, Any]:
    """A configuration dataclass as nested plain dicts and lists (tuples become lists, as YAML has no tuple)."""
    return _plain(dataclasses.asdict(cfg))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``{"agent": {"gamma": 0.99}}`` (or the configuration dataclass) -> ``{"agent.gamma": 0.99}``."""
    if dataclasses.is_dataclass(cfg):
        cfg = to_dict(cfg)
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def closest_keys(key: str, valid: Any, n: int = 3) -> str:
    """`` (did you mean 'a' or 'b'?)`` for the valid keys closest to ``key``, or nothing."""
    close = difflib.get_close_matches(key, list(valid), n=n, cutoff=0.6)
    if close:  # only those about as close as the closest: agent.gama -> agent.gamma, not agent.replay too
        best = difflib.SequenceMatcher(None, key, close[0]).ratio()
        close = [k for k in close if difflib.SequenceMatcher(None, key, k).ratio() >= best - 0.05]
    if not close and "." in key:  # a right leaf in the wrong section: agent.lamda_ -> ewc.lambda_
        leaf = key.rsplit(".", 1)[1]
        close = [k for k in valid if difflib.get_close_matches(leaf, [k.rsplit(".", 1)[-1]], cutoff=0.75)][:n]
    return f" (did you mean {' or '.join(repr(k) for k in close)}?)" if close else ""


def _prepare(key: str, value: Any, spec: dataclasses.Field) -> Any:
    """A YAML or ``--set`` value made ready for OmegaConf: strings parsed as YAML for non-string keys, ``a,b`` as a
    list, ``1e5`` or ``2.0`` as an integer for an integer key (YAML 1.1 reads ``1e-4`` as a string)."""
    declared = field_type(spec)
    kind = declared.kind
    if kind in (list, tuple) and isinstance(value, str) and not value.strip().startswith("["):
        value = [v.strip() for v in value.split(",") if v.strip()] if value.strip().lower() not in ("null", "none", "~") else None
    if isinstance(value, str) and kind is not str:
        if value.strip().lower() in ("null", "none", "~", "") and declared.optional:
            return None
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"{key}: cannot parse {value!r}") from e
    if kind is bool and not isinstance(value, bool):  # OmegaConf would take 2 for true
        raise ConfigError(f"{key}: expected bool, got {value!r}")
    number = declared.element or kind
    if number in (int, float):
        items = value if isinstance(value, (list, tuple)) else [value]
        items = [_number(key, v, number) for v in items]
        value = items if isinstance(value, (list, tuple)) else items[0]
    return value


def _number(key: str, v: Any, kind: type) -> Any:
    if isinstance(v, str):
        try:
            v = float(v) if kind is float or not v.strip().lstrip("+-").isdigit() else int(v)
        except ValueError:
            return v  # not a number: OmegaConf's type error names the key
    if kind is int and isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, float) and not math.isfinite(v):
        raise ConfigError(f"{key} must be a finite number, got {v}")
    return v


def resolve(overrides: dict[str, Any]) -> Any:
    """The configuration (a :func:`schema` dataclass, read as ``cfg.agent.learning_rate``): the defaults with
    ``overrides`` (dotted keys, applied in order) merged in, validated."""
    specs = fields_by_key()
    cfg = OmegaConf.structured(schema())
    for key, value in overrides.items():
        if key not in specs:
            raise ConfigError(f"unknown config key {key!r}{closest_keys(key, specs)}; `crl train --show-config` "
                              "lists them all")
        prepared = _prepare(key, value, specs[key])
        try:
            OmegaConf.update(cfg, key, prepared, merge=False)
        except OmegaConfBaseException as e:
            raise ConfigError(f"{key}: expected {field_type(specs[key])}, got {value!r}") from e
    try:
        typed = OmegaConf.to_object(cfg)  # resolves interpolations: ${nope.x}, ${oc.env:HOME}, ...
    except OmegaConfBaseException as e:
        where = f"{e.full_key}: " if getattr(e, "full_key", None) else ""
        raise ConfigError(f"{where}{str(e).splitlines()[0]}") from e
    validate(typed)
    return typed


def validate(cfg: Any) -> None:
    """Every key of every section (the methods' and ``fmn`` too) of its type and in its range or choices, by the one
    validator of :func:`agents.method.param` fields, then what ties keys together."""
    from envs import check_one_family, resolve_game

    try:
        check_fields(cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if not cfg.games:
        raise ConfigError("games: give at least one game, e.g. --games Pong,Breakout")
    try:
        cfg.games = [resolve_game(g) for g in cfg.games]
        check_one_family(cfg.games)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if len(set(cfg.games)) != len(cfg.games):
        raise ConfigError(f"games: each game once per cycle (use --cycles to revisit), got {', '.join(cfg.games)}")
    unknown = unknown_components(cfg.method)
    if unknown:
        raise ConfigError(f"unknown method {unknown[0]!r}; known methods: {', '.join(sorted(METHODS))} (combine them "
                          "with +, e.g. ewc+redo)")
    try:  # the rules that tie a section's fields together
        cfg.fmn.validate()
    except ValueError as e:
        raise ConfigError(f"fmn.{e}") from e
    for name in METHODS:  # every section, the inactive ones too: a config.yaml holds no value out of range
        section = section_name(name)
        if hasattr(cfg, section):
            try:
                getattr(cfg, section).validate()
            except ValueError as e:
                raise ConfigError(f"{section}.{e}") from e
    validate_multitask(cfg)
    try:
        make_method(cfg.method, method_params(cfg)).q_network_spec(dataclasses.asdict(cfg.network))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{section_name(cfg.method)}: {e}") from e
    validate_for_family(cfg)


def validate_multitask(cfg: Any) -> None:
    """The multi-task reference trains one plain shared network on every game at once: several games, the envs split
    evenly over them, fine-tuning with one task (no per-task modulation, no task to infer)."""
    if not cfg.multitask:
        return
    n = len(cfg.games)
    if n < 2:
        raise ConfigError(f"multitask: give at least 2 games to train jointly, got {', '.join(cfg.games)}")
    if cfg.n_envs % n:
        raise ConfigError(f"multitask: n_envs {cfg.n_envs} cannot be split evenly over {n} games; use a multiple of "
                          f"{n}, e.g. --n-envs {-(-cfg.n_envs // n) * n}")
    if cfg.method != "finetune":
        raise ConfigError(f"multitask: the joint reference is one plain shared network, method finetune only, got "
                          f"{cfg.method}")
    if cfg.network.task_modulation:
        raise ConfigError("multitask: the joint reference is one shared network trained as one task; "
                          "network.task_modulation must be false")
    if cfg.task_id != "oracle":
        raise ConfigError(f"multitask: the joint reference trains one task, there is none to infer; task_id must be "
                          f"oracle, got {cfg.task_id}")


def validate_for_family(cfg: Any) -> None:
    """What the games' family decides, checked before anything is written: the torso's number of convolutions,
    task inference's frames, and a replay buffer that cannot fit in this machine's memory."""
    from agents.networks.base import TORSOS
    from envs import game_family

    family = game_family(cfg.games[0])
    torso = TORSOS["minatar" if family == "minatar" else "nature"]
    if cfg.network.conv_channels is not None:
        try:
            torso.layers(cfg.network.conv_channels)
        except ValueError as e:
            raise ConfigError(f"network.conv_channels: {e} ({family} games)") from e
    if family == "minatar" and cfg.task_id == "fmn":
        raise ConfigError("task_id fmn: the Forget-Me-Not process models Atari's 84x84 frames (fmn.frame_shape), "
                          "not MinAtar's 10x10 grids of channels; use --task-id oracle")
    # a lower bound: one stored frame per transition (MinAtar: one 10x10 channel), whatever the replay's layout
    per_transition = 10 * 10 if family == "minatar" else 84 * 84
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if cfg.agent.buffer_size * per_transition > memory:
        raise ConfigError(f"agent.buffer_size {cfg.agent.buffer_size} cannot fit: its replay needs at least "
                          f"{cfg.agent.buffer_size * per_transition / 2**30:.1f} GiB ({per_transition} bytes per "
                          f"transition), this machine has {memory / 2**30:.1f} GiB")


def method_params(cfg: Any) -> Any:
    """A copy of the active method's ``Params`` (its config section; a method without parameters gets its empty
    Params); for a composed method, a dict from each component's name to its copy."""
    def params(name: str) -> Any:
        section = section_name(name)
        return dataclasses.replace(getattr(cfg, section)) if hasattr(cfg, section) else METHODS[name].Params()

    names = component_names(cfg.method)
    return params(names[0]) if len(names) == 1 else {name: params(name) for name in names}


def env_options(cfg: Any, game: str) -> dict[str, Any]:
    """The environment options of ``game``'s family: ``cfg.env`` for Atari, ``cfg.minatar`` for MinAtar."""
    from envs import game_family

    return dataclasses.asdict(cfg.minatar if game_family(game) == "minatar" else cfg.env)


def parse_set(items: list[str]) -> dict[str, str]:
    """``["agent.gamma=0.9"]`` -> ``{"agent.gamma": "0.9"}``; a malformed item is a ConfigError."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"malformed --set {item!r}: expected key=value, e.g. agent.gamma=0.99")
        out[key.strip()] = value.strip()
    return out


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class says so
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (line {key_node.start_mark.line + 1})", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Any, what: str = "config file") -> Any:
    """The YAML document in ``path`` (``what`` names it in errors). Unreadable, not UTF-8 text, not valid YAML, a key
    given twice in one mapping or nesting too deep for Python is a one-line :class:`ConfigError` naming the file."""
    try:
        with open(path, "rb") as f:
            return yaml.load(f.read().decode("utf-8"), Loader=UniqueKeyLoader)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {e.start} is 0x{e.object[e.start]:02x}); is it "
                          "a YAML file?") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path} is not valid YAML: {str(e).splitlines()[0]}") from e
    except RecursionError as e:
        raise ConfigError(f"{what} {path} is nested too deeply") from e


def load_yaml(path: str) -> dict[str, Any]:
    """Read a YAML config file as flat dotted keys."""
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    try:
        return flatten(data)
    except RecursionError as e:
        raise ConfigError(f"config file {path} is nested too deeply") from e


def dump(cfg: Any) -> str:
    """YAML text of ``cfg``, the configuration dataclass or a dict (what ``config.yaml`` holds)."""
    return yaml.safe_dump(to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg, sort_keys=False,
                          default_flow_style=False)
