"""Isolation, with processes in network namespaces: reachable by tailnet name, from nowhere else.

The pair is the stock MCP server on 127.0.0.1:8080 plus tailscaled + serve + gateway, in
one namespace (as in a pod). Checked here:
- peers not on the tailnet (a namespace on the same bridge, the host) cannot connect to
  any TCP port the pair listens on (every listening socket is enumerated with `ss`);
- the userspace bypass (docs/design.md facts 1 and 7): with an allow-all tailnet policy a
  tailnet peer reaches a server on 127.0.0.1 through `<tailnet-ip>:PORT`, and the same
  server on the loopback alias our own servers use (127.0.0.3) is refused: the alias does
  not depend on the policy;
- the sidecar knows it (packetfilter.py, read from tailscaled's packet filter): under
  allow-all, with the stock server on 127.0.0.1, readiness fails naming the grant to add,
  /metrics and the log say so; with the policy we ship (lab/compose/headscale/policy.json:
  tag:mcp-client -> tag:mcp:80,443) it is ready, the bypass is closed and the MCP server
  stays reachable by name;
- a node the policy does not allow cannot connect at all, and the same probes from that
  node succeed under allow-all (so the refusal is the policy, not a broken probe);
- TUN mode: `<tailnet-ip>:8080` is refused even with an allow-all policy, and ready.
"Reached the MCP server" is told by its answer (`server: uvicorn`); tailscaled's
SOCKS5 proxy reports whether a new TCP connection could be made at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio
import httpx
import pytest

from mcp_tailnet_lab.headscale import ALLOW_ALL_POLICY
from mcp_tailnet_sidecar.exposure import ExposureMonitor
from mcp_tailnet_sidecar.localapi import LocalAPI
from mcp_tailnet_sidecar.metrics import Metrics
from mcp_tailnet_lab.paths import REPO_DIR
from mcp_tailnet_lab.tailnet import PROXY_PORT

from .conftest import SIDECAR, stop, wait_for
from .test_tailnet import STOCK_PORT, use

pytestmark = pytest.mark.slow

SHIPPED_POLICY = REPO_DIR / "lab" / "compose" / "headscale" / "policy.json"
OUR_ALIAS = "127.0.0.3"  # where this repo's own servers listen (docs/design.md fact 7)
OTHER_PORT = STOCK_PORT + 1
SERVING = ("tailnet", "serve", "upstream")  # the checks that say the pair works, exposure aside


def readiness(health: Path) -> tuple[int, dict]:
    """The sidecar's /readyz (status, JSON) over its health socket."""
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(health)), timeout=20) as c:
        r = c.get("http://localhost/readyz")
    return r.status_code, r.json()


def metric(health: Path, name: str) -> float:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(health)), timeout=20) as c:
        text = c.get("http://localhost/metrics").text
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith(name + " ")))


