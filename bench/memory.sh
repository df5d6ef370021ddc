#!/usr/bin/env bash
# RSS of `loom serve` idle after loading 1, 1,000 and 5,000 HTTPRoutes (bench/gen_routes.py, as
# bench/routes.sh: one hostname and path per route), then after one reload that changes one route.
# usage: LOOM_BIN=path/to/loom bench/memory.sh [COUNTS]   (default COUNTS "1 1000 5000")
if [ -z "${_MEM_TIMED:-}" ]; then export _MEM_TIMED=1; exec timeout -k 15 600 "$0" "$@"; fi
set -euo pipefail
LOOM=${LOOM_BIN:?LOOM_BIN=path/to/loom}
COUNTS=${1:-1 1000 5000}
DIR=$(mktemp -d); trap 'kill $PID 2>/dev/null; rm -rf "$DIR"' EXIT; PID=
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
gen() {  # gen N PORT CATCH_ALL > file
  python3 "$(dirname "$0")/gen_routes.py" "$1" "$2" 127.0.0.1:9 "$3"
}
rss() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
anon() { awk '/^RssAnon/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
generation() { curl -sf "http://$ADMIN/metrics" | awk '/^loom_config_generation / {print $2}'; }
# The binary's pages are dropped from the page cache before each start: how much of the binary
# a process maps depends on how its pages came into the cache (a binary just copied or built is
# mapped in larger pieces than one read from disk: 15.6 to 18.9 MiB of file-backed RSS for the
# same binary), so each run maps it as a cold start does.
evict() { python3 -c 'import os, sys; os.posix_fadvise(os.open(sys.argv[1], os.O_RDONLY), 0, 0, os.POSIX_FADV_DONTNEED)' "$1"; }
for n in $COUNTS; do
  PORT=$(free_port); ADMIN=127.0.0.1:$(free_port)
  gen "$n" "$PORT" / > "$DIR/routes.yaml"
  evict "$LOOM"
  RUST_LOG=warn "$LOOM" serve -f "$DIR/routes.yaml" --threads 1 --admin "$ADMIN" 2> "$DIR/err" &
  PID=$!
  for _ in $(seq 1 600); do curl -sf "http://$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf "http://$ADMIN/readyz" >/dev/null || { cat "$DIR/err"; exit 1; }
  sleep 2
  loaded="$(rss $PID) MiB (anonymous $(anon $PID))"
  before=$(generation)
  gen "$n" "$PORT" /v2 > "$DIR/routes.yaml.tmp"; mv "$DIR/routes.yaml.tmp" "$DIR/routes.yaml"
  for _ in $(seq 1 600); do [ "$(generation)" != "$before" ] && break; sleep 0.1; done
  sleep 2
  echo "$n routes: RSS $loaded after loading, $(rss $PID) MiB (anonymous $(anon $PID)) after a reload"
  kill $PID; wait $PID 2>/dev/null || true; PID=
done
