"""One validator for every ``param()`` field (issue #23): the type comes from the annotation, resolved with
``typing.get_type_hints``, never from the default; the run configuration's sections and each method's ``Params`` are
checked by the same :func:`agents.method.check_fields`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import pytest

from agents import method as method_mod
from agents.method import MethodParams, param
from crl.run import config


@dataclass
class Declared(MethodParams):
    rate: float = param(1, "a float whose default is written as an int", low=0)  # the default disagrees
    width: Optional[int] = param(None, "null, or a positive integer", low=1)
    sizes: list[int] = param((3,), "positive integers", low=1)
    scales: tuple[float, ...] = param((0.5,), "numbers in [0, 1]", low=0, high=1)
    flag: bool = param(False, "true or false")
    mode: str = param("a", "a or b", choices=("a", "b"))


def test_types_come_from_the_annotation():
    FieldType, kinds = method_mod.FieldType, method_mod.field_types(Declared)
    assert kinds["rate"] == FieldType(float)
    assert kinds["width"] == FieldType(int, optional=True)
    assert kinds["sizes"] == FieldType(list, int)
    assert kinds["scales"] == FieldType(tuple, float)
    assert kinds["flag"] == FieldType(bool) and kinds["mode"] == FieldType(str)


def test_a_float_field_with_an_int_default_takes_a_float():
    Declared(rate=0.5).validate()  # the old validator read the type off the default (1) and wanted an integer
    Declared(rate=2).validate()  # an int is a fine float
    with pytest.raises(ValueError, match=r"^rate must be >= 0, got -0.5$"):
        Declared(rate=-0.5).validate()


def test_an_optional_int_field_is_null_or_an_integer():
    Declared(width=None).validate()
    Declared(width=4).validate()
    with pytest.raises(ValueError, match=r"^width must be an integer, got 2.5$"):
        Declared(width=2.5).validate()  # the old validator, seeing the default None, took any number
    with pytest.raises(ValueError, match=r"^width must be >= 1, got 0$"):
        Declared(width=0).validate()
    with pytest.raises(ValueError, match=r"^rate must be a number, got None$"):
        Declared(rate=None).validate()  # None only where the annotation is Optional


@pytest.mark.parametrize("field, value, says", [
    ("sizes", [1, 2.5], "sizes must be an integer per element"),
    ("sizes", [0], r"sizes must be >= 1 per element"),
    ("sizes", 3, "sizes must be a list"),
    ("scales", (0.5, 2), r"scales must be in \[0, 1\] per element"),
    ("scales", (0.5, float("nan")), "scales must be a finite number"),
    ("flag", 1, "flag must be true or false"),
    ("mode", "c", "mode must be one of a, b"),
])
def test_wrong_values_name_the_field(field, value, says):
    with pytest.raises(ValueError, match=says):
        Declared(**{field: value}).validate()
    Declared(sizes=(1, 2), scales=[0, 1.0]).validate()  # a list or a tuple either way


@dataclass
class Unsupported:
    table: dict[str, int] = param(None, "no such kind of field")


def test_an_annotation_the_validator_cannot_check_is_a_type_error():
    with pytest.raises(TypeError, match="table"):
        method_mod.check_fields(Unsupported())


def test_the_config_checks_every_section_with_the_same_validator():
    cfg = config.resolve({})
    cfg.ewc.lambda_ = -1.0
    with pytest.raises(config.ConfigError, match=r"^ewc.lambda_ must be >= 0, got -1.0$"):
        config.validate(cfg)
    cfg = config.resolve({})
    cfg.fmn.bins = 2.5
    with pytest.raises(config.ConfigError, match=r"^fmn.bins must be an integer, got 2.5$"):
        config.validate(cfg)
    cfg = config.resolve({})
    cfg.network.hidden = 64.5  # Optional[int]
    with pytest.raises(config.ConfigError, match=r"^network.hidden must be an integer, got 64.5$"):
        config.validate(cfg)
    FieldType = method_mod.FieldType
    kinds = {key: config.field_type(spec) for key, spec in config.fields_by_key().items()}
    assert kinds["network.conv_channels"] == FieldType(list, int, optional=True)
    assert kinds["hypernet.hidden"] == FieldType(tuple, int) and kinds["fmn.frame_shape"] == FieldType(tuple, int)
    assert kinds["run_dir"] == FieldType(str, optional=True) and kinds["games"] == FieldType(list, str)


MINATAR3 = ["minatar/space_invaders", "minatar/breakout", "minatar/freeway"]


@pytest.mark.parametrize("overrides, says", [
    ({"games": ["minatar/breakout"]}, "multitask: give at least 2 games to train jointly, got minatar/breakout"),
    ({"games": MINATAR3, "n_envs": 4},
     "multitask: n_envs 4 cannot be split evenly over 3 games; use a multiple of 3, e.g. --n-envs 6"),
    ({"method": "ewc"}, "multitask: the joint reference is one plain shared network, method finetune only, got ewc"),
    ({"network.task_modulation": True}, "multitask: .* network.task_modulation must be false"),
    ({"games": ["pong", "breakout"], "task_id": "fmn"}, "multitask: .* task_id must be oracle, got fmn"),
])
def test_the_multitask_reference_is_plain_fine_tuning_of_envs_split_evenly(overrides, says):
    with pytest.raises(config.ConfigError, match=f"^{says}$"):
        config.resolve({"multitask": True, **overrides})
    cfg = config.resolve({"multitask": True, "games": MINATAR3, "n_envs": 6})
    assert cfg.multitask and not config.resolve({}).multitask
    assert config.resolve({"games": MINATAR3, "n_envs": 4, "method": "ewc"}).method == "ewc"  # continual: no such rule


def test_build_agent_computes_the_network_spec_once(monkeypatch):
    from agents import ContinualDQN
    from crl.run import agent as agent_mod
    from envs import make_vec_env

    calls = []
    real = agent_mod.make_method

    def counting(name, params):
        method = real(name, params)
        spec = method.q_network_spec
        method.q_network_spec = lambda network: calls.append(dict(network)) or spec(network)
        return method

    monkeypatch.setattr(agent_mod, "make_method", counting)
    cfg = config.resolve({"games": "minatar/breakout", "method": "ewc", "network.task_modulation": "true",
                          "n_envs": 1, "agent.buffer_size": 100})
    agent = agent_mod.build_agent(cfg, make_vec_env("minatar/breakout", n_envs=1, seed=0), "cpu")
    assert calls == [dataclasses.asdict(cfg.network)]
    assert agent.policy.network["task_modulation"] is True
    with pytest.raises(ValueError, match="network=..."):
        ContinualDQN(make_vec_env("minatar/breakout", n_envs=1, seed=0), network={},
                     policy_kwargs={"network": {"kind": "conv"}}, buffer_size=100)


def test_a_run_dir_without_run_json_is_not_resumed(tmp_path):
    from crl.cli.resume import resume_config
    from crl.cli.usage import UsageError

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "config.yaml").write_text(config.dump(config.resolve({})))
    with pytest.raises(UsageError, match="no readable run.json.*not a run crl wrote") as info:
        resume_config(tmp_path, {}, force=False)
    assert "\n" not in str(info.value)
