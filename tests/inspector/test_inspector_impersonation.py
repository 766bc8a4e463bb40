"""INSPECTOR_IMPERSONATE=caller against the real kube-apiserver (issue 13 §3).

The real inspector runs with a ServiceAccount token that may only impersonate the listed
tailnet names; MCP requests carry the contract's Mcp-Tailnet-Caller-* headers straight to it
on loopback, as the sidecar's gateway sets them. Two tailnet users with different
RoleBindings and a tagged node (a group binding) ask the same question and get their own
answers; the API server's audit log records whom it impersonated.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import pytest
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types import CallToolResult

from inspector_support import TRANSPORTS, apply, base_env, err, ok, running_inspector

ALICE = "alice@example.com"
BOB = "bob@example.com"
JURGEN = "jürgen@example.com"
MALLORY = "mallory@example.com"  # a real tailnet user the operator did not list
CI_NODE = "ci-1.tail.example.ts.net"
SAFE = "@:,._-+~/"  # the contract's encoding


def caller_headers(login: str | None = None, node: str | None = None, tags: str | None = None) -> dict[str, str]:
    """The headers the gateway sets for a tailnet caller (contract-13: percent-encoded UTF-8)."""
    headers = {}
    for name, value in (("Login", login), ("Node", node), ("Tags", tags)):
        if value is not None:
            headers[f"Mcp-Tailnet-Caller-{name}"] = quote(value, safe=SAFE)
    return headers


@contextlib.asynccontextmanager
async def session(base: str, transport: str, headers: dict[str, str]) -> AsyncIterator[ClientSession]:
    if transport == "sse":
        async with sse_client(f"{base}/sse", headers=headers, timeout=30, sse_read_timeout=120) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                yield s
    else:
        async with create_mcp_http_client(headers=headers) as http:
            async with streamable_http_client(f"{base}/mcp", http_client=http) as streams:
                async with ClientSession(streams[0], streams[1]) as s:
                    await s.initialize()
                    yield s


def call(base: str, transport: str, headers: dict[str, str], tool: str, args: dict[str, Any]) -> CallToolResult:
    async def run() -> CallToolResult:
        with anyio.fail_after(120):
            async with session(base, transport, headers) as s:
                return await s.call_tool(tool, args)

    return anyio.run(run)


def impersonator_role(name: str, users: list[str], groups: list[str]) -> str:
    """The least-privilege ClusterRole of this mode: impersonate the listed names, nothing else."""
    return json.dumps({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
        "rules": [
            {"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"], "resourceNames": users},
            {"apiGroups": [""], "resources": ["groups"], "verbs": ["impersonate"], "resourceNames": groups},
        ],
    })


def pod_reader(ns: str, name: str, subject_kind: str, subject: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name, "namespace": ns},
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": name, "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": subject_kind, "name": subject}]},
    ]})


@pytest.fixture(scope="module")
def setup(cluster, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """Namespaces a (alice, jürgen, tag:ci) and b (bob, tag:ops), each with a pod; the inspector as a
    ServiceAccount that may impersonate exactly alice, bob, jürgen, the ci node, tailnet:tag:ci and :ops."""
    suffix = secrets.token_hex(3)
    ns_a, ns_b, ns_sa = f"imp-a-{suffix}", f"imp-b-{suffix}", f"imp-sa-{suffix}"
    for ns in (ns_a, ns_b, ns_sa):
        cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("run", "web-a", "-n", ns_a, "--image=registry.example/web:1")
    cluster.kubectl("run", "web-b", "-n", ns_b, "--image=registry.example/web:1")
    apply(cluster, pod_reader(ns_a, "alice-reads", "User", ALICE))
    apply(cluster, pod_reader(ns_a, "jurgen-reads", "User", JURGEN))
    apply(cluster, pod_reader(ns_a, "ci-reads", "Group", "tailnet:tag:ci"))
    apply(cluster, pod_reader(ns_b, "bob-reads", "User", BOB))
    apply(cluster, pod_reader(ns_b, "ops-reads", "Group", "tailnet:tag:ops"))
    role = f"imp-impersonator-{suffix}"
    apply(cluster, impersonator_role(role, [ALICE, BOB, JURGEN, f"tailnet:node:{CI_NODE}"],
                                     ["tailnet:tag:ci", "tailnet:tag:ops"]))
    binding = f"imp-inspector-{suffix}"
    cluster.kubectl("create", "clusterrolebinding", binding, f"--clusterrole={role}",
                    f"--serviceaccount={ns_sa}:eks-inspector")
    kubeconfig = cluster.kubeconfig_for_token(cluster.mint_token(ns_sa, "eks-inspector"))
    env = {**base_env(kubeconfig), "INSPECTOR_IMPERSONATE": "caller"}
    try:
        with running_inspector(env, tmp_path_factory.mktemp("impersonation")) as server:
            yield {"server": server, "a": ns_a, "b": ns_b, "sa": f"system:serviceaccount:{ns_sa}:eks-inspector",
                   "kubeconfig": kubeconfig}
    finally:
        cluster.kubectl("delete", "clusterrolebinding", binding, check=False)
        cluster.kubectl("delete", "clusterrole", role, check=False)


def pods(setup: dict[str, Any], transport: str, headers: dict[str, str], ns: str) -> CallToolResult:
    return call(setup["server"].base, transport, headers, "get", {"resource": "pods", "namespace": ns})


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_two_users_same_question_different_answers(setup, transport: str) -> None:
    a, b = setup["a"], setup["b"]
    alice = ok(pods(setup, transport, caller_headers(login=ALICE, node="laptop.tail.example.ts.net"), a))
    assert "web-a" in alice and "web-b" not in alice
    bob = err(pods(setup, transport, caller_headers(login=BOB, node="desk.tail.example.ts.net"), a))
    assert bob.startswith(f'forbidden: tailnet user "{BOB}" may not list pods in namespace "{a}"'), bob
    assert "\n" not in bob
    assert "web-b" in ok(pods(setup, transport, caller_headers(login=BOB), b))
    assert f'tailnet user "{ALICE}" may not list pods in namespace "{b}"' in err(
        pods(setup, transport, caller_headers(login=ALICE), b))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tagged_node_acts_through_its_tag_group(setup, transport: str) -> None:
    headers = caller_headers(node=CI_NODE, tags="tag:ci")
    assert "web-a" in ok(pods(setup, transport, headers, setup["a"]))
    denied = err(pods(setup, transport, headers, setup["b"]))
    assert denied.startswith(f'forbidden: tailnet node "{CI_NODE}" (tag:ci) may not list pods in namespace')
    assert f'as user "tailnet:node:{CI_NODE}", groups tailnet:tag:ci' in denied


def test_non_ascii_login_reaches_the_api_server_intact(setup) -> None:
    assert "web-a" in ok(pods(setup, "streamable-http", caller_headers(login=JURGEN), setup["a"]))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_no_identity_is_refused(setup, transport: str) -> None:
    refused = err(pods(setup, transport, {}, setup["a"]))
    assert refused.startswith("refused: this server acts as its caller") and "web-a" not in refused


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unlisted_user_is_refused_by_the_api_server(setup, transport: str) -> None:
    denied = err(pods(setup, transport, caller_headers(login=MALLORY), setup["a"]))
    assert denied.startswith(f'forbidden: this server may not act as tailnet user "{MALLORY}"'), denied
    assert f'impersonate users "{MALLORY}"' in denied


@pytest.mark.parametrize("headers", [
    pytest.param(caller_headers(login="system:admin"), id="system-login"),
    pytest.param(caller_headers(login="System:Masters"), id="system-login-case"),
    pytest.param(caller_headers(login="tailnet:node:" + CI_NODE), id="login-poses-as-node"),
    pytest.param(caller_headers(login=ALICE, tags="system:masters"), id="system-group-in-tags"),
    pytest.param(caller_headers(login=ALICE, tags="tag:ci,system:masters"), id="system-group-after-a-tag"),
    pytest.param(caller_headers(node=CI_NODE, tags="tag:ci/../system:masters"), id="tag-with-a-path"),
    pytest.param(caller_headers(login=ALICE + "\r\nImpersonate-Group: system:masters"), id="crlf-in-login"),
    pytest.param(caller_headers(node="system:masters", tags="tag:ci"), id="node-not-a-name"),
    pytest.param({"Mcp-Tailnet-Caller-Login": "%ff%fe"}, id="not-utf8"),
])
def test_forged_privileged_identities_are_refused(setup, headers: dict[str, str]) -> None:
    refused = err(pods(setup, "streamable-http", headers, setup["a"]))
    assert refused.startswith("refused: "), refused
    assert "web-a" not in refused


def _raw_call(base: str, headers: list[tuple[str, str]], args: dict[str, Any]) -> str:
    """A tools/call over Streamable HTTP with headers exactly as given (repeated names too)."""
    accept = [("Accept", "application/json, text/event-stream"), ("Content-Type", "application/json")]
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    with httpx.Client(base_url=base, timeout=60) as http:
        r = http.post("/mcp", json=init, headers=accept)
        r.raise_for_status()
        sid = [("Mcp-Session-Id", r.headers["mcp-session-id"]), ("Mcp-Protocol-Version", "2025-06-18")]
        http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=accept + sid)
        body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get", "arguments": args}}
        return http.post("/mcp", json=body, headers=accept + sid + headers).text


def test_repeated_login_header_is_refused(setup) -> None:
    answer = _raw_call(setup["server"].base, [("Mcp-Tailnet-Caller-Login", BOB), ("Mcp-Tailnet-Caller-Login", ALICE)],
                       {"resource": "pods", "namespace": setup["a"]})
    assert "refused: 2 Mcp-Tailnet-Caller-Login headers" in answer and "web-a" not in answer


def test_audit_log_records_the_impersonated_caller(cluster, setup) -> None:
    ns = setup["a"]
    ok(pods(setup, "sse", caller_headers(node=CI_NODE, tags="tag:ci"), ns))
    ok(pods(setup, "streamable-http", caller_headers(login=ALICE), ns))
    uri = f"/api/v1/namespaces/{ns}/pods"
    wanted = {f"tailnet:node:{CI_NODE}", ALICE}
    seen: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and set(seen) != wanted:
        for event in cluster.audit_events():
            imp = event.get("impersonatedUser") or {}
            if event.get("requestURI", "").startswith(uri) and imp.get("username") in wanted:
                seen[imp["username"]] = event
        time.sleep(0.2)
    assert set(seen) == wanted, f"audit events for {uri}: {sorted(seen)}"
    node = seen[f"tailnet:node:{CI_NODE}"]
    assert node["user"]["username"] == setup["sa"]  # who asked: the inspector, acting as the caller
    assert set(node["impersonatedUser"]["groups"]) == {"tailnet:tag:ci", "system:authenticated"}
    assert node["verb"] == "list" and node["annotations"]["authorization.k8s.io/decision"] == "allow"
    assert seen[ALICE]["impersonatedUser"].get("groups", []) in ([], ["system:authenticated"])
    # discovery (one cache for every caller) is the inspector's own: never impersonated
    discovery = [e for e in cluster.audit_events()
                 if e.get("requestURI") in ("/api", "/apis") and e["user"]["username"] == setup["sa"]]
    assert discovery and all("impersonatedUser" not in e for e in discovery)


def test_several_groups_reach_the_api_server(cluster, setup) -> None:
    """Repeated Impersonate-Group headers, one per tag: the API server sees every group (the
    node reads namespace b only through its second tag), and an unlisted one refuses the call."""
    headers = caller_headers(node=CI_NODE, tags="tag:ci,tag:ops")
    assert "web-a" in ok(pods(setup, "streamable-http", headers, setup["a"]))
    assert "web-b" in ok(pods(setup, "sse", headers, setup["b"]))
    uri = f"/api/v1/namespaces/{setup['b']}/pods"
    groups: set[str] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not groups:
        for event in cluster.audit_events():
            imp = event.get("impersonatedUser") or {}
            if event.get("requestURI", "").startswith(uri) and imp.get("username") == f"tailnet:node:{CI_NODE}":
                groups = set(imp.get("groups") or [])
        time.sleep(0.2)
    assert groups == {"tailnet:tag:ci", "tailnet:tag:ops", "system:authenticated"}
    denied = err(pods(setup, "streamable-http", caller_headers(node=CI_NODE, tags="tag:ci,tag:unlisted"),
                      setup["a"]))
    assert 'impersonate groups "tailnet:tag:unlisted"' in denied, denied
