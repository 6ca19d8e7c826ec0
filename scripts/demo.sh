#!/usr/bin/env bash
# The Quickstart's main job: translate the shipped example clips to piano with the shipped model.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${DEMO_DIR:-demo}
$PY translate.py --list
$PY translate.py examples/ --to piano -o "$OUT/translated" --plot --threads 2
echo
echo "translations and their spectrograms (input above, output below):"
ls -1 "$OUT"/translated/*
