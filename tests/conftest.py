"""Shared test helpers: tiny-budget `crl train` runs through the real CLI and ALE."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import torch

# Tests run tiny networks on 2 shared cores: one intra-op thread is faster than two that contend.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]

# Small enough for a 2-core CPU: a few hundred steps per game, one short evaluation episode.
TINY = [
    "--steps-per-game", "300", "--eval-every", "150", "--eval-episodes", "1", "--eval-max-steps", "60",
    "--n-envs", "2", "--device", "cpu",
    "--set", "agent.learning_starts=100", "--set", "agent.buffer_size=1000", "--set", "log_every=50",
    "--set", "agent.target_update_interval=100",
]


def run_crl(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m crl ARGS`` in a subprocess, as a user would."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "crl", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"crl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture
def tiny_args() -> list[str]:
    return list(TINY)


# Methods that test modules define register themselves in the global registry when their module is imported, and
# the configuration has a section for every registered method: a config written in one test (a sweep's) would name
# another module's test method that the `crl train` it starts has never heard of. So each test method is registered
# only while a test of its own module runs, and a method a test defines is gone when that test ends.
_TEST_METHODS: dict[str, type] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    from crl.methods import METHODS

    for name, cls in list(METHODS.items()):
        if cls.__module__.startswith("tests."):
            _TEST_METHODS[name] = METHODS.pop(name)


@pytest.fixture(autouse=True)
def _registry_per_test(request: pytest.FixtureRequest):
    from crl.methods import METHODS

    before = dict(METHODS)
    METHODS.update({n: c for n, c in _TEST_METHODS.items() if c.__module__ == request.module.__name__})
    yield
    METHODS.clear()
    METHODS.update(before)
