#!/usr/bin/env bash
# RSS of `loom serve` idle after loading 1, 1,000 and 5,000 HTTPRoutes (bench/routes.sh's file:
# one hostname and path per route), then after one reload that changes one route.
# usage: LOOM_BIN=path/to/loom bench/memory.sh [COUNTS]   (default COUNTS "1 1000 5000")
if [ -z "${_MEM_TIMED:-}" ]; then export _MEM_TIMED=1; exec timeout -k 15 600 "$0" "$@"; fi
set -euo pipefail
LOOM=${LOOM_BIN:?LOOM_BIN=path/to/loom}
COUNTS=${1:-1 1000 5000}
DIR=$(mktemp -d); trap 'kill $PID 2>/dev/null; rm -rf "$DIR"' EXIT; PID=
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
gen() {  # gen N PORT BACKEND_PATH_SUFFIX > file
  python3 - "$1" "$2" "$3" <<'PY'
import sys
n, port, suffix = int(sys.argv[1]), sys.argv[2], sys.argv[3]
print(f"""apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: loom}}
spec: {{controllerName: loom.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: bench, namespace: default}}
spec:
  gatewayClassName: loom
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners: [{{name: http, port: {port}, protocol: HTTP}}]
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: backend, namespace: default}}
spec: {{endpoints: ["127.0.0.1:9"]}}""")
for i in range(n):
    last = i == n - 1
    hosts = "" if last else f"\n  hostnames: [r{i}.example.com]"
    path = f"PathPrefix, value: /{suffix}" if last else f"Exact, value: /r{i}"
    print(f"""---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r{i:05d}, namespace: default}}
spec:
  parentRefs: [{{name: bench}}]{hosts}
  rules: [{{matches: [{{path: {{type: {path}}}}}], backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: backend}}]}}]""")
PY
}
rss() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
anon() { awk '/^RssAnon/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
generation() { curl -sf "http://$ADMIN/metrics" | awk '/^loom_config_generation / {print $2}'; }
for n in $COUNTS; do
  PORT=$(free_port); ADMIN=127.0.0.1:$(free_port)
  gen "$n" "$PORT" "" > "$DIR/routes.yaml"
  RUST_LOG=warn "$LOOM" serve -f "$DIR/routes.yaml" --threads 1 --admin "$ADMIN" 2> "$DIR/err" &
  PID=$!
  for _ in $(seq 1 600); do curl -sf "http://$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf "http://$ADMIN/readyz" >/dev/null || { cat "$DIR/err"; exit 1; }
  sleep 2
  loaded="$(rss $PID) MiB (anonymous $(anon $PID))"
  before=$(generation)
  gen "$n" "$PORT" "v2" > "$DIR/routes.yaml.tmp"; mv "$DIR/routes.yaml.tmp" "$DIR/routes.yaml"
  for _ in $(seq 1 600); do [ "$(generation)" != "$before" ] && break; sleep 0.1; done
  sleep 2
  echo "$n routes: RSS $loaded after loading, $(rss $PID) MiB (anonymous $(anon $PID)) after a reload"
  kill $PID; wait $PID 2>/dev/null || true; PID=
done
