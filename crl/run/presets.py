"""Named protocols (``crl train --preset NAME``): a layer of config overrides between the defaults and the user's.

``atari-demo`` is two real Atari games at a budget a 2-core CPU finishes in about 10 minutes (the pipeline end to
end; at ~75 steps/s nothing is learned). ``minatar`` is the MinAtar continual sequence: three games, two cycles,
budgets measured so that every game is learned in its block and fine-tuning forgets (docs/minatar.md).

``ewc-atari-2017`` is the Atari experiment of Kirkpatrick et al. 2017 ("Overcoming catastrophic forgetting in
neural networks", PNAS 114(13):3521), as docs/ewc-atari-protocol.md reads the paper: ten games drawn from a pool,
Double DQN with per-game biases and gains, RMSProp, a replay memory per task, EWC with lambda 400. Frame counts
there are paper-sized (5M agent steps per game block).

``ewc-atari-2017-scaled-<S>`` is the same experiment with every count of the schedule divided by ``S`` (block
length, warm-up, epsilon decay, EWC start, evaluation period) and a few settings that make small budgets usable;
``ewc-atari-2017-scaled`` is ``S = 20``. It is what scripts/reproduce_ewc_atari.py runs.

Counts in the config are agent steps (env steps); one agent step is ``FRAME_SKIP`` emulator frames, the unit the
paper mostly uses.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

FAITHFUL = "ewc-atari-2017"
SCALED = "ewc-atari-2017-scaled"
DEFAULT_SCALE = 20
FRAME_SKIP = 4

# Pool games: Nature DQN (50M frames) at or above human level under both Nature's and DQN Zoo's reference scores,
# standing in for the paper's unnamed 19 (docs/ewc-atari-protocol.md, "The pool of games").
EWC_ATARI_POOL: tuple[str, ...] = (
    "video_pinball", "boxing", "breakout", "star_gunner", "robotank", "atlantis", "crazy_climber", "gopher",
    "demon_attack", "krull", "assault", "road_runner", "kangaroo", "jamesbond", "tennis", "pong", "space_invaders",
    "tutankham", "kung_fu_master", "freeway", "time_pilot",
)
GAMES_PER_RUN = 10

# The schedule in agent steps (paper frames / FRAME_SKIP): what the scaled preset divides by S.
BLOCK_STEPS = 5_000_000  # 20M frames per visit: the paper's EWC start, so a game is protected from its first block
WARMUP_STEPS = 50_000  # "min. history": learning (and the epsilon decay) starts after 5e4 transitions of the task
EPSILON_DECAY_STEPS = 1_000_000  # epsilon 1 -> 0.01, on a timer per task
EVAL_EVERY_STEPS = 2_500_000  # our choice: twice a block, plus the evaluation at every block end
TARGET_UPDATE_STEPS = 7_500  # Table 2; the text's 3e4 "time steps" are frames (30,000 / 4)
REPLAY_SIZE = 50_000  # per task; Table 2 (the text says 5e5)
CYCLES = 2  # visits per game: the paper plays games "with returns", how many is not said

# What the scaled preset keeps from shrinking with S, and what it changes for small budgets.
MIN_TARGET_UPDATE_STEPS = 250  # agent steps between target copies at least (binds for S > 30): 250 minibatches
SCALED_TRAIN_FREQ = 1  # one minibatch of 32 per transition: 4x the paper's replay ratio


class PresetTable(dict):
    """Preset name -> one-line description. ``name in PRESETS`` also holds for a scaled preset with an explicit
    factor (``ewc-atari-2017-scaled-500``), whose description is the scaled family's."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (super().__contains__(name) or parse_scale(name) is not None)

    def __missing__(self, name: str) -> str:
        if parse_scale(name) is None:
            raise KeyError(name)
        return self[SCALED]


ATARI_DEMO = "atari-demo"
MINATAR = "minatar"
MINATAR_PLASTICITY = "minatar-plasticity"
ATARI_CPU = "atari-cpu"

