#!/usr/bin/env python3
"""The churn cases of ci/k8s/churn-test (run by it, on the ci/k8s cluster):

1. Route change under traffic (the "route change" test of gateway-api-bench, which Envoy
   Gateway fails): one HTTPRoute, attached to both listeners of a Gateway, flips every 200 ms
   between two backends (two ports of one Service), one of them with a ResponseHeaderModifier,
   while clients on both listeners send requests back to back. Every answer must be a 200,
   no connection may fail, and both versions of the route must be seen on both listeners.
2. Routes added one by one: N HTTPRoutes, each on its own hostname, created one after the
   other; each new hostname is polled every 5 ms from before its creation until it answers
   200 (and twice more): it must answer 404 until then and 200 from then on, nothing else.
   Meanwhile a client keeps requesting hostnames of routes already live: every answer 200.

Prints check lines and "N passed, N failed" last, like the other ci/k8s tests. Every step is
bounded in time.

Usage: churn.py LOOM_BINARY ROUTES
"""

import http.client
import os
import random
import statistics
import subprocess
import sys
import threading
import time

from cluster import (GW, RUN, Api, class_finalizer_gone, echo_backend, fresh_namespace,
                     gateway_address, remove, wait)

LOGS = os.environ.get("LOGS", "/var/cache/loom/logs")
NS, CLASS, CTL = "loom-churn", "loom-churn", "loom.dev/churn-test"
ADMIN = 9934
V1 = {"apiVersion": "gateway.networking.k8s.io/v1"}

passed = failed = 0


def ok(what):
    global passed
    passed += 1
    print(f"ok   - {what}", flush=True)


def bad(what, detail=""):
    global failed
    failed += 1
    print(f"FAIL - {what}", flush=True)
    for line in str(detail).splitlines()[:20]:
        print(f"    {line}", flush=True)


def check(what, cond, detail=""):
    if cond:
        ok(what)
    else:
        bad(what, detail)


api = Api()


