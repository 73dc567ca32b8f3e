"""The run configuration: one nested dict of typed defaults that flags, ``--config`` YAML and ``--set`` override.

Every key has a default here (or in a method's ``Params`` dataclass), and its type comes from that default, so a
YAML file or ``--set`` value is checked against it: unknown keys and wrong types are errors listing what is valid.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import yaml

from crl.methods import METHODS, section_name
from crl.task_inference.fmn import ForgetMeNotParams


class ConfigError(ValueError):
    """Bad configuration; the message is one line meant for the user."""


# The embedded default: `crl train` with no arguments trains two MinAtar games in a few minutes on a 2-core CPU and
# shows the first one learned and then forgotten (docs/minatar.md); `--preset atari-demo` is the real-Atari path.
DEFAULTS: dict[str, Any] = {
    "games": ["minatar/space_invaders", "minatar/breakout"],
    "method": "finetune",
    "steps_per_game": 60_000,
    "cycles": 1,
    "seed": 0,
    "device": "auto",
    "torch_threads": 0,  # 0: one on the CPU (the emulator's threads use the other cores), torch's default on a GPU
    "run_dir": None,
    "n_envs": 4,
    "task_id": "oracle",  # oracle: each block's task id is given | fmn: inferred by the Forget-Me-Not process
    "eval": {
        "every": 20_000,  # env steps between periodic evaluations (0: only at block ends)
        "episodes": 10,
        "max_steps": 5_000,  # agent steps per evaluation episode
        "epsilon": 0.05,
        "task_id": "oracle",  # oracle | inferred (entropy of Q-values, see crl/task_inference)
    },
    "env": {
        "sticky_actions": 0.25,
        "full_action_space": True,
        "frame_skip": 4,
        "noop_max": 30,
        "clip_rewards": True,
        "max_episode_steps": 27_000,  # agent steps (108,000 frames, the standard cap)
        "fire_reset": True,  # press FIRE after each reset in games that have it (ale_py's default; DQN papers: no)
    },
    "minatar": {  # the MinAtar games' options (``env`` holds the Atari ones); MinAtar's own defaults
        "sticky_actions": 0.1,
        "difficulty_ramping": True,
        "clip_rewards": True,
        # agent steps (= MinAtar frames): 4x Freeway's fixed 2,500, far beyond random or DQN-reference play, but a
        # bound on Seaquest/Asterix episodes a good policy could otherwise make endless (0: no cap)
        "max_episode_steps": 10_000,
    },
    "agent": {
        "learning_rate": 1e-3,
        "optimizer": "adam",  # adam | rmsprop
        "rmsprop_alpha": 0.95,
        "optimizer_eps": 1.5e-4,
        "buffer_size": 50_000,
        "replay": "fresh",  # fresh | shared | per-task
        "learning_starts": 1_000,
        "batch_size": 32,
        "gamma": 0.99,
        "train_freq": 4,
        "gradient_steps": -1,  # -1: n_envs gradient steps per train_freq vector steps (1 per 4 transitions)
        "target_update_interval": 1_000,
        "exploration_initial_eps": 1.0,
        "exploration_final_eps": 0.05,
        "exploration_steps": 10_000,
        "max_grad_norm": 10.0,
        "double_q": True,
        "reset_optimizer": False,
    },
    "network": {
        "task_modulation": False,
        "conv_channels": None,  # null: the torso's own (Nature CNN 32,64,64 on Atari; MinAtar 16), or one width per conv
        "hidden": None,  # null: the torso's own (512 on Atari, 128 on MinAtar)
    },
    "log_every": 500,  # env steps between TensorBoard training scalars (and divergence checks)
    "checkpoint": {
        "every": 0,  # env steps between resume checkpoints inside a block (0: at block ends only)
        "replay": False,  # save the replay buffers with each resume checkpoint (large)
        "keep": 2,  # complete resume checkpoints kept
    },
    "on_divergence": "stop",  # stop: end the run at the last good checkpoint | skip: drop non-finite batches
}

CHOICES: dict[str, tuple[str, ...]] = {
    "eval.task_id": ("oracle", "inferred"),
    "agent.optimizer": ("adam", "rmsprop"),
    "agent.replay": ("fresh", "shared", "per-task"),
    "device": ("auto", "cpu", "cuda"),
    "task_id": ("oracle", "fmn"),
    "on_divergence": ("stop", "skip"),
}



@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric key may take: ``low`` to ``high`` inclusive (None: unbounded), ``low`` excluded when
    ``low_open``, plus the single values in ``also`` (e.g. -1 for "automatic"). NaN and infinity never pass."""

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


