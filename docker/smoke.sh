#!/usr/bin/env bash
# Builds the real Dockerfile with podman and proves the image as a sidecar, on a machine with no
# Docker engine and no registry (the way ../shared/CONTAINERS.md describes):
#   build (CPU-only torch, no CUDA package) → start on a free loopback port with a named volume
#   → /readyz within a bounded wait (cold start measured) → non-root, HF_HUB_OFFLINE=1, models
#   loaded, no Hugging Face cache written → the example trainer in a second container sharing
#   the service's network namespace (the k8s pod topology) → one round through the published
#   port, with SIGTERM sent while it runs: answered, then a graceful exit → a new container on
#   the same volume still has the round (and replays it by idempotency key) → threads follow a
#   --cpus limit → healthy by its HEALTHCHECK with --network=none --read-only, and /ui with
#   every asset it loads answers there.
# Caches between runs: the Debian base, the python:3.11-slim stand-in and the image's layers.
# The last line is `SMOKE PASS` or `SMOKE FAIL: <reason>`.
#
# Environment: DCES_SMOKE_DIR (work dir, default /var/tmp/dces-smoke), DCES_SMOKE_IMAGE
# (default localhost/dces:smoke), DCES_SMOKE_READY_TIMEOUT (s, default 180),
# DCES_SMOKE_REBUILD_BASE=1 (rebuild the base and stand-in images).
set -Eeuo pipefail
cd "$(dirname "$0")/.."

WORK=${DCES_SMOKE_DIR:-/var/tmp/dces-smoke}
IMAGE=${DCES_SMOKE_IMAGE:-localhost/dces:smoke}
READY_TIMEOUT=${DCES_SMOKE_READY_TIMEOUT:-180}
BASE=localhost/dces-bookworm-base
STANDIN=docker.io/library/python:3.11-slim
TAG=dces-smoke-$$
VOLUME=$TAG-data
CONTAINER_PORT=8080
export CONTAINERS_CONF=$WORK/containers.conf

failed=""  # the command that failed, for the last line
reported=0
trap 'failed="line $LINENO: \`$BASH_COMMAND\` exited $?"' ERR
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

log() { echo "smoke: $*" >&2; }
fail() {
    echo "SMOKE FAIL: $*"
    reported=1
    exit 1
}

cleanup() {
    local rc=$?
    trap - ERR
    for c in $(podman ps -a --format '{{.Names}}' --filter "name=^$TAG" 2>/dev/null); do
        if [ "$rc" -ne 0 ]; then
            log "last logs of $c:"
            podman logs --tail 15 "$c" >&2 2>&1 || true
        fi
        podman rm -f -v -t 0 "$c" >/dev/null 2>&1 || true
    done
    podman volume rm -f "$VOLUME" >/dev/null 2>&1 || true
    rm -rf "${TMP:-}"
    if [ "$rc" -ne 0 ] && [ "$reported" = 0 ]; then
        echo "SMOKE FAIL: ${failed:-exit status $rc}"
    fi
}

# ---- tools and settings ------------------------------------------------------------------------

