#!/usr/bin/env bash
# Where a proxy's CPU goes per request, as a flame graph and a table per component: the shared
# harness's layout (../shared/bench: proxy alone on core 1 with one worker, wrk with 50
# keep-alive connections and the nginx backend on core 0), `perf record` with DWARF call
# graphs on the proxy's process under load, then bench/fold.py.
#
# usage: bench/profile.sh [target ...]   (default: pingora loom; any target of the harness)
# env:   PROFILE_SECONDS (8), PROFILE_HZ (499), OUT (a new /tmp/loom-profile.* directory),
#        SHARED (../shared), LOOM_BIN (a binary instead of this checkout's release build)
# Per target it writes OUT/TARGET.svg (open in a browser), OUT/TARGET.folded (for inferno or
# speedscope) and prints the table; `perf report -i OUT/TARGET.data` for the rest.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
export HERE=$SHARED/bench
[ -f "$HERE/lib.sh" ] || { echo "no harness at $HERE" >&2; exit 2; }
command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)" >&2; exit 2; }
SECS=${PROFILE_SECONDS:-8}
SAMPLE_HZ=${PROFILE_HZ:-499}
OUT=${OUT:-$(mktemp -d /tmp/loom-profile.XXXXXX)}
mkdir -p "$OUT"
"$HERE/setup.sh" >/dev/null
source "$ROOT/bench/release-loom.sh"
[[ -n ${LOOM_BIN:-} ]] || LOOM_BIN=$(release_loom)
export LOOM_BIN
export LOOM_CONF_TEMPLATE=$ROOT/bench/loom.yaml.tpl
export LOOM_ARGS='serve -f @CONF@ --threads @WORKERS@ --admin 127.0.0.1:0'
export RUST_LOG=${RUST_LOG:-warn}
# shellcheck source=/dev/null
source "$HERE/lib.sh"
mkdir -p "$RUN"
trap 'stop_all' EXIT
trap 'exit 130' INT TERM
[ $# -gt 0 ] || set -- pingora loom
start_backend
wait_http "$(port_of backend)" || exit 1
for t in "$@"; do
  "start_$t" 1 "$CPU_PROXY_1W"
  port=$(port_of "$t")
  wait_http "$port" || { echo "$t did not answer" >&2; exit 1; }
  pids=$(pid_tree "${SRV_PID[$t]}" | paste -sd,)
  # Warm up, then sample the middle of a run: wrk runs SECS + 4 s, perf SECS from its 2nd.
  timeout 30 taskset -c "$CPU_LOAD" wrk -t1 -c50 -d2s "http://127.0.0.1:$port/" >/dev/null
  timeout $((SECS + 30)) taskset -c "$CPU_LOAD" wrk -t1 -c50 -d$((SECS + 4))s "http://127.0.0.1:$port/" >"$OUT/$t.wrk" &
  wrk_pid=$!
  sleep 2
  timeout $((SECS + 60)) perf record -q -F "$SAMPLE_HZ" --call-graph dwarf,16384 -o "$OUT/$t.data" -p "$pids" -- sleep "$SECS" >/dev/null 2>&1
  wait "$wrk_pid"
  rps=$(awk '/Requests\/sec/ {print $2}' "$OUT/$t.wrk")
  echo "== $t: $rps req/s under wrk (profiled: perf costs some)"
  perf script -i "$OUT/$t.data" 2>/dev/null | python3 "$ROOT/bench/fold.py" "$OUT/$t" "$(python3 -c "print($rps * $SECS)")" "$SAMPLE_HZ"
  stop_one "$t"
done
echo "flame graphs and folded stacks in $OUT"
