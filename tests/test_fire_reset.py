"""``env.fire_reset``: ale_py presses FIRE after every reset unless told not to; the config key reaches the emulator
and the EWC-paper preset turns it off, as the DQN papers' ALE had it."""

from __future__ import annotations

import numpy as np
import pytest

from crl.run import config, presets
from envs import make_atari_vec_env

pytestmark = pytest.mark.e2e  # real games end to end: `-m "not e2e"` skips them


def frames_moving_under_noops(env_section: dict) -> int:
    """Breakout with no no-op starts, 40 NOOP steps: how many observations differ from the first one."""
    env = make_atari_vec_env("Breakout", n_envs=1, seed=0, **env_section)
    try:
        first = env.reset()[0, -1].copy()
        moving = 0
        for _ in range(40):
            obs, _, _, _ = env.step(np.zeros(1, dtype=np.int64))
            moving += int(not np.array_equal(obs[0, -1], first))
        return moving
    finally:
        env.close()


@pytest.mark.parametrize("fire_reset", [True, False])
def test_the_config_key_reaches_the_emulator(fire_reset: bool) -> None:
    cfg = config.resolve({"games": ["Breakout"], "env.fire_reset": fire_reset, "env.sticky_actions": 0.0,
                          "env.noop_max": 0})
    moving = frames_moving_under_noops(config.env_options(cfg, "Breakout"))
    # FIRE on reset serves the ball, which then moves; without it Breakout waits, frozen, for the agent to serve
    assert (moving > 30) if fire_reset else (moving == 0), moving


def test_default_follows_ale_py_and_the_paper_preset_turns_it_off() -> None:
    assert config.resolve({}).env.fire_reset is True
    for name in (presets.FAITHFUL, presets.SCALED):
        assert config.resolve(presets.preset_overrides(name, 0)).env.fire_reset is False
    assert "no FIRE on reset" in presets.describe(presets.FAITHFUL)
