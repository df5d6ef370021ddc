#!/usr/bin/env python3
"""A Loom configuration with N HTTPRoutes, for bench/routes.sh and bench/memory.sh.

One Gateway (one HTTP listener on PORT), a Backend at BACKEND (host:port), and N routes: every
route but the last has its own hostname and one Exact path; the last one is the catch-all
(PathPrefix CATCH_ALL, default "/"), which the benchmarks' requests hit.

usage: gen_routes.py N PORT BACKEND [CATCH_ALL] > file.yaml
"""
import sys


def main():
    n, port, backend = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    catch_all = sys.argv[4] if len(sys.argv) > 4 else "/"
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
spec: {{endpoints: ["{backend}"]}}""")
    for i in range(n):
        last = i == n - 1
        hosts = "" if last else f"\n  hostnames: [r{i}.example.com]"
        path = f"PathPrefix, value: {catch_all}" if last else f"Exact, value: /r{i}"
        print(f"""---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r{i:05d}, namespace: default}}
spec:
  parentRefs: [{{name: bench}}]{hosts}
  rules: [{{matches: [{{path: {{type: {path}}}}}], backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: backend}}]}}]""")


if __name__ == "__main__":
    main()
