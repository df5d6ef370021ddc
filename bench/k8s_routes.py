#!/usr/bin/env python3
"""`loom controller` on the ci/k8s test cluster: time from creating an HTTPRoute to traffic,
and the controller's memory with many HTTPRoutes.

Usage: bench/k8s_routes.py LOOM_BINARY [--latency N] [--memory 1000,5000] [--provisioned]
                           [--latency-after] [--latency-at 100] [--spacing MS] [--last-applied]
                           [--foreign-slices N] [--quiet]

Starts its own controller (own GatewayClass, controller name and address pool, so it can share
the cluster), one Gateway and one echo backend in namespace loom-bench; creates routes through
the API (the admin client certificate of ci/k8s); every step is bounded in time and count.
Prints p50/p99 of create-to-200 over N routes created one at a time, then RSS after the
controller has compiled each total number of routes; with --latency-after, create-to-200 over N
more routes created one at a time among all those; with --latency-at TOTALS (some of --memory's),
the same once each of those totals is live. Each route is created as soon as the one
before answers, or with --spacing, MS milliseconds after that (a change that comes alone, not
right after a compile: how long one `kubectl apply` takes to go live). With --last-applied the
routes carry the annotation `kubectl apply` adds (a copy of the object), as applied ones do.
With --quiet, the routes of --latency-after and --latency-at are created once the controller is quiet (it
has written the status of every route: under 2 % of a core for 2 s; the time that took is
printed), so that --latency-after measures changes into a settled cluster. With
--foreign-slices N, an EndpointSlice of a Service no route names is changed N times at the
end, and the compiles that caused are counted.

With --provisioned the controller runs with --provision: traffic goes to the Gateway's
data-plane pod (run by the podlet, watching the API with its own token), and the RSS of that
pod's process is reported beside the controller's.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ci", "k8s", "lib"))
from cluster import (GW, RUN, Api, class_finalizer_gone, echo_backend,  # noqa: E402
                     fresh_namespace, gateway_address, remove)
from cluster import wait as cluster_wait  # noqa: E402

NS, CLASS, CTL = "loom-bench", "loom-bench", "loom.dev/bench"
ADMIN = 9941


api = Api()


def route(name, path, last_applied):
    r = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": name, "namespace": NS},
         "spec": {"parentRefs": [{"name": "gw"}],
                  "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                             "backendRefs": [{"name": "echo", "port": 8080}]}]}}
    if last_applied:
        # What `kubectl apply` adds: the object as applied, in an annotation.
        r["metadata"]["annotations"] = {
            "kubectl.kubernetes.io/last-applied-configuration": json.dumps(r, separators=(",", ":"))}
    return r


def get(ip, path):
    try:
        c = http.client.HTTPConnection(ip, 8080, timeout=2)
        c.request("GET", path)
        return c.getresponse().status
    except OSError:
        return 0


def wait(what, fn, limit=120.0, step=0.001):
    try:
        return cluster_wait(what, fn, limit, step)
    except TimeoutError as e:
        raise SystemExit(str(e)) from None


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def generation(host="127.0.0.1", port=ADMIN):
    # From /metrics: /config renders the whole configuration, tens of MB with 5,000 routes,
    # which would itself grow the RSS being measured.
    try:
        c = http.client.HTTPConnection(host, port, timeout=5)
        c.request("GET", "/metrics")
        for line in c.getresponse().read().decode().splitlines():
            if line.startswith("loom_config_generation "):
                return int(float(line.split()[1]))
    except OSError:
        pass
    return -1


def settled(*admin):
    """No compile for 2 s."""
    g = generation(*admin)
    time.sleep(2)
    return generation(*admin) == g


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quiet(pid):
    """Under 2 % of a core for 2 s."""
    before = cpu_seconds(pid)
    time.sleep(2)
    return cpu_seconds(pid) - before < 0.04


def data_plane_pod():
    """(IP, pid) of the Gateway's ready data-plane pod, or None."""
    _, pods = api("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=loom.dev/data-plane%3Dloom-gw")
    for pod in (pods or {}).get("items", []):
        ready = [c for c in pod.get("status", {}).get("conditions", []) if c["type"] == "Ready"]
        if not (ready and ready[0]["status"] == "True"):
            continue
        for pid in os.listdir("/proc"):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if b"data-plane" in args and f"{NS}/gw".encode() in args:
                return pod["status"]["podIP"], int(pid)
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("loom")
    p.add_argument("--latency", type=int, default=100)
    p.add_argument("--memory", default="1000,5000")
    p.add_argument("--provisioned", action="store_true")
    p.add_argument("--last-applied", action="store_true",
                   help="routes carry kubectl apply's last-applied-configuration annotation")
    p.add_argument("--foreign-slices", type=int, default=0,
                   help="then change an EndpointSlice of a Service no route names N times")
    p.add_argument("--spacing", type=float, default=0,
                   help="milliseconds between one route answering and the next create")
    p.add_argument("--quiet", action="store_true",
                   help="before --latency-after, wait for the controller to be quiet")
    p.add_argument("--latency-at", default="",
                   help="also measure create-to-200 once each of these totals of --memory is live")
    p.add_argument("--latency-after", action="store_true",
                   help="measure create-to-200 again once the --memory routes exist")
    a = p.parse_args()
    if a.provisioned:
        # The data-plane role and binding, and the image the podlet runs as this binary.
        kubectl = [f"{open(f'{RUN}/bin').read().strip()}/kubectl", "--kubeconfig", f"{RUN}/admin.kubeconfig"]
        rbac = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deploy", "rbac.yaml")
        subprocess.run(kubectl + ["apply", "-f", rbac], check=True, stdout=subprocess.DEVNULL)
        os.makedirs(f"{RUN}/images", exist_ok=True)
        link = f"{RUN}/images/loom"
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.abspath(a.loom), link)

    v1 = {"apiVersion": "gateway.networking.k8s.io/v1"}
    if api("GET", f"{GW}/gatewayclasses")[0] == 404:  # a cluster just brought up by ci/k8s/up
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
        subprocess.run(["bash", "-c", '. ci/k8s/lib/common.sh && install_gateway_crds conformance'],
                       cwd=root, check=True, env={**os.environ, "KUBECONFIG": f"{RUN}/admin.kubeconfig"})

    fresh_namespace(api, NS)
    api("POST", f"{GW}/gatewayclasses", {**v1, "kind": "GatewayClass", "metadata": {"name": CLASS},
                                         "spec": {"controllerName": CTL}})
    api("POST", f"{GW}/namespaces/{NS}/gateways", {
        **v1, "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": NS},
        "spec": {"gatewayClassName": CLASS,
                 "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP",
                                "allowedRoutes": {"namespaces": {"from": "Same"}}}]}})
    echo_backend(api, NS, [{"port": 8080}])
    log = open("/var/cache/loom/logs/bench-controller.log", "w")
    # As bench/memory.sh: the binary's pages leave the page cache first, so that its processes
    # map it as a cold start does (a binary just built or copied is mapped in larger pieces).
    fd = os.open(a.loom, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    mode = (["--provision", "--data-plane-image", "ghcr.io/loom-gateway/loom:bench",
             "--gateway-service-type", "ClusterIP", "--data-plane-log", "warn"]
            if a.provisioned else ["--address-pool", "127.220.0.0/16"])
    ctl = subprocess.Popen(
        [a.loom, "controller", "--controller-name", CTL, "--admin", f"127.0.0.1:{ADMIN}",
         "--no-leader-election", *mode],
        stdout=log, stderr=log, env={**os.environ, "KUBECONFIG": f"{RUN}/admin.kubeconfig",
                                     "RUST_LOG": os.environ.get("LOOM_BENCH_LOG", "warn")})
    try:
        ip = wait("the Gateway's address", lambda: gateway_address(api, NS, "gw"), step=0.1)
        if ctl.poll() is not None:
            # Another controller (a leftover run) would be measured instead.
            raise SystemExit(f"the controller exited ({ctl.returncode}); see {log.name}")
        data_plane = None  # (pod IP, pid) in provisioned mode
        if a.provisioned:
            data_plane = wait("a ready data-plane pod", data_plane_pod, step=0.2)
            ip = data_plane[0]
        api("POST", f"{GW}/namespaces/{NS}/httproutes", route("warmup", "/warmup", a.last_applied))
        wait("the echo backend through Loom", lambda: get(ip, "/warmup") == 200, step=0.05)

        def rss():
            text = f"controller RSS {rss_mib(ctl.pid):.1f} MiB"
            return text + (f", data-plane pod RSS {rss_mib(data_plane[1]):.1f} MiB" if data_plane else "")
        print(f"with 1 route: {rss()}")

        def p50_p99(xs):
            xs = sorted(xs)
            return statistics.median(xs), xs[min(len(xs) - 1, int(len(xs) * 0.99))], xs[-1]

        def latency(prefix, existing):
            """Create-to-200 over a.latency routes created one at a time."""
            times, after_post = [], []
            for i in range(a.latency):
                t0 = time.monotonic()
                api("POST", f"{GW}/namespaces/{NS}/httproutes", route(f"{prefix}-{i}", f"/{prefix}-{i}", a.last_applied))
                t1 = time.monotonic()
                wait(f"route {prefix}-{i}", lambda: get(ip, f"/{prefix}-{i}") == 200)
                times.append((time.monotonic() - t0) * 1000)
                after_post.append((time.monotonic() - t1) * 1000)
                time.sleep(a.spacing / 1000)
            spaced = f", {a.spacing:g} ms apart" if a.spacing else ""
            print("create HTTPRoute -> 200 over {} routes{}, {} existing: p50 {:.1f} ms, p99 {:.1f} ms, "
                  "max {:.1f} ms".format(len(times), spaced, existing, *p50_p99(times)))
            print("  of which after the API server answered the POST: p50 {:.1f} ms, p99 {:.1f} ms, "
                  "max {:.1f} ms".format(*p50_p99(after_post)))
        latency("lat", 1)

        def settle_then_latency(prefix, existing):
            if a.quiet:
                t0 = time.monotonic()
                wait("the controller to be quiet", lambda: quiet(ctl.pid), limit=600, step=0)
                print(f"controller quiet (status written) {time.monotonic() - t0:.1f} s later")
            latency(prefix, existing)

        latency_at = {int(x) for x in a.latency_at.split(",") if x}
        made = a.latency + 1
        for total in [int(x) for x in a.memory.split(",") if x]:
            t0, created = time.monotonic(), total > made
            if created:
                for i in range(made, total):
                    api("POST", f"{GW}/namespaces/{NS}/httproutes", route(f"mem-{i}", f"/mem-{i}", a.last_applied))
                made = total
                last = f"/mem-{total - 1}"
                wait(f"route {last}", lambda: get(ip, last) == 200, limit=600, step=0.05)
            wait("compiles to settle", settled, limit=60, step=0)
            if data_plane:
                wait("the pod's compiles to settle", lambda: settled(data_plane[0], 9901),
                     limit=60, step=0)
            live = f"live {time.monotonic() - t0:.1f} s after the first create, " if created else ""
            print(f"{made} HTTPRoutes: {live}{rss()}, {generation()} compiles so far")
            if total in latency_at:
                settle_then_latency(f"at{total}", made)
                made += a.latency
        if a.latency_after and made > a.latency + 1:
            settle_then_latency("late", made)
        if a.foreign_slices:
            # Pods coming and going behind a Service no route names: its EndpointSlice changes.
            path = f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"

            def body(i):
                return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                        "metadata": {"name": "foreign", "namespace": NS,
                                     "labels": {"kubernetes.io/service-name": "foreign"}},
                        "addressType": "IPv4", "ports": [{"port": 80}],
                        "endpoints": [{"addresses": [f"10.99.{i // 250}.{i % 250 + 1}"]}]}
            api("POST", path, body(0))
            wait("compiles to settle", settled, limit=60, step=0)
            before, t0 = generation(), time.monotonic()
            for i in range(1, a.foreign_slices + 1):
                api("PUT", f"{path}/foreign", body(i))
                time.sleep(0.01)
            wait("compiles to settle", settled, limit=60, step=0)
            print(f"{a.foreign_slices} changes to an EndpointSlice no route reads "
                  f"({time.monotonic() - t0:.1f} s): {generation() - before} compiles, {rss()}")
    finally:
        # The Gateway first, so that the controller drops the class's gateway-exists
        # finalizer before it stops; then the rest.
        t0 = time.monotonic()
        api("DELETE", f"{GW}/namespaces/{NS}/gateways/gw")
        try:
            wait("the GatewayClass finalizer to go", lambda: class_finalizer_gone(api, CLASS),
                 limit=30, step=0.05)
            print(f"Gateway deleted: the GatewayClass finalizer went after "
                  f"{time.monotonic() - t0:.2f} s")
        finally:
            remove(api, CLASS, NS, ctl)


if __name__ == "__main__":
    sys.exit(main())