class Client:
    """One kept-alive HTTP/1.1 connection to a listener; reconnects after a failure."""

    def __init__(self, ip, port):
        self.ip, self.port, self.conn = ip, port, None

    def get(self, host, path="/"):
        """(status, headers) or (0, error text) when the connection failed."""
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.ip, self.port, timeout=5)
            self.conn.request("GET", path, headers={"Host": host})
            r = self.conn.getresponse()
            r.read()
            if r.getheader("connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            return r.status, r.headers
        except (OSError, http.client.HTTPException) as e:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return 0, f"{type(e).__name__}: {e}"


def flip_route(version):
    """The flipping route: version 0 → port 80 with a ResponseHeaderModifier on the
    backendRef, version 1 → port 8080 without (gateway-api-bench's routechange template)."""
    backend = {"name": "echo", "port": 80 if version == 0 else 8080}
    if version == 0:
        backend["filters"] = [{"type": "ResponseHeaderModifier", "responseHeaderModifier": {
            "add": [{"name": "my-added-header", "value": "added-value"}]}}]
    return {**V1, "kind": "HTTPRoute", "metadata": {"name": "flip", "namespace": NS},
            "spec": {"hostnames": ["flip.example.com"],
                     "parentRefs": [{"name": "gw", "sectionName": "a"},
                                    {"name": "gw", "sectionName": "b"}],
                     "rules": [{"backendRefs": [backend]}]}}


def route_change(ip, flips=50, interval=0.2):
    path = f"{GW}/namespaces/{NS}/httproutes"
    api("POST", path, flip_route(1))
    for port in (8080, 8081):
        c = Client(ip, port)
        wait(f"the flipping route on :{port}", lambda: c.get("flip.example.com")[0] == 200, limit=60)

    stop = threading.Event()
    results = {}

    def probe(port):
        c = Client(ip, port)
        r = results[port] = {"requests": 0, "statuses": {}, "errors": [], "with": 0, "without": 0}
        while not stop.is_set():
            status, headers = c.get("flip.example.com", f"/{r['requests']}")
            r["requests"] += 1
            r["statuses"][status] = r["statuses"].get(status, 0) + 1
            if status == 200:
                r["with" if headers.get("my-added-header") == "added-value" else "without"] += 1
            elif len(r["errors"]) < 5:
                r["errors"].append(f"request {r['requests']}: {status} {headers if status == 0 else ''}")

    threads = [threading.Thread(target=probe, args=(port,)) for port in (8080, 8081)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    for i in range(flips):
        route = flip_route(i % 2)
        route["metadata"]["resourceVersion"] = api("GET", f"{path}/flip")[1]["metadata"]["resourceVersion"]
        api("PUT", f"{path}/flip", route)
        time.sleep(max(0.0, t0 + (i + 1) * interval - time.monotonic()))
    time.sleep(1)  # the last change goes live under traffic too
    stop.set()
    for t in threads:
        t.join(10)
    for port, r in sorted(results.items()):
        non200 = {s: n for s, n in r["statuses"].items() if s != 200}
        print(f"# listener :{port}: {r['requests']} requests during {flips} changes "
              f"({interval * 1000:.0f} ms apart), {r['with']} with the added header, "
              f"{r['without']} without, statuses {r['statuses']}", flush=True)
        check(f"route flipping every {interval * 1000:.0f} ms: all {r['requests']} answers on :{port} are 200",
              not non200 and r["requests"] > 0, f"{non200}\n" + "\n".join(r["errors"]))
        check(f"both versions of the route answered on :{port}", r["with"] > 0 and r["without"] > 0,
              f"with the header {r['with']}, without {r['without']}")
    _, got = api("GET", f"{path}/flip")
    gen = got["metadata"]["generation"]
    observed = [c.get("observedGeneration") for p in got.get("status", {}).get("parents", [])
                for c in p["conditions"] if c["type"] == "Accepted" and c["status"] == "True"]
    check("the flipping route is Accepted on both listeners at its last generation",
          observed == [gen, gen], f"generation {gen}, Accepted observes {observed}")


def added_one_by_one(ip, n):
    path = f"{GW}/namespaces/{NS}/httproutes"
    stop = threading.Event()
    live = []  # hostnames already answering 200
    old = {"requests": 0, "bad": []}

    def old_routes():  # requests to routes already live, while others are added
        c = Client(ip, 8080)
        rng = random.Random(1)
        while not stop.is_set():
            if not live:
                time.sleep(0.01)
                continue
            host = rng.choice(live)
            status, _ = c.get(host)
            old["requests"] += 1
            if status != 200 and len(old["bad"]) < 5:
                old["bad"].append(f"{host}: {status}")
            time.sleep(0.002)

    background = threading.Thread(target=old_routes)
    background.start()
    c = Client(ip, 8080)
    wrong, propagation, t_start = [], [], time.monotonic()
    try:
        for i in range(n):
            host = f"r{i}.churn.example.com"
            route = {**V1, "kind": "HTTPRoute", "metadata": {"name": f"r{i}", "namespace": NS},
                     "spec": {"hostnames": [host], "parentRefs": [{"name": "gw", "sectionName": "a"}],
                              "rules": [{"backendRefs": [{"name": "echo", "port": 8080}]}]}}
            seen = [c.get(host)[0]]  # before the route exists
            api("POST", path, route)
            t0 = time.monotonic()
            deadline = t0 + 30
            while seen[-1] != 200 and time.monotonic() < deadline:
                time.sleep(0.005)
                seen.append(c.get(host)[0])
            if seen[-1] == 200:
                propagation.append((time.monotonic() - t0) * 1000)
                for _ in range(2):
                    time.sleep(0.005)
                    seen.append(c.get(host)[0])
                live.append(host)
            first_200 = seen.index(200) if 200 in seen else len(seen)
            if any(s != 404 for s in seen[:first_200]) or any(s != 200 for s in seen[first_200:]) \
                    or first_200 == len(seen):
                wrong.append(f"{host}: {seen if len(seen) < 40 else seen[:20] + ['...'] + seen[-10:]}")
                if len(wrong) >= 5:
                    break
            if (i + 1) % 500 == 0:
                print(f"# {i + 1} routes added ({time.monotonic() - t_start:.0f} s)", flush=True)
    finally:
        stop.set()
        background.join(10)
    xs = sorted(propagation)
    if xs:
        print(f"# {len(xs)} routes added one by one in {time.monotonic() - t_start:.0f} s; "
              f"POST answered → 200: p50 {statistics.median(xs):.0f} ms, "
              f"p99 {xs[min(len(xs) - 1, int(len(xs) * 0.99))]:.0f} ms, max {xs[-1]:.0f} ms", flush=True)
    check(f"{n} routes added one by one: each new hostname answered 404, then 200, nothing else",
          not wrong and len(xs) == n, "\n".join(wrong))
    check(f"meanwhile {old['requests']} requests to routes already live: all 200",
          not old["bad"] and old["requests"] > 0, "\n".join(old["bad"]))


def main():
    loom, n = sys.argv[1], int(sys.argv[2])

    fresh_namespace(api, NS)
    api("POST", f"{GW}/gatewayclasses", {**V1, "kind": "GatewayClass", "metadata": {"name": CLASS},
                                         "spec": {"controllerName": CTL}})
    api("POST", f"{GW}/namespaces/{NS}/gateways", {
        **V1, "kind": "Gateway", "metadata": {"name": "gw", "namespace": NS},
        "spec": {"gatewayClassName": CLASS,
                 "listeners": [{"name": "a", "port": 8080, "protocol": "HTTP"},
                               {"name": "b", "port": 8081, "protocol": "HTTP"}]}})
    echo_backend(api, NS, [{"name": "http", "port": 80}, {"name": "http-alt", "port": 8080}])
    log = open(f"{LOGS}/churn-test-controller.log", "w")
    ctl = subprocess.Popen(
        [loom, "controller", "--controller-name", CTL, "--admin", f"127.0.0.1:{ADMIN}",
         "--no-leader-election", "--address-pool", "127.215.0.0/16"],
        stdout=log, stderr=log, env={**os.environ, "KUBECONFIG": os.environ.get(
            "CONTROLLER_KUBECONFIG", f"{RUN}/admin.kubeconfig"),
                                     "RUST_LOG": "info,kube=warn,pingora_core=warn"})
    try:
        ip = wait("the Gateway's address", lambda: gateway_address(api, NS, "gw"), limit=60)
        wait("the echo backend to be ready", lambda: (api("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/echo")[1]
                                                     or {}).get("status", {}).get("availableReplicas"), limit=120)
        route_change(ip)
        added_one_by_one(ip, n)
    except (TimeoutError, RuntimeError) as e:
        bad("the churn cases ran to their end", e)
    finally:
        api("DELETE", f"{GW}/namespaces/{NS}/gateways/gw")
        try:
            wait("the GatewayClass finalizer to go", lambda: class_finalizer_gone(api, CLASS), limit=30)
        except TimeoutError as e:
            bad("the class finalizer went after the Gateway was deleted", e)
        remove(api, CLASS, NS, ctl)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
