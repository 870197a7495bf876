#!/usr/bin/env bash
# The browser the dashboard tests (tests/service/test_ui.py) drive: Debian's `chromium`,
# installed with apt-get when no Chromium is on PATH (as root, else through sudo). Playwright
# drives this binary and never downloads a browser of its own. Prints the binary's path.
# Set DCES_CHROMIUM to use another Chromium; nothing is installed then.
set -euo pipefail
if [ -n "${DCES_CHROMIUM:-}" ]; then
  echo "$DCES_CHROMIUM"
  exit 0
fi
found() { command -v chromium || command -v chromium-browser; }
if ! found >/dev/null; then
  echo "browser.sh: installing chromium (apt-get)" >&2
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get -qq update >/dev/null
  "${sudo[@]}" apt-get -qq install -y --no-install-recommends chromium >/dev/null
fi
found
