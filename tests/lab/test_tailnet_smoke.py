"""Smoke tests of the lab tailnet: real headscale, real tailscaled nodes in namespaces.

Each test would fail if a part were missing or faked: names resolve only
through MagicDNS, bytes travel only through tailscaled, the outsider namespace
shares the LAN but not the tailnet, and the ACL policy changes what passes.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mcp_tailnet_lab.headscale import ALLOW_ALL_POLICY, Headscale
from mcp_tailnet_lab.netns import Namespace
from mcp_tailnet_lab.paths import REPO_DIR, MissingComponent, versions
from mcp_tailnet_lab.tailnet import Tailnet, TailnetNode

# A tiny HTTP server answering every GET with a per-test token, so a 200 proves
# we reached *this* server and not something else on that port.
SERVER = textwrap.dedent(
    """
    import http.server, sys
    host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.send_header("Content-Length", str(len(token))); self.end_headers()
            self.wfile.write(token)
        def log_message(self, *a): pass
    http.server.ThreadingHTTPServer((host, port), H).serve_forever()
    """
)

# Connect (and GET) from inside a namespace; prints OK:<body> or FAIL:<error>.
PROBE = textwrap.dedent(
    """
    import sys, urllib.request
    try:
        body = urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read().decode()
        print("OK:" + body)
    except Exception as exc:
        print("FAIL:" + type(exc).__name__ + ":" + str(exc))
    """
)


def serve(where: TailnetNode | Namespace, host: str, port: int) -> tuple[subprocess.Popen, str]:
    """Start the token server inside `where`; returns (process, token) once it answers."""
    token = secrets.token_hex(8)
    proc = where.popen([sys.executable, "-c", SERVER, host, str(port), token], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(50):
        if proc.poll() is not None:
            raise RuntimeError(f"test server exited: {proc.stderr.read().decode()[-300:] if proc.stderr else ''}")
        if probe(where, f"http://{host}:{port}/", timeout=1) == f"OK:{token}":
            return proc, token
    proc.kill()
    raise RuntimeError(f"test server on {host}:{port} did not answer")


def probe(where: TailnetNode | Namespace, url: str, timeout: float = 5) -> str:
    return where.exec([sys.executable, "-c", PROBE, url, str(timeout)], timeout=timeout + 30).stdout.strip()


def via_proxy(node: TailnetNode, url: str, timeout: float = 10) -> str:
    """GET `url` from the host through `node`'s tailscaled proxy; OK:<body> or FAIL:<why>."""
    try:
        with httpx.Client(proxy=node.proxy_url, timeout=timeout) as client:
            r = client.get(url)
    except httpx.HTTPError as exc:
        return f"FAIL:{type(exc).__name__}:{exc}"
    return f"OK:{r.text}" if r.status_code == 200 else f"FAIL:HTTP {r.status_code}"


@pytest.fixture
def nodes(tailnet: Tailnet) -> Iterator[list[TailnetNode]]:
    """Nodes a test makes; stopped when it ends so tests don't see each other's."""
    made: list[TailnetNode] = []
    yield made
    for node in made:
        tailnet.remove(node)


PORT = 18080


