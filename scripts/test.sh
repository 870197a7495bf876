#!/usr/bin/env bash
# Sets everything up and runs the test suite. `--slow` runs the slow scenarios only.
# The dashboard tests drive Debian's Chromium, installed by scripts/browser.sh when missing.
# The PostgreSQL cases run on a throwaway server (scripts/postgres.sh), stopped on exit; set
# DCES_TEST_DATABASE_URL to use a server of your own instead. The Ray cases start a throwaway
# local cluster of their own (tests/test_ray_executor.py, with scripts/ray.sh) for as long as
# they run; set DCES_TEST_RAY_ADDRESS to use a cluster of your own instead.
# Test files run in parallel (pytest-xdist), one file per worker at a time so that a module's
# server and models load once, the longest first (tests/conftest.py's LONG_FILES):
# DCES_TEST_WORKERS workers, default one more than the CPU count (part of many tests is waiting
# on a server process, a browser or the database), capped at 4 (each worker holds the real
# models, ~1.5 GB).
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
pgdir=''
cleanup() {
  if [ -n "$pgdir" ]; then bash scripts/postgres.sh stop "$pgdir"; fi
}
trap cleanup EXIT
if [ -z "${DCES_TEST_DATABASE_URL:-}" ]; then
  pgdir=$(mktemp -d)
  DCES_TEST_DATABASE_URL=$(bash scripts/postgres.sh start "$pgdir")
  export DCES_TEST_DATABASE_URL
fi
cpus=$(nproc)
workers=${DCES_TEST_WORKERS:-$(( cpus + 1 < 4 ? cpus + 1 : 4 ))}
.venv/bin/python -m pytest -n "$workers" --dist loadfile --no-loadscope-reorder \
  "${select[@]}" "$@"
