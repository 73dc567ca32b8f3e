"""The agent a resolved configuration describes, and the device and threads it runs on."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch as th

from agents import ContinualDQN
from crl.run import seeds
from crl.run import config as config_mod
from crl.run.config import RunConfig
from crl.methods import make_method
from crl.run.seeds import derive_seed


def resolve_device(device: str) -> str:
    return ("cuda" if th.cuda.is_available() else "cpu") if device == "auto" else device


def set_torch_threads(threads: int, device: str) -> None:
    """``threads`` > 0: that many; 0: one on the CPU, where the emulator's threads need the other cores (a second
    torch thread waiting for a busy core made a training step 10x slower on 2 cores, docs/performance.md)."""
    if threads > 0:
        th.set_num_threads(threads)
    elif device == "cpu":
        th.set_num_threads(1)


def build_agent(cfg: RunConfig, env: Any, device: str) -> ContinualDQN:
    """A ``ContinualDQN`` configured from the resolved config's ``agent``, ``network`` and method sections."""
    a = cfg.agent
    if a.optimizer == "rmsprop":  # torch has no fused RMSprop; foreach is its multi-tensor kernel
        optimizer = dict(optimizer_class=th.optim.RMSprop, optimizer_kwargs={
            "alpha": a.rmsprop_alpha, "eps": a.optimizer_eps, "momentum": 0.0, "foreach": True})
    else:  # fused Adam: one kernel for all parameters (8x faster than the per-parameter loop on CPU)
        optimizer = dict(optimizer_class=th.optim.Adam, optimizer_kwargs={"eps": a.optimizer_eps, "fused": True})
    return ContinualDQN(
        env,
        method=make_method(cfg.method, config_mod.method_params(cfg)),  # its own copy of its parameters
        network=dataclasses.asdict(cfg.network),  # the method turns it into the Q-network's spec, once
        replay=a.replay,
        double_q=a.double_q,
        exploration_steps=a.exploration_steps,
        reset_optimizer=a.reset_optimizer,
        skip_nonfinite=cfg.on_divergence == "skip",
        policy_kwargs=optimizer,
        learning_rate=a.learning_rate,
        buffer_size=a.buffer_size,
        learning_starts=a.learning_starts,
        batch_size=a.batch_size,
        gamma=a.gamma,
        train_freq=a.train_freq,
        gradient_steps=cfg.n_envs if a.gradient_steps < 0 else a.gradient_steps,
        target_update_interval=a.target_update_interval,
        exploration_initial_eps=a.exploration_initial_eps,
        exploration_final_eps=a.exploration_final_eps,
        max_grad_norm=a.max_grad_norm,
        seed=derive_seed(cfg.seed, seeds.AGENT),  # SB3 also seeds the env with it: keep it below ALE's limit
        device=device,
    )
