# Loom's bench configuration with two WASMPlugins on the route, in phase AUTHN: the header
# plugin (examples/wasm/headers) sets an Authorization header with a good HS256 JWT, then the
# auth plugin (examples/wasm/auth) verifies it, so every request does the work of a real
# authentication and reaches the backend (wrk sends no token of its own). Rendered by
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
metadata: {name: token, namespace: default}
spec:
  targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: bench}
  url: @PLUGINS@/headers/plugin.wasm
  phase: AUTHN
  priority: 1
  config:
    request: {authorization: "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImF1ZCI6ImFwaS5leGFtcGxlLmNvbSJ9.tg9z0bXT08qdmS8nEydPlCAbQsgDF_jj7ORIsz0-yPU"}
---
apiVersion: gateway.loom.dev/v1alpha1
kind: WASMPlugin
metadata: {name: auth, namespace: default}
spec:
  targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: bench}
  url: @PLUGINS@/auth/plugin.wasm
  phase: AUTHN
  config: {audience: api.example.com, secret: loom-example-secret}
