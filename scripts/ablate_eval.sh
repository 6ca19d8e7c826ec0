#!/bin/bash
# Score each row of the decoder study (scripts/ablate.sh) on all 20 pairs of the build's held-out
# works, N clips of 4 s per pair (default 1), then print the table (scripts/ablation_table.py).
# Usage: scripts/ablate_eval.sh DATA RUNS ROW...
set -euo pipefail
data=$1 runs=$2
shift 2
py=${PYTHON:-.venv/bin/python}
inst=(piano violin cello flute trumpet)
pairs=""
for a in "${inst[@]}"; do for b in "${inst[@]}"; do
  if [[ $a != "$b" ]]; then pairs+="$a:$b,"; fi
done; done
for row in "$@"; do
  "$py" -m evaluation --model "$runs/$row.pt" --data "$data" --pairs "${pairs%,}" -n "${N:-1}" \
    --seconds 4 --out "$runs/eval_$row" \
    --cache "$runs/eval_cache" 2>/dev/null | tail -n 3
done
"$py" scripts/ablation_table.py "$runs" "$@"
