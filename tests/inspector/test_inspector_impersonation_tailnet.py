"""INSPECTOR_IMPERSONATE=caller end to end: tailnet callers -> `tailscale serve` -> the sidecar's gateway
-> the real inspector -> the real kube-apiserver, the whole chain of issue 13 §2 and §3.

Topology: `impsrv` (tag:mcp) runs the inspector on the loopback alias 127.0.0.3 of its namespace
and `mcp-tailnet-sidecar gateway --apply-serve` in front of it; the inspector reads a lab cluster
bound to the lab bridge's host address with a ServiceAccount token that may only impersonate the
three callers: `impalice` (user imp-alice, a RoleBinding in the namespace), `impbob` (user imp-bob,
none) and `impbot` (tag:ci, bound through the group tailnet:tag:ci). Each asks the same question
over the tailnet and gets its own answer; forged caller and impersonation headers gain nothing;
the API server's audit log names the caller the gateway verified.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcp_tailnet_lab.cluster import LocalCluster
from mcp_tailnet_lab.gateway_process import stop
from mcp_tailnet_lab.node_gateway import NodeGateway, start_node_gateway
from mcp_tailnet_lab.tailnet import TailnetNode
from mcp_tailnet_lab.waiting import wait_for

from inspector_support import apply, base_env
from test_inspector_impersonation import impersonator_role, pod_reader

pytestmark = pytest.mark.slow

INSPECTOR_PORT = 8080
ACCEPT = "application/json, text/event-stream"
VERSION = "2025-06-18"


@dataclass
class Lab:
    cluster: LocalCluster
    namespace: str
    callers: dict[str, TailnetNode]
    logins: dict[str, str]
    url: str
    gw: NodeGateway
    sa: str


def _login(node: TailnetNode) -> str:
    status = node.status()
    return status["User"][str(status["Self"]["UserID"])]["LoginName"]


@pytest.fixture(scope="module")
def lab(tailnet, lab_network) -> Iterator[Lab]:
    workdir = Path(tempfile.mkdtemp(prefix="imp-", dir="/tmp"))
    nodes: list[TailnetNode] = []
    cluster = inspector = gw = None
    try:
        # the inspector runs in the server node's namespace: the API server listens where it can reach
        cluster = LocalCluster.start(bind_address=lab_network.host_ip)
        nodes.append(srv := tailnet.node("impsrv", tags=("tag:mcp",)))
        nodes.append(alice := tailnet.node("impalice", user="imp-alice"))
        nodes.append(bob := tailnet.node("impbob", user="imp-bob"))
        nodes.append(bot := tailnet.node("impbot", tags=("tag:ci",)))
        logins = {"alice": _login(alice), "bob": _login(bob)}
        ns = f"team-{secrets.token_hex(3)}"
        cluster.kubectl("create", "namespace", ns)
        cluster.kubectl("run", "web", "-n", ns, "--image=registry.example/web:1")
        apply(cluster, pod_reader(ns, "alice-reads", "User", logins["alice"]))
        apply(cluster, pod_reader(ns, "ci-reads", "Group", "tailnet:tag:ci"))
        apply(cluster, impersonator_role("impersonator", [logins["alice"], logins["bob"], f"tailnet:node:{bot.dns_name}"],
                                         ["tailnet:tag:ci"]))
        cluster.kubectl("create", "namespace", "mcp")
        cluster.kubectl("create", "clusterrolebinding", "inspector", "--clusterrole=impersonator",
                        "--serviceaccount=mcp:eks-inspector")
        kubeconfig = cluster.kubeconfig_for_token(cluster.mint_token("mcp", "eks-inspector"), workdir / "sa.kubeconfig")
        env = {**base_env(kubeconfig), "INSPECTOR_IMPERSONATE": "caller", "INSPECTOR_HOST": "127.0.0.3",
               "INSPECTOR_PORT": str(INSPECTOR_PORT)}
        with (workdir / "inspector.log").open("wb") as out:
            inspector = srv.popen([sys.executable, "-m", "eks_inspector"], env=env, stdout=out, stderr=out)
        probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.3:{INSPECTOR_PORT}/healthz', timeout=2)"
        wait_for(lambda: srv.exec([sys.executable, "-c", probe], check=False).returncode == 0,
                 "the inspector in impsrv's namespace", timeout=60, proc=inspector)
        gw = start_node_gateway(srv, workdir, SIDECAR_UPSTREAM_URL=f"http://127.0.0.3:{INSPECTOR_PORT}")
        for node in (alice, bob, bot):
            node.wait_for_peers({srv.dns_name})
        yield Lab(cluster, ns, {"alice": alice, "bob": bob, "bot": bot}, logins, f"http://{srv.dns_name}", gw,
                  "system:serviceaccount:mcp:eks-inspector")
    finally:
        if gw is not None:
            gw.stop()
        if inspector is not None:
            stop(inspector)
        for n in nodes:
            tailnet.remove(n)
        if cluster is not None:
            cluster.stop()
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


def _answer(r: httpx.Response, id_: int) -> dict[str, Any]:
    assert r.status_code == 200, (r.status_code, r.text[:300])
    if r.headers.get("content-type", "").startswith("application/json"):
        return r.json()
    for line in r.text.splitlines():
        if line.startswith("data:") and json.loads(line[5:]).get("id") == id_:
            return json.loads(line[5:])
    raise AssertionError(f"no answer {id_} in {r.text[:300]!r}")


def get_pods(lab: Lab, who: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """One Streamable HTTP session from `who`'s node, over the tailnet; the tools/call result."""
    extra = {"Accept": ACCEPT, **(headers or {})}
    with httpx.Client(proxy=lab.callers[who].proxy_url, timeout=60) as c:
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "imp", "version": "1"}}}
        r = c.post(f"{lab.url}/mcp", json=init, headers=extra)
        _answer(r, 1)
        session = {"Mcp-Session-Id": r.headers["mcp-session-id"], "MCP-Protocol-Version": VERSION}
        c.post(f"{lab.url}/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"},
               headers=extra | session)
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "get", "arguments": {"resource": "pods", "namespace": lab.namespace}}}
        return _answer(c.post(f"{lab.url}/mcp", json=call, headers=extra | session), 2)["result"]


