"""A kubelet's log endpoint, so `pods/log` goes through the real API server's proxy path.

The lab cluster has no nodes. `node_with_kubelet` registers a Node whose InternalIP is
127.0.0.1 and whose kubelet port is a TLS server run here (a certificate from a CA the
API server has never seen: it skips verification, as with a kubelet without a CA); the
API server then proxies `GET .../pods/NAME/log` to `/containerLogs/NS/POD/CONTAINER`
on it, as it does to a real kubelet. What each container "logged" is the test's choice.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import ssl
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mcp_tailnet_lab import pki

#: (namespace, pod, container, query) -> the container's whole log; the server applies
#: tailLines and limitBytes like the kubelet does.
LogSource = Callable[[str, str, str, dict[str, list[str]]], str]


@dataclass
class FakeKubelet:
    port: int
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)


def _serve(source: LogSource, kubelet: FakeKubelet) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            kubelet.requests.append((url.path, query))
            parts = url.path.split("/")
            if len(parts) != 5 or parts[1] != "containerLogs":
                self.send_error(404)
                return
            lines = source(parts[2], parts[3], parts[4], query).splitlines(keepends=True)
            if "tailLines" in query:
                n = int(query["tailLines"][0])
                lines = lines[-n:] if n else []
            body = "".join(lines).encode()
            if "limitBytes" in query:
                body = body[: int(query["limitBytes"][0])]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextlib.contextmanager
def running_kubelet(source: LogSource) -> Iterator[FakeKubelet]:
    """The TLS log endpoint on a free loopback port, stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="fake-kubelet-") as tmp:
        cert, key = Path(tmp) / "kubelet.crt", Path(tmp) / "kubelet.key"
        pki.CertificateAuthority("fake-kubelet-ca").issue("fake-kubelet", server=True,
                                                          ip_addresses=("127.0.0.1",)).write(cert, key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
    kubelet = FakeKubelet(port=0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _serve(source, kubelet))
    server.daemon_threads = True
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    kubelet.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield kubelet
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextlib.contextmanager
def node_with_kubelet(cluster: Any, kubelet: FakeKubelet) -> Iterator[str]:
    """A Ready Node whose kubelet endpoint is `kubelet`; its name, deleted afterwards."""
    node = f"fake-node-{secrets.token_hex(3)}"
    cluster.kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node",
                                                           "metadata": {"name": node}}))
    try:
        cluster.kubectl("patch", "node", node, "--subresource=status", "--type=merge", "-p", json.dumps({"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "lastHeartbeatTime": None, "lastTransitionTime": None}],
        }}))
        yield node
    finally:
        cluster.kubectl("delete", "node", node, "--wait=false", check=False)
