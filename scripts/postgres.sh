#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests (scripts/test.sh runs it around pytest).
#   postgres.sh start DIR   installs Debian's `postgresql` if it is missing, initialises a cluster
#                           in DIR (trust auth, 127.0.0.1 only, a free port, no fsync: nothing in
#                           it outlives the tests), creates the database `dces` and prints its URL
#                           postgresql+psycopg://postgres@127.0.0.1:PORT/dces
#   postgres.sh stop DIR    stops that server and removes DIR.
# As root the server runs as the `postgres` user (initdb refuses root), else as the caller.
set -euo pipefail
mode=${1:-}
dir=${2:-}
if [ -z "$dir" ] || { [ "$mode" != start ] && [ "$mode" != stop ]; }; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi

pg_bin() {  # Debian keeps initdb and pg_ctl off PATH, under /usr/lib/postgresql/<version>/bin
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(readlink -f "$(command -v initdb)")"
  else
    find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1
  fi
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ "$mode" = stop ]; then
  if [ -f "$dir/data/PG_VERSION" ]; then
    as_owner "$(pg_bin)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    rm -rf "$dir"
  elif ! rmdir "$dir" 2>/dev/null; then  # never remove a directory that is not a cluster's
    echo "postgres.sh: $dir holds no cluster; left as it is" >&2
    exit 1
  fi
  exit 0
fi

if [ -z "$(pg_bin)" ]; then
  echo "postgres.sh: installing postgresql (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -qq update >/dev/null
  apt-get -qq install -y --no-install-recommends postgresql >/dev/null
fi
bin=$(pg_bin)
[ -x "$bin/initdb" ] || { echo "postgres.sh: no initdb found" >&2; exit 1; }

mkdir -p "$dir"
[ "$(id -u)" = 0 ] && chown postgres: "$dir"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >"$dir/initdb.log"
as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
  "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
  >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres dces
echo "postgresql+psycopg://postgres@127.0.0.1:$port/dces"
