"""The method registry: methods register by name when defined, a misspelt hook is an error at definition, and a
saved agent finds its method by name, registered or declared in the ``crl.methods`` entry-point group (crl's own in
setup.cfg, a third party's in its package metadata), in an interpreter that imported nothing else."""

from __future__ import annotations

import importlib.metadata
import io
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch as th

import agents.method
import crl.methods
from agents import ContinualDQN
from agents.dqn import METHOD_FILE
from crl.methods import METHODS, Method, MethodParams, make_method
from agents.method import param
from envs import make_vec_env

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def scratch_names():
    """Names the test registers are removed afterwards, so no other test sees them."""
    before = set(METHODS)
    yield
    for name in set(METHODS) - before:
        METHODS.pop(name)


def test_crl_methods_is_the_registry_of_the_base_and_holds_every_module() -> None:
    assert crl.methods.METHODS is agents.method.METHODS
    assert crl.methods.Method is agents.method.Method
    modules = {cls.__module__ for cls in METHODS.values()}
    assert {"crl.methods.l2", "crl.methods.ewc", "crl.methods.online_ewc", "crl.methods.progressive",
            "crl.methods.hypernet", "crl.methods.distill", "crl.methods.replay", "agents.method"} <= modules


def test_one_registered_class_per_method_file() -> None:
    """A method is one file with one class: no file of crl/methods registers two."""
    modules = [cls.__module__ for cls in METHODS.values() if cls.__module__.startswith("crl.methods")]
    assert len(modules) == len(set(modules)), modules


def test_a_subclass_with_a_name_registers_itself(scratch_names) -> None:
    class Tiny(Method):
        name = "test-tiny"

        @dataclass
        class Params(MethodParams):
            rate: float = param(0.5, "a rate", low=0, high=1)

    assert METHODS["test-tiny"] is Tiny
    assert make_method("test-tiny", {"rate": 0.25}).params.rate == 0.25
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\], got 2"):
        make_method("test-tiny", {"rate": 2})


def test_a_subclass_without_a_name_is_a_base_and_not_registered(scratch_names) -> None:
    before = dict(METHODS)

    class Base(Method):
        def penalty(self, ctx):
            return None

    assert METHODS == before


def test_a_taken_name_is_an_error(scratch_names) -> None:
    with pytest.raises(TypeError, match="'ewc' .* already taken by crl.methods.ewc.EWC"):
        class Impostor(Method):
            name = "ewc"
    assert METHODS["ewc"].__module__ == "crl.methods.ewc"


@pytest.mark.parametrize("misspelt", ["after_tasks", "before_step", "on_transitions", "on_episode_end", "penality",
                                      "scalar", "q_network_specs"])
def test_a_hook_the_loop_never_calls_is_an_error_at_definition(scratch_names, misspelt: str) -> None:
    with pytest.raises(TypeError, match=rf"{misspelt} looks like a hook .* before_task, after_task, on_transition"):
        type("Misspelt", (Method,), {"name": "test-misspelt", misspelt: lambda self, ctx, task: None})
    assert "test-misspelt" not in METHODS


def test_hooks_and_other_names_are_fine(scratch_names) -> None:
    class Fine(Method):
        name = "test-fine"

        def after_task(self, ctx, task):
            pass

        def _on_helper(self):  # private: not a hook
            pass

        def onward(self):  # no hook prefix
            pass

    assert METHODS["test-fine"] is Fine


def test_unknown_method_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown method 'nope'; known methods: .*ewc, finetune"):
        make_method("nope")


# --- a saved agent finds its method by name --------------------------------------------------------------------
def saved_agent(tmp_path: Path, method: str = "l2") -> Path:
    agent = ContinualDQN(make_vec_env("minatar/breakout", seed=0), method=make_method(method), buffer_size=100,
                         learning_starts=10, device="cpu")
    agent.save(tmp_path / "agent.zip")
    return tmp_path / "agent.zip"


def rewrite_method_blob(path: Path, change) -> None:
    """Rewrite the zip's method record as ``change(record)`` returns it (the rest of the zip unchanged)."""
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    record = th.load(io.BytesIO(entries[METHOD_FILE]), weights_only=False)
    blob = io.BytesIO()
    th.save(change(record), blob)
    entries[METHOD_FILE] = blob.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def test_save_stores_the_registered_name_and_load_uses_it(tmp_path: Path) -> None:
    path = saved_agent(tmp_path)
    with zipfile.ZipFile(path) as archive:
        record = th.load(io.BytesIO(archive.read(METHOD_FILE)), weights_only=False)
    assert record["name"] == "l2" and "class" not in record
    assert type(ContinualDQN.load(path, device="cpu").method) is METHODS["l2"]


def test_a_name_not_in_the_registry_is_one_clear_error(tmp_path: Path) -> None:
    path = saved_agent(tmp_path)
    rewrite_method_blob(path, lambda record: {**record, "name": "ghost"})
    with pytest.raises(ValueError, match=r"holds method 'ghost', which no installed package provides: .*known methods: .*ewc"):
        ContinualDQN.load(path, device="cpu")


