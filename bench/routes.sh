#!/usr/bin/env bash
# Loom with 10 and with 10,000 HTTPRoutes in one interleaved run (the request hits the last
# route: every other route has its own hostname and path, the last one is the catch-all).
# Uses ../shared/bench/lib.sh (pinned CPUs, bounded wrk runs). usage: bench/routes.sh
# env: LOOM_BIN (a binary instead of this checkout's release build)
if [ -z "${_PERF_TIMED:-}" ]; then export _PERF_TIMED=1; exec timeout -k 15 1200 "$0" "$@"; fi
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE=${SHARED:-$ROOT/../shared}/bench; export HERE
source "$HERE/lib.sh"
source "$ROOT/bench/release-loom.sh"
LOOM=${LOOM_BIN:-}
[ -n "$LOOM" ] || LOOM=$(release_loom) || exit 1
mkdir -p "$RUN"; OUT=${OUT:-$PERF/results/routes-$(date +%Y%m%d-%H%M%S)}; mkdir -p "$OUT"; RES="$OUT/results.jsonl"
trap 'stop_all' EXIT
gen() {  # gen N PORT FILE
  python3 "$ROOT/bench/gen_routes.py" "$1" "$2" "127.0.0.1:$(port_of backend)" > "$3"
}
preflight_quiet
start_backend
wait_http "$(port_of backend)" || exit 1
P10=$((BASE_PORT + 10)); P10K=$((BASE_PORT + 11))
gen 10 $P10 "$RUN/loom-10.yaml"; gen 10000 $P10K "$RUN/loom-10000.yaml"
export RUST_LOG=warn
start_bg loom10 "$CPU_PROXY_1W" "$LOOM" serve -f "$RUN/loom-10.yaml" --threads 1 --admin 127.0.0.1:0
start_bg loom10k "$CPU_PROXY_1W" "$LOOM" serve -f "$RUN/loom-10000.yaml" --threads 1 --admin 127.0.0.1:0
wait_http $P10 && wait_http $P10K || { tail "$RUN"/loom10*.err; exit 1; }
for p in $P10 $P10K; do timeout 30 taskset -c "$CPU_LOAD" wrk -t1 -c"$WRK_CONNS" -d"${WARMUP_DURATION}s" "http://127.0.0.1:$p/" >/dev/null 2>&1; done
for rep in $(seq 1 "$REPS"); do
  measure "$RES" "{\"workers\":1,\"target\":\"loom-10\",\"rep\":$rep}" loom-10 "http://127.0.0.1:$P10/" loom10 "$WRK_DURATION"
  measure "$RES" "{\"workers\":1,\"target\":\"loom-10000\",\"rep\":$rep}" loom-10000 "http://127.0.0.1:$P10K/" loom10k "$WRK_DURATION"
done
stop_all
python3 "$HERE/report.py" "$RES" | tee "$OUT/summary.md"
