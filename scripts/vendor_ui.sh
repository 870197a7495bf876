#!/usr/bin/env bash
# Reproduces the dashboard's vendored charting library (app/ui/static/vendor/) from the npm
# registry at a pinned version and checksum, so that /ui needs no CDN and the committed file can
# be checked against its source: run it, then `git diff --exit-code app/ui/static/vendor`.
# The only change to npm's file is its last line, the sourceMappingURL comment (the map is not
# shipped; a browser's devtools would ask for it and get a 404).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=4.6.1
INTEGRITY=sha512-hJyniucsFmq//EvXYvJ6c6mahPoI3kaxdjVH8awTaJ/fDNWeSqqqArixMJWkWNN6fcYvPU3HneSANFNYtRi61g==
DEST=app/ui/static/vendor

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
got=$(cd "$tmp" && npm pack --json "chart.js@$VERSION" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["integrity"])')
[ "$got" = "$INTEGRITY" ] || { echo "chart.js@$VERSION: integrity $got, expected $INTEGRITY" >&2; exit 1; }
tar -xzf "$tmp/chart.js-$VERSION.tgz" -C "$tmp"
mkdir -p "$DEST"
sed '/^\/\/# sourceMappingURL=/d' "$tmp/package/dist/chart.umd.min.js" > "$DEST/chart.umd.min.js"
cp "$tmp/package/LICENSE.md" "$DEST/chart.js-LICENSE.md"
echo "vendored chart.js $VERSION into $DEST"
