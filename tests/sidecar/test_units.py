"""The small pure pieces: SSE splitting, names, serve config, policy, client config."""

from __future__ import annotations

import json

import pytest

from mcp_tailnet_sidecar import clients, serveconfig
from mcp_tailnet_sidecar.identity import Identity, IdentityResolver
from mcp_tailnet_sidecar.names import NodeNames
from mcp_tailnet_sidecar.policy import PolicyError, parse_policy
from mcp_tailnet_sidecar.sse import EventSplitter, EventTooLarge, parse_event

STREAM = (b"event: endpoint\r\ndata: /messages/?session_id=abc\r\n\r\n"
          b": ping\n\n"
          b"event: message\rdata: {\"a\":\r\rid: 7\ndata: line1\ndata: line2\n\n")
EVENTS = [b"event: endpoint\r\ndata: /messages/?session_id=abc\r\n\r\n", b": ping\n\n",
          b"event: message\rdata: {\"a\":\r\r", b"id: 7\ndata: line1\ndata: line2\n\n"]


def split_in(chunks: list[bytes]) -> list[bytes]:
    s = EventSplitter()
    out = []
    for c in chunks:
        out += s.feed(c)
    assert not s.partial and s.flush() == b""
    return out


def test_splitter_handles_every_line_ending():
    assert split_in([STREAM]) == EVENTS
    assert split_in([bytes([b]) for b in STREAM]) == EVENTS  # byte by byte, CR split from LF


def test_splitter_is_independent_of_chunking():
    n = len(STREAM)
    for a in range(n + 1):  # every way of cutting the stream into three chunks
        for b in range(a, n + 1):
            assert split_in([STREAM[:a], STREAM[a:b], STREAM[b:]]) == EVENTS, (a, b)


def test_splitter_partial_and_bound():
    s = EventSplitter(max_event_bytes=1024)
    assert s.feed(b"data: {") == [] and s.partial
    assert s.feed(b"}\n\n") == [b"data: {}\n\n"] and not s.partial
    with pytest.raises(EventTooLarge):
        s.feed(b"data: " + b"x" * 2000)


def test_event_rewrite_keeps_other_fields():
    ev = parse_event(b"event: message\r\nid: 5\r\ndata: {\"x\":\r\ndata: 1}\r\n\r\n")
    assert ev.data == '{"x":\n1}' and ev.name == "message"
    assert ev.with_data('{"y": 2}') == b'event: message\r\nid: 5\r\ndata: {"y": 2}\r\n\r\n'


STATUS = {"BackendState": "Running", "TailscaleIPs": ["100.64.0.7", "fd7a:115c:a1e0::7"],
          "Self": {"DNSName": "mcp-inspector.tail.example.", "TailscaleIPs": ["100.64.0.7"]},
          "CertDomains": None}


def test_names_from_status():
    n = NodeNames.from_status(STATUS)
    assert n.dns_name == "mcp-inspector.tail.example" and not n.https
    for ok in ("mcp-inspector.tail.example", "MCP-Inspector.tail.example.:80", "mcp-inspector",
               "100.64.0.7:443", "[fd7a:115c:a1e0::7]:80", "fd7a:115c:a1e0::7"):
        assert n.host_allowed(ok), ok
    for bad in ("mcp-inspector.evil.example", "localhost", "127.0.0.1", "", "100.64.0.8"):
        assert not n.host_allowed(bad), bad
    assert n.origin_allowed("https://mcp-inspector.tail.example")
    assert not n.origin_allowed("null") and not n.origin_allowed("http://evil.example")
    assert NodeNames.from_status({**STATUS, "CertDomains": ["mcp-inspector.tail.example"]}).https


def test_serve_config_render_write_applied(tmp_path):
    sock = tmp_path / "gw.sock"
    http_only = serveconfig.render("mcp.tail.example", f"unix:{sock}", https=False)
    assert http_only == {"TCP": {"80": {"HTTP": True}},
                         "Web": {"mcp.tail.example:80": {"Handlers": {"/": {"Proxy": f"unix:{sock}"}}}}}
    assert "${TS_CERT_DOMAIN}" not in json.dumps(http_only)  # docs/design.md fact 3
    alias = serveconfig.render("mcp.tail.example", "http://127.0.0.2:9080", https=False)
    assert alias["Web"]["mcp.tail.example:80"]["Handlers"]["/"] == {"Proxy": "http://127.0.0.2:9080"}
    assert not serveconfig.applied(http_only, alias)  # a different target is not "applied"
    both = serveconfig.render("mcp.tail.example", f"unix:{sock}", https=True)
    assert both["TCP"]["443"] == {"HTTPS": True} and "mcp.tail.example:443" in both["Web"]
    path = tmp_path / "serve" / "serve.json"
    assert serveconfig.write(path, http_only) is True
    assert serveconfig.write(path, http_only) is False  # unchanged: no rewrite, no reload
    assert json.loads(path.read_text()) == http_only
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind
    assert serveconfig.applied(http_only, http_only) and not serveconfig.applied({}, http_only)
    assert not serveconfig.applied(http_only, both)


def test_policy_validation_and_matching():
    for bad, msg in [([], "JSON object"), ({"rules": "x"}, "'rules' must be a list"),
                     ({"rules": [{"principals": ["group:x"], "tools": ["*"]}]}, "undefined group"),
                     ({"rules": [{"principals": ["a"], "tools": []}]}, None),
                     ({"rules": [], "extra": 1}, "unknown top-level")]:
        if msg is None:
            parse_policy(bad)  # an empty tool list is legal: it allows nothing
            continue
        with pytest.raises(PolicyError, match=msg):
            parse_policy(bad)
    p = parse_policy({"groups": {"group:ci": ["tag:ci", "bot@example.com"]},
                      "rules": [{"principals": ["group:ci"], "tools": ["get_*"]},
                                {"principals": ["*"], "tools": ["echo"]}]})
    tagged = Identity(node="runner", tags=("tag:ci",))
    assert p.allows(tagged, "get_pods") and not p.allows(tagged, "delete_pods")
    assert p.allows(Identity(login="BOT@example.com"), "get_x")
    assert p.allows(Identity(), "echo") and not p.allows(Identity(), "get_x")


