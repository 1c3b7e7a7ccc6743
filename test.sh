#!/usr/bin/env bash
# Runs the whole SpineAI test suite (sets the environment up first if needed).
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --no-demo
export VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow
./test-slicer-pythons.sh
exec .venv/bin/python -m pytest Testing "$@"
