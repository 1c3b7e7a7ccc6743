#!/usr/bin/env bash
# SpineAI setup on a fresh Debian 12 machine with Python 3.11:
#   Debian packages (offscreen OpenGL, Chromium for the browser tests), a virtual
#   environment in .venv with the pinned Python packages, then the demo job on
#   generated sample data (unless --no-demo).
# Safe to run again: every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")"

DEMO=1
for arg in "$@"; do
  case "$arg" in
    --no-demo) DEMO=0 ;;
    *) echo "usage: ./setup.sh [--no-demo]" >&2; exit 2 ;;
  esac
done

DEB_PACKAGES="libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 libglu1-mesa chromium fonts-dejavu-core"
missing=""
for p in $DEB_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "[setup] installing Debian packages:$missing"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
# Reinstall only when the pins changed since the last successful install.
stamp=.venv/.spineai-requirements
if ! cmp -s requirements.txt "$stamp" 2>/dev/null; then
  echo "[setup] installing pinned Python packages (torch is large: several minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  cp requirements.txt "$stamp"
fi
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .

# The Pythons of the supported 3D Slicer versions with the packages Slicer bundles, for
# ./test-slicer-pythons.sh (no torch: a few seconds to install from cache, once).
find_python() {  # pyenv's Python 3.X, else python3.X on PATH (one that runs: pyenv shims may not)
  for py in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/python 2>/dev/null | sort -V -r) \
            $(command -v "python$1" 2>/dev/null); do
    "$py" -c "" 2>/dev/null && { echo "$py"; return; }
  done
}
for pair in 5.8:3.9 5.10:3.12; do
  slicer=${pair%%:*}; version=${pair##*:}
  env=".venv-slicer$slicer"; pins="Testing/faces/desktop/slicer_pythons/slicer-$slicer.txt"
  if ! cmp -s "$pins" "$env/.spineai-requirements" 2>/dev/null; then
    py=$(find_python "$version")
    if [ -z "$py" ]; then
      echo "[setup] Python $version (Slicer $slicer) not found: ./test-slicer-pythons.sh will say so" >&2
      continue
    fi
    echo "[setup] creating $env with $($py --version) and Slicer $slicer's package versions"
    rm -rf "$env"
    "$py" -m venv "$env"
    "$env/bin/python" -m pip install -q --disable-pip-version-check -r "$pins"
    cp "$pins" "$env/.spineai-requirements"
  fi
done

if [ "$DEMO" = 1 ]; then
  echo "[setup] running the demo on generated sample data -> demo_output/"
  .venv/bin/spineai demo --out demo_output --force
fi
