# Shared settings for ci/k8s scripts (sourced, not executed).
# Caches live outside the repo clone so they survive across runs on one machine.
LOOM_K8S_CACHE=${LOOM_K8S_CACHE:-/var/cache/loom}
LOOM_K8S_RUN=${LOOM_K8S_RUN:-/run/loom-k8s}          # runtime state: pki, pids, logs, kubeconfig
export GOMODCACHE=${LOOM_GOMODCACHE:-$LOOM_K8S_CACHE/go/mod}
export GOCACHE=${LOOM_GOCACHE:-$LOOM_K8S_CACHE/go/build}
export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="-buildvcs=false -p=${LOOM_GO_JOBS:-2}"
K8S_CI_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
