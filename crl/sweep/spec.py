"""A sweep spec: loading, checking, and expanding it into named runs, each a resolved ``crl train`` configuration.

    preset: ewc-atari-2017-scaled-20   # optional: a named protocol as the base layer
    base:                              # config keys, nested or dotted, applied over the preset
      games: [minatar/breakout, minatar/space_invaders]
      agent.learning_starts: 1000
    axes:                              # crossed: every combination is a run
      method: [finetune, ewc]
      seed: [0, 1, 2]
    method_axes:                       # crossed only into the runs of that method
      ewc: {ewc.lambda_: [100, 400]}
    references: true                   # single-game finetune runs for forward transfer
    resources: {cpus: 1, gpus: 0}      # optional: what one run asks of a worker (not part of the experiment)

Each run's configuration is preset < base < its axis values, resolved by :func:`crl.run.config.resolve`, so a typo, a
wrong type or a value out of range is found before any run starts. Everything here is pure: nothing is written.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from crl.run import config as config_mod
from crl.methods import METHODS, section_name, unknown_components

TOP_KEYS = ("preset", "base", "axes", "method_axes", "references", "resources")
RESERVED_KEYS = ("run_dir",)  # the sweep sets it: DIR/runs/<name>
REFERENCE_METHOD = "finetune"


class SpecError(config_mod.ConfigError):
    """A bad spec; the message is one line naming the spec file and the offending entry."""


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its directory name, what the spec sets for it, and its resolved configuration."""

    name: str
    kind: str  # "run" (a sequence run) or "reference" (a single-game run for forward transfer)
    overrides: dict[str, Any]  # the axis values of this run (what tells it apart), in spec order
    layers: dict[str, Any]  # preset < base < overrides: everything the spec sets for it, flat dotted keys
    config: config_mod.RunConfig = field(repr=False)  # crl.run.config.resolve(layers)


