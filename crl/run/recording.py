"""Everything a run records while it trains: ``config.yaml`` (as it trains), ``blocks.jsonl``, ``evals.jsonl``,
``retention.csv``, ``metrics.json``, and TensorBoard's scalars, figures and hparams under ``tb/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.tensorboard import SummaryWriter

from crl.run.config import RunConfig
from crl.run import config as config_mod
from crl.analysis import metrics, plots
from crl.run import rundir
from crl.run.evaluation import GameEvaluation
from crl.analysis.normalization import normalization_of, normalized_score
from crl.run.sequence import Block
from crl.run.state import RunState


class Recorder:
    """The run's records in ``run_dir``; TensorBoard between :meth:`open` and :meth:`close`.

    It reads a :class:`RunState` and never writes one: the trainer counts the lines a resume trims back to.
    """

    def __init__(self, run_dir: Path, cfg: RunConfig) -> None:
        self.run_dir, self.cfg = Path(run_dir), cfg
        self.games: list[str] = list(cfg.games)
        # the family's normalized score: hns (Atari), dqn_normalized (MinAtar)
        self.key = normalization_of(self.games).key
        self.writer: SummaryWriter | None = None

    def open(self, resume_step: int | None) -> None:
        """Write the configuration the run trains with; open TensorBoard, purging events a resumed run logged after
        ``resume_step`` (they are logged again)."""
        rundir.atomic_write(self.run_dir / rundir.CONFIG, config_mod.dump(self.cfg))
        purge = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(str(self.run_dir / rundir.TB), purge_step=purge)

    def close(self) -> None:
        self.writer.close()

    def flush(self) -> None:
        self.writer.flush()

    # --- blocks -----------------------------------------------------------------------------------------
    def block_started(self, block: Block, task_id: int, start_step: int) -> None:
        """One ``blocks.jsonl`` line: the block, its game's column, the agent's task id and its planned steps."""
        rundir.append_jsonl(self.run_dir / rundir.BLOCKS, [{
            "block": block.index, "cycle": block.cycle, "game": block.game, "task_index": block.task_id,
            "task_id": task_id, "start_step": start_step, "end_step": start_step + block.steps,
        }])

    def block_ended_at(self, step: int) -> None:
        """The last block ended at ``step``, not where it was planned to (a resume after a signal mid-rollout)."""
        rundir.update_last_jsonl(self.run_dir / rundir.BLOCKS, {"end_step": step})

    def block_finished(self, state: RunState, step: int, method_scalars: dict[str, float]) -> None:
        """After a block's final evaluation: ``retention.csv``, the figures so far, the method's own scalars."""
        rundir.write_retention(self.run_dir / rundir.RETENTION, self.games, state.retention)
        self.figures(state, step)
        for tag, value in method_scalars.items():
            self.writer.add_scalar(tag, value, step)

    def figures(self, state: RunState, step: int) -> None:
        """The retention heatmap and the return curves so far, as TensorBoard images (at each task boundary). A
        multi-task run has no heatmap: its one block trains every game, its one row is the final evaluation."""
        evals = rundir.read_jsonl(self.run_dir / rundir.EVALS)
        blocks = rundir.read_jsonl(self.run_dir / rundir.BLOCKS)
        if not self.cfg.multitask:
            self.writer.add_figure("report/retention", plots.retention_heatmap(
                np.array(state.retention), self.games, trained_at=state.trained_at, task_ids=state.task_ids), step)
        self.writer.add_figure("report/curves", plots.return_curves(evals, self.games, blocks), step)

    # --- training ---------------------------------------------------------------------------------------
    def episode_return(self, game: str, value: float, step: int) -> None:
        self.writer.add_scalar(f"train/{game}/episode_return", value, step)

    def training_loss(self, name: str, value: float, step: int) -> None:
        self.writer.add_scalar(f"train/{name}", value, step)

    def training_state(self, epsilon: float, task_id: int, skipped_batches: int, step: int) -> None:
        self.writer.add_scalar("train/epsilon", epsilon, step)
        self.writer.add_scalar("train/task_index", task_id, step)
        if skipped_batches:
            self.writer.add_scalar("train/skipped_batches", skipped_batches, step)

    def task_probe(self, correct: bool, num_tasks: int, step: int) -> None:
        """FMN's name for a block's task: whether it was right, and how many tasks FMN knows."""
        self.writer.add_scalar("task_inference/fmn_correct", float(correct), step)
        self.writer.add_scalar("task_inference/fmn_tasks", num_tasks, step)

    # --- evaluations ------------------------------------------------------------------------------------
    def evaluation(self, block: Block, step: int, task_id: int, results: list[GameEvaluation],
                   trained: dict[int, int], final: bool) -> None:
        """One ``evals.jsonl`` line per game, and its scalars, for an evaluation during ``block`` (the agent's task
        ``task_id``). ``trained``: game column -> the id the agent trained it under, the right answer of inference."""
        inferred = self.cfg.eval.task_id == "inferred"
        key = self.key
        records = []
        normalized_values = []
        for g, r in enumerate(results):
            normalized = normalized_score(r.game, r.mean)
            normalized_values.append(normalized)
            records.append({
                "step": step, "block": block.index, "task_index": block.task_id,
                "task_id": task_id, "trained_game": block.game, "game": r.game, "game_index": g,
                "eval_task_id": None if inferred else r.task_id,
                "mean_return": r.mean, "std_return": r.std, "episodes": len(r.returns), "cut_episodes": r.cut_episodes,
                key: None if np.isnan(normalized) else normalized, "final": final,
                **({"inferred_task_ids": r.inferred_task_ids} if inferred else {}),
            })
            self.writer.add_scalar(f"eval/{r.game}/return", r.mean, step)
            if not np.isnan(normalized):
                self.writer.add_scalar(f"eval/{r.game}/{key}", normalized, step)
        if inferred:  # only trained games have a right answer: the id the agent trained them under
            hits = [t == trained[g] for g, r in enumerate(results) if g in trained for t in r.inferred_task_ids or []]
            if hits:
                self.writer.add_scalar(f"{self.cfg.method}/task_inference_accuracy", float(np.mean(hits)), step)
        rundir.append_jsonl(self.run_dir / rundir.EVALS, records)
        known = np.array([h for h in normalized_values if not np.isnan(h)])
        if known.size:
            self.writer.add_scalar(f"eval/mean_{key}", float(known.mean()), step)
            self.writer.add_scalar(f"eval/total_clipped_{key}", metrics.total_clipped(known), step)
        self.writer.flush()

    def plasticity(self, block: Block, step: int, network: dict[str, float],
                   games: dict[str, dict[str, float]]) -> None:
        """One ``plasticity.jsonl`` line per evaluation (the network's measures, and each probed game's), and the
        scalars ``plasticity/<measure>`` and ``plasticity/<game>/<measure>``."""
        rundir.append_jsonl(self.run_dir / rundir.PLASTICITY,
                            [{"step": step, "block": block.index, "network": network, "games": games}])
        for name, value in network.items():
            self.writer.add_scalar(f"plasticity/{name}", value, step)
        for game, measures in games.items():
            for name, value in measures.items():
                self.writer.add_scalar(f"plasticity/{game}/{name}", value, step)
        self.writer.flush()

    # --- the end ----------------------------------------------------------------------------------------
    def summary(self, state: RunState, step: int, hparams: bool = True) -> dict[str, Any]:
        """``metrics.json`` (the metrics of the retention matrix, and the task ids), also as TensorBoard hparams
        (``hparams=False``: not again, they are logged already)."""
        summary = metrics.summarize(np.array(state.retention), self.games, state.trained_at, state.retention_cut[-1])
        summary["task_ids"] = list(state.task_ids)
        rundir.write_json(self.run_dir / rundir.METRICS, summary)
        if hparams:
            self.hparams(summary, step)
        return summary

    def hparams(self, summary: dict[str, Any], step: int) -> None:
        """The configuration with the final metrics in TensorBoard's hparams plugin, in this run (not a new one)."""
        from torch.utils.tensorboard.summary import hparams

        params = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                  for k, v in config_mod.flatten(self.cfg).items() if k != "run_dir"}
        names = ("average_final_return", f"average_final_{self.key}", "average_forgetting", "backward_transfer",
                 f"total_clipped_{self.key}")
        final = {f"hparams/{k}": summary[k] for k in names if summary[k] is not None}
        for summary_proto in hparams(params, final):
            self.writer.file_writer.add_summary(summary_proto)
        for tag, value in final.items():
            self.writer.add_scalar(tag, value, step)
