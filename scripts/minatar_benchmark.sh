#!/usr/bin/env bash
# The whole MinAtar continual benchmark of docs/results/minatar.md in one command: the tuning stage, the test stage
# (with the values the tuning stage chose, fixed in benchmarks/minatar.yaml), the multi-task reference and the 5x
# budget check; their small records copied into benchmarks/results/minatar/ and every report regenerated from them.
#
#   bash scripts/minatar_benchmark.sh [SWEEP_ROOT]      # sweep directories under SWEEP_ROOT (default: runs)
#
# Rerunning continues where it stopped: finished runs are kept, interrupted ones resume.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-runs}
results=benchmarks/results/minatar
for stage in tune test multitask 5x; do
    case $stage in
        test) spec=benchmarks/minatar.yaml ;;
        *) spec=benchmarks/minatar-$stage.yaml ;;
    esac
    python -m crl sweep "$spec" --out "$root/minatar-$stage"
    python scripts/export_records.py "$root/minatar-$stage" "$results/$stage"
    rm -rf "$results/$stage/report"
    python -m crl sweep --report "$results/$stage"
done