@dataclass(frozen=True)
class Sweep:
    """An expanded spec."""

    source: str
    spec: dict[str, Any]
    runs: tuple[PlannedRun, ...]
    cpus: float | None  # per run, from the spec's resources; None: from the run's torch threads
    gpus: float | None  # per run; None: 1 for runs on device cuda, else 0

    @property
    def fingerprint(self) -> str:
        """What makes two sweeps the same: every run's name, kind and spec-level settings (not formatting,
        comments or resources, nor defaults of the code that may change between invocations)."""
        plan = [[r.name, r.kind, sorted(r.layers.items())] for r in self.runs]
        return hashlib.sha256(json.dumps(plan, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load(path: str | os.PathLike) -> dict[str, Any]:
    """The spec file as a mapping; unreadable, invalid or non-mapping YAML is a :class:`SpecError`."""
    try:
        data = config_mod.read_yaml(path, "sweep spec")
    except config_mod.ConfigError as e:
        raise SpecError(str(e)) from e
    if not isinstance(data, dict):
        raise SpecError(f"sweep spec {path} must be a mapping with keys {', '.join(TOP_KEYS)}")
    return data


def expand(spec: dict[str, Any], source: str = "spec") -> Sweep:
    """Check ``spec`` and expand it into its runs (sequence runs in axis order, then references)."""
    valid = config_mod.flatten(config_mod.defaults())

    def fail(message: str) -> SpecError:
        return SpecError(f"{source}: {message}")

    for key in spec:
        if key not in TOP_KEYS:
            raise fail(f"unknown key {key!r}{config_mod.closest_keys(str(key), TOP_KEYS)}; a spec has {', '.join(TOP_KEYS)}")
    preset = spec.get("preset")
    if preset is not None:
        from crl.run import presets

        if not isinstance(preset, str) or preset not in presets.PRESETS:
            known = ", ".join([*sorted(presets.PRESETS), f"{presets.SCALED}-<S>"])
            raise fail(f"preset: unknown preset {preset!r}; known presets: {known}")
    base = _mapping(spec.get("base"), "base", fail)
    _check_keys(base, "base", valid, fail)
    axes = _axes(spec.get("axes"), "axes", valid, fail)
    method_axes_raw = spec.get("method_axes") or {}
    if not isinstance(method_axes_raw, dict):
        raise fail("method_axes must map a method to its axes, e.g. method_axes: {ewc: {ewc.lambda_: [100, 400]}}")
    references = spec.get("references", False)
    if not isinstance(references, bool):
        raise fail(f"references must be true or false, got {references!r}")
    cpus, gpus = _resources(spec.get("resources"), fail)

    base_method = str(base.get("method") or _preset_layer(preset, 0).get("method") or config_mod.defaults()["method"])
    methods = [str(m) for m in axes["method"]] if "method" in axes else [base_method]
    for method in methods:
        if unknown_components(method):
            where = "axes.method" if "method" in axes else "base.method"
            raise fail(f"{where}: unknown method {unknown_components(method)[0]!r}; known methods: "
                       f"{', '.join(sorted(METHODS))}")
    method_axes: dict[str, dict[str, list[Any]]] = {}
    for method, sub in method_axes_raw.items():
        if unknown_components(method):
            raise fail(f"method_axes: unknown method {unknown_components(method)[0]!r}; known methods: "
                       f"{', '.join(sorted(METHODS))}")
        if method not in methods:
            raise fail(f"method_axes.{method}: {method} is not among the sweep's methods ({', '.join(methods)})")
        method_axes[method] = _axes(sub, f"method_axes.{method}", valid, fail)
        for key in method_axes[method]:
            if key in axes or key in ("method", "seed"):
                raise fail(f"method_axes.{method}.{key}: {key} is already an axis of every run; give it in one place")
    for key in axes:
        owner = _method_of_section(key)
        others = [m for m in methods if owner is not None and m != owner]
        if others:
            raise fail(f"axes.{key} only applies to {owner} and would multiply the {', '.join(others)} runs; put it "
                       f"under method_axes: {{{owner}: {{{key}: [...]}}}}")

    # the keys a run name shows: axes with more than one value (method and seed always)
    name_keys = [k for k, v in axes.items() if k not in ("method", "seed") and len(v) > 1]
    name_keys += [k for sub in method_axes.values() for k, v in sub.items() if len(v) > 1 and k not in name_keys]
    short = _short_names(name_keys)

    runs: list[PlannedRun] = []
    names: dict[str, dict[str, Any]] = {}
    for combo in itertools.product(*axes.values()):
        chosen = dict(zip(axes, combo))
        method = str(chosen.get("method", base_method))
        sub = method_axes.get(method, {})
        for sub_combo in itertools.product(*sub.values()):
            overrides = {**chosen, **dict(zip(sub, sub_combo))}
            seed = _seed(overrides, base, fail)
            parts = [method, *(f"{short[k]}_{slug(overrides[k])}" for k in name_keys if k in overrides), f"s{seed}"]
            runs.append(_planned("-".join(parts), "run", overrides, preset, base, seed, names, fail))
    if references:
        runs += _references(runs, preset, base, names, fail)
    return Sweep(source, spec, tuple(runs), cpus, gpus)


# --- pieces of expand ----------------------------------------------------------------------------------------


def _mapping(value: Any, where: str, fail: Any) -> dict[str, Any]:
    """A nested or dotted mapping of config keys as flat dotted keys."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(f"{where} must be a mapping of config keys to values, got {value!r}")
    return config_mod.flatten(value)


def _check_keys(keys: dict[str, Any], where: str, valid: dict[str, Any], fail: Any) -> None:
    for key in keys:
        if key in RESERVED_KEYS:
            raise fail(f"{where}.{key}: the sweep sets {key} itself (DIR/runs/<name>)")
        if key not in valid:
            raise fail(f"{where}: unknown config key {key!r}{config_mod.closest_keys(key, valid)} (crl train "
                       "--show-config lists them)")


def _axes(value: Any, where: str, valid: dict[str, Any], fail: Any) -> dict[str, list[Any]]:
    """Axis key -> its values, checked: known keys, non-empty lists without repeats."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(f"{where} must map config keys to lists of values, e.g. {where}: {{seed: [0, 1]}}")
    axes: dict[str, list[Any]] = {}
    for key, values in config_mod.flatten(value).items():  # a list ends a key: axis values are lists
        _check_keys({key: None}, where, valid, fail)
        if not isinstance(values, list):
            raise fail(f"{where}.{key} must be a list of values, got {values!r}")
        if not values:
            raise fail(f"{where}.{key} is empty; give at least one value")
        seen = [json.dumps(v, sort_keys=True, default=str) for v in values]
        for i, text in enumerate(seen):
            if text in seen[:i]:
                raise fail(f"{where}.{key} lists {values[i]!r} twice")
        axes[key] = values
    return axes


def _resources(value: Any, fail: Any) -> tuple[float | None, float | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict) or set(value) - {"cpus", "gpus"}:
        raise fail(f"resources must be a mapping with cpus and/or gpus, e.g. resources: {{cpus: 2, gpus: 0.5}}, got {value!r}")
    out = []
    for key, minimum in (("cpus", 0.0), ("gpus", 0.0)):
        v = value.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                              or v < minimum or (key == "cpus" and v == 0)):
            raise fail(f"resources.{key} must be a {'positive' if key == 'cpus' else 'non-negative'} number, got {v!r}")
        out.append(None if v is None else float(v))
    return out[0], out[1]


def _method_of_section(key: str) -> str | None:
    """The method whose parameter section holds ``key`` (``ewc.lambda_`` -> ``ewc``), or None."""
    section = key.split(".", 1)[0]
    return next((m for m in METHODS if "." in key and section_name(m) == section), None)


def _seed(overrides: dict[str, Any], base: dict[str, Any], fail: Any) -> int:
    value = overrides.get("seed", base.get("seed", config_mod.defaults()["seed"]))
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise fail(f"seed must be a non-negative integer, got {value!r}")
    return value


def _preset_layer(preset: str | None, seed: int) -> dict[str, Any]:
    if preset is None:
        return {}
    from crl.run import presets

    return presets.preset_overrides(preset, seed)


def _planned(name: str, kind: str, overrides: dict[str, Any], preset: str | None, base: dict[str, Any], seed: int,
             names: dict[str, dict[str, Any]], fail: Any) -> PlannedRun:
    """Resolve one run, naming it in errors; two runs with one name are an error."""
    if name in names:
        raise fail(f"two runs would be named {name} ({names[name]} and {overrides}); their values differ only in "
                   "characters a directory name drops")
    names[name] = overrides
    layers = {**_preset_layer(preset, seed), **base, **overrides}
    try:
        cfg = config_mod.resolve(layers)
    except config_mod.ConfigError as e:
        raise fail(f"run {name}: {e}") from e
    return PlannedRun(name, kind, dict(overrides), layers, cfg)


def _references(runs: list[PlannedRun], preset: str | None, base: dict[str, Any], names: dict[str, dict[str, Any]],
                fail: Any) -> list[PlannedRun]:
    """One single-game finetune run (one cycle, the sequence runs' block length) per game, seed and block length."""
    wanted: dict[tuple[str, int, int], None] = {}
    for run in runs:
        for game in run.config.games:
            wanted[(game, run.config.seed, run.config.steps_per_game)] = None
    several_lengths = len({steps for _, _, steps in wanted}) > 1
    out = []
    for game, seed, steps in wanted:
        overrides = {"method": REFERENCE_METHOD, "games": [game], "cycles": 1, "steps_per_game": steps, "seed": seed}
        name = f"ref-{slug(game)}" + (f"-steps_{steps}" if several_lengths else "") + f"-s{seed}"
        out.append(_planned(name, "reference", overrides, preset, base, seed, names, fail))
    return out


def _short_names(keys: list[str]) -> dict[str, str]:
    """Last part of each dotted key without a trailing underscore (``ewc.lambda_`` -> ``lambda``), or the whole
    key where two would look the same."""
    last = {k: k.rsplit(".", 1)[-1].rstrip("_") or k for k in keys}
    return {k: v if list(last.values()).count(v) == 1 else k for k, v in last.items()}


def slug(value: Any) -> str:
    """A value as it appears in a run name: readable, safe in a directory name."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "+".join(slug(v) for v in value)
    return re.sub(r"[^A-Za-z0-9.+=-]+", "_", str(value)).strip("_") or "_"


def describe(sweep: Sweep) -> str:
    """Every run, one line each: name and the settings that tell it apart (what --dry-run prints)."""
    refs = sum(r.kind == "reference" for r in sweep.runs)
    lines = [f"{len(sweep.runs)} runs ({len(sweep.runs) - refs} sequence runs, {refs} single-game references) from {sweep.source}"]
    if sweep.spec.get("preset"):
        lines.append(f"preset: {sweep.spec['preset']}")
    base = config_mod.flatten(sweep.spec.get("base") or {})
    if base:
        lines.append("base: " + " ".join(f"{k}={_show(v)}" for k, v in base.items()))
    width = max(len(r.name) for r in sweep.runs)
    for run in sweep.runs:
        lines.append(f"  {run.name:{width}}  " + " ".join(f"{k}={_show(v)}" for k, v in run.overrides.items()))
    return "\n".join(lines) + "\n"


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
