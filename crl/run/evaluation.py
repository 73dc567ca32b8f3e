"""Evaluation of the agent on every game of the sequence, in parallel environments, with raw game scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch as th

from crl.run.config import RunConfig
from crl.run import config as config_mod
from crl.run import seeds
from crl.run.seeds import derive_seed
from crl.task_inference.entropy import infer_task_id
from envs import make_vec_env

# (q_net, first observations, candidate task ids) -> chosen task id
TaskInferrer = Callable[[Any, th.Tensor, list[int]], int]


@dataclass
class GameEvaluation:
    """The episodes of one evaluation of one game.

    ``task_id``: the id the agent was told to play with (unused where ``inferred_task_ids`` is set: then each
    episode's own choice, in the order of ``returns``). ``cut_episodes``: how many episodes ``max_steps`` ended
    before the game did; their returns are lower bounds of the full-episode score.
    """

    game: str
    task_id: int
    returns: list[float]
    inferred_task_ids: list[int] | None = None
    cut_episodes: int = 0

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


def play_episodes(
    agent: Any,
    game: str,
    task_id: int,
    episodes: int,
    max_steps: int,
    epsilon: float,
    seed: int,
    env_options: dict[str, Any],
    infer_task: TaskInferrer | None = None,
    candidate_task_ids: list[int] | None = None,
    infer_steps: int = 16,
) -> GameEvaluation:
    """Play ``episodes`` epsilon-greedy episodes of ``game`` (unclipped score, at most ``max_steps`` agent steps).

    Each of ``min(episodes, 16)`` parallel envs plays a fixed share of the episodes, so short episodes are not
    over-represented. With ``infer_task``, every episode picks its own task id from its first ``infer_steps``
    observations (acting on the running guess meanwhile, so the true id never leaks into the score); an episode
    that ends sooner keeps its last guess, and the next episode of that env starts inferring afresh.
    An episode is counted as cut when ``max_steps`` ended it and ``max_steps`` is below the environment's own
    episode cap (``env_options["max_episode_steps"]``; the standard cap is part of the protocol, not a cut).
    """
    n_envs = min(episodes, 16)
    targets = np.array([episodes // n_envs + (i < episodes % n_envs) for i in range(n_envs)])
    env_cap = env_options.get("max_episode_steps") or None
    options = {**env_options, "clip_rewards": False, "max_episode_steps": min(max_steps, env_cap or max_steps)}
    cuts_are_eval = env_cap is None or max_steps < env_cap
    env = make_vec_env(game, n_envs=n_envs, seed=seed, **options)
    rng = np.random.default_rng(seed)
    q_net = agent.q_net
    was_training = q_net.training
    q_net.set_training_mode(False)
    task_ids = np.full(n_envs, task_id)
    histories: list[list[th.Tensor]] = [[] for _ in range(n_envs)]  # this episode's first observations, per env
    # per env, per counted episode: (return, the task id it played with, cut by max_steps)
    played: list[list[tuple[float, int, bool]]] = [[] for _ in range(n_envs)]
    left = episodes  # episodes still to count
    try:
        obs = env.reset()
        with th.no_grad():
            while left:
                obs_t = th.as_tensor(obs, device=agent.device)
                if infer_task is None:  # every env plays as task_id: the loop below with one id, without its indexing
                    actions = q_net(obs_t, task_id=int(task_id)).argmax(dim=1).cpu().numpy()
                else:
                    for i in range(n_envs):
                        if len(histories[i]) < infer_steps and len(played[i]) < targets[i]:
                            histories[i].append(obs_t[i])
                            task_ids[i] = infer_task(q_net, th.stack(histories[i]), candidate_task_ids)
                    actions = np.empty(n_envs, dtype=np.int64)
                    for tid in np.unique(task_ids):
                        rows = np.flatnonzero(task_ids == tid)
                        actions[rows] = q_net(obs_t[rows], task_id=int(tid)).argmax(dim=1).cpu().numpy()
                explore = rng.random(n_envs) < epsilon
                actions = np.where(explore, rng.integers(env.action_space.n, size=n_envs), actions)
                obs, _, dones, infos = env.step(actions)
                for i in np.flatnonzero(dones):
                    if len(played[i]) < targets[i]:
                        cut = cuts_are_eval and bool(infos[i].get("TimeLimit.truncated", False))
                        played[i].append((float(infos[i]["episode"]["r"]), int(task_ids[i]), cut))
                        left -= 1
                    histories[i] = []  # the observation just returned is the next episode's first
    finally:
        env.close()
        q_net.set_training_mode(was_training)
    flat = [e for env_episodes in played for e in env_episodes]
    return GameEvaluation(
        game, task_id, [r for r, _, _ in flat],
        inferred_task_ids=[t for _, t, _ in flat] if infer_task is not None else None,
        cut_episodes=sum(c for _, _, c in flat),
    )


def evaluate_games(agent: Any, cfg: RunConfig, task_ids: Sequence[int],
                   candidate_task_ids: list[int], only: Sequence[int] | None = None) -> list[GameEvaluation]:
    """One evaluation of every game of the resolved config ``cfg`` (or of the games at the indices ``only``) as its
    ``eval`` section says: game ``g`` played with ``task_ids[g]``, or (``eval.task_id: inferred``) each episode with
    the id it infers among ``candidate_task_ids``."""
    ev = cfg.eval
    inferred = ev.task_id == "inferred"
    results = []
    for g, game in enumerate(cfg.games):
        if only is not None and g not in only:
            continue
        # the same episodes (seeds, exploration coins) at every evaluation of a game: an unchanged policy
        # scores the same, so differences between evaluations are the agent's, not the evaluation's noise
        seed = derive_seed(cfg.seed, seeds.EVALUATION_ENV, g)
        results.append(play_episodes(
            agent, game, task_ids[g], ev.episodes, ev.max_steps, ev.epsilon, seed,
            config_mod.env_options(cfg, game), infer_task=infer_task_id if inferred else None,
            candidate_task_ids=candidate_task_ids))
    return results
