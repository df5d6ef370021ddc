#!/usr/bin/env bash
# HTTP/3 against HTTP/2 over TLS through Loom (issue #14): one `loom serve --threads 1` with an
# HTTPS listener and an HTTP/3 listener on the same port (same certificate, same route, the
# shared harness's nginx backend), loaded alternately by h2load (HTTP/2 over TLS, TCP) and
# bench/h3load (HTTP/3 over QUIC) with the same connections x concurrent streams, ROUNDS
# rounds each, interleaved (h2 h3 h2 h3 ...). Loom is pinned to core 1, the clients and the
# backend to core 0 (the harness's layout). Per run: req/s, p50/p99 latency, errors, CPU of
# Loom, the client, the backend and the rest of the machine; then the medians and
# HTTP/3 ÷ HTTP/2. Every run is bounded (-D, `timeout`), the whole script by MAX_SECONDS.
#
# usage: bench/http3.sh
# env:   ROUNDS (3), DURATION (10 s), CONNS (10), STREAMS (10), WARMUP (2 s), MAX_SECONDS (3600),
#        SHARED (../shared), H3LOAD_TARGET_DIR (/var/cache/loom/h3load)
if [ -z "${_HTTP3_TIMED:-}" ]; then
  export _HTTP3_TIMED=1; exec timeout -k 15 "${MAX_SECONDS:-3600}" "$0" "$@"
fi
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
HARNESS=$SHARED/bench
[ -x "$HARNESS/bench.sh" ] || { echo "no harness at $HARNESS" >&2; exit 2; }
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-10} CONNS=${CONNS:-10} STREAMS=${STREAMS:-10} WARMUP=${WARMUP:-2}
HOST=bench.loom.test

"$HARNESS/setup.sh" >/dev/null          # nginx (the backend) and h2load (nghttp2-client)
source "$ROOT/bench/release-loom.sh"
LOOM_BIN=$(release_loom)
H3LOAD_TARGET_DIR=${H3LOAD_TARGET_DIR:-/var/cache/loom/h3load}
CARGO_TARGET_DIR=$H3LOAD_TARGET_DIR cargo build --release -q --locked --manifest-path "$ROOT/bench/h3load/Cargo.toml"
H3LOAD=$H3LOAD_TARGET_DIR/release/h3load

export PERF=${PERF:-/tmp/perf} RUN=${RUN:-/tmp/perf/run-http3}   # not the run dir of bench.sh
# shellcheck source=/dev/null
source "$HARNESS/lib.sh"                 # start_backend, start_bg, stop_all, cpu_ticks, wait_quiet, ...
set -e
OUT=${OUT:-$PERF/results/http3-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RUN" "$OUT"
RES=$OUT/results.jsonl
PORT=$(port_of loom)
port_free "$PORT" && port_free "$(port_of backend)" || { log "port $PORT or the backend's is busy; set BASE_PORT"; exit 2; }
trap 'stop_all' EXIT
trap 'exit 130' INT TERM

# A CA and a certificate for $HOST it signed (ECDSA P-256, as both protocols then use).
PKI=$RUN/pki; mkdir -p "$PKI"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=loom bench CA" \
  -keyout "$PKI/ca.key" -out "$PKI/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$HOST" \
  -keyout "$PKI/tls.key" -out "$PKI/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' "$HOST" > "$PKI/ext.cnf"
openssl x509 -req -in "$PKI/tls.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial -days 2 \
  -extfile "$PKI/ext.cnf" -out "$PKI/tls.crt" 2>/dev/null

# The HTTPS and the HTTP/3 listener (HTTP with a tls block) share the port and the certificate.
cat > "$RUN/loom.yaml" <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: loom}
spec: {controllerName: loom.dev/gateway-controller}
---
apiVersion: v1
kind: Secret
metadata: {name: bench-tls, namespace: default}
type: kubernetes.io/tls
data: {tls.crt: $(base64 -w0 "$PKI/tls.crt"), tls.key: $(base64 -w0 "$PKI/tls.key")}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench, namespace: default}
spec:
  gatewayClassName: loom
  addresses: [{type: IPAddress, value: 127.0.0.1}]
  listeners:
  - {name: https, port: $PORT, protocol: HTTPS, tls: {mode: Terminate, certificateRefs: [{name: bench-tls}]}}
  - {name: http3, port: $PORT, protocol: HTTP, tls: {mode: Terminate, certificateRefs: [{name: bench-tls}]}}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {name: backend, namespace: default}
