#!/usr/bin/env bash
# The library code the desktop module calls, under the Python of each supported 3D Slicer
# (5.8: Python 3.9, 5.10: Python 3.12) with the package versions Slicer bundles
# (Testing/faces/desktop/slicer_pythons/*.txt; environments made by ./setup.sh).
# ./test.sh runs this first; it takes a few seconds per Slicer version.
set -euo pipefail
cd "$(dirname "$0")"
TESTS="Testing/faces/desktop/test_slicer_python.py Testing/faces/desktop/test_desktop_slicer_api.py"
for slicer in 5.8 5.10; do
  env=".venv-slicer$slicer"
  if [ ! -x "$env/bin/python" ]; then
    echo "[slicer-pythons] $env is missing: run ./setup.sh (it needs the Python of Slicer $slicer)" >&2
    exit 2
  fi
  echo "[slicer-pythons] Slicer $slicer: $($env/bin/python --version)"
  "$env/bin/python" -m pytest -q -p no:cacheprovider $TESTS "$@"
done
