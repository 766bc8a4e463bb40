"""Logs through the real API server proxy path: apiserver -> node's kubelet endpoint -> our TLS server.

The test registers a Node whose InternalIP is 127.0.0.1 and whose kubelet port is a TLS
server it runs; the API server proxies pods/log there (/containerLogs/<ns>/<pod>/<c>), as
it does to a real kubelet.
"""

from __future__ import annotations

import datetime
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from inspector_support import TRANSPORTS, base_env, err, ok, running_inspector

TOTAL_LINES = 1000


def _self_signed(dir_: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kubelet")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address(
                "127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = dir_ / "kubelet.crt", dir_ / "kubelet.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class FakeKubelet:
    """Answers the kubelet's /containerLogs endpoint, honouring tailLines and limitBytes."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                owner.requests.append((url.path, query))
                parts = url.path.split("/")
                if len(parts) != 5 or parts[1] != "containerLogs":
                    self.send_error(404)
                    return
                _, _, ns, pod, container = parts
                if container == "slow":
                    time.sleep(8)
                prefix = "previous " if query.get("previous") == ["true"] else ""
                lines = [f"{prefix}{pod}/{container} line {i}" for i in range(TOTAL_LINES)]
                lines[500] = f"{pod}/{container} line 500 connecting with password=hunter2 ERROR"
                if "tailLines" in query:
                    lines = lines[-int(query["tailLines"][0]):] if int(query["tailLines"][0]) else []
                body = "".join(f"{ln}\n" for ln in lines).encode()
                if "limitBytes" in query:
                    body = body[: int(query["limitBytes"][0])]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def kubelet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeKubelet]:
    cert, key = _self_signed(tmp_path_factory.mktemp("kubelet"))
    server = FakeKubelet(cert, key)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def node_with_pods(cluster, kubelet: FakeKubelet) -> Iterator[dict[str, str]]:
    suffix = secrets.token_hex(3)
    node, ns = f"fake-node-{suffix}", f"inspect-logs-{suffix}"
    cluster.kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node",
                                                           "metadata": {"name": node}}))
    cluster.kubectl("patch", "node", node, "--subresource=status", "--type=merge", "-p", json.dumps({"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "lastHeartbeatTime": None, "lastTransitionTime": None}],
    }}))
    cluster.kubectl("create", "namespace", ns)

    def pod(name: str, containers: list[str], labels: dict[str, str] | None = None) -> dict:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
                "spec": {"nodeName": node, "containers": [{"name": c, "image": "registry.example/x:1"}
                                                          for c in containers]}}

    docs = [pod("single", ["app"]), pod("multi", ["app", "sidecar"]), pod("slowpod", ["slow"]),
            pod("api-1", ["api"], {"app": "api"}), pod("api-2", ["api"], {"app": "api"})]
    docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"},
                 "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}},
                          "template": {"metadata": {"labels": {"app": "api"}},
                                       "spec": {"containers": [{"name": "api", "image": "registry.example/x:1"}]}}}})
    cluster.kubectl("create", "-n", ns, "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
    try:
        yield {"ns": ns, "node": node}
    finally:
        cluster.kubectl("delete", "node", node, "--wait=false", check=False)


@pytest.fixture(scope="module")
def fast_timeout_inspector(cluster, tmp_path_factory):
    env = {**base_env(cluster.kubeconfig), "INSPECTOR_CALL_TIMEOUT": "3"}
    with running_inspector(env, tmp_path_factory.mktemp("logs")) as server:
        yield server


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pod_logs_through_the_proxy(inspector, node_with_pods, kubelet: FakeKubelet, transport: str) -> None:
    ns = node_with_pods["ns"]
    before = len(kubelet.requests)
    result = inspector.call("logs", {"name": "single", "namespace": ns, "tail_lines": 20}, transport)
    out = ok(result)
    assert out.splitlines()[-1] == f"single/app line {TOTAL_LINES - 1}" and len(out.splitlines()) == 20
    path, query = kubelet.requests[before]
    assert path == f"/containerLogs/{ns}/single/app"
    assert query["tailLines"] == ["20"] and "limitBytes" in query
    assert result.structured_content["sources"] == [{"pod": "single", "container": "app", "lines": 20}]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_filters_previous_and_scrubbing(inspector, node_with_pods, kubelet: FakeKubelet, transport: str) -> None:
    ns = node_with_pods["ns"]
    grep = ok(inspector.call("logs", {"name": "single", "namespace": ns, "tail_lines": None, "grep": "line 99"},
                             transport))
    assert grep.splitlines() == ["single/app line 99"] + [f"single/app line {i}" for i in range(990, 1000)]
    regex = ok(inspector.call("logs", {"name": "single", "namespace": ns, "tail_lines": None,
                                       "grep": r"ERROR$", "regex": True}, transport))
    assert "line 500" in regex and "hunter2" not in regex and "[REDACTED]" in regex
    assert "valid regular expression" in err(inspector.call(
        "logs", {"name": "single", "namespace": ns, "grep": "(", "regex": True}, transport))
    before = len(kubelet.requests)
    prev = ok(inspector.call("logs", {"name": "pod/single", "namespace": ns, "previous": True, "tail_lines": 1},
                             transport))
    assert prev.startswith("previous ") and kubelet.requests[before][1]["previous"] == ["true"]
    limited = inspector.call("logs", {"name": "single", "namespace": ns, "tail_lines": None, "limit_bytes": 100},
                             transport)
    assert len(ok(limited).encode()) <= 100
    assert kubelet.requests[-1][1]["limitBytes"] == ["100"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_workload_logs_and_container_choice(inspector, node_with_pods, transport: str) -> None:
    ns = node_with_pods["ns"]
    out = ok(inspector.call("logs", {"name": "deployment/api", "namespace": ns, "tail_lines": 2}, transport))
    assert out.splitlines() == ["[api-1/api] api-1/api line 998", "[api-1/api] api-1/api line 999",
                                "[api-2/api] api-2/api line 998", "[api-2/api] api-2/api line 999"]
    message = err(inspector.call("logs", {"name": "multi", "namespace": ns}, transport))
    assert "app, sidecar" in message
    assert "multi/sidecar line 999" in ok(inspector.call(
        "logs", {"name": "multi", "namespace": ns, "container": "sidecar", "tail_lines": 1}, transport))


def test_slow_kubelet_times_out_and_server_keeps_serving(fast_timeout_inspector, node_with_pods) -> None:
    ns = node_with_pods["ns"]
    for transport in TRANSPORTS:
        message = err(fast_timeout_inspector.call("logs", {"name": "slowpod", "namespace": ns}, transport))
        assert "within 3" in message and "\n" not in message
        assert ok(fast_timeout_inspector.call("logs", {"name": "single", "namespace": ns, "tail_lines": 1},
                                              transport))