def test_two_nodes_reach_each_other_by_magicdns_name(tailnet: Tailnet, headscale: Headscale, nodes: list[TailnetNode]) -> None:
    alpha = tailnet.node("alpha")
    nodes.append(alpha)
    bravo = tailnet.node("bravo")
    nodes.append(bravo)
    assert alpha.ip.startswith("100.") and alpha.ip != bravo.ip
    assert alpha.dns_name == f"alpha.{headscale.base_domain}"
    assert {"alpha", "bravo"} <= {n.get("given_name") for n in headscale.nodes()}

    # Bound to alpha's loopback only: userspace netstack forwards the tailnet
    # port there (docs/design.md fact 1), nothing on the LAN can reach it directly.
    server, token = serve(alpha, "127.0.0.1", PORT)
    try:
        assert via_proxy(bravo, f"http://{alpha.dns_name}:{PORT}/") == f"OK:{token}"
        # The proxy of alpha itself reaching alpha by name works too, but a name
        # that is not on the tailnet does not resolve.
        assert via_proxy(bravo, f"http://nosuchnode.{headscale.base_domain}:{PORT}/").startswith("FAIL")
        # `tailscale ping` by MagicDNS name: the FQDN with its trailing dot (or
        # the short name) matches the peer list; nothing goes to a resolver.
        ping = bravo.cli("ping", "-c", "5", "--timeout", "5s", "--until-direct=false", f"{alpha.dns_name}.", check=False)
        assert ping.returncode == 0 and "pong from alpha" in ping.stdout, ping.stdout + ping.stderr
    finally:
        server.kill()


def test_outsider_on_the_same_lan_cannot_reach_the_tailnet(tailnet: Tailnet, headscale: Headscale, nodes: list[TailnetNode]) -> None:
    alpha = tailnet.node("alpha")
    nodes.append(alpha)
    bravo = tailnet.node("bravo")
    nodes.append(bravo)
    outsider = tailnet.outsider("mallory")
    server, token = serve(alpha, "127.0.0.1", PORT)
    try:
        # Positive controls: the outsider's network works (it reaches headscale
        # on the bridge), and the service is up over the tailnet.
        assert probe(outsider, f"{headscale.url}/health").startswith("OK:")
        assert via_proxy(bravo, f"http://{alpha.dns_name}:{PORT}/") == f"OK:{token}"
        for url in (
            f"http://{alpha.ip}:{PORT}/",  # alpha's tailnet IP
            f"http://{bravo.ip}:{PORT}/",
            f"http://{alpha.lan_ip}:{PORT}/",  # alpha's LAN side: service is loopback-only
            f"http://{alpha.lan_ip}:1055/",  # alpha's proxy: for the host only
        ):
            assert probe(outsider, url, timeout=3).startswith("FAIL:"), url
        # And MagicDNS names mean nothing off the tailnet.
        assert probe(outsider, f"http://{alpha.dns_name}:{PORT}/", timeout=3).startswith("FAIL:")
    finally:
        server.kill()


def test_tun_mode_node_resolves_and_is_reached_by_magicdns_name(tailnet: Tailnet, nodes: list[TailnetNode]) -> None:
    alpha = tailnet.node("alpha")
    nodes.append(alpha)
    charlie = tailnet.node("charlie", mode="tun")
    nodes.append(charlie)
    # A real kernel interface holds charlie's tailnet IP.
    assert charlie.ip in charlie.exec(["ip", "-4", "addr", "show", "dev", "tailscale0"]).stdout
    # charlie's resolv.conf points at 100.100.100.100 only: MagicDNS answers.
    resolved = charlie.exec(["getent", "ahostsv4", alpha.dns_name]).stdout.split()
    assert resolved and resolved[0] == alpha.ip
    server, token = serve(alpha, "127.0.0.1", PORT)
    tun_server, tun_token = serve(charlie, charlie.ip, PORT + 1)
    try:
        # TUN -> userspace by name, from a plain process in charlie's namespace.
        assert probe(charlie, f"http://{alpha.dns_name}:{PORT}/") == f"OK:{token}"
        # userspace -> TUN by name, through alpha's proxy.
        assert via_proxy(alpha, f"http://{charlie.dns_name}:{PORT + 1}/") == f"OK:{tun_token}"
    finally:
        server.kill()
        tun_server.kill()


