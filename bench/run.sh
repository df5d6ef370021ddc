#!/usr/bin/env bash
# Loom against its peers on loopback, in one run: direct, nginx, a minimal Pingora proxy and Loom
# (and HAProxy/Envoy when asked), with the shared harness in ../shared/bench (pinned CPUs,
# 50 keep-alive connections, bounded wrk runs). Builds Loom in release first
# unless given a binary.
#
# usage: bench/run.sh [target ...]   (default: direct nginx pingora loom)
# env:   WORKERS_LIST (default 1), REPS (3), WRK_DURATION (10), SHARED (../shared),
#        LOOM_BIN (a binary instead of this checkout's release build)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
HARNESS=$SHARED/bench
[ -x "$HARNESS/bench.sh" ] || { echo "no harness at $HARNESS" >&2; exit 2; }
"$HARNESS/setup.sh"
source "$ROOT/bench/release-loom.sh"
[[ -n ${LOOM_BIN:-} ]] || LOOM_BIN=$(release_loom)
export LOOM_BIN
export LOOM_CONF_TEMPLATE=$ROOT/bench/loom.yaml.tpl
export LOOM_ARGS='serve -f @CONF@ --threads @WORKERS@ --admin 127.0.0.1:0'
export WORKERS_LIST=${WORKERS_LIST:-1}
export RUST_LOG=${RUST_LOG:-warn}
if [ $# -eq 0 ]; then set -- direct nginx pingora loom; fi
exec "$HARNESS/bench.sh" "$@"
