#!/usr/bin/env bash
# Sets everything up and runs the DCES service on the embedded defaults: 127.0.0.1:8080, SQLite
# under ./data, the bundled embedding model and LM. Extra arguments go to `dces serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh serve
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/dces serve "$@"