# Presets that are a fixed set of overrides: name -> (one-line description, flat config keys).
FIXED: dict[str, tuple[str, dict[str, Any]]] = {
    ATARI_DEMO: (
        "two real Atari games (Pong, Breakout), 10,000 steps each: the Atari pipeline end to end in ~10 minutes "
        "on a 2-core CPU (too short to learn anything)",
        {
            "games": ["pong", "breakout"], "steps_per_game": 10_000, "eval.every": 5_000, "eval.episodes": 2,
            "eval.max_steps": 1_000, "agent.learning_rate": 1e-4, "agent.buffer_size": 20_000,
            "agent.learning_starts": 1_000, "agent.exploration_steps": 5_000,
        },
    ),
    MINATAR: (
        "MinAtar continual sequence: Space Invaders, Breakout, Freeway, 2 cycles of 100,000-step blocks (budgets "
        "from measured single-game and fine-tuning runs, docs/minatar.md)",
        {
            "games": ["minatar/space_invaders", "minatar/breakout", "minatar/freeway"], "steps_per_game": 100_000,
            "cycles": 2, "eval.every": 25_000, "eval.episodes": 20,
        },
    ),
    ATARI_CPU: (
        "real Atari that learns on a CPU: Road Runner then Freeway, 200,000 steps each, a narrow Nature CNN (16-32-32, "
        "256 units), one gradient step per 2 transitions, epsilon over 50,000 steps (docs/results/atari-cpu.md)",
        {
            "games": ["road_runner", "freeway"], "steps_per_game": 200_000, "n_envs": 4,
            "eval.every": 20_000, "eval.episodes": 5, "eval.max_steps": 10_000,
            "network.conv_channels": [16, 32, 32], "network.hidden": 256,
            "agent.learning_rate": 1e-4, "agent.buffer_size": 100_000, "agent.learning_starts": 5_000,
            "agent.train_freq": 2, "agent.gradient_steps": 4, "agent.target_update_interval": 2_000,
            "agent.exploration_steps": 50_000, "agent.exploration_final_eps": 0.01, "checkpoint.every": 20_000,
        },
    ),
    MINATAR_PLASTICITY: (
        "MinAtar plasticity protocol: Space Invaders and Breakout cycled 5 times in 20,000-step blocks, the budget "
        "in which a fresh network learns each of them, so every visit can be set against a fresh network's learning "
        "(docs/results/plasticity.md)",
        {
            "games": ["minatar/space_invaders", "minatar/breakout"], "steps_per_game": 20_000,
            "cycles": 5, "eval.every": 5_000, "eval.episodes": 5,
        },
    ),
}

PRESETS: dict[str, str] = PresetTable({
    **{name: description for name, (description, _) in FIXED.items()},
    FAITHFUL: "Kirkpatrick et al. 2017 (EWC, PNAS), Atari: 10 of 21 games drawn by seed, 2 cycles of 5M-step blocks, "
              "Double DQN 32/64/128+1024 with per-game gains, RMSProp, per-task replay, EWC lambda 400",
    SCALED: f"{FAITHFUL} with the schedule divided by {DEFAULT_SCALE}; {SCALED}-<S> divides it by S "
            "(4x replay ratio, replay memory not shrunk, target period >= 250 steps; task id given)",
})


def parse_scale(name: str) -> int | None:
    """The scale factor of a scaled preset name (``...-scaled`` -> 20, ``...-scaled-500`` -> 500); None otherwise."""
    if name == SCALED:
        return DEFAULT_SCALE
    match = re.fullmatch(re.escape(SCALED) + r"-([1-9][0-9]*)", name)
    return int(match.group(1)) if match else None


def draw_games(seed: int, pool: tuple[str, ...] = EWC_ATARI_POOL, k: int = GAMES_PER_RUN) -> list[str]:
    """``k`` games of ``pool`` without replacement, in the random order they are trained; one draw per seed."""
    rng = np.random.default_rng(seed)
    return [pool[i] for i in rng.choice(len(pool), size=k, replace=False)]


def faithful_overrides(seed: int) -> dict[str, Any]:
    """The paper's protocol as flat config keys (sources in docs/ewc-atari-protocol.md)."""
    return {
        "games": draw_games(seed),
        "method": "ewc",
        "steps_per_game": BLOCK_STEPS,
        "cycles": CYCLES,
        "task_id": "fmn",  # the paper's headline agent infers the task (Fig. 3B, red)
        "env.sticky_actions": 0.0,  # the ALE of 2016: deterministic apart from no-op starts
        "env.full_action_space": True,
        "env.frame_skip": FRAME_SKIP,
        "env.noop_max": 30,
        "env.fire_reset": False,  # the DQN papers' ALE pressed no FIRE on reset: the agent learns to serve
        "env.clip_rewards": True,
        "env.max_episode_steps": 27_000,
        "eval.every": EVAL_EVERY_STEPS,
        "eval.episodes": 10,
        "eval.max_steps": 27_000,
        "eval.epsilon": 0.001,  # the tuned Double DQN's test epsilon
        "eval.task_id": "oracle",
        "network.conv_channels": [32, 64, 128],
        "network.hidden": 1024,
        "network.task_modulation": True,
        "agent.double_q": True,
        "agent.optimizer": "rmsprop",
        "agent.learning_rate": 2.5e-4,
        "agent.rmsprop_alpha": 0.95,
        "agent.max_grad_norm": 50.0,
        "agent.gamma": 0.99,
        "agent.batch_size": 32,
        "agent.train_freq": 4,
        "agent.gradient_steps": -1,  # one minibatch per 4 transitions whatever the number of envs
        "agent.replay": "per-task",
        "agent.buffer_size": REPLAY_SIZE,
        "agent.learning_starts": WARMUP_STEPS,
        "agent.exploration_initial_eps": 1.0,
        "agent.exploration_final_eps": 0.01,
        "agent.exploration_steps": EPSILON_DECAY_STEPS,
        "agent.target_update_interval": TARGET_UPDATE_STEPS,
        "ewc.lambda_": 400.0,
        "ewc.fisher_batches": 100,
        "ewc.fisher_batch_size": 32,
        "ewc.min_task_steps": BLOCK_STEPS,
    }


