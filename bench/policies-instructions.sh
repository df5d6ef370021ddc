#!/usr/bin/env bash
# What Loom's traffic policies cost per request, counted in instructions instead of timed:
# `loom serve` runs under callgrind (valgrind), which counts every user-space instruction of
# the process exactly, so the figure hardly depends on what else the machine is doing
# (wall-clock req/s on this 2-core VM moves ±8 % between runs of the same binary;
# bench/policies.sh); between processes it still moves by about 1 % (hash seeds, timer
# wake-ups).
# For each configuration — no policy, a RateLimitPolicy never reached (without and with
# `headers: Always`), a CircuitBreakerPolicy never tripped (the templates bench/policies.sh
# uses) — it warms up with 500 requests, zeroes
# the counters, sends REQUESTS requests on one keep-alive connection (curl), and dumps them.
# Kernel time is not counted: `strace` shows the same system calls per request in all three.
#
# Also counts the calls to malloc per request (the allocations #16 wants to see).
#
# usage: bench/policies-instructions.sh
#   env: REQUESTS (5000), VARIANTS ("none ratelimit ratelimit-always breaker"; a variant named
#   twice runs twice; "pingora" is the shared harness's minimal Pingora proxy instead of Loom),
#   LOOM_BIN (a binary instead of this checkout's release build), PINGORA_BIN (default: where
#   ../shared/bench/setup.sh builds it)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${REQUESTS:-5000}
for tool in valgrind callgrind_control curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install valgrind curl)" >&2; exit 2; }
done
source "$ROOT/bench/release-loom.sh"
LOOM=${LOOM_BIN:-} # another build, to compare
[[ -n $LOOM ]] || LOOM=$(release_loom)
PINGORA_BIN=${PINGORA_BIN:-/tmp/perf/pingora-min/target/release/pingora-min}
OUT=$(mktemp -d /tmp/loom-bench-instructions.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UPSTREAM=$(free_port)
# The backend: 200 with a 19-byte body, keep-alive.
python3 -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", "19"); self.end_headers()
        self.wfile.write(b"hello from backend\n")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()' "$UPSTREAM" &
BACKEND=$!
PID=
trap 'kill $BACKEND ${PID:-} 2>/dev/null || true' EXIT
for variant in ${VARIANTS:-none ratelimit ratelimit-always breaker}; do
  PORT=$(free_port) ADMIN=$(free_port)
  if [[ $variant == pingora ]]; then
    # The shared harness's minimal Pingora proxy (one thread, the same backend): what Loom's
    # routing, filters, policies and metrics add to Pingora's own request path (#16 target 1).
    [[ -x $PINGORA_BIN ]] || { echo "no minimal Pingora at $PINGORA_BIN (run ../shared/bench/setup.sh)" >&2; exit 2; }
    cmd=(env LISTEN="127.0.0.1:$PORT" UPSTREAM="127.0.0.1:$UPSTREAM" THREADS=1
      valgrind --tool=callgrind --callgrind-out-file="$OUT/$variant.%p" "$PINGORA_BIN")
  else
    case $variant in
      none) tpl=$ROOT/bench/loom.yaml.tpl ;;
      *) tpl=$ROOT/bench/loom-$variant.yaml.tpl ;;
    esac
    sed -e "s/@PORT@/$PORT/g" -e "s/@UPSTREAM_PORT@/$UPSTREAM/g" "$tpl" >"$OUT/$variant.yaml"
    cmd=(valgrind --tool=callgrind --callgrind-out-file="$OUT/$variant.%p"
      "$LOOM" serve -f "$OUT/$variant.yaml" --threads 1 --admin "127.0.0.1:$ADMIN")
  fi
  RUST_LOG=warn "${cmd[@]}" >"$OUT/$variant.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "http://127.0.0.1:$PORT/" && break
    sleep 0.2
  done
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/" || { echo "$variant: loom did not answer; see $OUT/$variant.log" >&2; exit 1; }
  curl -s "http://127.0.0.1:$PORT/w[1-500]" >/dev/null
  callgrind_control -z "$PID" >/dev/null
  codes=$(curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$PORT/m[1-$N]" | sort | uniq -c | tr -s ' ')
  callgrind_control -d "$PID" >/dev/null
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
  [[ $codes == " $N 200" ]] || { echo "$variant: not all 200: $codes" >&2; exit 1; }
  # The dump after the zeroing: the one whose totals are the measured requests.
  dump=$(ls -t "$OUT/$variant".*.1 2>/dev/null | head -1 || true)
  [[ -n $dump ]] || dump=$(ls -t "$OUT/$variant".* | grep -v '\.yaml$\|\.log$' | head -1)
  total=$(grep -E '^(summary|totals):' "$dump" | head -1 | awk '{print $2}')
  # Allocations: calls to libc's malloc (or mimalloc's mi_malloc_aligned, the global allocator's
  # entry), summed over their callers.
  mallocs=$(callgrind_annotate --threshold=100 --inclusive=yes --tree=caller "$dump" 2>/dev/null |
    python3 -c '
import re, sys
total = 0
for block in sys.stdin.read().split("\n\n"):
    if re.search(r"\*  \S*(malloc\.c:malloc|:mi_malloc_aligned) \[", block):
        total += sum(int(m.replace(",", "")) for m in re.findall(r"<\s.*\((\d[\d,]*)x\)", block))
print(total)')
  echo "$variant $total $mallocs" >>"$OUT/totals"
done
python3 - "$OUT/totals" "$N" <<'PY'
import statistics, sys
n = int(sys.argv[2])
# A variant listed more than once (VARIANTS="none ratelimit none ratelimit") is run that many
# times: counts differ by about 1 % between processes (hash seeds, timer wake-ups), so the
# table gives the mean and each run.
rows = {}
for v, t, m in (line.split() for line in open(sys.argv[1])):
    rows.setdefault(v, []).append((int(t) / n, int(m) / n))
mean = lambda xs: statistics.mean(xs)
base = mean([t for t, _ in rows["none"]]) if "none" in rows else None
print(f"| Loom with | instructions per request | ÷ none | mallocs per request | runs |")
print(f"| --- | --- | --- | --- | --- |")
for v, runs in rows.items():
    per = mean([t for t, _ in runs])
    ratio = f"{per / base:.3f}" if base else "-"
    each = " / ".join(f"{t:,.0f}" for t, _ in runs)
    print(f"| {v} | {per:,.0f} | {ratio} | {mean([m for _, m in runs]):.1f} | {each} |")
PY
echo "raw dumps in $OUT"
