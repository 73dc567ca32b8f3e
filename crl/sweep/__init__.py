"""``crl sweep``: many ``crl train`` runs from one spec file, in parallel here or on a Ray cluster, resumable.

A spec (YAML) names a base configuration, the axes to cross (``method``, ``seed``, any config key), per-method axes,
and whether to add single-game reference runs; :mod:`crl.sweep.spec` expands it into runs and checks every one
against the real configuration before anything starts. :mod:`crl.sweep.execute` runs each as a ``crl train``
subprocess (locally in worker threads, or as Ray tasks) and keeps ``DIR/sweep.json`` up to date, so a rerun skips
finished runs and resumes interrupted ones; :mod:`crl.sweep.command` is the command and the report over the sweep.

This package is imported to build the CLI parser of every command, and ``crl.sweep.child`` starts every run: both
must stay free of heavy imports (torch, ALE, Ray), which come in only where a sweep is expanded or run.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``crl sweep``."""
    parser.add_argument("spec", nargs="?", metavar="SPEC.yaml", help="the sweep's spec file (see README, 'Sweeps')")
    parser.add_argument("--out", metavar="DIR", help="sweep directory (default runs/sweep-<spec name>); runs go to DIR/runs/<name>")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="runs at a time (default: CPU cores // CPUs per run; with --ray, from the cluster's resources)")
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="run on a Ray cluster: ray.init(address=ADDRESS); no ADDRESS: RAY_ADDRESS, a running local "
                             "cluster, or a new local one")
    parser.add_argument("--dry-run", action="store_true", help="print every run (name and settings) and write nothing")
    parser.add_argument("--report", metavar="DIR", help="only write the report over the finished runs of the sweep in DIR")


def main(args: argparse.Namespace) -> int:
    """Run the command; bad input raises :class:`crl.run.config.ConfigError` (one line, exit status 2 in the CLI)."""
    from crl.sweep.command import run_command

    return run_command(args)
