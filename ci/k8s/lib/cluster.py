"""The ci/k8s cluster from Python (ci/k8s/lib/churn.py, bench/k8s_routes.py): its API server
with the admin client certificate, a bounded wait, a fresh namespace, the conformance suite's
echo backend, and the Gateway API objects a test controller serves and removes."""

import http.client
import json
import os
import signal
import ssl
import subprocess
import time

RUN = os.environ.get("LOOM_K8S_RUN", "/run/loom-k8s")
GW = "/apis/gateway.networking.k8s.io/v1"


class Api:
    """The API server on one kept-alive connection (a TLS handshake per request would
    dominate the timings). Call it as `api(method, path, body)`: (status, JSON body or None);
    a status not in `ok` raises RuntimeError."""

    def __init__(self):
        self.ctx = ssl.create_default_context(cafile=f"{RUN}/pki/ca.crt")
        self.ctx.load_cert_chain(f"{RUN}/pki/admin.crt", f"{RUN}/pki/admin.key")
        self.conn = None

    def __call__(self, method, path, body=None, ok=(200, 201, 202, 404, 409)):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection("127.0.0.1", 6443, context=self.ctx, timeout=30)
            try:
                self.conn.request(method, path, body=json.dumps(body) if body else None,
                                  headers={"Content-Type": "application/json"})
                r = self.conn.getresponse()
                data = r.read()
                break
            except (OSError, http.client.HTTPException):
                self.conn = None
                if attempt:
                    raise
        if r.status not in ok:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
        is_json = (r.getheader("Content-Type") or "").startswith("application/json")
        return r.status, json.loads(data) if data and is_json else None


def wait(what, fn, limit=60.0, step=0.05):
    """fn's first true value, asked every `step` s; TimeoutError after `limit` s."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    raise TimeoutError(f"timed out after {limit:.0f} s waiting for {what}")


def fresh_namespace(api, ns):
    """Creates `ns` once a namespace of that name from an earlier run has gone."""
    def not_terminating():
        code, got = api("GET", f"/api/v1/namespaces/{ns}")
        return code == 404 or got.get("status", {}).get("phase") != "Terminating"
    wait(f"namespace {ns} of an earlier run to go", not_terminating, limit=300, step=0.5)
    api("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})


def echo_backend(api, ns, ports):
    """Service `echo` (`ports`: Service port specs, all to the pod's port 3000) and a
    Deployment of the conformance suite's echo server, whose answers name pod and namespace."""
    api("POST", f"/api/v1/namespaces/{ns}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": ns},
        "spec": {"selector": {"app": "echo"}, "ports": [{**p, "targetPort": 3000} for p in ports]}})
    api("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "echo", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "echo"}},
                 "template": {"metadata": {"labels": {"app": "echo"}}, "spec": {"containers": [{
                     "name": "echo", "image": "registry.k8s.io/gateway-api/echo-basic:v1.5.1",
                     "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                             {"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]}]}}}})


def gateway_address(api, ns, name):
    """The first address in the Gateway's status, or None."""
    _, gw = api("GET", f"{GW}/namespaces/{ns}/gateways/{name}")
    addrs = (gw or {}).get("status", {}).get("addresses", [])
    return addrs[0]["value"] if addrs else None


def class_finalizer_gone(api, cls):
    """Whether the GatewayClass carries no finalizer (its controller let go of it)."""
    _, c = api("GET", f"{GW}/gatewayclasses/{cls}")
    return not (c or {}).get("metadata", {}).get("finalizers")


def remove(api, cls, ns, controller):
    """Deletes the GatewayClass and the namespace, then stops the controller process."""
    api("DELETE", f"{GW}/gatewayclasses/{cls}")
    api("DELETE", f"/api/v1/namespaces/{ns}")
    controller.send_signal(signal.SIGTERM)
    try:
        controller.wait(10)
    except subprocess.TimeoutExpired:
        controller.kill()
