"""``crl train --resume``: the configuration a resumed run trains with, and how the run continues from its newest
good resume point (what a point holds is :mod:`crl.run.resume_point`'s).

This module imports nothing heavy: ``crl.cli.main`` checks a resume's configuration with it before anything is
written; the trainer it continues is passed in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from crl.cli.usage import UsageError
from crl.run import checkpoint as ckpt
from crl.run import config as config_mod
from crl.run import rundir
from crl.run.config import RunConfig

if TYPE_CHECKING:  # the trainer pulls in torch and matplotlib; this module is imported before input is checked
    from crl.run.loop import ContinualTrainer

# keys no resume may change, --force or not: the records (retention matrix, evaluations) are per game and block, and
# the probe batches are drawn once
RESUME_NEVER_CHANGES = ("games", "multitask", "plasticity.measure", "plasticity.probe_size")


# --- continuing a run -----------------------------------------------------------------------------------------
@dataclass
class Continuation:
    """How a resume goes on: from ``step`` (None: from the beginning), or not at all (``finished``); ``note`` says
    which, for the user."""

    step: int | None
    note: str
    finished: bool = False


def continue_run(trainer: ContinualTrainer, force: bool, warn: Callable[[str], None]) -> Continuation:
    """Set ``trainer`` (made for the resumed configuration) to continue its run from the newest good checkpoint;
    each unusable newer one is named through ``warn``. A run that stopped before its first checkpoint starts again
    from nothing. The resume is logged in ``resumes.jsonl``; one that ``--force`` changed the experiment of also
    rewrites ``config.yaml`` and ``run.json``, so later resumes check against what it trains with."""
    run_dir, cfg = trainer.run_dir, trainer.cfg
    record = run_record(run_dir)
    step, refilled = None, False
    rundir.remove_temporaries(run_dir)
    unusable = ckpt.discard_unusable(trainer.checkpoints)  # incomplete or corrupt points, orphans: never used
    good = ckpt.resume_points(trainer.checkpoints)
    if not good:
        note = "restarted from the beginning: the run stopped before its first checkpoint"
        if not trainer.checkpoints.is_dir():
            note = f"{trainer.checkpoints} is missing; restarted from step 0, keeping nothing from before"
        rundir.clear_records(run_dir)
        if unusable:
            why = "; ".join(f"{p.zip_path.name}: {problem}" for p, problem in unusable)
            note = (f"no usable checkpoint in {trainer.checkpoints} ({why}); restarted from step 0, keeping "
                    "nothing from before")
    else:
        point = good[0]
        for bad, problem in unusable:
            if bad.step > point.step:
                warn(f"checkpoint {bad.zip_path} is unusable: {problem}; removed, using the previous one")
        saved = ckpt.load_trainer_state(point)
        if saved["fingerprint"] != record["fingerprint"] and not force:
            raise UsageError(f"checkpoint {point.zip_path} was made with another configuration than "
                             f"{run_dir / rundir.CONFIG}; add --force to resume from it anyway")
        if (saved["block_index"] >= len(trainer.blocks) and (run_dir / rundir.METRICS).exists()
                and (run_dir / rundir.MODEL).exists()):
            return Continuation(None, f"{run_dir} is finished ({len(trainer.blocks)} blocks); nothing to do "
                                      f"(to train more: crl train --resume {run_dir} --cycles N)", finished=True)
        if not any((run_dir / rundir.TB).glob("events.out.tfevents.*")) and not force:
            raise UsageError(f"{run_dir / rundir.TB} holds no TensorBoard events (deleted?): the resumed run's "
                             f"TensorBoard would lack steps 0-{point.step}; put them back, or add --force to go on "
                             "without them")
        try:
            replay_restored = trainer.restore(point, warn)
        except ckpt.CheckpointError as e:
            raise UsageError(str(e)) from e
        step = point.step
        refilled = bool(trainer.state.block_done) and not replay_restored
        note = (f"resumed from {point.zip_path.name} at step {point.step} (block {trainer.state.block_index}, "
                f"{trainer.state.block_done} steps into it)")
        if refilled:
            note += "; replay buffers were not saved (--checkpoint-replay), so this block refills its buffer"
    forced = rundir.changed_keys(record["experiment"], cfg)
    if forced:
        note += f"; --force changed {', '.join(forced)}"
        rundir.atomic_write(run_dir / rundir.CONFIG, config_mod.dump(cfg))
        rundir.write_run_record(run_dir, cfg)
    rundir.append_jsonl(run_dir / rundir.RESUMES, [{"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "note": note,
                                                    "step": step, "replay_refilled": refilled}])
    return Continuation(step, note)


# --- the configuration a resumed run trains with ---------------------------------------------------------------
def run_record(run_dir: Path) -> dict[str, Any]:
    """The run's ``run.json`` (what it started with); a directory without a readable one is not a run crl wrote."""
    record = rundir.read_run_record(run_dir)
    if record is None:
        raise UsageError(f"{run_dir} has no readable {rundir.RUN} (crl writes it with config.yaml when a run "
                         "starts): not a run crl wrote; nothing to resume")
    return record


