#!/usr/bin/env bash
# Sets everything up and runs the test suite. `--slow` runs the slow scenarios only.
# The dashboard tests drive Debian's Chromium, installed by scripts/browser.sh when missing.
# The PostgreSQL cases run on a throwaway server (scripts/postgres.sh), stopped on exit; set
# DCES_TEST_DATABASE_URL to use a server of your own instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
select=()
if [ "${1:-}" = "--slow" ]; then
  shift
  select=(-m slow)
else
  .venv/bin/python -m ruff check .
  .venv/bin/python -m mypy
  bash scripts/browser.sh >/dev/null \
    || echo "test.sh: no Chromium (scripts/browser.sh failed): the dashboard tests will skip" >&2
fi
if [ -z "${DCES_TEST_DATABASE_URL:-}" ]; then
  pgdir=$(mktemp -d)
  trap 'bash scripts/postgres.sh stop "$pgdir"' EXIT
  DCES_TEST_DATABASE_URL=$(bash scripts/postgres.sh start "$pgdir")
  export DCES_TEST_DATABASE_URL
fi
.venv/bin/python -m pytest "${select[@]}" "$@"
