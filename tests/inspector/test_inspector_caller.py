"""The caller headers -> Kubernetes identity mapping (contract-13), in process: fast and exhaustive
beside the end-to-end tests against the API server (test_inspector_impersonation.py)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from starlette.datastructures import Headers

from eks_inspector import caller
from eks_inspector.caller import Caller, from_headers, impersonation_headers
from eks_inspector.errors import InspectorError, Op, from_status


def headers(*pairs: tuple[str, str]) -> Headers:
    return Headers(raw=[(k.lower().encode(), v.encode("latin-1")) for k, v in pairs])


def test_user_login_maps_to_the_user_and_tags_to_tailnet_groups() -> None:
    who = from_headers(headers(("Mcp-Tailnet-Caller-Login", "alice@example.com"),
                               ("Mcp-Tailnet-Caller-Node", "laptop.tail.ts.net")))
    assert (who.user, who.groups) == ("alice@example.com", ())
    node = from_headers(headers(("MCP-TAILNET-CALLER-NODE", "ci-1.tail.ts.net"),
                                ("mcp-tailnet-caller-tags", "tag:ci,tag:bot")))
    assert node.user == "tailnet:node:ci-1.tail.ts.net"
    assert node.groups == ("tailnet:tag:ci", "tailnet:tag:bot")
    assert impersonation_headers(node) == [("Impersonate-User", b"tailnet:node:ci-1.tail.ts.net"),
                                           ("Impersonate-Group", b"tailnet:tag:ci"),
                                           ("Impersonate-Group", b"tailnet:tag:bot")]


def test_percent_encoded_utf8_is_decoded() -> None:
    login = "jürgen+ops@例え.jp"
    who = from_headers(headers(("Mcp-Tailnet-Caller-Login", quote(login, safe="@:,._-+~/"))))
    assert who.login == login and impersonation_headers(who)[0] == ("Impersonate-User", login.encode())


@pytest.mark.parametrize("pairs", [
    (),
    (("Mcp-Tailnet-Caller-Tags", "tag:ci"),),  # tags alone name nobody
    (("Mcp-Tailnet-Caller-Login", ""),),
    (("Mcp-Tailnet-Caller-Login", "system:admin"),),
    (("Mcp-Tailnet-Caller-Login", "SYSTEM:masters"),),
    (("Mcp-Tailnet-Caller-Login", "system%3Aadmin"),),  # encoded colon
    (("Mcp-Tailnet-Caller-Login", "tailnet:tag:ci"),),
    (("Mcp-Tailnet-Caller-Login", "a%0d%0aImpersonate-Group: system:masters"),),
    (("Mcp-Tailnet-Caller-Login", "a%00b"),),
    (("Mcp-Tailnet-Caller-Login", "%c3%28"),),  # not UTF-8
    (("Mcp-Tailnet-Caller-Login", "a"), ("Mcp-Tailnet-Caller-Login", "b")),
    (("Mcp-Tailnet-Caller-Login", "a"), ("Mcp-Tailnet-Caller-Tags", "system:masters")),
    (("Mcp-Tailnet-Caller-Login", "a"), ("Mcp-Tailnet-Caller-Tags", "tag:ci,,tag:x")),
    (("Mcp-Tailnet-Caller-Login", "a"), ("Mcp-Tailnet-Caller-Tags", "tag:ci%2Csystem:masters")),
    (("Mcp-Tailnet-Caller-Node", "system:node:x"), ("Mcp-Tailnet-Caller-Tags", "tag:ci")),
    (("Mcp-Tailnet-Caller-Node", "a..b"),),
    (("Mcp-Tailnet-Caller-Login", "x" * 2000),),
    (("Mcp-Tailnet-Caller-Login", "a"), ("Mcp-Tailnet-Caller-Tags", ",".join(f"tag:t{i}" for i in range(65)))),
], ids=lambda pairs: "|".join(f"{k[19:]}={v[:24]}" for k, v in pairs) or "none")
def test_refused(pairs: tuple[tuple[str, str], ...]) -> None:
    with pytest.raises(InspectorError, match="^refused: "):
        from_headers(headers(*pairs))


def test_no_group_can_be_named_but_through_a_tag() -> None:
    """Whatever the headers say, every group starts with tailnet:tag: (never system:masters)."""
    for tags in ("tag:ci", "tag:masters", "tag:system-masters"):
        who = from_headers(headers(("Mcp-Tailnet-Caller-Login", "a"), ("Mcp-Tailnet-Caller-Tags", tags)))
        assert all(g.startswith("tailnet:tag:") for g in who.groups)
    with pytest.raises(InspectorError, match="never impersonated"):
        impersonation_headers(Caller(login="system:admin", node=None))


def test_a_403_names_the_caller_and_what_was_refused() -> None:
    op = Op("list", "pods", namespace="team-a")
    body = '{"kind":"Status","message":"pods is forbidden: User \\"bob\\" cannot list resource \\"pods\\""}'
    msg = str(from_status(403, body, op, Caller(login="bob@example.com", node=None)))
    assert msg.startswith('forbidden: tailnet user "bob@example.com" may not list pods in namespace "team-a"')
    denied = ('{"kind":"Status","message":"users \\"eve@example.com\\" is forbidden: User '
              '\\"system:serviceaccount:x:y\\" cannot impersonate resource \\"users\\" in API group \\"\\" '
              'at the cluster scope"}')
    msg = str(from_status(403, denied, op, Caller(login="eve@example.com", node=None)))
    assert msg.startswith('forbidden: this server may not act as tailnet user "eve@example.com"')


def test_without_a_caller_the_kube_client_refuses(tmp_path) -> None:
    """kube.py refuses a request in caller mode when no caller is set (no fallback to our identity)."""
    from kubernetes import client as k8s

    from eks_inspector.kube import Kube

    kube = Kube(k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:9")), 5, impersonate=True)
    with pytest.raises(InspectorError, match="^refused: this server acts as its caller"):
        kube.get("/api/v1/pods", Op("list", "pods"))
    with caller.acting_for(None), pytest.raises(InspectorError, match="^refused"):
        kube.get("/api/v1/pods", Op("list", "pods"))
    with caller.as_inspector(), pytest.raises(InspectorError, match="cannot reach|unreachable"):
        kube.get("/api/v1/pods", Op("list", "pods"))  # own identity: it tries (nothing listens on :9)