def test_an_unregistered_method_cannot_be_saved(tmp_path: Path) -> None:
    class Anonymous(Method):
        pass

    agent = ContinualDQN(make_vec_env("minatar/breakout", seed=0), method=Anonymous(), buffer_size=100, device="cpu")
    with pytest.raises(ValueError, match="Anonymous is not a registered method"):
        agent.save(tmp_path / "agent.zip")
    assert not (tmp_path / "agent.zip").exists()


def test_the_readme_method_table_is_the_registry_s() -> None:
    """The README's table of methods is what ``crl.methods.method_table()`` prints: a registered method cannot be
    missing from it, and a row cannot outlive its method."""
    from crl.methods import method_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert method_table() in readme, "regenerate the table: python -c 'from crl.methods import method_table; print(method_table())'"


# --- hooks a method leaves alone ---------------------------------------------------------------------------------
def test_overrides_names_the_hooks_a_class_replaces() -> None:
    """The agent skips hooks a method does not override; ``overrides`` must see a hook a subclass inherits."""
    assert not METHODS["finetune"].overrides("penalty") and not METHODS["finetune"].overrides("on_transition")
    assert METHODS["replay"].overrides("penalty") and METHODS["replay"].overrides("on_transition")
    assert METHODS["ewc"].overrides("penalty") and not METHODS["ewc"].overrides("on_transition")
    assert METHODS["online-ewc"].overrides("penalty")  # inherited from the shared quadratic penalty


def test_the_agent_calls_the_hooks_a_method_overrides_and_skips_the_others() -> None:
    class Counting(Method):
        def __init__(self) -> None:
            super().__init__()
            self.transitions = 0

        def on_transition(self, ctx, obs, next_obs, actions, rewards, dones) -> None:  # noqa: ANN001
            self.transitions += len(actions)

    counting = Counting()
    env = make_vec_env("minatar/breakout", n_envs=2, seed=0)
    agent = ContinualDQN(env, method=counting, learning_starts=8, buffer_size=64, batch_size=4, seed=0)
    agent.set_task(agents.method.TaskInfo(task_id=0, game="minatar/breakout", seed=0, block=0))
    agent.learn(16)
    assert counting.transitions == 16
    assert not Counting.overrides("penalty")
    env.close()


# --- methods found by entry points --------------------------------------------------------------------------------
def run_python(code: str, pythonpath: list[Path]) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter with ``pythonpath`` first on sys.path."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(map(str, pythonpath))}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=300)


def test_every_crl_method_is_declared_in_the_entry_point_group() -> None:
    """setup.cfg declares each registered method under its name (after a change there: pip install -e . again)."""
    declared = {e.name: e.value for e in importlib.metadata.entry_points(group="crl.methods")}
    crl_methods = {name: f"{cls.__module__}:{cls.__qualname__}" for name, cls in METHODS.items()
                   if cls.__module__.startswith(("crl.", "agents."))}
    missing = [f"{name} = {value}" for name, value in crl_methods.items() if declared.get(name) != value]
    assert not missing, "add to setup.cfg's crl.methods entry points, then pip install -e .: " + "; ".join(missing)


def test_a_saved_ewc_agent_loads_in_a_fresh_interpreter_with_nothing_else_imported(tmp_path: Path) -> None:
    agent = ContinualDQN(make_vec_env("minatar/breakout", seed=0), method=make_method("ewc"), buffer_size=100,
                         learning_starts=10, network={"task_modulation": True}, device="cpu")
    agent.save(tmp_path / "model.zip")
    result = run_python(f"""
        import sys
        from agents import ContinualDQN
        assert "crl.methods" not in sys.modules
        agent = ContinualDQN.load({str(tmp_path / "model.zip")!r}, device="cpu")
        print(type(agent.method).__module__, agent.method.name)
    """, [REPO])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["crl.methods.ewc", "ewc"]


def test_a_third_party_package_ships_a_method_through_the_entry_point_group(tmp_path: Path) -> None:
    """A package that declares its method in ``crl.methods`` (here: a module and its dist-info, made for the test)
    is a ``--method`` choice once crl.methods is imported, and its saved agents load without importing it."""
    (tmp_path / "tiny_method.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass
        from agents.method import Method, MethodParams, param

        class Tiny(Method):
            name = "test-tiny-third-party"

            @dataclass
            class Params(MethodParams):
                rate: float = param(0.5, "a rate", low=0, high=1)
    """))
    info = tmp_path / "tiny_method-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-method\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[crl.methods]\ntest-tiny-third-party = tiny_method:Tiny\n")
    model = tmp_path / "model.zip"
    saved = run_python(f"""
        import crl.methods
        from agents import ContinualDQN
        from envs import make_vec_env
        assert "test-tiny-third-party" in crl.methods.METHODS
        method = crl.methods.make_method("test-tiny-third-party", {{"rate": 0.25}})
        ContinualDQN(make_vec_env("minatar/breakout", seed=0), method=method, buffer_size=100,
                     device="cpu").save({str(model)!r})
    """, [tmp_path, REPO])
    assert saved.returncode == 0, saved.stderr
    loaded = run_python(f"""
        import sys
        from agents import ContinualDQN
        agent = ContinualDQN.load({str(model)!r}, device="cpu")
        assert "crl.methods" not in sys.modules
        print(type(agent.method).__module__, agent.method.params.rate)
    """, [tmp_path, REPO])
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["tiny_method", "0.25"]
