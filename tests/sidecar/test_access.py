"""Tool grants from the tailnet policy and the caller headers, in-process and fast (issue 13 §1, §2).

The gateway runs as the ASGI app it is (gateway_fakes), with the headers serve would set:
`Tailscale-App-Capabilities` as tailscale v1.102.3 `addAppCapabilitiesHeader` writes it
(a JSON object of capability -> values). The end-to-end counterpart, through `tailscale
serve` with grants in a real headscale policy, is test_grants.py.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import unquote

import anyio
import pytest

from mcp_tailnet_sidecar import serveconfig
from mcp_tailnet_sidecar.access import CAPABILITY, Access, parse_grant
from mcp_tailnet_sidecar.identity import Identity, IdentityResolver
from mcp_tailnet_sidecar.policy import parse_policy
from mcp_tailnet_sidecar.routes import WHOAMI_PATH
from mcp_tailnet_sidecar.settings import SettingsError, load

from .gateway_fakes import ALICE, HOST, JSON, FakeWhoIs, Upstream, client, make_gateway, post

SERVER = "inspector"


def caps(*values: object) -> dict[str, str]:
    """The header serve sets for a caller granted `values` of our capability."""
    return {"Tailscale-App-Capabilities": json.dumps({CAPABILITY: list(values)})}


def call(tool: str, id_: int = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": "tools/call",
                       "params": {"name": tool, "arguments": {}}}).encode()


LIST = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}).encode()


# -- parsing ----------------------------------------------------------------------------------------

def test_values_are_kept_by_server_and_globs_decide():
    raw = json.dumps({CAPABILITY: [{"tools": ["get_*"]}, {"tools": ["add"], "servers": ["insp*"]},
                                   {"tools": ["*"], "servers": ["other"]}],
                      "example.com/cap/else": [{"tools": ["*"]}]})
    grant = parse_grant([raw], SERVER)
    assert grant.error is None and len(grant.all_values) == 3 and len(grant.values) == 2
    assert grant.allows("get_pods") and grant.allows("add")
    assert not grant.allows("delete_pods") and not grant.allows("Add")  # case-sensitive, like the policy file
    assert json.loads(grant.header_value()) == [{"tools": ["get_*"]}, {"tools": ["add"], "servers": ["insp*"]}]


def test_no_header_or_no_value_allows_nothing():
    assert not parse_grant([], SERVER).allows("echo")
    assert not parse_grant([json.dumps({})], SERVER).allows("echo")  # serve's `{}`: other caps only
    assert not parse_grant([json.dumps({CAPABILITY: []})], SERVER).allows("echo")
    assert not parse_grant([json.dumps({CAPABILITY: [{"tools": ["*"], "servers": ["x"]}]})], SERVER).allows("echo")


MALFORMED = {
    "unknown key": {"tools": ["*"], "verbs": ["get"]},
    "tools a string": {"tools": "*"},
    "tools empty": {"tools": []},
    "empty glob": {"tools": [""]},
    "non-string glob": {"tools": [1]},
    "no tools": {"servers": ["*"]},
    "servers empty": {"tools": ["*"], "servers": []},
    "servers a string": {"tools": ["*"], "servers": "inspector"},
    "value not an object": ["*"],
}


@pytest.mark.parametrize("value", MALFORMED.values(), ids=MALFORMED.keys())
def test_one_malformed_value_denies_every_tool(value):
    grant = parse_grant([json.dumps({CAPABILITY: [{"tools": ["*"]}, value]})], SERVER)
    assert grant.error and not grant.allows("echo") and grant.header_value() == "[]"


@pytest.mark.parametrize("raw", [
    "not json", json.dumps([{"tools": ["*"]}]), json.dumps({CAPABILITY: {"tools": ["*"]}}),
    '{"%s": [{"tools": ["echo"], "tools": ["*"]}]}' % CAPABILITY,  # duplicate key: which one counts?
    '{"%s": [{"tools": ["*"]}], "%s": []}' % (CAPABILITY, CAPABILITY),
], ids=["not json", "array", "values not a list", "duplicate key in a value", "duplicate capability"])
def test_a_malformed_header_denies_every_tool(raw):
    grant = parse_grant([raw], SERVER)
    assert grant.error and not grant.allows("echo")


def test_two_copies_of_the_header_deny():
    one = json.dumps({CAPABILITY: [{"tools": ["*"]}]})
    assert parse_grant([one, one], SERVER).error


def test_rfc2047_encoded_header_is_decoded():
    """serve Q-encodes a header value with non-ASCII characters (encTailscaleHeaderValue)."""
    import email.charset
    raw = json.dumps({CAPABILITY: [{"tools": ["résumé"]}]}, ensure_ascii=False)
    encoded = email.charset.Charset("utf-8").header_encode(raw)  # =?utf-8?b?...?= / q: both RFC 2047
    grant = parse_grant([encoded], SERVER)
    assert grant.error is None and grant.allows("résumé")


def test_policy_file_and_grants_must_both_allow():
    policy = parse_policy({"rules": [{"principals": ["*"], "tools": ["echo", "add"]}]})
    granted = Identity(login="a@b", source_ip="100.64.0.1", grant=parse_grant(
        [json.dumps({CAPABILITY: [{"tools": ["echo", "sleep"]}]})], SERVER))
    both = Access(policy, grants=True)
    assert [t for t in ("echo", "add", "sleep") if both.allows(granted, t)] == ["echo"]
    assert [t for t in ("echo", "add", "sleep") if Access(None, grants=True).allows(granted, t)] == ["echo", "sleep"]
    assert not Access(None, grants=True).allows(Identity(login="a@b"), "echo")  # no grant parsed: denied


# -- settings and serve config ------------------------------------------------------------------------

def test_settings_grants_and_server_name():
    s = load({"SIDECAR_TAILNET_GRANTS": "true", "SIDECAR_SERVER_NAME": "Inspector"}, mode="gateway")
    assert s.tailnet_grants and s.server_name == "inspector"
    with pytest.raises(SettingsError, match="^SIDECAR_SERVER_NAME: .*SIDECAR_TAILNET_GRANTS"):
        load({"SIDECAR_SERVER_NAME": "inspector"}, mode="gateway")
    with pytest.raises(SettingsError, match="^SIDECAR_SERVER_NAME: must be one DNS label"):
        load({"SIDECAR_TAILNET_GRANTS": "true", "SIDECAR_SERVER_NAME": "a b"}, mode="gateway")
    with pytest.raises(SettingsError, match="^SIDECAR_TAILNET_GRANTS: must be true or false"):
        load({"SIDECAR_TAILNET_GRANTS": "maybe"}, mode="gateway")


def test_serve_config_asks_for_the_capability_and_applied_checks_it():
    wanted = serveconfig.render("mcp.lab.tailnet", "unix:/run/gw.sock", https=False, accept_caps=(CAPABILITY,))
    assert wanted["Web"]["mcp.lab.tailnet:80"]["Handlers"]["/"]["AcceptAppCaps"] == [CAPABILITY]
    without = serveconfig.render("mcp.lab.tailnet", "unix:/run/gw.sock", https=False)
    assert "AcceptAppCaps" not in without["Web"]["mcp.lab.tailnet:80"]["Handlers"]["/"]
    assert serveconfig.applied(wanted, wanted) and serveconfig.applied(without, without)
    assert not serveconfig.applied(without, wanted)  # live config lost the capability: not ready


# -- the gateway --------------------------------------------------------------------------------------

def grants_gateway(upstream, **config):
    return make_gateway(upstream, tailnet_grants=True, server_name=SERVER, **config)


def test_grants_decide_calls_and_lists():
    upstream = Upstream()
    gw = grants_gateway(upstream)
    granted = caps({"tools": ["echo"]})
    r = post(gw, call("echo"), granted)
    assert r.json()["result"]["content"][0]["text"] == "done"
    r = post(gw, call("add"), granted)
    assert r.json()["error"]["code"] == -32001
    r = post(gw, LIST, granted)
    assert [t["name"] for t in r.json()["result"]["tools"]] == ["echo"]
    assert [json.loads(b)["params"]["name"] for b in upstream.bodies() if b'"tools/call"' in b] == ["echo"]


def test_no_header_in_grants_mode_denies_and_lists_nothing():
    gw = grants_gateway(Upstream())
    assert post(gw, call("echo")).json()["error"]["code"] == -32001
    assert post(gw, LIST).json()["result"]["tools"] == []


def test_a_malformed_value_denies_and_is_logged_once(caplog):
    gw = grants_gateway(Upstream())
    bad = caps({"tools": ["echo"], "verbs": ["x"]})
    with caplog.at_level(logging.WARNING, logger="mcp_tailnet_sidecar.access"):
        for _ in range(3):
            assert post(gw, call("echo"), bad).json()["error"]["code"] == -32001
    lines = [r.getMessage() for r in caplog.records if r.name == "mcp_tailnet_sidecar.access"]
    assert len(lines) == 1 and "unknown key(s) 'verbs'" in lines[0] and "alice@example.com" in lines[0], lines


def test_a_caller_not_from_serve_gains_nothing_from_a_capability_header():
    """No tailnet source address: not through serve, so the capability header is the caller's own."""
    gw = grants_gateway(Upstream())
    headers = {**caps({"tools": ["*"]}), "X-Forwarded-For": ""}
    assert post(gw, call("echo"), headers).json()["error"]["code"] == -32001


