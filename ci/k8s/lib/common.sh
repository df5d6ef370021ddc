# Shared shell helpers for ci/k8s/{up,down,test} (sourced).
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

# Cluster layout. Everything lives in 10.244.0.0/16, which is blackholed on the host:
# pods on the bridge subnet, the node (bridge) at its first address, Services in a
# range with no interface (a stray ClusterIP dial fails at once).
POD_CIDR=${LOOM_POD_CIDR:-10.244.0.1/20}
BLACKHOLE=${LOOM_BLACKHOLE:-10.244.0.0/16}
SERVICE_CIDR=${LOOM_SERVICE_CIDR:-10.244.128.0/24}
BRIDGE=${LOOM_BRIDGE:-loombr0}
NODE_NAME=${LOOM_NODE_NAME:-loom-node}
ETCD_PORT=${LOOM_ETCD_PORT:-2379}
APISERVER_PORT=${LOOM_APISERVER_PORT:-6443}
KCM_PORT=${LOOM_KCM_PORT:-10257}
ETCD_DIR=/dev/shm/loom-k8s-etcd
PKI=$LOOM_K8S_RUN/pki
PIDS=$LOOM_K8S_RUN/pids
LOGS=$LOOM_K8S_CACHE/logs            # kept after down, for post-mortems
KUBECONFIG_FILE=$LOOM_K8S_RUN/admin.kubeconfig
COMPONENTS="etcd kube-apiserver kube-controller-manager podlet"   # start order

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ensure_cmds CMD=PACKAGE ...: apt-get install whatever is missing (idempotent).
ensure_cmds() {
  local missing=()
  for spec in "$@"; do
    command -v "${spec%%=*}" >/dev/null 2>&1 || missing+=("${spec#*=}")
  done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]} (apt-get)"
  if ! { DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
         { timeout 300 apt-get update -qq >/dev/null 2>&1 &&
           DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; }; then
    die "could not install ${missing[*]} with apt-get"
  fi
}

# netns_capable: can this machine make network namespaces? Prints the error if not.
netns_capable() {
  local ns=loom-probe-$$ out
  if ! out=$(ip netns add "$ns" 2>&1); then echo "ip netns add failed: $out"; return 1; fi
  ip netns del "$ns" 2>/dev/null || true
}

# pid_alive NAME: the recorded process is running and is still ours.
pid_alive() {
  local f=$PIDS/$1.pid pid
  [[ -f $f ]] || return 1
  pid=$(cat "$f")
  [[ -n $pid && -d /proc/$pid ]] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "/$1 " || return 1
}

kubectl_bin() {
  if [[ -n ${BIN:-} && -x $BIN/kubectl ]]; then echo "$BIN/kubectl"; else command -v kubectl; fi
}

# install_gateway_crds MODULE_DIR: installs the experimental-channel Gateway API CRDs (the
# standard APIs plus experimental fields such as HTTPRoute retry) of the gateway-api version
# MODULE_DIR's go.mod requires. The bundle's safe-upgrades ValidatingAdmissionPolicy refuses
# experimental CRDs over standard ones; as its message says, it is removed first, and it is
# not installed again.
install_gateway_crds() {
  local dir i kc
  dir=$(cd "$1" && go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api) || return 1
  kc=$(kubectl_bin)
  "$kc" delete --ignore-not-found validatingadmissionpolicybinding,validatingadmissionpolicy \
    safe-upgrades.gateway.networking.k8s.io >/dev/null || return 1
  for i in $(seq 20); do
    "$kc" apply --server-side --force-conflicts -o name \
      $(ls "$dir"/config/crd/experimental/*.yaml | grep -v -e kustomization -e vap_ | sed 's/^/-f /') \
      >/dev/null 2>"$LOGS/crd-apply.err" && return 0
    sleep 0.5 # the policy's removal takes a moment to take effect
  done
  cat "$LOGS/crd-apply.err" >&2
  return 1
}

# cluster_was_up: the test cluster is already up and answering (a script that finds it so
# leaves it up; one that brings it up takes it down again).
cluster_was_up() {
  [[ -f $LOOM_K8S_RUN/bin && -f $KUBECONFIG_FILE ]] &&
    "$(cat "$LOOM_K8S_RUN/bin")/kubectl" --kubeconfig "$KUBECONFIG_FILE" get --raw /readyz >/dev/null 2>&1
}

# controller_kubeconfig RBAC_FILE OUT: applies RBAC_FILE (deploy/rbac.yaml) and writes to OUT a
# kubeconfig with a token of its ServiceAccount loom-system/loom-gateway-controller, so a test
# controller has exactly those permissions.
controller_kubeconfig() {
  local kc token
  kc=$(kubectl_bin)
  "$kc" apply -f "$1" >/dev/null || { echo "$1 did not apply" >&2; return 1; }
  token=$("$kc" create token loom-gateway-controller -n loom-system --duration=2h) || return 1
  "$kc" config view --raw --minify -o json | python3 -c '
import json, sys
c = json.load(sys.stdin)
c["users"] = [{"name": "loom-sa", "user": {"token": sys.argv[1]}}]
c["contexts"][0]["context"]["user"] = "loom-sa"
print(json.dumps(c))' "$token" >"$2"
}

# echo_backend NS: a Deployment of the conformance suite's echo server and a Service `echo`
# (port 8080) in front of it, in namespace NS. Its answers name the pod and namespace.
echo_backend() {
  "$(kubectl_bin)" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: $1}
spec:
  selector: {app: echo}
  ports: [{port: 8080, targetPort: 3000}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: $1}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: echo
        image: registry.k8s.io/gateway-api/echo-basic:v1.5.1
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
YAML
}