def scaled_overrides(scale: int, seed: int) -> dict[str, Any]:
    """The paper's protocol with its schedule divided by ``scale``, tuned for the resulting small budgets."""
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")

    def shrink(steps: int) -> int:
        return max(1, round(steps / scale))

    return {
        **faithful_overrides(seed),
        "steps_per_game": shrink(BLOCK_STEPS),
        "ewc.min_task_steps": shrink(BLOCK_STEPS),
        "agent.learning_starts": shrink(WARMUP_STEPS),
        "agent.exploration_steps": shrink(EPSILON_DECAY_STEPS),
        "eval.every": shrink(EVAL_EVERY_STEPS),
        "agent.target_update_interval": max(shrink(TARGET_UPDATE_STEPS), MIN_TARGET_UPDATE_STEPS),
        "agent.train_freq": SCALED_TRAIN_FREQ,
        "task_id": "oracle",  # young FMN models merge look-alike games; the comparison is about EWC
    }


def preset_overrides(name: str, seed: int) -> dict[str, Any]:
    """Flat dotted config keys -> values of preset ``name``; the games drawn depend on ``seed``."""
    if name in FIXED:
        return dict(FIXED[name][1])
    if name == FAITHFUL:
        return faithful_overrides(seed)
    scale = parse_scale(name)
    if scale is None:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))} (or {SCALED}-<S>)")
    return scaled_overrides(scale, seed)


def describe(name: str) -> str:
    """Human-readable protocol of preset ``name``: what the paper says, what the toolkit chose, what is scaled."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))} (or {SCALED}-<S>)")
    if name in FIXED:
        description, overrides = FIXED[name]
        return "\n".join([f"Preset {name}: {description}.", "", *(f"  {k} = {v}" for k, v in overrides.items())]) + "\n"
    lines = [
        f"Preset {name}: the Atari experiment of Kirkpatrick et al. 2017, 'Overcoming catastrophic forgetting in",
        "neural networks' (PNAS 114(13):3521). Sources and choices: docs/ewc-atari-protocol.md.",
        "",
        f"The paper's protocol ({FAITHFUL}):",
        f"  games      {GAMES_PER_RUN} drawn without replacement, in random order, from {len(EWC_ATARI_POOL)} games on which the Nature",
        "             DQN reached human level (numpy default_rng(seed): one draw per --seed; --games overrides):",
        *("             " + ", ".join(EWC_ATARI_POOL[i:i + 7]) for i in range(0, len(EWC_ATARI_POOL), 7)),
        f"  schedule   blocks of {BLOCK_STEPS:,} agent steps ({BLOCK_STEPS * FRAME_SKIP / 1e6:.0f}M frames), {CYCLES} cycles over the games "
        "(returns to each game)",
        "  env        18 actions, frame skip 4, up to 30 no-op starts, no sticky actions, no FIRE on reset,",
        "             rewards clipped to +-1",
        "  network    conv 32 8x8/4, 64 4x4/2, 128 3x3/1, dense 1024; per-game biases and gains on every layer",
        "  agent      Double DQN, Huber loss, gradient norm 50, RMSProp lr 2.5e-4 decay 0.95 momentum 0, gamma 0.99,",
        "             minibatch 32 every 4 transitions, replay memory of 50,000 per task kept across visits",
        "             (Table 2; the text says 5e5: --set agent.buffer_size=500000), target copy every 7,500 steps",
        "             (Table 2 = the text's 3e4, read as frames; the other reading: --set agent.target_update_interval=30000)",
        "  epsilon    per-task timer: 1.0 for 50,000 steps, then linear to 0.01 over 1,000,000 steps",
        "  EWC        lambda 400, Fisher from 100 minibatches of 32 of the game's replay, a game anchored only",
        f"             after {BLOCK_STEPS:,} steps (20M frames) on it; --method finetune for the baseline",
        "  task id    inferred by the Forget-Me-Not process (--task-id oracle: given)",
        f"  eval       every {EVAL_EVERY_STEPS:,} steps and at block ends: 10 episodes per game, epsilon 0.001,",
        "             up to 27,000 steps (30 minutes); score: total clipped human-normalized score (at most 10)",
    ]
    scale = parse_scale(name)
    if scale is not None:
        overrides = scaled_overrides(scale, 0)
        lines += [
            "",
            f"Scaled by S = {scale}: every count of the schedule divided by {scale}:",
            f"  block {overrides['steps_per_game']:,} steps (EWC start the same), warm-up {overrides['agent.learning_starts']:,}, "
            f"epsilon decay {overrides['agent.exploration_steps']:,}, evaluation every {overrides['eval.every']:,}.",
            "For small budgets: one minibatch per transition (train_freq 1, 4x the paper's replay ratio); the replay",
            f"memory stays {REPLAY_SIZE:,} per task; the target period is divided too but kept >= {MIN_TARGET_UPDATE_STEPS} steps",
            f"(here {overrides['agent.target_update_interval']:,}); the task id is given (--task-id fmn: inferred).",
            "At large S learning is negligible: such runs show the protocol end to end, not the paper's result.",
        ]
    return "\n".join(lines) + "\n"
