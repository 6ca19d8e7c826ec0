#!/usr/bin/env bash
# Sets up a fresh machine: system packages for rendering datasets, then .venv with the project.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=(fluidsynth fluid-soundfont-gm timgm6mb-soundfont)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "warning: install ${missing[*]} (apt) to build rendered datasets" >&2
  fi
fi

command -v uv >/dev/null || python3 -m pip install -q uv
[ -x .venv/bin/python ] || uv venv -q -p 3.11 .venv
uv pip install -q -p .venv/bin/python -e ".[dev]"