def test_whois_identity_for_tagged_and_user_nodes():
    tagged = IdentityResolver._from_whois(
        {"Node": {"Name": "ci-runner.tail.example.", "Tags": ["tag:ci"]},
         "UserProfile": {"LoginName": "tagged-devices", "DisplayName": "Tagged Devices"}}, "100.64.0.9")
    assert tagged.login is None and tagged.tags == ("tag:ci",) and tagged.node == "ci-runner.tail.example"
    assert tagged.who == "ci-runner.tail.example (tag:ci)"
    user = IdentityResolver._from_whois({"Node": {"Name": "laptop.tail.example."},
                                         "UserProfile": {"LoginName": "alice@example.com"}}, "100.64.0.10")
    assert user.login == "alice@example.com" and user.via == "whois"


def test_clients_config_is_ready_to_paste():
    text = clients.render("mcp-inspector", "http", name="inspector")
    assert "claude mcp add --transport http inspector http://mcp-inspector/mcp" in text
    lines = text.splitlines()
    start = lines.index("{")
    desktop = json.loads("\n".join(lines[start:lines.index("}", start) + 1]))
    assert desktop["mcpServers"]["inspector"]["args"] == ["-y", f"mcp-remote@{clients.MCP_REMOTE_VERSION}", "http://mcp-inspector/mcp",
                                                          "--transport", "http-only", "--allow-http"]
    sse = clients.render("mcp-inspector.tail.example", "sse", scheme="https")
    assert "claude mcp add --transport sse tailnet-mcp https://mcp-inspector.tail.example/sse" in sse
    assert "sse_client('https://mcp-inspector.tail.example/sse')" in sse and "--allow-http" not in sse
    compile(sse.split("## Python (mcp SDK 2.x)\n", 1)[1].split("\n## ")[0], "snippet", "exec")


def test_judge_header_values_and_query_keys():
    from mcp_tailnet_sidecar.judge import Unjudgeable, decode_header_value, query_pairs
    assert decode_header_value("echo") == "echo"
    assert decode_header_value("=?base64?Y2Fmw6k=?=") == "caf\u00e9"
    for bad in ("=?base64?Y2Fmw6k?=", "=?base64?Y2Fmw6l=?=", "=?base64?//79?="):  # padding, trailing bits, not UTF-8
        assert decode_header_value(bad) is None, bad
    assert query_pairs("session_id=a&x=") == {"session_id": "a", "x": ""}
    for repeated in ("session_id=a&session_id=b", "session_id=a&session%5Fid=a", "a=1&a"):
        with pytest.raises(Unjudgeable, match="more than once"):
            query_pairs(repeated)


def test_tracker_refuses_instead_of_dropping():
    from mcp_tailnet_sidecar.jsonrpc import DuplicatePending, Pending, PendingFull, Tracker
    t = Tracker(limit=2)
    t.add("1", Pending("call", Identity(), "echo"))
    with pytest.raises(DuplicatePending):
        t.add("1", Pending("other", Identity()))
    t.add("2", Pending("other", Identity()))
    with pytest.raises(PendingFull):
        t.add("3", Pending("list", Identity()))
    assert set(t.pending) == {"1", "2"} and t.owes_answers()
    t.take("1")
    assert not t.owes_answers() and t  # an "other" request waits, but a draining stream need not


def test_source_limiter_and_session_table():
    from mcp_tailnet_sidecar.identity import source_ip
    from mcp_tailnet_sidecar.limits import SourceLimiter
    from mcp_tailnet_sidecar.sessions import SessionTable
    lim = SourceLimiter(1)
    assert lim.acquire("100.64.0.1") and not lim.acquire("100.64.0.1") and lim.acquire("100.64.0.2")
    assert lim.acquire(None) and lim.acquire(None)  # callers inside the pod are not counted
    lim.release("100.64.0.1")
    assert lim.acquire("100.64.0.1") and lim.active("100.64.0.1") == 1
    assert SourceLimiter(0).acquire("100.64.0.1") and SourceLimiter(0).acquire("100.64.0.1")
    assert source_ip({"x-forwarded-for": "100.64.0.9, 100.64.0.7"}) == "100.64.0.7"  # serve's is the last
    assert source_ip({"x-forwarded-for": "not-an-ip"}) is None and source_ip({}) is None
    table = SessionTable(max_sessions=2)
    table.bind("a", "login:alice@example.com")
    table.bind("a", "login:mallory@example.com")  # never rebinds
    assert table.lookup("a", "login:mallory@example.com") is None
    assert table.lookup("a", "login:alice@example.com") is not None
    table.bind("b", "node:bot.tail.example")
    table.bind("c", "node:bot.tail.example")  # over the bound: the least recently used ("a") goes
    assert len(table) == 2 and table.lookup("a", "login:alice@example.com") is None
    assert table.lookup("b", "node:bot.tail.example") is not None
    assert Identity(login="Alice@Example.com").owner == "login:alice@example.com"
    assert Identity(node="bot.tail.example", tags=("tag:bot",)).owner == "node:bot.tail.example"
    assert Identity(source_ip="100.64.0.5").owner == "ip:100.64.0.5" and Identity().owner == "local"