def wait_checks(health: Path, names: tuple[str, ...], what: str, proc=None, timeout: float = 90,  # noqa: ANN001
                want: bool = True) -> dict:
    """Until every check in `names` reports ok (or, with want=False, the last one reports not ok)."""
    seen: list[dict] = []

    def done() -> bool:
        _, body = readiness(health)
        checks = body["checks"]
        seen.append(checks)
        if want:
            return all(checks[n]["ok"] for n in names)
        return all(checks[n]["ok"] for n in names[:-1]) and not checks[names[-1]]["ok"]
    wait_for(done, what, timeout=timeout, proc=proc)
    return seen[-1]


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
        self.log = d / "gateway.log"
        with self.log.open("wb") as fh:
            self.gateway = node.popen([SIDECAR, "gateway", "--apply-serve"], env=env, stdout=fh, stderr=fh)
        wait_checks(self.health, SERVING, f"the pair in {node.name} to serve", proc=self.gateway)

    def log_records(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

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
    """From `node` into the tailnet (a new connection: node.http_get): "mcp-server" when the MCP
    server (uvicorn) answered, "sidecar" when serve/the gateway did, "blocked" when no TCP
    connection could be made."""
    data = node.http_get(host, port, path)
    head = (data or b"").split(b"\r\n\r\n", 1)[0].lower()
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


def server_on(node, host: str, port: int) -> subprocess.Popen:
    """The stock server on host:port inside `node`'s namespace, listening when this returns."""
    proc = node.popen([sys.executable, "-m", "mcp_tailnet_lab.stock_mcp_server", "--host", host, "--port",
                       str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    code = f"import socket; socket.create_connection(({host!r}, {port}), 2).close()"
    wait_for(lambda: node.exec([sys.executable, "-c", code], check=False).returncode == 0,
             f"a server on {host}:{port} in {node.name}", timeout=30, proc=proc)
    return proc


def exposure_with(node, *, accept_risk: bool) -> tuple[bool, str]:
    """The readiness verdict computed in this process from the node's real tailscaled."""
    async def check() -> tuple[bool, str]:
        api = LocalAPI(node.socket)
        try:
            monitor = ExposureMonitor(api, Metrics().registry, upstream_url=f"http://127.0.0.1:{STOCK_PORT}",
                                      accept_risk=accept_risk, served=lambda: [80])
            return await monitor.check()
        finally:
            await api.aclose()
    return anyio.run(check)


def test_userspace_pair_isolation_and_the_shipped_policy(tailnet, headscale, workdir):
    srv = tailnet.node("iso-srv", tags=("tag:mcp",))
    client = tailnet.node("iso-client", tags=("tag:mcp-client",))
    stranger = tailnet.node("iso-stranger")  # user-owned, in no rule of the shipped policy
    outsider = tailnet.outsider("iso-out")
    pair = Pair(srv, workdir)
    other = None
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
        assert headscale.policy == ALLOW_ALL_POLICY
        assert via(client, srv.dns_name) == "sidecar"
        assert via(client, srv.ip, STOCK_PORT) == "mcp-server"
        # positive control for the ACL-denied node below: the same probes from it, allowed here
        assert via(stranger, srv.dns_name) == "sidecar"
        assert via(stranger, srv.ip, STOCK_PORT) == "mcp-server"

        # --- our own servers: a loopback alias is out of the forwarder's reach, under allow-all
        other = server_on(srv, "127.0.0.1", OTHER_PORT)
        assert via(client, srv.ip, OTHER_PORT) == "mcp-server"  # on 127.0.0.1: reached past serve
        stop(other)
        other = server_on(srv, OUR_ALIAS, OTHER_PORT)
        assert (OUR_ALIAS, OTHER_PORT) in pair.listening_ports()
        assert via(client, srv.ip, OTHER_PORT) == "blocked"  # on the alias: refused, same policy

        # --- the sidecar knows: its stock upstream is on 127.0.0.1 and the filter opens 8080
        checks = wait_checks(pair.health, (*SERVING, "exposure"), "readiness to fail on the open upstream port",
                             proc=pair.gateway, want=False)
        detail = checks["exposure"]["detail"]
        assert f"port {STOCK_PORT}" in detail and "past serve and the gateway" in detail, detail
        assert '"dst": ["tag:mcp:80"]' in detail and '"ip": ["tcp:80"]' in detail, detail
        assert "SIDECAR_ACCEPT_UPSTREAM_EXPOSURE=true" in detail
        status, _ = readiness(pair.health)
        assert status == 503
        assert subprocess.run([SIDECAR, "probe", "ready", "--socket", str(pair.health)],
                              capture_output=True, timeout=30).returncode == 1
        assert metric(pair.health, "mcp_sidecar_upstream_reachable_past_serve") == 1
        assert metric(pair.health, "mcp_sidecar_tailnet_unserved_tcp_ports") == 65535
        assert metric(pair.health, "mcp_sidecar_packet_filter_known") == 1
        logged = [r for r in pair.log_records() if r.get("event") == "tailnet_exposure" and r["upstream_exposed"]]
        assert logged and logged[-1]["level"] == "error" and '"dst": ["tag:mcp:80"]' in logged[-1]["msg"], logged
        # the explicit setting accepts the risk (same tailscaled, same filter)
        ok, accepted = exposure_with(srv, accept_risk=True)
        assert ok and "accepted by SIDECAR_ACCEPT_UPSTREAM_EXPOSURE=true" in accepted, accepted
        assert exposure_with(srv, accept_risk=False)[0] is False

        # --- the policy we ship: only tag:mcp-client -> tag:mcp on 80 and 443
        headscale.set_policy(json.loads(SHIPPED_POLICY.read_text()))
        checks = wait_checks(pair.health, (*SERVING, "exposure"), "readiness once the policy closes 8080",
                             proc=pair.gateway)
        assert "beyond the served 80: 443" in checks["exposure"]["detail"], checks["exposure"]
        assert readiness(pair.health)[0] == 200
        assert metric(pair.health, "mcp_sidecar_upstream_reachable_past_serve") == 0
        for transport in ("http", "sse"):
            tools, results = anyio.run(use, client.proxy_url, transport, f"http://{srv.dns_name}")
            assert tools == ["add", "echo", "sleep"] and results["add"] == 42
        assert via(client, srv.ip, STOCK_PORT) == "blocked"  # bypass closed
        assert via(stranger, srv.dns_name) == "blocked"  # not allowed: no way in
        assert via(stranger, srv.ip, STOCK_PORT) == "blocked"
    finally:
        headscale.set_policy(ALLOW_ALL_POLICY)
        if other is not None:
            stop(other)
        pair.close()
        for node in (srv, client, stranger):
            tailnet.remove(node)


def test_tun_mode_refuses_the_loopback_bypass_even_when_allowed(tailnet, workdir):
    srv = tailnet.node("tun-srv", mode="tun")
    client = tailnet.node("tun-client")
    pair = Pair(srv, workdir)
    try:
        checks = wait_checks(pair.health, (*SERVING, "exposure"), "the TUN pair to be ready", proc=pair.gateway)
        assert "TUN mode" in checks["exposure"]["detail"], checks["exposure"]  # allow-all, upstream on 127.0.0.1
        tools, results = anyio.run(use, client.proxy_url, "http", f"http://{srv.dns_name}")
        assert tools == ["add", "echo", "sleep"] and results["echo"] == "hello over the tailnet"
        assert via(client, srv.ip, STOCK_PORT) == "blocked"  # allow-all, still refused
    finally:
        pair.close()
        for node in (srv, client):
            tailnet.remove(node)
