#!/usr/bin/env bash
# The whole MinAtar continual benchmark of docs/results/minatar.md in one command: the tuning stage, the test stage
# (with the values the tuning stage chose, fixed in benchmarks/minatar.yaml), their small records copied into
# benchmarks/results/minatar/ and both reports regenerated from those records.
#
#   bash scripts/minatar_benchmark.sh [SWEEP_ROOT]      # sweep directories under SWEEP_ROOT (default: runs)
#
# Rerunning continues where it stopped: finished runs are kept, interrupted ones resume.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-runs}
for stage in tune test; do
    spec=benchmarks/minatar.yaml
    [ "$stage" = tune ] && spec=benchmarks/minatar-tune.yaml
    python -m crl sweep "$spec" --out "$root/minatar-$stage"
    python scripts/export_records.py "$root/minatar-$stage" "benchmarks/results/minatar/$stage"
    rm -rf "benchmarks/results/minatar/$stage/report"
    python -m crl sweep --report "benchmarks/results/minatar/$stage"
done
