#!/usr/bin/env bash
# Create .venv and install tokenprune with its test extra (and lmms-eval for the bridge tests).
# The venv sees system site-packages, so an already-installed torch (a GPU build on
# your machine) is kept; with no torch anywhere, TORCH_SPEC (default torch==2.13.0) is installed.
# After that, every install is constrained to the torch that is there: no requirement may
# replace it (a bare `torch` requirement would otherwise fetch a multi-GB CUDA build).
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
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
.venv/bin/python -c "import torch; print('torch==' + torch.__version__)" > "$constraints"
PIP+=(-c "$constraints")
"${PIP[@]}" "setuptools>=64" wheel
"${PIP[@]}" -e ".[test]"
# lmms-eval without its declared requirements (see the file); the tests that need it skip without it
lmms_eval=$(grep -m1 '^lmms-eval' scripts/lmms-eval-test.txt)
if ! { "${PIP[@]}" --no-deps --no-warn-conflicts "$lmms_eval" &&
       "${PIP[@]}" --no-warn-conflicts -r <(grep -v -e '^#' -e '^lmms-eval' scripts/lmms-eval-test.txt); }; then
    echo "setup.sh: lmms-eval could not be installed; the lmms-eval bridge tests will be skipped" >&2
fi
