#!/usr/bin/env bash
# On the GPU machine, after bench/gpu/unpack.sh: the pretrained preset, one process per seed
# (a seed that finishes is written even if another does not), all on the one GPU.
#
#   SEEDS="0 1 2" LIMIT_S=560 bash bench/gpu/preset.sh OUT_DIR [extra bench.collapse args]
#
# Settings (environment): SEEDS (default 0 1 2); STRATEGIES (random ppl_high semdedup dces);
# JOBS, chains at once in each seed's process (4); THREADS, CPU threads of each process (4);
# LIMIT_S, seconds for the whole script (560); SITE, where unpack.sh installed (/tmp/dces-site).
# Each seed writes OUT_DIR/collapse-pretrained-gpu-seedS.{json,md,png} and seedS.log, and
# OUT_DIR.tgz holds them all (one file to bring back); join the seeds' JSON with
# `python -m bench.collapse.merge`.
set -uo pipefail
out=$(realpath -m "${1:?OUT_DIR}"); shift
cd "$(dirname "$0")/../.."
start=$(date +%s)
site=${SITE:-/tmp/dces-site}
export PYTHONPATH=$site:$PWD:$PWD/client HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 DCES_CACHE_DIR=${DCES_CACHE_DIR:-/tmp/dces-cache} \
    OMP_NUM_THREADS=${THREADS:-4} PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
mkdir -p "$out"
# The dense SmolLM2 once, before the seeds' processes and services all ask for it.
timeout 120 python3 -c "from curation.lm import smollm2_dense_dir; print(smollm2_dense_dir())" || exit 1
left=$(( ${LIMIT_S:-560} - 20 - ($(date +%s) - start) ))
if (( left <= 40 )); then echo "preset: only ${left} s left of LIMIT_S, not starting" >&2; exit 1; fi
(while sleep 20; do echo "$(( $(date +%s) - start )) s $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"; done) > "$out/gpu.log" 2>&1 &
monitor=$!
pids=()
for seed in ${SEEDS:-0 1 2}; do
    # shellcheck disable=SC2086  # STRATEGIES is a list
    timeout -s TERM "$left" python3 -m bench.collapse --pretrained smollm2 --seeds 1 \
        --first-seed "$seed" --strategies ${STRATEGIES:-random ppl_high semdedup dces} \
        --jobs "${JOBS:-4}" --out "$out" --name "collapse-pretrained-gpu-seed$seed" "$@" \
        > "$out/seed$seed.log" 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; echo "seed process $p exited $?"; done
kill "$monitor"
tar czf "$out.tgz" -C "$out" .
echo "preset: $(( $(date +%s) - start )) s"