spec: {endpoints: ["127.0.0.1:$(port_of backend)"]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bench, namespace: default}
spec:
  parentRefs: [{name: bench}]
  rules: [{backendRefs: [{group: gateway.loom.dev, kind: Backend, name: backend}]}]
EOF

preflight_quiet
"$HARNESS/envinfo.sh" > "$OUT/env.txt" 2>&1 || true
start_backend
wait_http "$(port_of backend)" || { log "backend did not come up"; exit 1; }
BODY=$(curl -s "http://127.0.0.1:$(port_of backend)/")
RUST_LOG=${RUST_LOG:-warn} start_bg loom "$CPU_PROXY_1W" "$LOOM_BIN" serve -f "$RUN/loom.yaml" --threads 1 --admin 127.0.0.1:0
URL=https://$HOST:$PORT/
CURL=(curl -s -m 2 --cacert "$PKI/ca.pem" --resolve "$HOST:$PORT:127.0.0.1")
for _ in $(seq 1 150); do [ "$("${CURL[@]}" "$URL" 2>/dev/null || true)" = "$BODY" ] && break; sleep 0.1; done
[ "$("${CURL[@]}" --http2 "$URL")" = "$BODY" ] || { log "no HTTPS answer from Loom"; tail -20 "$RUN/loom.err"; exit 1; }
H3=("$H3LOAD" --ca "$PKI/ca.pem" --connect-to "127.0.0.1:$PORT")
"${H3[@]}" -c 1 -m 1 -D 1 "$URL" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); assert d["requests"] > 0 and d["errors"] == d["timeouts"] == d["non_2xx"] == 0, d' ||
  { log "no HTTP/3 answer from Loom"; tail -20 "$RUN/loom.err"; exit 1; }
H2=(h2load --connect-to "127.0.0.1:$PORT")    # h2load does not verify the certificate
LOOM_PID=${SRV_PID[loom]} BACKEND_PID=${SRV_PID[backend]}
log "loom pid=$LOOM_PID on core $CPU_PROXY_1W; clients and backend on core $CPU_LOAD; $CONNS connections x $STREAMS streams"

for proto in h2 h3; do                   # warm-up, not recorded
  if [ $proto = h2 ]; then cmd=("${H2[@]}" -c "$CONNS" -m "$STREAMS" -D "$WARMUP" "$URL")
  else cmd=("${H3[@]}" -c "$CONNS" -m "$STREAMS" -D "$WARMUP" "$URL"); fi
  timeout $((WARMUP + 30)) taskset -c "$CPU_LOAD" "${cmd[@]}" >/dev/null 2>&1
done

