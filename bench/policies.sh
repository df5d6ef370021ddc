#!/usr/bin/env bash
# What Loom's traffic policies and WASMPlugins cost on the hot path: Loom with no policy, with a
# RateLimitPolicy whose limit is never reached (as written: RateLimit headers on 429s only; and
# ratelimit-always, with `headers: Always`), with a CircuitBreakerPolicy that never trips, and
# (VARIANTS="none plugin-noop plugin-auth") with the Go no-op plugin or a header plugin plus the
# JWT auth plugin (bench/loom-plugin-*.yaml.tpl),
# interleaved (none, ratelimit, ratelimit-always, breaker, none, ...) in one run of the shared
# harness (one worker pinned, 50 keep-alive connections). Prints the median req/s and req per proxy
# CPU-second of each, and each policy's ratio to none.
#
# usage: bench/policies.sh
#   env: POLICY_REPS (5), VARIANTS ("none ratelimit ratelimit-always breaker"),
#   WRK_DURATION (10), SHARED (../shared)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
HARNESS=$SHARED/bench
[ -x "$HARNESS/bench.sh" ] || { echo "no harness at $HARNESS" >&2; exit 2; }
"$HARNESS/setup.sh"
source "$ROOT/bench/release-loom.sh"
LOOM_BIN=$(release_loom)
export LOOM_BIN
export LOOM_ARGS='serve -f @CONF@ --threads @WORKERS@ --admin 127.0.0.1:0'
export WORKERS_LIST=1 REPS=1 RUST_LOG=${RUST_LOG:-warn}
OUT=$(mktemp -d /tmp/loom-bench-policies.XXXXXX)
case " ${VARIANTS:-} " in
  *" plugin-"*) bash "$ROOT/examples/wasm/build.sh" testdata/noop headers auth >/dev/null ;;
esac
for rep in $(seq 1 "${POLICY_REPS:-5}"); do
  for variant in ${VARIANTS:-none ratelimit ratelimit-always breaker}; do
    case $variant in
      none) tpl=$ROOT/bench/loom.yaml.tpl ;;
      *) tpl=$ROOT/bench/loom-$variant.yaml.tpl ;;
    esac
    if grep -q @PLUGINS@ "$tpl"; then
      sed "s|@PLUGINS@|$ROOT/examples/wasm|g" "$tpl" >"$OUT/$variant.yaml.tpl"
      tpl=$OUT/$variant.yaml.tpl
    fi
    LOOM_CONF_TEMPLATE=$tpl OUT=$OUT/$variant-$rep "$HARNESS/bench.sh" loom >/dev/null 2>&1 ||
      { echo "bench.sh failed for $variant (rep $rep): see $OUT/$variant-$rep" >&2; exit 1; }
  done
done
python3 - "$OUT" <<'PY'
import glob, json, os, statistics, sys
out = sys.argv[1]
runs = {}
for f in glob.glob(os.path.join(out, "*", "results.jsonl")):
    variant = os.path.basename(os.path.dirname(f)).rsplit("-", 1)[0]
    for line in open(f):
        d = json.loads(line)
        if d.get("target") == "loom" and "rps" in d:
            runs.setdefault(variant, []).append(d)
med = lambda xs: statistics.median(xs)
base = runs["none"]
b_rps, b_cpu = med([r["rps"] for r in base]), med([r["req_per_proxy_cpu_s"] for r in base])
print(f"| Loom with | runs | req/s (median) | ÷ none | req per proxy CPU-s | ÷ none | CPU per request vs none |")
print(f"| --- | --- | --- | --- | --- | --- | --- |")
for v in ["none", "ratelimit", "ratelimit-always", "breaker", "plugin-noop", "plugin-auth"]:
    rs = runs.get(v, [])
    if not rs:
        continue
    rps, cpu = med([r["rps"] for r in rs]), med([r["req_per_proxy_cpu_s"] for r in rs])
    # The proxy CPU a request costs beyond none's.
    extra = (1 / cpu - 1 / b_cpu) * 1e6
    print(f"| {v} | {len(rs)} | {rps:,.0f} | {rps / b_rps:.3f} | {cpu:,.0f} | {cpu / b_cpu:.3f} | {extra:+.1f} µs |")
PY
echo "raw results in $OUT"
