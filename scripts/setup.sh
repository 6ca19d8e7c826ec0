#!/usr/bin/env bash
# Sets up a fresh machine: system packages for rendering datasets, then .venv with the project.
# Needs only the system python3 (PEP 668 forbids pip outside a venv): the venv comes from
# `python3 -m venv`, and uv is installed inside it.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  elif command -v sudo >/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
  else
    return 1
  fi
}

apt_pkgs=(fluidsynth fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont-small)
python3 -c 'import ensurepip, venv' 2>/dev/null || apt_pkgs+=(python3-venv)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}" || echo "warning: install ${missing[*]} (apt) to build rendered datasets" >&2
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv || { echo "error: python3 -m venv failed (apt install python3-venv)" >&2; exit 1; }
fi
[ -x .venv/bin/uv ] || .venv/bin/python -m pip install -q uv
.venv/bin/uv pip install -q -p .venv/bin/python -e ".[dev]"
