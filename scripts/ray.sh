#!/usr/bin/env bash
# A throwaway local Ray cluster for the tests and the benchmark (tests/test_ray_executor.py runs
# it around its tests, bench/ray.py around its timings).
#   ray.sh start DIR [WORKERS]  starts a head node and WORKERS (default 1) worker nodes on this
#                               machine, 1 CPU each, node address 127.0.0.1, free ports, no
#                               dashboard, no usage stats, Ray's session files under DIR; prints
#                               the address (127.0.0.1:PORT) for ray.init, DCES_RAY_ADDRESS or
#                               `dces curate --ray`.
#                               The nodes import this checkout (PYTHONPATH), so actors run the
#                               code under test.
#   ray.sh stop DIR             ends the processes of that cluster by pid (those naming DIR/ray
#                               on their command line, and their children; `ray stop` would end
#                               every Ray cluster of this user on the machine): TERM, then KILL
#                               after 3 s; removes DIR.
set -euo pipefail
mode=${1:-}
dir=${2:-}
workers=${3:-1}
if [ -z "$dir" ] || { [ "$mode" != start ] && [ "$mode" != stop ]; }; then
  echo "usage: $0 start DIR [WORKERS] | stop DIR" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
ray_bin=ray
[ -x "$root/.venv/bin/ray" ] && ray_bin=$root/.venv/bin/ray

descendants() {
  local child
  for child in $(pgrep -P "$1" || true); do
    echo "$child"
    descendants "$child"
  done
}
cluster_pids() {  # the processes naming DIR/ray, Ray's session root (GCS, raylets, monitors;
  local pid       # not this script, nor its caller, which name DIR), and their children: the
                  # workers and agents, renamed `ray::...`, no longer show it
  for pid in $(pgrep -u "$(id -u)" -f -- "$dir/ray" || true); do
    if { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$dir/ray"; then
      echo "$pid"
      descendants "$pid"
    fi
  done
  return 0
}

if [ "$mode" = stop ]; then
  if [ ! -d "$dir/ray" ]; then  # never remove a directory that is not a cluster's
    rmdir "$dir" 2>/dev/null || { echo "ray.sh: $dir holds no cluster; left as it is" >&2; exit 1; }
    exit 0
  fi
  pids=$(cluster_pids)
  [ -n "$pids" ] && kill $pids 2>/dev/null || true
  for _ in $(seq 15); do  # Ray's own grace is 16 s; a throwaway cluster needs none (--force)
    [ -z "$(cluster_pids)" ] && break
    sleep 0.2
  done
  pids=$(cluster_pids)
  [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
  rm -rf "$dir"
  exit 0
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
node_ports() {  # ports Ray would otherwise take at fixed defaults, clashing between nodes
  echo --dashboard-agent-listen-port="$(free_port)" --metrics-export-port="$(free_port)" \
    --runtime-env-agent-port="$(free_port)"
}
mkdir -p "$dir/ray"
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH} RAY_USAGE_STATS_ENABLED=0
common=(--num-cpus=1 --node-ip-address=127.0.0.1 --object-store-memory=$((200 * 1024 * 1024))
        --temp-dir="$dir/ray" --disable-usage-stats)
port=$(free_port)
# shellcheck disable=SC2046
"$ray_bin" start --head --port="$port" --include-dashboard=false \
  "${common[@]}" $(node_ports) >"$dir/head.log" 2>&1 \
  || { cat "$dir/head.log" >&2; exit 1; }
for i in $(seq "$workers"); do
  # shellcheck disable=SC2046
  "$ray_bin" start --address="127.0.0.1:$port" "${common[@]}" $(node_ports) \
    >"$dir/worker-$i.log" 2>&1 || { cat "$dir/worker-$i.log" >&2; exit 1; }
done
echo "127.0.0.1:$port"