MAX_N_ENVS = 256  # far beyond what one process steps usefully; more only costs minutes of start-up
SEED_MAX = 2**31 - 1  # environments take C-int seeds (crl/seeds.py derives theirs below 2**30)
UNIT_INTERVAL, AT_LEAST_1, AT_LEAST_0, ABOVE_0 = Range(0, 1), Range(1), Range(0), Range(0, low_open=True)

# The one table of numeric ranges: every key here (a list: each element) is checked before anything is written.
# Keys not listed must still be finite numbers; a method's parameters are checked by its ``Params.validate``.
RANGES: dict[str, Range] = {
    "steps_per_game": AT_LEAST_1, "cycles": AT_LEAST_1, "n_envs": Range(1, MAX_N_ENVS), "seed": Range(0, SEED_MAX),
    "torch_threads": AT_LEAST_0, "log_every": AT_LEAST_1,
    "eval.every": AT_LEAST_0, "eval.episodes": AT_LEAST_1, "eval.max_steps": AT_LEAST_1, "eval.epsilon": UNIT_INTERVAL,
    "env.sticky_actions": UNIT_INTERVAL, "env.frame_skip": AT_LEAST_1, "env.noop_max": AT_LEAST_0,
    "env.max_episode_steps": AT_LEAST_0,
    "minatar.sticky_actions": UNIT_INTERVAL, "minatar.max_episode_steps": AT_LEAST_0,
    "agent.learning_rate": AT_LEAST_0,  # 0 is the no-learning control of tests/test_learning.py
    "agent.rmsprop_alpha": UNIT_INTERVAL, "agent.optimizer_eps": AT_LEAST_0,
    "agent.buffer_size": AT_LEAST_1, "agent.learning_starts": AT_LEAST_0, "agent.batch_size": AT_LEAST_1,
    "agent.gamma": UNIT_INTERVAL, "agent.train_freq": AT_LEAST_1, "agent.gradient_steps": Range(1, also=(-1,)),
    "agent.target_update_interval": AT_LEAST_1, "agent.exploration_initial_eps": UNIT_INTERVAL,
    "agent.exploration_final_eps": UNIT_INTERVAL, "agent.exploration_steps": AT_LEAST_0, "agent.max_grad_norm": ABOVE_0,
    "network.conv_channels": AT_LEAST_1, "network.hidden": AT_LEAST_1,  # null: the torso's own
    "checkpoint.every": AT_LEAST_0, "checkpoint.keep": AT_LEAST_1,
}


def defaults() -> dict[str, Any]:
    """The full default configuration, one section per registered method included."""
    cfg = copy.deepcopy(DEFAULTS)
    cfg["fmn"] = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(ForgetMeNotParams()).items()}
    for name, cls in METHODS.items():
        fields = dataclasses.asdict(cls.Params())
        if fields:
            cfg[section_name(name)] = fields
    return cfg


def flatten(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"agent": {"gamma": 0.99}}`` -> ``{"agent.gamma": 0.99}``."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# Keys whose default is null ("the torso's own"): the type a set value must have, as an example value.
NULLABLE_TYPES: dict[str, Any] = {"network.conv_channels": [0], "network.hidden": 0}


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Convert ``value`` (from YAML or a ``--set`` string) to the type of ``default``."""
    if default is None and key in NULLABLE_TYPES:
        if isinstance(value, str) and value.strip().lower() in ("", "null", "none", "~"):
            return None
        return None if value is None else _coerce(key, value, NULLABLE_TYPES[key])
    if isinstance(value, str) and not isinstance(default, str) and default is not None:
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"{key}: cannot parse {value!r}") from e
    if isinstance(value, str) and isinstance(default, (int, float)) and not isinstance(default, bool):
        try:  # YAML 1.1 reads 1e-4 (no dot) as a string; Python reads it, and 1_000, as a number
            value = float(value) if isinstance(default, float) or not value.strip().lstrip("+-").isdigit() else int(value)
        except ValueError:
            pass  # not a number: the type error below names the key
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        return str(value)
    elif isinstance(default, (list, tuple)):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)):
            element = default[0] if default else None
            if isinstance(element, (int, float)) and not isinstance(element, bool):
                return [_coerce(key, v, element) for v in value]
            return list(value)
    raise ConfigError(f"{key}: expected {type(default).__name__}, got {value!r}")


def set_key(cfg: dict[str, Any], key: str, value: Any, valid: dict[str, Any]) -> None:
    """Set dotted ``key`` in ``cfg`` after checking it exists and coercing ``value`` to its type."""
    if key not in valid:
        raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(valid))}")
    node = cfg
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = _coerce(key, value, valid[key])


def parse_set(items: list[str]) -> dict[str, str]:
    """``["agent.gamma=0.9"]`` -> ``{"agent.gamma": "0.9"}``; a malformed item is a ConfigError."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"malformed --set {item!r}: expected key=value, e.g. agent.gamma=0.99")
        out[key.strip()] = value.strip()
    return out


