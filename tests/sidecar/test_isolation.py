"""Isolation, with processes in network namespaces: reachable by tailnet name, from nowhere else.

The pair is the stock MCP server on 127.0.0.1:8080 plus tailscaled + serve + gateway, in
one namespace (as in a pod). Checked here:
- peers not on the tailnet (a namespace on the same bridge, the host) cannot connect to
  any TCP port the pair listens on (every listening socket is enumerated with `ss`);
- the userspace bypass (docs/design.md fact 1): with an allow-all tailnet policy a tailnet peer
  reaches the server's loopback port through `<tailnet-ip>:8080`; with the policy we
  ship (lab/compose/headscale/policy.json: tag:mcp-client -> tag:mcp:80,443) it cannot,
  while the MCP server stays reachable by name; a node the policy does not allow cannot
  connect at all;
- TUN mode: `<tailnet-ip>:8080` is refused even with an allow-all policy.
"Reached the MCP server" is told by its answer (`server: uvicorn`); tailscaled's
SOCKS5 proxy reports whether a new TCP connection could be made at all.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio
import pytest

from mcp_tailnet_lab.headscale import ALLOW_ALL_POLICY
from mcp_tailnet_lab.paths import REPO_DIR
from mcp_tailnet_lab.tailnet import PROXY_PORT

from .conftest import SIDECAR, stop, wait_for
from .test_tailnet import STOCK_PORT, use

pytestmark = pytest.mark.slow

SHIPPED_POLICY = REPO_DIR / "lab" / "compose" / "headscale" / "policy.json"


class Pair:
    """Stock server + gateway (serve applied) inside a tailnet node's namespace."""

    def __init__(self, node, workdir: Path) -> None:
        self.node = node
        self.stock = node.popen([sys.executable, "-m", "mcp_tailnet_lab.stock_mcp_server", "--port",
                                 str(STOCK_PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        d = Path(tempfile.mkdtemp(prefix="i", dir=workdir))
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TS_SOCKET": str(node.socket),
               "SIDECAR_UPSTREAM_URL": f"http://127.0.0.1:{STOCK_PORT}",
               "SIDECAR_GATEWAY_SOCKET": str(d / "gw.sock"), "SIDECAR_HEALTH_SOCKET": str(d / "health.sock")}
        self.health = d / "health.sock"
        with (d / "gateway.log").open("wb") as fh:
            self.gateway = node.popen([SIDECAR, "gateway", "--apply-serve"], env=env, stdout=fh, stderr=fh)
        wait_for(lambda: subprocess.run([SIDECAR, "probe", "ready", "--socket", str(self.health)],
                                        capture_output=True, timeout=30).returncode == 0,
                 f"the pair in {node.name} to be ready", timeout=90, proc=self.gateway)

    def listening_ports(self) -> list[tuple[str, int]]:
        out = self.node.exec(["ss", "-ltnH"]).stdout
        ports = []
        for line in out.splitlines():
            local = line.split()[3]
            addr, _, port = local.rpartition(":")
            ports.append((addr.strip("[]"), int(port)))
        return ports

    def close(self) -> None:
        stop(self.gateway)
        stop(self.stock)
        self.node.cli("serve", "reset", check=False)


def via(node, host: str, port: int = 80, path: str = "/not-mcp") -> str:
    """A fresh TCP connection from `node` into the tailnet (its SOCKS5 proxy, so no pooled
    connection from an earlier check can carry over a policy change: tailscale's filter
    judges new flows), then one HTTP request. Returns "mcp-server" when the MCP server
    (uvicorn) answered, "sidecar" when serve/the gateway did, "blocked" when no TCP
    connection could be made."""
    proxy_host, proxy_port = node.proxy_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((proxy_host, int(proxy_port)), timeout=10) as c:
        c.settimeout(25)
        c.sendall(b"\x05\x01\x00")
        if c.recv(2) != b"\x05\x00":
            raise AssertionError("the node's SOCKS5 proxy refused the greeting")
        name = host.encode()
        c.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
        try:
            reply = c.recv(10)
        except TimeoutError:
            return "blocked"
        if len(reply) < 2 or reply[1] != 0:
            return "blocked"
        c.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := c.recv(4096):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    if not head.startswith(b"http/1.1"):
        return "blocked"
    return "mcp-server" if b"\r\nserver: uvicorn" in head else "sidecar"


def talk(ns, host: str, port: int) -> str:
    """From namespace `ns`: "refused" (no TCP connection), "closed-without-answer" (connected,
    sent an HTTP request, got EOF and no byte) or "answered"."""
    code = ("import socket,sys\n"
            f"try: c = socket.create_connection(({host!r}, {port}), timeout=3)\n"
            "except OSError: print('refused'); sys.exit()\n"
            "c.settimeout(5); c.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
            "try: data = c.recv(100)\n"
            "except OSError: data = b''\n"
            "print('answered' if data else 'closed-without-answer')\n")
    return ns.exec([sys.executable, "-c", code], timeout=30).stdout.strip()


def host_can_connect(host: str, port: int) -> bool:
    import socket
    try:
        socket.create_connection((host, port), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.fixture
def workdir():
    d = Path(tempfile.mkdtemp(prefix="iso-", dir="/tmp"))
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


def test_userspace_pair_isolation_and_the_shipped_policy(tailnet, headscale, workdir):
    srv = tailnet.node("iso-srv", tags=("tag:mcp",))
    client = tailnet.node("iso-client", tags=("tag:mcp-client",))
    stranger = tailnet.node("iso-stranger")  # user-owned, in no rule of the shipped policy
    outsider = tailnet.outsider("iso-out")
    pair = Pair(srv, workdir)
    try:
        # --- not on the tailnet: every TCP port of the pair, from the bridge and the host
        ports = pair.listening_ports()
        assert ("127.0.0.1", STOCK_PORT) in ports, ports  # the MCP server binds loopback only
        assert all(port not in (80, 443) for _, port in ports)  # serve lives in netstack, not here
        peerapi = {int(u.rsplit(":", 1)[1]) for u in srv.status()["Self"].get("PeerAPIURL") or []}
        for addr, port in ports:
            if port in peerapi and addr in ("0.0.0.0", "::", "*"):
                # Userspace tailscaled's PeerAPI listens on all interfaces (upstream
                # peerapi.go: netstack mode binds ""), so the TCP handshake completes from
                # the bridge; WhoIs finds no tailnet peer and it closes without a byte.
                # Only a network control (security group, NetworkPolicy) closes the port.
                assert talk(outsider, srv.lan_ip, port) == "closed-without-answer", (addr, port)
                continue
            assert talk(outsider, srv.lan_ip, port) == "refused", (addr, port)
            if port != PROXY_PORT:  # the lab's own proxy for this test process, not part of the pair
                assert not host_can_connect(srv.lan_ip, port), (addr, port)
        for port in (80, 443, 9002, STOCK_PORT):
            assert talk(outsider, srv.lan_ip, port) == "refused", port

        # --- allow-all policy: by name works, and the userspace bypass is open (docs/design.md fact 1)
        assert via(client, srv.dns_name) == "sidecar"
        assert via(client, srv.ip, STOCK_PORT) == "mcp-server"

        # --- the policy we ship: only tag:mcp-client -> tag:mcp on 80 and 443
        headscale.set_policy(json.loads(SHIPPED_POLICY.read_text()))
        for transport in ("http", "sse"):
            tools, results = anyio.run(use, client.proxy_url, transport, f"http://{srv.dns_name}")
            assert tools == ["add", "echo", "sleep"] and results["add"] == 42
        assert via(client, srv.ip, STOCK_PORT) == "blocked"  # bypass closed
        assert via(stranger, srv.dns_name) == "blocked"  # not allowed: no way in
        assert via(stranger, srv.ip, STOCK_PORT) == "blocked"
    finally:
        headscale.set_policy(ALLOW_ALL_POLICY)
        pair.close()
        for node in (srv, client, stranger):
            tailnet.remove(node)


def test_tun_mode_refuses_the_loopback_bypass_even_when_allowed(tailnet, workdir):
    srv = tailnet.node("tun-srv", mode="tun")
    client = tailnet.node("tun-client")
    pair = Pair(srv, workdir)
    try:
        tools, results = anyio.run(use, client.proxy_url, "http", f"http://{srv.dns_name}")
        assert tools == ["add", "echo", "sleep"] and results["echo"] == "hello over the tailnet"
        assert via(client, srv.ip, STOCK_PORT) == "blocked"  # allow-all, still refused
    finally:
        pair.close()
        for node in (srv, client):
            tailnet.remove(node)
