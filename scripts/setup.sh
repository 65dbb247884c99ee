#!/usr/bin/env bash
# Create .venv and install tokenprune with its test extra.
# The venv sees system site-packages, so an already-installed torch (a GPU build on
# your machine) is kept; with no torch anywhere, TORCH_SPEC (default torch==2.13.0) is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv --system-site-packages .venv
fi
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    "${PIP[@]}" "${TORCH_SPEC:-torch==2.13.0}"
fi
"${PIP[@]}" "setuptools>=64" wheel
"${PIP[@]}" -e ".[test]"