def text(result: dict[str, Any]) -> str:
    return "\n".join(c.get("text", "") for c in result["content"])


def test_each_tailnet_caller_reads_as_itself(lab: Lab) -> None:
    alice = get_pods(lab, "alice")
    assert not alice.get("isError") and "web" in text(alice), text(alice)
    bob = get_pods(lab, "bob")
    assert bob.get("isError") and text(bob).startswith(
        f'forbidden: tailnet user "{lab.logins["bob"]}" may not list pods in namespace "{lab.namespace}"'), text(bob)
    bot = get_pods(lab, "bot")
    assert not bot.get("isError") and "web" in text(bot), text(bot)


def test_forged_headers_gain_nothing(lab: Lab) -> None:
    """bob claims alice's login, the ci tag and Kubernetes' own impersonation headers: still bob."""
    forged = {"Mcp-Tailnet-Caller-Login": lab.logins["alice"], "MCP-TAILNET-CALLER-TAGS": "tag:ci",
              "Mcp-Tailnet-Caller-Node": lab.callers["alice"].dns_name,
              "Impersonate-User": lab.logins["alice"], "Impersonate-Group": "system:masters"}
    bob = get_pods(lab, "bob", forged)
    assert bob.get("isError") and f'tailnet user "{lab.logins["bob"]}" may not list pods' in text(bob), text(bob)
    assert "web" not in text(bob)


def test_the_audit_log_names_the_verified_caller(lab: Lab) -> None:
    get_pods(lab, "alice")
    uri = f"/api/v1/namespaces/{lab.namespace}/pods"
    found: dict[str, Any] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not found:
        for event in lab.cluster.audit_events():
            imp = event.get("impersonatedUser") or {}
            if event.get("requestURI", "").startswith(uri) and imp.get("username") == lab.logins["alice"]:
                found = event
        time.sleep(0.2)
    assert found, f"no audit event for {uri} as {lab.logins['alice']}"
    assert found["user"]["username"] == lab.sa
    assert found["annotations"]["authorization.k8s.io/decision"] == "allow"