install_tools() {
    local missing=()
    for tool in podman runc debootstrap curl; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    [ ${#missing[@]} -eq 0 ] && return
    log "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get install -y -q "${missing[@]}" >/dev/null \
        || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${missing[@]}" >/dev/null; }
}

# crun fails here ("cgroups in hybrid mode not supported") and default ulimits above the hard
# limits are refused: runc, cgroupfs, and ulimits at what this machine allows.
write_containers_conf() {
    local nofile nproc
    nofile=$(ulimit -Hn)
    nproc=$(ulimit -Hu)
    [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
    [ "$nofile" = unlimited ] && nofile=1048576
    cat > "$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
}

# ---- base images (cached) ------------------------------------------------------------------------

debian_mirror() {
    local uri
    uri=$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ \
        2>/dev/null | head -1 | tr -d ' ')
    echo "${uri:-http://deb.debian.org/debian}"
}

# A Debian base without pulling. The host's CA certificates go into the rootfs (HTTPS from a
# container passes the same inspecting proxy as the host's); they stay in local images only.
build_base() {
    local rootfs=$WORK/rootfs
    rm -rf "$rootfs"
    log "debootstrap bookworm from $(debian_mirror)"
    debootstrap --variant=minbase bookworm "$rootfs" "$(debian_mirror)" > "$WORK/debootstrap.log" 2>&1 \
        || fail "debootstrap failed, see $WORK/debootstrap.log"
    install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    fi
    tar -C "$rootfs" -c . | podman import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
    rm -rf "$rootfs"
}

# Debian's Python 3.11 under the official image's name, so that `FROM python:3.11-slim` resolves
# locally. Not the official image (that has /usr/local/bin/python 3.11.x); the Dockerfile must
# not depend on the difference.
build_standin() {
    log "building the $STANDIN stand-in"
    podman build --pull=never --format docker -t "$STANDIN" -f - "$TMP" > "$WORK/standin.log" 2>&1 <<EOF \
        || fail "stand-in build failed, see $WORK/standin.log"
FROM $BASE
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends python3 python3-pip python3-venv \
      python-is-python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* /usr/lib/python3.*/EXTERNALLY-MANAGED
ENV LANG=C.UTF-8
CMD ["python3"]
EOF
}

# ---- the image -----------------------------------------------------------------------------------

# The host pip's effective value of an option (PIP_* environment first, then its config files).
pip_setting() {
    local var
    var="PIP_$(echo "$1" | tr 'a-z-' 'A-Z_')"
    if [ -n "${!var:-}" ]; then
        echo "${!var}"
        return
    fi
    python3 -m pip config list 2>/dev/null | sed -n "s/^[^.]*\.$1='\(.*\)'\$/\1/p" | head -1
}

# The build sees the package sources the host's pip sees: its settings go to /etc/pip.conf in the
# build, and the local directories they name are mounted read-only at the same paths (a file://
# index with its parent, where its pages link to: ../../files/). On this machine that is how pip
# finds the CPU wheel of torch.
pip_build_args() {
    local conf=$TMP/pip.conf key value item path index
    echo "[global]" > "$conf"
    BUILD_ARGS=(-v "$conf:/etc/pip.conf:ro")
    for key in index-url extra-index-url find-links cert trusted-host default-timeout; do
        value=$(pip_setting "$key")
        [ -n "$value" ] || continue
        echo "$key = $value" >> "$conf"
        [ "$key" = cert ] && continue  # the base image has the same CA bundle at the same path
        for item in $value; do
            path=${item#file://}
            [ "${path:0:1}" = / ] || continue
            [ "$key" = find-links ] || path=$(dirname "$path")
            [ -e "$path" ] && BUILD_ARGS+=(-v "$path:$path:ro")
        done
    done
    # torch from the index the host uses: here PyPI plus the local CPU wheel, which pip prefers
    # (2.13.0+cpu sorts above 2.13.0); the Dockerfile fails the build on a CUDA torch anyway.
    index=$(pip_setting index-url)
    BUILD_ARGS+=(--build-arg "TORCH_INDEX_URL=${index:-https://pypi.org/simple}")
}

build_image() {
    pip_build_args
    log "building $IMAGE (log: $WORK/build.log)"
    local start=$SECONDS
    podman build --pull=never --format docker -t "$IMAGE" "${BUILD_ARGS[@]}" -f Dockerfile . \
        > "$WORK/build.log" 2>&1 || { tail -20 "$WORK/build.log" >&2; fail "image build failed"; }
    BUILD_S=$((SECONDS - start))
    IMAGE_BYTES=$(podman image inspect "$IMAGE" --format '{{.Size}}')
    # Keep the build cache of the intermediate stages (the dense LM takes a minute to redo) by
    # tagging their results, then drop what earlier builds left (GBs each).
    for stage in models wheel; do
        podman build --pull=never --format docker -t "$IMAGE-$stage" --target "$stage" \
            "${BUILD_ARGS[@]}" -f Dockerfile . > /dev/null 2>&1
    done
    podman image prune -f > /dev/null
    log "built in ${BUILD_S} s, $((IMAGE_BYTES / 1000000)) MB"
}

check_no_cuda() {
    local cuda
    cuda=$(once --network=none "$IMAGE" sh -c \
        "pip list --format=freeze 2>/dev/null | grep -iE '^(nvidia-|triton|cuda-)' || true; \
         python -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda)'")
    log "$cuda"
    [ "$(echo "$cuda" | grep -vc '^torch ')" -eq 0 ] || fail "CUDA packages in the image: $cuda"
    [[ $cuda == *"cuda None"* ]] || fail "torch is not the CPU build: $cuda"
}

# ---- running it ----------------------------------------------------------------------------------

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A one-off command in the image (no healthcheck: its timers need systemd, which is absent).
once() {
    podman run --rm --no-healthcheck "$@"
}

# Start a service container; extra podman options in "$@". The healthcheck stays defined but
# untimed: `podman healthcheck run` runs it. (podman still complains that systemd is missing.)
start() {
    local name=$1
    shift
    podman run -d --name "$name" --init --health-interval=disable "$@" "$IMAGE" \
        > /dev/null 2> "$TMP/start.err" || { cat "$TMP/start.err" >&2; fail "cannot start $name"; }
}

# Poll until $2 (a command) succeeds, at most READY_TIMEOUT s. Fails early when the container
# exits or logs a critical error (e.g. the model worker died: it would never become ready).
wait_until() {
    local name=$1 probe=$2 deadline=$((SECONDS + READY_TIMEOUT)) i=0
    until eval "$probe" >/dev/null 2>&1; do
        [ "$(podman inspect -f '{{.State.Running}}' "$name")" = true ] \
            || fail "$name exited while starting (exit $(podman inspect -f '{{.State.ExitCode}}' "$name"))"
        if [ $((i++ % 10)) = 0 ]; then
            podman logs "$name" > "$TMP/$name.log" 2>&1
            if grep -q '"level": "critical"' "$TMP/$name.log"; then
                fail "$name: $(grep -m1 '"level": "critical"' "$TMP/$name.log" | cut -c1-300)"
            fi
        fi
        [ $SECONDS -lt $deadline ] || fail "$name not ready after $READY_TIMEOUT s"
        sleep 0.2
    done
}

api() {  # api METHOD PATH [JSON [curl options...]]: the body; fails on an HTTP error
    local method=$1 path=$2 body=${3:-}
    shift $(($# < 3 ? $# : 3))
    curl -fsS -X "$method" -H 'Content-Type: application/json' ${body:+--data-binary "$body"} \
        "$@" "http://127.0.0.1:$PORT$path"
}

json() {  # json EXPR < document: print a Python expression of the parsed document `d`
    python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"
}

# ---- main ----------------------------------------------------------------------------------------

mkdir -p "$WORK"
TMP=$(mktemp -d)
install_tools
write_containers_conf
if [ "${DCES_SMOKE_REBUILD_BASE:-0}" = 1 ]; then
    podman rmi -f "$STANDIN" "$BASE" >/dev/null 2>&1 || true
fi
podman image exists "$BASE" || build_base
podman image exists "$STANDIN" || build_standin
build_image
check_no_cuda

PORT=$(free_port)
podman volume create "$VOLUME" >/dev/null
log "cold start: container start → /readyz 200"
t0=$(date +%s.%N)
start "$TAG-a" -p "127.0.0.1:$PORT:$CONTAINER_PORT" -v "$VOLUME:/data"
wait_until "$TAG-a" "curl -fsS http://127.0.0.1:$PORT/readyz"
COLD_S=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')")
log "ready in ${COLD_S} s"

# Non-root, offline, models loaded, and nothing fetched into a Hugging Face cache.
uid=$(podman exec "$TAG-a" id -u)
[ "$uid" != 0 ] || fail "the service runs as root"
[ "$(podman exec "$TAG-a" printenv HF_HUB_OFFLINE)" = 1 ] || fail "HF_HUB_OFFLINE is not 1"
info=$(api GET /info)
loaded=$(echo "$info" | json "bool(d['models']['loaded']['embedders'] and d['models']['loaded']['lms'])")
[ "$loaded" = True ] || fail "/info does not list the loaded models: $info"
hf=$(podman exec "$TAG-a" sh -c 'find "${HF_HOME:-$HOME/.cache/huggingface}" -type f 2>/dev/null | head -3')
[ -z "$hf" ] || fail "files in the Hugging Face cache (a download?): $hf"
log "uid $uid, HF_HUB_OFFLINE=1, models $(echo "$info" | json "d['models']['loaded']")"

# The example trainer in a second container sharing the service's network namespace: the
# sidecar topology of a Kubernetes pod (it reaches DCES on 127.0.0.1).
once --network="container:$TAG-a" "$IMAGE" \
    python /opt/dces-examples/trainer.py --url "http://127.0.0.1:$CONTAINER_PORT" \
    --rounds 2 --samples 60 --budget 20 --reference 40 > "$TMP/trainer.log" 2>&1 \
    || { cat "$TMP/trainer.log" >&2; fail "the example trainer failed"; }
log "example trainer: $(tail -1 "$TMP/trainer.log")"
MEM=$(podman stats --no-stream --format '{{.MemUsage}}' "$TAG-a" 2>/dev/null | cut -d/ -f1 | tr -d ' ')
log "memory after 3 rounds: $MEM"

# One small round of real text through the published port, and SIGTERM while it runs: the
# server drains (the round finishes, commits and is answered) and exits by itself, well before
# podman's timeout would SIGKILL it (137). uvicorn re-raises SIGTERM after a graceful shutdown,
# so the exit status is 143 (or 0).
samples=$(head -40 examples/fortunes-sample.jsonl | python3 -c \
    'import json, sys; print(json.dumps([json.loads(line) for line in sys.stdin]))')
run=$(api POST /v1/runs '{"name": "smoke"}' | json "d['id']")
key=smoke-$$
api POST "/v1/runs/$run/rounds" "{\"budget\": 10, \"samples\": $samples}" \
    -H "Idempotency-Key: $key" > "$TMP/round.json" 2> "$TMP/round.err" &
post=$!
wait_until "$TAG-a" "api GET '/v1/jobs?status=running&run_id=$run' | grep -c '\"id\"'"
t0=$(date +%s.%N)
podman stop -t 60 "$TAG-a" >/dev/null 2>&1
STOP_S=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')")
wait "$post" || fail "the round running at SIGTERM was not answered: $(cat "$TMP/round.err")"
round=$(cat "$TMP/round.json")
n=$(echo "$round" | json "d['round']")
selected=$(echo "$round" | json "sorted(s['id'] for s in d['samples'] if s['selected'])")
[ "$(echo "$round" | json "d['selected']")" = 10 ] \
    || fail "the round did not select 10: $(echo "$round" | head -c 300)"
code=$(podman inspect -f '{{.State.ExitCode}}' "$TAG-a")
case "$code" in 0 | 143) ;; *) fail "exit status $code after SIGTERM (137 = killed, not drained)" ;; esac
podman logs "$TAG-a" > "$TMP/a.log" 2>&1
grep -q '"msg": "Application shutdown complete."' "$TMP/a.log" \
    || fail "no 'Application shutdown complete.' in the log after SIGTERM"
order=$(grep -o -e '"Shutting down"' -e "\"round committed\".*$run" "$TMP/a.log" | cut -c1-17 | tr '\n' ' ')
log "round $n of run $run (10 of 40 selected) answered; SIGTERM → exit $code in ${STOP_S} s"
if [[ $order == *"Shutting down"*"round committed"* ]]; then
    log "SIGTERM arrived mid-round: the round finished, committed and was answered (drained)"
else
    log "note: the round had committed before SIGTERM arrived (nothing to drain)"
fi
podman rm "$TAG-a" >/dev/null 2>&1

# A new container on the same volume still has the run and its round, and a retried POST with
# the same idempotency key returns that round instead of curating a second one.
start "$TAG-b" -p "127.0.0.1:$PORT:$CONTAINER_PORT" -v "$VOLUME:/data"
wait_until "$TAG-b" "curl -fsS http://127.0.0.1:$PORT/readyz"
again=$(api GET "/v1/runs/$run/rounds/$n" | json "sorted(s['id'] for s in d['samples'] if s['selected'])")
[ "$again" = "$selected" ] || fail "round $n changed across the restart"
replay=$(api POST "/v1/runs/$run/rounds" "{\"budget\": 10, \"samples\": $samples}" \
    -H "Idempotency-Key: $key" | json "d['round']")
[ "$replay" = "$n" ] || fail "a retried POST after the restart made round $replay, not $n"
[ "$(api GET "/v1/runs/$run" | json "d['rounds']")" = 1 ] \
    || fail "the run does not have exactly its one round after the restart"
log "restart on the same volume: run $run still has its rounds; idempotent replay ok"
podman stop -t 60 "$TAG-b" >/dev/null 2>&1

# Thread pools follow the CPU limit, not the host's cores.
threads=$(once --network=none --cpus=1 "$IMAGE" \
    python -c 'import faiss, torch; print(torch.get_num_threads(), faiss.omp_get_max_threads())' 2>/dev/null)
[ "$threads" = "1 1" ] || fail "with --cpus=1: torch/faiss threads '$threads', expected '1 1'"
log "--cpus=1 on $(nproc) cores: torch and faiss use 1 thread"

# No network at all and a read-only root filesystem (as in docker/k8s-sidecar.yaml): the models
# load from the image, nothing is written outside /data and /tmp, the HEALTHCHECK (/readyz) passes.
start "$TAG-c" --network=none --read-only
wait_until "$TAG-c" "podman healthcheck run $TAG-c"
log "--network=none --read-only: ready, HEALTHCHECK healthy"
# The dashboard and every asset it loads come from the image (no CDN to reach from here).
for path in /ui /ui/static/ui.css /ui/static/main.js /ui/static/api.js /ui/static/charts.js \
    /ui/static/clusters.js /ui/static/dom.js /ui/static/samples.js \
    /ui/static/vendor/chart.umd.min.js /ui/static/vendor/chart.js-LICENSE.md; do
    podman exec "$TAG-c" python /usr/local/bin/dces-healthcheck "$path" \
        || fail "--network=none: GET $path is not 200"
done
log "--network=none: /ui and its assets answer 200"
# /docs and /redoc: every script and stylesheet their pages load comes from the image too.
podman exec "$TAG-c" python -c '
import os, re, urllib.request
base = "http://127.0.0.1:" + os.environ.get("DCES_PORT", "8080")
for page in ("/docs", "/redoc"):
    html = urllib.request.urlopen(base + page, timeout=10).read().decode()
    assets = re.findall(r"<(?:script[^>]*\ssrc|link[^>]*\shref)=\"([^\"]+)\"", html)
    assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), assets
    for url in assets:
        with urllib.request.urlopen(base + url, timeout=10) as answer:
            assert answer.status == 200 and len(answer.read()) > 100, url
    print(page, len(assets), "assets")
' || fail "--network=none: /docs or /redoc does not load all its assets from the image"
log "--network=none: /docs and /redoc load every asset from the image"

echo "smoke: image $IMAGE $((IMAGE_BYTES / 1000000)) MB, build ${BUILD_S} s, cold start ${COLD_S} s," \
    "memory $MEM, SIGTERM to exit ${STOP_S} s, smoke ${SECONDS} s"
echo "SMOKE PASS"
