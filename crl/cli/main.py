"""The ``crl`` command line: ``crl train``, ``crl games``, ``crl report``, ``crl sweep``.

Bad input exits with status 2 and one line on stderr, before anything is written.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from crl.run.config import RunConfig
from crl.run import config as config_mod
from crl.run import rundir
from crl.methods import METHODS
from crl.cli.resume import continue_run, resume_config
from crl.cli.usage import UsageError



class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, status 2
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="crl", description="Continual reinforcement learning on sequences of Atari games.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    train = sub.add_parser("train", help="train one agent on a sequence of games, evaluating every game")
    train.add_argument("--preset", help="a named protocol as the base layer, e.g. ewc-atari-2017 (see --dry-run)")
    train.add_argument("--config", metavar="FILE.yaml", help="YAML file with config keys (see `crl train --show-config`)")
    add_config_flags(train)
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config key, e.g. agent.gamma=0.99")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its newest good checkpoint")
    train.add_argument("--force", action="store_true", help="with --resume: allow flags that change the experiment")
    train.add_argument("--show-config", action="store_true", help="print the resolved configuration and exit")
    train.add_argument("--dry-run", action="store_true", help="print the preset's protocol and the resolved configuration, write nothing")

    sub.add_parser("games", help="list the known games of both families with their reference scores")

    try:
        from crl.report import command as report
    except ImportError:
        report = None
    if report is not None:
        report.add_arguments(sub.add_parser("report", help="figures and tables from one or more runs"))
    from crl import sweep

    sweep.add_arguments(sub.add_parser("sweep", help="many runs from a spec (methods x seeds x settings), here or on Ray"))
    return parser


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config key the schema marks as flagged (``eval.every`` -> ``--eval-every``), with the key's
    help and choices; a flag left out keeps the config file's or the default value."""
    for key, spec in config_mod.fields_by_key().items():
        if not spec.metadata.get("flag"):
            continue
        meta, kind = spec.metadata, config_mod.field_kind(spec)
        help_text = meta["help"] + (f": {', '.join(METHODS)}" if key == "method" else "")
        if kind is bool:
            parser.add_argument(config_mod.flag_name(key), dest=key, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(config_mod.flag_name(key), dest=key, type=int if kind is int else str,
                                choices=meta.get("choices"), metavar=None if meta.get("choices") else "N" if kind is int
                                else None, help=help_text)


def resolve_train_config(args: argparse.Namespace) -> RunConfig:
    """Defaults <- --preset <- --config file <- flags <- --set, validated."""
    overrides: dict[str, Any] = {}
    if args.preset:
        overrides.update(preset_layer(args.preset, getattr(args, "seed")))
    if args.config:
        overrides.update(config_mod.load_yaml(args.config))
    for key, spec in config_mod.fields_by_key().items():
        value = getattr(args, key, None) if spec.metadata.get("flag") else None
        if value is not None:
            overrides[key] = value
    overrides.update(config_mod.parse_set(args.set))
    if args.resume:
        return resume_config(Path(args.resume), overrides, args.force)
    return config_mod.resolve(overrides)


def preset_layer(name: str, seed: int | None) -> dict[str, Any]:
    from crl.run import presets

    if name not in presets.PRESETS:
        known = ", ".join([*sorted(presets.PRESETS), f"{presets.SCALED}-<S>"])
        raise UsageError(f"unknown preset {name!r}; known presets: {known}")
    return presets.preset_overrides(name, 0 if seed is None else seed)


def default_run_dir(cfg: RunConfig) -> Path:
    games = "-".join(re.sub(r"[^a-z0-9]", "", g) for g in cfg.games)[:60]
    return Path("runs") / f"{cfg.method}-{games}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_dir(path: Path) -> None:
    """A new run needs a directory that does not exist yet or is empty."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"run directory {path} is a file; choose another --run-dir")
    if path.exists() and not rundir.is_empty(path):
        raise UsageError(f"run directory {path} already exists and is not empty; choose another --run-dir")


def check_device(device: str) -> None:
    """``cuda`` needs a CUDA device: an absent one is an error, not a silent fall-back to the CPU."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"device cuda: torch {torch.__version__} finds no CUDA device here; use --device cpu or auto")


def create_run_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create run directory {path}: {e.strerror or e}") from e


def lock_run_dir(path: Path) -> rundir.RunLock:
    """The run directory's lock, held until the command ends: a second writer gets one line and exit 2."""
    try:
        return rundir.RunLock(path).acquire()
    except rundir.RunDirBusy as e:
        raise UsageError(str(e)) from e
    except OSError as e:
        raise UsageError(f"cannot write to run directory {path}: {e.strerror or e}") from e


def start_run_dir(run_dir: Path, cfg: RunConfig) -> None:
    """What makes a directory a (resumable) run before anything else is written: config.yaml, run.json, checkpoints/."""
    if not rundir.is_empty(run_dir):  # another process filled it between the check and the lock
        raise UsageError(f"run directory {run_dir} already exists and is not empty; choose another --run-dir")
    (run_dir / rundir.CHECKPOINTS).mkdir(exist_ok=True)
    rundir.atomic_write(run_dir / rundir.CONFIG, config_mod.dump(cfg))
    rundir.write_run_record(run_dir, cfg)


def format_retention(games: list[str], rows: list[list[float]], trained: list[str]) -> str:
    width = max(10, *(len(g) for g in games))
    labels = [f"{i} ({trained[i]})" for i in range(len(rows))]
    label_width = max(22, *(len(label) + 1 for label in labels))
    lines = ["after block".ljust(label_width) + "".join(g.rjust(width + 1) for g in games)]
    for label, row in zip(labels, rows):
        lines.append(label.ljust(label_width) + "".join(f"{v:{width + 1}.1f}" for v in row))
    return "\n".join(lines)


def quiet_disk_full_in_threads() -> None:
    """A full disk fails TensorBoard's writer thread too; the main thread's next write raises the same error and
    reports it in one line, so the thread's own traceback is not printed."""
    previous = threading.excepthook

    def hook(args: Any) -> None:
        if isinstance(args.exc_value, OSError) and args.exc_value.errno in rundir.DISK_FULL:
            return
        previous(args)

    threading.excepthook = hook


def cmd_train(args: argparse.Namespace) -> int:
    quiet_disk_full_in_threads()
    cfg = resolve_train_config(args)
    check_device(cfg.device)
    if args.dry_run and args.preset:
        from crl.run import presets

        print(presets.describe(args.preset).rstrip() + "\n")
    if args.show_config or args.dry_run:
        print(config_mod.dump(cfg), end="")
        return 0
    run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
    if not args.resume:
        check_run_dir(run_dir)
        create_run_dir(run_dir)
    cfg.run_dir = str(run_dir)
    lock = lock_run_dir(run_dir)  # held until this command ends; the kernel drops it if the process dies
    try:
        if not args.resume:
            start_run_dir(run_dir, cfg)
        return train_locked(args, cfg, run_dir)
    except KeyboardInterrupt:  # Ctrl-C before the trainer's own handler is in place
        print(f"crl: interrupted; resume with: crl train --resume {run_dir}", file=sys.stderr)
        return 130
    except OSError as e:
        if e.errno not in rundir.DISK_FULL:
            raise
        rundir.remove_temporaries(run_dir)
        raise UsageError(f"disk full while writing {e.filename or run_dir} ({e.strerror}); temporary files removed; "
                         f"free some space, then: crl train --resume {run_dir}") from e
    finally:
        lock.release()


def train_locked(args: argparse.Namespace, cfg: RunConfig, run_dir: Path) -> int:
    """Train (or resume) into ``run_dir``, whose lock this process holds."""
    from crl.run.callbacks import TrainingDiverged  # heavy: once the input is good
    from crl.run.console import TrainingInterrupted
    from crl.run.loop import ContinualTrainer

    trainer = ContinualTrainer(cfg, run_dir)
    resume_step = None
    if args.resume:
        resumed = continue_run(trainer, args.force, warn=lambda m: print(f"crl: {m}", file=sys.stderr))
        print(f"crl: {resumed.note}", file=sys.stderr)
        if resumed.finished:
            return 0
        resume_step = resumed.step
    else:
        steps, planned = trainer.sequence.block_steps, cfg.steps_per_game
        if cfg.multitask:
            planned *= len(cfg.games) * cfg.cycles
        rounded = (f" (rounded up to {steps}: the agent steps in rollouts of n_envs x train_freq = "
                   f"{cfg.n_envs * cfg.agent.train_freq})" if steps != planned else "")
        plan = (f"jointly (multitask), one block of {planned} steps ({cfg.steps_per_game} per game x {cfg.cycles} "
                f"cycle(s)){rounded}" if cfg.multitask else
                f"x {cfg.cycles} cycle(s), {cfg.steps_per_game} steps per game{rounded}")
        print(f"training {cfg.method} on {', '.join(cfg.games)} {plan} -> {run_dir}", file=sys.stderr)
    try:
        summary = trainer.run(resume_step=resume_step)
    except TrainingInterrupted as e:
        print(f"crl: {e}\ncrl: resume with: crl train --resume {run_dir}", file=sys.stderr)
        return e.exit_status
    except TrainingDiverged as e:
        print(f"crl: {e}; the last good checkpoint is in {run_dir / 'checkpoints'} "
              f"(resume with: crl train --resume {run_dir}; or set on_divergence=skip)", file=sys.stderr)
        return 1
    trained = [block.game for block in trainer.blocks[: len(trainer.retention)]]
    print("\nRetention matrix (mean evaluation return of each game after each block):")
    print(format_retention(trainer.games, trainer.retention, trained))
    from crl.analysis.normalization import normalization_of

    norm = normalization_of(trainer.games)  # HNS (Atari) or DQN-normalized score (MinAtar)
    rated = [g for g, v in (summary.get(f"final_{norm.key}") or {}).items() if v is not None]  # what the score covers
    score = (f"total clipped {norm.short} {summary[f'total_clipped_{norm.key}']:.3f} (over {', '.join(rated)})   "
             if rated else f"no {norm.short}: no game has {norm.references}   ")
    print(f"\n{score}average final return {summary['average_final_return']:.2f}")
    from crl.analysis.normalization import random_play_score
    from crl.analysis.words import describe_game, retention_in_words

    randoms = {g: random_play_score(g) for g in trainer.games}
    if cfg.multitask:  # one joint block: every game's own block is the last
        words = [describe_game(g, trainer.retention[0][j], None, randoms[g], trainer.state.retention_cut[0][j])
                 for j, g in enumerate(trainer.games)]
    else:
        words = retention_in_words(trainer.games, trainer.retention, trainer.trained_at, randoms,
                                   trainer.state.retention_cut)
    print("\nIn words:\n" + "\n".join(words))
    print(f"run directory: {run_dir}")
    print(f"tensorboard --logdir {run_dir / 'tb'}")
    return 0


def cmd_games(_: argparse.Namespace) -> int:
    from crl.analysis.normalization import reference_scores
    from crl.analysis.normalization import minatar_reference_scores, score_name
    from envs import known_games

    tables = (("atari", "human", reference_scores()), ("minatar", "dqn", minatar_reference_scores()))
    for index, (family, top, refs) in enumerate(tables):
        if index:
            print()
        print(f"{family} games (normalized score: {score_name(family)})")
        print(f"{'game':24}{'random':>12}{top:>12}")
        for game in known_games(family):
            random, best = refs.get(game, (None, None))
            ref = f"{random:12.1f}{best:12.1f}" if random is not None else f"{'-':>12}{'-':>12}"
            print(f"{game:24}{ref}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "train":
            return cmd_train(args)
        if args.command == "games":
            return cmd_games(args)
        if args.command == "sweep":
            from crl import sweep

            return sweep.main(args)
        from crl.report import command as report

        try:
            return report.main(args)
        except BrokenPipeError:
            raise
        except OSError as e:  # e.g. --out where nothing can be written
            raise UsageError(f"report: cannot write {e.filename or args.out}: {e.strerror or e}") from e
    except (UsageError, config_mod.ConfigError) as e:
        print(f"crl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("crl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