def resume_config(run_dir: Path, overrides: dict[str, Any], force: bool) -> RunConfig:
    """The saved configuration of ``run_dir`` with ``overrides``; experiment-changing ones need ``force``.

    ``config.yaml`` must still be the configuration the run was started with (``run.json`` holds its experiment
    keys): an edited one is refused, naming the keys that changed (``force`` accepts it, unless the games changed).
    """
    if run_dir.is_file():
        raise UsageError(f"{run_dir} is a file, not a run directory; nothing to resume")
    config_file = run_dir / rundir.CONFIG
    if not config_file.is_file() or not ((run_dir / rundir.CHECKPOINTS).is_dir() or (run_dir / rundir.RUN).is_file()):
        raise UsageError(f"{run_dir} is not a run directory (no config.yaml and checkpoints/); nothing to resume")
    if not config_file.read_bytes().strip():
        raise UsageError(f"{config_file} is empty; nothing to resume")
    try:
        saved_flat = config_mod.load_yaml(str(config_file))  # not YAML, or not a mapping: one line
    except config_mod.ConfigError as e:
        raise UsageError(f"{e}; nothing to resume") from e
    try:
        saved = config_mod.resolve(dict(saved_flat))
    except config_mod.ConfigError as e:
        raise UsageError(f"{config_file}: {e}; nothing to resume") from e
    elsewhere = overrides.pop("run_dir", None)
    if elsewhere is not None and Path(elsewhere).resolve() != run_dir.resolve():
        raise UsageError(f"--resume {run_dir} continues the run where it is; it cannot also go to --run-dir "
                         f"{elsewhere} (drop --run-dir, or copy the directory first)")
    cfg = config_mod.resolve({**saved_flat, **overrides})
    started = run_record(run_dir)["experiment"]  # what the run started with
    edited = rundir.changed_keys(started, saved)
    forceable = not any(k in RESUME_NEVER_CHANGES for k in edited)
    if edited and not (force and forceable):
        raise UsageError(f"{config_file} was edited after the run started ({', '.join(edited)}): its checkpoints "
                         "and records were made with the old values; put them back or start a new run"
                         + (" (or add --force to go on with the new values)" if forceable else ""))
    never = [k for k in rundir.changed_keys(started, cfg) if k in RESUME_NEVER_CHANGES]
    if never:
        raise UsageError(f"--resume cannot change {', '.join(never)} (the run's records are per game, its "
                         "plasticity probes drawn once); start a new run instead")
    changed = rundir.changed_keys(rundir.experiment(saved), cfg)
    if changed and not force:
        raise UsageError(f"--resume would change the experiment ({', '.join(changed)}); add --force to do it anyway")
    if cfg.cycles < saved.cycles:
        raise UsageError(f"--resume cannot shorten the run: cycles {cfg.cycles} < {saved.cycles}")
    cfg.run_dir = str(run_dir)
    return cfg
