#!/usr/bin/env bash
# Tests the client distribution on its own, the way a training job installs it: a fresh venv with
# only `pip install ./client` and pytest (no torch, no models, not the service), then its tests
# against a stand-in service (client/tests). PYTHON picks the interpreter (the client supports
# 3.10+); DCES_CLIENT_VENV the venv (default .venv-client, rebuilt on every run). Extra arguments
# go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${DCES_CLIENT_VENV:-.venv-client}

# client/build: setuptools would reuse it, and could ship a module since removed from the source.
rm -rf "$VENV" client/build
"$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
pip install ./client pytest
if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "test_client: torch is importable in $VENV: the client must not need it" >&2
  exit 1
fi
echo "test_client: $VENV has dces-client and pytest, and no torch"
exec "$VENV/bin/python" -m pytest client/tests "$@"