# run PROTO ROUND: one measured run, one JSON line appended to $RES
run() {
  local proto=$1 round=$2 foreign_pre l0 l1 b0 b1 y0 y1 t0 t1 tf out
  foreign_pre=$(wait_quiet)
  tf=$(mktemp "$RUN/time.XXXX"); out=$RUN/$proto.out
  if [ "$proto" = h2 ]; then
    cmd=("${H2[@]}" -c "$CONNS" -m "$STREAMS" -D "$DURATION" --log-file "$RUN/h2.log" "$URL")
  else
    cmd=("${H3[@]}" -c "$CONNS" -m "$STREAMS" -D "$DURATION" "$URL")
  fi
  l0=$(cpu_ticks "$LOOM_PID"); b0=$(cpu_ticks "$BACKEND_PID"); y0=$(sys_ticks_split); t0=$(date +%s.%N)
  timeout $((DURATION + 40)) taskset -c "$CPU_LOAD" /usr/bin/time -f '%U %S' -o "$tf" "${cmd[@]}" >"$out" 2>&1 || true
  t1=$(date +%s.%N); y1=$(sys_ticks_split); b1=$(cpu_ticks "$BACKEND_PID"); l1=$(cpu_ticks "$LOOM_PID")
  python3 - "$proto" "$round" "$out" "$RUN/h2.log" "$(cat "$tf")" "$l0" "$l1" "$b0" "$b1" "$y0" "$y1" "$t0" "$t1" "$HZ" "$foreign_pre" >> "$RES" <<'PY'
import json, re, sys
proto, rnd, out, h2log, wt, l0, l1, b0, b1, y0, y1, t0, t1, hz, fpre = sys.argv[1:]
text = open(out).read()
hz = float(hz); wall = float(t1) - float(t0)
d = {"proto": proto, "round": int(rnd)}
if proto == "h2":
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", text)
    r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
    s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    a = re.search(r"Application protocol: (\S+)", text)
    lat = sorted(int(l.split("\t")[2]) for l in open(h2log) if l.split("\t")[1].startswith("2"))
    pct = lambda q: lat[max(1, min(len(lat), -(-len(lat) * q // 100))) - 1] if lat else 0
    d.update(rps=float(m.group(2)) if m else 0.0, requests=int(r.group(4)) if r else 0,
             errors=int(r.group(5)) + int(r.group(6)) if r else -1, timeouts=int(r.group(7)) if r else -1,
             non_2xx=sum(int(x) for x in s.groups()[1:]) if s else -1, alpn=a.group(1) if a else None,
             p50_us=pct(50), p99_us=pct(99), duration_s=float(m.group(1)) if m else 0.0)
else:
    line = next((l for l in text.splitlines() if l.startswith("{")), None)
    if line:
        j = json.loads(line)
        d.update({k: j[k] for k in ("rps", "requests", "errors", "timeouts", "non_2xx", "p50_us", "p99_us", "duration_s", "handshake_ms", "last_error")})
        d["alpn"] = "h3"
    else:
        d.update(rps=0.0, requests=0, errors=-1, failed=text[-500:])
wu, ws = (float(x) for x in wt.split()[:2]) if wt.strip() and wt.split()[0][0].isdigit() else (0.0, 0.0)
loom = (int(l1) - int(l0)) / hz; backend = (int(b1) - int(b0)) / hz; client = wu + ws
task, irq, steal = ((b - a) / hz for a, b in zip(map(int, y0.split()), map(int, y1.split())))
d.update(wall_s=round(wall, 2), cpu_loom=round(loom / wall, 3), cpu_client=round(client / wall, 3),
         cpu_backend=round(backend / wall, 3),
         cpu_foreign=round(max(0.0, task + irq + steal - loom - backend - client) / wall, 3),
         foreign_before_pct=int(fpre))
if loom > 0 and d.get("requests"):
    d["req_per_loom_cpu_s"] = round(d["requests"] / loom, 1)
print(json.dumps(d))
PY
  rm -f "$tf"
  log "$(tail -1 "$RES")"
}

for round in $(seq 1 "$ROUNDS"); do
  run h2 "$round"
  run h3 "$round"
done
stop_all

python3 - "$RES" "$CONNS" "$STREAMS" "$DURATION" > "$OUT/summary.md" <<'PY'
import json, statistics, sys
res, conns, streams, dur = sys.argv[1:]
runs = [json.loads(l) for l in open(res)]
med = lambda p, k: statistics.median([r.get(k, 0) for r in runs if r["proto"] == p])
print(f"{conns} connections x {streams} streams, {dur} s per run, median of "
      f"{sum(r['proto'] == 'h2' for r in runs)} rounds each (interleaved)\n")
print("| protocol | req/s | p50 ms | p99 ms | errors | Loom CPU | client CPU | req per Loom CPU-s |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
names = {"h2": "HTTP/2 over TLS (h2load)", "h3": "HTTP/3 (h3load)"}
for p in ("h2", "h3"):
    errs = sum(max(0, r.get("errors", 0)) + max(0, r.get("timeouts", 0)) + max(0, r.get("non_2xx", 0)) for r in runs if r["proto"] == p)
    print(f"| {names[p]} | {med(p, 'rps'):,.0f} | {med(p, 'p50_us') / 1e3:.2f} | {med(p, 'p99_us') / 1e3:.2f} | {errs} | "
          f"{med(p, 'cpu_loom'):.2f} | {med(p, 'cpu_client'):.2f} | {med(p, 'req_per_loom_cpu_s'):,.0f} |")
print(f"\n**HTTP/3 ÷ HTTP/2: req/s {med('h3', 'rps') / med('h2', 'rps'):.2f}, "
      f"p99 {med('h3', 'p99_us') / med('h2', 'p99_us'):.2f}, "
      f"req per Loom CPU-s {med('h3', 'req_per_loom_cpu_s') / med('h2', 'req_per_loom_cpu_s'):.2f}**")
print("\n| run | req/s | p50 ms | p99 ms | Loom CPU | client CPU | backend CPU | foreign CPU |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for r in runs:
    print(f"| {r['proto']} {r['round']} | {r.get('rps', 0):,.0f} | {r.get('p50_us', 0) / 1e3:.2f} | {r.get('p99_us', 0) / 1e3:.2f} | "
          f"{r['cpu_loom']:.2f} | {r['cpu_client']:.2f} | {r['cpu_backend']:.2f} | {r['cpu_foreign']:.2f} |")
PY
cat "$OUT/summary.md"
log "results in $OUT"
