# Loom's bench configuration: one Gateway listener, one route to the bench backend.
# Rendered by ../shared/bench/lib.sh (placeholders @PORT@ and @UPSTREAM_PORT@).
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
