# Loom's bench configuration with the Go no-op WASMPlugin (examples/wasm/testdata/noop) on
# the route (bench/policies.sh compares it with bench/loom.yaml.tpl). Rendered by
# ../shared/bench/lib.sh (placeholders @PORT@ and @UPSTREAM_PORT@); bench/policies.sh fills
# @PLUGINS@ (examples/wasm, absolute).
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: loom}
spec: {controllerName: loom.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench, namespace: default}
spec:
  gatewayClassName: loom
  addresses: [{type: IPAddress, value: 127.0.0.1}]
  listeners: [{name: http, port: @PORT@, protocol: HTTP}]
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {name: backend, namespace: default}
spec: {endpoints: ["127.0.0.1:@UPSTREAM_PORT@"]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bench, namespace: default}
spec:
  parentRefs: [{name: bench}]
  rules: [{backendRefs: [{group: gateway.loom.dev, kind: Backend, name: backend}]}]
---
apiVersion: gateway.loom.dev/v1alpha1
kind: WASMPlugin
metadata: {name: noop, namespace: default}
spec:
  targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: bench}
  url: @PLUGINS@/testdata/noop/plugin.wasm