def test_caller_headers_replace_forged_ones():
    upstream = Upstream()
    gw = grants_gateway(upstream, resolver=IdentityResolver(whois=FakeWhoIs({"100.64.0.10": "alices-laptop"})))
    forged = {"Mcp-Tailnet-Caller-Login": "root@evil", "MCP-TAILNET-CALLER-TAGS": "tag:admin",
              "mcp-tailnet-anything": "x", "Tailscale-User-Login": "=?utf-8?q?J=C3=B6rg@example.com?=",  # serve: mime.QEncoding
              **caps({"tools": ["echo"], "servers": ["insp*"]}, {"tools": ["*"], "servers": ["other"]})}
    post(gw, call("echo"), forged)
    _, headers, _ = upstream.received[-1]
    ours = {k: v for k, v in headers.items() if k.startswith("mcp-tailnet-")}
    assert set(ours) == {"mcp-tailnet-caller-login", "mcp-tailnet-caller-node", "mcp-tailnet-caller-capability"}
    assert unquote(ours["mcp-tailnet-caller-login"]) == "Jörg@example.com"
    assert ours["mcp-tailnet-caller-login"] == "J%C3%B6rg@example.com"
    assert unquote(ours["mcp-tailnet-caller-node"]) == "alices-laptop.tailnet.test"
    assert json.loads(unquote(ours["mcp-tailnet-caller-capability"])) == [{"tools": ["echo"], "servers": ["insp*"]}]


