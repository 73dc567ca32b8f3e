"""Composed methods (``ewc+redo``): hooks in order, penalties summed, state per component, impossible pairs refused."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch as th

from agents.composition import ComposedMethod, build_method, component_names, is_buildable
from agents.method import METHODS, HookContext, Method, MethodParams, TaskInfo, param


@pytest.fixture
def scratch_methods():
    """Three methods registered for one test (a penalty, a hook recorder, a network chooser), removed after."""
    calls: list[str] = []

    class Pull(Method):
        name = "test-pull"

        @dataclass
        class Params(MethodParams):
            weight: float = param(2.0, "weight", low=0)

        def penalty(self, ctx: HookContext) -> th.Tensor:
            return th.tensor(self.params.weight)

        def before_task(self, ctx: HookContext, task: TaskInfo) -> None:
            calls.append("pull.before")

        def state_dict(self) -> dict:
            return {"pulled": self.params.weight}

    class Watch(Method):
        name = "test-watch"
        network_kinds = ("conv",)

        def before_task(self, ctx: HookContext, task: TaskInfo) -> None:
            calls.append("watch.before")

        def after_gradient_step(self, ctx: HookContext) -> None:
            calls.append("watch.step")

        def penalty(self, ctx: HookContext) -> th.Tensor:
            return th.tensor(0.5)

    class Columns(Method):
        name = "test-columns"

        def q_network_spec(self, network: dict) -> dict:
            return {"kind": "progressive"}

    yield calls
    for name in ("test-pull", "test-watch", "test-columns"):
        METHODS.pop(name, None)


def test_hooks_run_in_the_order_of_the_name_and_penalties_add(scratch_methods) -> None:
    method = build_method("test-watch+test-pull", {"test-pull": {"weight": 3.0}})
    assert isinstance(method, ComposedMethod) and method.name == "test-watch+test-pull"
    ctx = HookContext(q_net=None, task=TaskInfo(0, "g"))  # type: ignore[arg-type]
    method.before_task(ctx, ctx.task)
    method.after_gradient_step(ctx)
    assert scratch_methods == ["watch.before", "pull.before", "watch.step"]
    assert float(method.penalty(ctx)) == 3.5
    assert method.overrides("after_gradient_step") and not method.overrides("on_transition")
    assert method.params_dict() == {"test-watch": {}, "test-pull": {"weight": 3.0}}
    assert method.state_dict() == {"test-watch": {}, "test-pull": {"pulled": 3.0}}
    assert is_buildable(method)


def test_a_composed_method_rebuilds_from_its_name_and_params(scratch_methods) -> None:
    method = build_method("test-pull+test-watch", {"test-pull": {"weight": 1.5}})
    again = build_method(method.name, method.params_dict())
    assert [type(c) for c in again.components] == [type(c) for c in method.components]
    assert again.components[0].params == method.components[0].params


@pytest.mark.parametrize("name, message", [
    ("test-pull+test-pull", "names test-pull twice"),
    ("test-columns+test-watch", "test-watch needs the conv network and test-columns chooses the progressive"),
    ("test-pull+nope", "unknown method 'nope'"),
])
def test_combinations_that_cannot_work_are_one_line_errors(scratch_methods, name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        build_method(name)
    assert "\n" not in str(error.value)


def test_two_network_choosers_are_refused(scratch_methods) -> None:
    class Other(Method):
        name = "test-other-columns"

        def q_network_spec(self, network: dict) -> dict:
            return {"kind": "hypernet"}

    try:
        with pytest.raises(ValueError, match="test-columns and test-other-columns each choose the Q-network"):
            build_method("test-columns+test-other-columns")
    finally:
        METHODS.pop("test-other-columns")


def test_component_names() -> None:
    assert component_names("ewc+redo") == ["ewc", "redo"]
    assert component_names("ewc") == ["ewc"]


def test_sweeps_take_composed_names_and_refuse_unknown_components() -> None:
    from crl.sweep.spec import SpecError, expand

    sweep = expand({"base": {"games": ["minatar/breakout"]}, "axes": {"method": ["ewc+redo", "finetune"], "seed": [0]},
                    "method_axes": {"ewc+redo": {"redo.tau": [0.0, 0.1]}}})
    names = sorted(run.name for run in sweep.runs)
    assert names == ["ewc+redo-tau_0.0-s0", "ewc+redo-tau_0.1-s0", "finetune-s0"]
    with pytest.raises(SpecError, match="unknown method 'redoo'"):
        expand({"base": {"games": ["minatar/breakout"]}, "axes": {"method": ["ewc+redoo"]}})


def test_the_report_labels_a_composed_method_with_its_components_settings() -> None:
    from crl.report.compute import Group

    config = {"method": "ewc+redo", "ewc": {"lambda_": 40.0}, "redo": {"tau": 0.1}, "l2": {"lambda_": 1.0}}
    assert Group("ewc+redo", config, []).method_params() == {"ewc.lambda_": 40.0, "redo.tau": 0.1}