def test_acl_policy_decides_what_is_reachable(tailnet: Tailnet, headscale: Headscale, nodes: list[TailnetNode]) -> None:
    alpha = tailnet.node("alpha")
    nodes.append(alpha)
    bravo = tailnet.node("bravo")
    nodes.append(bravo)
    server, token = serve(alpha, "127.0.0.1", PORT)
    other, other_token = serve(alpha, "127.0.0.1", PORT + 2)
    url, other_url = f"http://{alpha.dns_name}:{PORT}/", f"http://{alpha.dns_name}:{PORT + 2}/"
    try:
        assert via_proxy(bravo, url) == f"OK:{token}"
        headscale.set_policy({"acls": []})  # nothing allowed
        assert via_proxy(bravo, url, timeout=5).startswith("FAIL:")
        # Allow exactly one port: the other one stays closed.
        headscale.set_policy({"acls": [{"action": "accept", "src": ["lab@"], "dst": [f"lab@:{PORT}"]}]})
        assert via_proxy(bravo, url) == f"OK:{token}"
        assert via_proxy(bravo, other_url, timeout=5).startswith("FAIL:")
        # Invalid policies are refused with headscale's reason, nothing changes.
        with pytest.raises(RuntimeError, match="policy"):
            headscale.set_policy({"acls": [{"action": "bogus", "src": ["*"], "dst": ["*:*"]}]})
        assert via_proxy(bravo, url) == f"OK:{token}"
        assert via_proxy(bravo, other_url, timeout=5).startswith("FAIL:")
        # Back to allow-all: the other port opens again.
        headscale.set_policy(ALLOW_ALL_POLICY)
        assert via_proxy(bravo, other_url) == f"OK:{other_token}"
    finally:
        if headscale.policy != ALLOW_ALL_POLICY:
            headscale.set_policy(ALLOW_ALL_POLICY)
        server.kill()
        other.kill()


def test_missing_binaries_are_named(tailnet: Tailnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    v = versions()
    monkeypatch.setenv("MCP_TAILNET_CACHE", str(tmp_path))
    with pytest.raises(MissingComponent, match=f"headscale {v['HEADSCALE_VERSION']} is missing"):
        Headscale("127.0.0.1")
    with pytest.raises(MissingComponent, match=f"tailscaled {v['TAILSCALE_VERSION']} is missing"):
        tailnet.node("delta")


@pytest.mark.parametrize("missing", ["headscale", "tailscaled"])
def test_smoke_test_fails_naming_a_removed_binary(missing: str, tmp_path: Path) -> None:
    """Run the two-node smoke test in a fresh pytest with one binary removed."""
    from mcp_tailnet_lab.paths import binary

    v = versions()
    for name, component, key in (("headscale", "headscale", "HEADSCALE_VERSION"), ("tailscaled", "tailscale", "TAILSCALE_VERSION"), ("tailscale", "tailscale", "TAILSCALE_VERSION")):
        if name != missing:
            d = tmp_path / "bin" / f"{component}-{v[key]}"
            d.mkdir(parents=True, exist_ok=True)
            (d / name).symlink_to(binary(name))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", f"{__file__}::test_two_nodes_reach_each_other_by_magicdns_name"],
        capture_output=True, text=True, timeout=300, cwd=REPO_DIR, env={**os.environ, "MCP_TAILNET_CACHE": str(tmp_path)},
    )
    assert proc.returncode != 0, proc.stdout
    assert f"{missing} {v['HEADSCALE_VERSION' if missing == 'headscale' else 'TAILSCALE_VERSION']} is missing" in proc.stdout, proc.stdout[-2000:]


def test_headscale_url_is_reachable_from_a_docker_container(headscale: Headscale, docker_client) -> None:
    """Sidecar containers log in to the same headscale: its URL must work from Docker's network."""
    image = versions()["PYTHON_BASE_IMAGE"]
    script = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1] + '/health', timeout=10).read().decode())"
    out = docker_client.containers.run(image, ["python3", "-c", script, headscale.url], entrypoint=[], remove=True, labels={"mcp-tailnet-lab": "tailnet-smoke"})
    assert '"status":"pass"' in out.decode()
