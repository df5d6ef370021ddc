#!/usr/bin/env python3
"""Time from a file change to the new route answering, with `loom serve` watching the file.

Starts a tiny backend and `loom serve` (release build), then N times: appends a route for a new
path to the served file and polls that path every 0.5 ms until it answers 200. Prints p50/p99/max.
Bounded: every wait stops after 5 s. usage: bench/reload_latency.py [N] (default 50); LOOM_BIN
names the binary (default target/release/loom).
"""
import http.server, os, socket, subprocess, sys, tempfile, threading, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 50

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass

backend, gw, admin = free_port(), free_port(), free_port()
threading.Thread(target=http.server.ThreadingHTTPServer(("127.0.0.1", backend), Echo).serve_forever, daemon=True).start()
base = f"""apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: loom}}
spec: {{controllerName: loom.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: loom
  listeners: [{{name: http, port: {gw}, protocol: HTTP}}]
---
apiVersion: gateway.loom.dev/v1alpha1
kind: Backend
metadata: {{name: b, namespace: default}}
spec: {{endpoints: ["127.0.0.1:{backend}"]}}
"""
def route(i):
    return f"""---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r{i}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{matches: [{{path: {{type: Exact, value: /r{i}}}}}], backendRefs: [{{group: gateway.loom.dev, kind: Backend, name: b}}]}}]
"""
d = tempfile.mkdtemp()
path = os.path.join(d, "gw.yaml")
with open(path, "w") as f: f.write(base + route(0))
loom = os.environ.get("LOOM_BIN", os.path.join(ROOT, "target", "release", "loom"))
proc = subprocess.Popen([loom, "serve", "-f", path, "--bind", "127.0.0.1", "--admin", f"127.0.0.1:{admin}", "--threads", "1"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
def status(p):
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{gw}{p}", timeout=1).status
    except Exception as e:
        return getattr(e, "code", 0)
try:
    deadline = time.time() + 10
    while status("/r0") != 200:
        assert time.time() < deadline, "loom did not start"
        time.sleep(0.01)
    times = []
    text = base + route(0)
    for i in range(1, N + 1):
        text += route(i)
        start = time.perf_counter()
        with open(path + ".tmp", "w") as f: f.write(text)
        os.replace(path + ".tmp", path)
        while status(f"/r{i}") != 200:
            assert time.perf_counter() - start < 5, f"route {i} never answered"
            time.sleep(0.0005)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    print(f"file change -> new route answering, {N} changes: p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, max {times[-1]:.1f} ms")
finally:
    proc.terminate(); proc.wait(timeout=10)
