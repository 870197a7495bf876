#!/usr/bin/env bash
# Sets everything up and runs DCES's main job on the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh serve
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ -f app/server.py ]; then
  exec .venv/bin/dces serve "$@"
fi
# Until the HTTP service lands: one curation round over the shipped real-text sample.
mkdir -p out
exec .venv/bin/dces curate examples/fortunes-sample.jsonl --budget 100 \
  --state out/state.json --output out/selection.jsonl --report out/report.json "$@"