def load_yaml(path: str) -> dict[str, Any]:
    """Read a YAML config file as flat dotted keys."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    return flatten(data)


def resolve(overrides: dict[str, Any]) -> dict[str, Any]:
    """Defaults with ``overrides`` (dotted keys, applied in order) applied, then validated."""
    cfg = defaults()
    valid = flatten(cfg)
    for key, value in overrides.items():
        set_key(cfg, key, value, valid)
    validate(cfg)
    return cfg


def validate(cfg: dict[str, Any]) -> None:
    """Range and choice checks; the method's own parameters are checked by its ``Params.validate``."""
    from envs import check_one_family, resolve_game

    flat = flatten(cfg)
    if not cfg["games"]:
        raise ConfigError("games: give at least one game, e.g. --games Pong,Breakout")
    try:
        cfg["games"] = [resolve_game(g) for g in cfg["games"]]
        check_one_family(cfg["games"])
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if len(set(cfg["games"])) != len(cfg["games"]):
        raise ConfigError(f"games: each game once per cycle (use --cycles to revisit), got {', '.join(cfg['games'])}")
    if cfg["method"] not in METHODS:
        raise ConfigError(f"unknown method {cfg['method']!r}; known methods: {', '.join(sorted(METHODS))}")
    check_ranges(flat)
    for key, choices in CHOICES.items():
        if flat[key] not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {flat[key]!r}")
    for section in ("env", "minatar"):
        if not 0.0 <= cfg[section]["sticky_actions"] <= 1.0:
            raise ConfigError(f"{section}.sticky_actions must be in [0, 1], got {cfg[section]['sticky_actions']}")
    try:
        ForgetMeNotParams(**cfg["fmn"]).validate()
    except ValueError as e:
        raise ConfigError(f"fmn: {e}") from e
    try:
        METHODS[cfg["method"]](method_params(cfg)).q_network_spec(dict(cfg["network"]))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{section_name(cfg['method'])}: {e}") from e


def check_ranges(flat: dict[str, Any]) -> None:
    """Every number finite, and every key of ``RANGES`` in its range (a list element by element)."""
    for key, value in flat.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{key} must be a finite number, got {v}")
        if key in RANGES and value is not None:
            if isinstance(value, (list, tuple)) and not value:
                raise ConfigError(f"{key}: give at least one value (or null for the default)")
            bad = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and v not in RANGES[key]]
            if bad:
                raise ConfigError(f"{key} must be {RANGES[key]}, got {value}")


def env_options(cfg: dict[str, Any], game: str) -> dict[str, Any]:
    """The environment options of ``game``'s family: ``cfg["env"]`` for Atari, ``cfg["minatar"]`` for MinAtar."""
    from envs import game_family

    return dict(cfg["minatar"] if game_family(game) == "minatar" else cfg["env"])


def method_params(cfg: dict[str, Any]) -> dict[str, Any]:
    """The active method's parameter section, checked by its ``Params`` dataclass."""
    cls = METHODS[cfg["method"]]
    params = dict(cfg.get(section_name(cfg["method"]), {}))
    cls.Params(**params).validate()
    return params


def dump(cfg: dict[str, Any]) -> str:
    """YAML text of ``cfg`` (what ``config.yaml`` holds)."""
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False)