def test_underscore_look_alikes_are_stripped():
    """A server that folds `_` into `-` (WSGI's HTTP_* keys) would read these as ours or serve's."""
    upstream = Upstream()
    gw = make_gateway(upstream)
    post(gw, call("echo"), {"Mcp_Tailnet_Caller_Login": "root@evil", "mcp_tailnet-caller-tags": "tag:admin",
                            "Tailscale_User_Login": "root@evil", "Tailscale_App_Capabilities": "{}",
                            "X_Other_Header": "kept"})
    _, headers, _ = upstream.received[-1]
    assert not [k for k in headers if "_" in k and k != "x_other_header"], headers
    assert headers["x_other_header"] == "kept" and headers["mcp-tailnet-caller-login"] == "alice@example.com"


def test_caller_headers_for_a_tagged_node_and_none_for_a_local_caller():
    upstream = Upstream()
    gw = make_gateway(upstream, resolver=IdentityResolver(whois=FakeWhoIs({"100.64.0.20": "ci-runner"})))
    post(gw, call("echo"), {"Tailscale-User-Login": "", "X-Forwarded-For": "100.64.0.20",
                            "Mcp-Tailnet-Caller-Login": "alice@example.com"})
    _, headers, _ = upstream.received[-1]
    assert {k: v for k, v in headers.items() if k.startswith("mcp-tailnet-")} == {
        "mcp-tailnet-caller-node": "ci-runner.tailnet.test", "mcp-tailnet-caller-tags": "tag:ci"}
    post(gw, call("echo"), {"Tailscale-User-Login": "", "X-Forwarded-For": "", "Mcp-Tailnet-Caller-Tags": "tag:x"})
    _, headers, _ = upstream.received[-1]
    assert not [k for k in headers if k.startswith("mcp-tailnet-")]


def test_whoami_is_answered_by_the_gateway():
    upstream = Upstream()
    gw = grants_gateway(upstream, policy=parse_policy({"rules": [{"principals": ["alice@example.com"],
                                                                   "tools": ["echo"]}]}))

    async def go():
        async with client(gw) as c:
            return await c.get(WHOAMI_PATH, headers={**ALICE, **caps({"tools": ["e*"]})})
    r = anyio.run(go)
    assert r.status_code == 200 and not upstream.received
    body = r.json()
    assert body["identity"]["login"] == "alice@example.com" and body["identity"]["through_serve"]
    decision = body["tools_decision"]
    assert decision["rule"] == "policy file and tailnet grants must both allow"
    assert decision["policy_file_tools"] == ["echo"] and decision["server_name"] == SERVER
    assert decision["grant"]["kept_for_this_server"] == [{"tools": ["e*"]}] and decision["grant"]["malformed"] is None

    async def wrong_host():
        async with client(gw) as c:
            return await c.get(WHOAMI_PATH, headers={**ALICE, **JSON, "X-Forwarded-Host": "evil.example"})
    assert anyio.run(wrong_host).status_code == 421


def test_whoami_without_grants_mode():
    gw = make_gateway(Upstream())

    async def go():
        async with client(gw) as c:
            return await c.get(WHOAMI_PATH, headers=ALICE)
    body = anyio.run(go).json()
    assert body["tools_decision"]["rule"] == "no tool policy: every tool allowed" and "grant" not in body[
        "tools_decision"]
    assert HOST  # the fake's host name is what the client used
