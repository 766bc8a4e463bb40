"""The gateway judges every request before relaying it: in-process, as an ASGI app, fast.

The Gateway runs as the ASGI app it is, driven by httpx's ASGI transport with the headers
serve would set; its upstream is a recording ASGI app standing in for the MCP server.
Each case is written the way an attacker would send it: one body that two JSON parsers
read differently (docs/design.md fact 10), routing headers that disagree with the body
(fact 9), a session id someone else opened, repeated ids, too many requests at once.
The end-to-end counterparts against the real gateway process and the stock server are in
test_gateway.py and tests/reliability/test_gateway_limits.py.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import anyio
import httpx
import pytest

from mcp_tailnet_sidecar.policy import parse_policy

from .gateway_fakes import ALICE, JSON, MALLORY, Upstream, audit_lines, client, make_gateway, post  # noqa: F401

MODERN = "2026-07-28"
POLICY = parse_policy({"rules": [{"principals": ["*"], "tools": ["echo"]}]})  # add is denied to everyone


def readings(body: bytes) -> set[tuple[object, object]]:
    """(method, tool name) as different JSON readers take them from the same bytes: Python
    (exact keys, last wins), Go's encoding/json (keys folded case-insensitively, Kelvin sign
    and long s included, last wins), a first-wins reader, and a C-string reader (a key ends
    at NUL, last wins). A relay must not judge one reading and forward bytes another reader reads."""
    def reader(fold, first_wins: bool):
        def hook(pairs: list[tuple[str, Any]]) -> dict:
            out: dict = {}
            for k, v in pairs:
                if not (first_wins and fold(k) in out):
                    out[fold(k)] = v
            return out
        return hook

    def view(hook) -> tuple[object, object]:
        m = json.loads(body, object_pairs_hook=hook)
        params = m.get("params") if isinstance(m.get("params"), dict) else {}
        return m.get("method"), params.get("name")
    return {view(reader(lambda k: k, False)), view(reader(str.casefold, False)), view(reader(lambda k: k, True)),
            view(reader(lambda k: k.split("\x00")[0], False))}


# -- one body, two readings ---------------------------------------------------------------

CALL_ADD = '{"name":"add","arguments":{"a":1,"b":2}}'
DIFFERENTIALS = {
    "case-variant key beside the real one": b'{"jsonrpc":"2.0","id":1,"method":"ping","METHOD":"tools/call",'
                                            b'"params":' + CALL_ADD.encode() + b"}",
    "lone case-variant method key": b'{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":' + CALL_ADD.encode()
                                    + b"}",
    "case-variant tool name": b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
                              b'"NAME":"add","arguments":{"a":1,"b":2}}}',
    "exact duplicate tool name": b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
                                 b'"name":"add","arguments":{"a":1,"b":2}}}',
    "NUL-suffixed tool name key": b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
                                  b'"name\\u0000":"add","arguments":{"a":1,"b":2}}}',
    "long s folds to params": '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},'
                              '"paramſ":{"name":"add"}}'.encode(),
    "NUL-suffixed method key": b'{"jsonrpc":"2.0","id":1,"method":"ping","method\\u0000":"tools/call",'
                               b'"params":' + CALL_ADD.encode() + b"}",
}


@pytest.mark.parametrize("case", sorted(DIFFERENTIALS))
def test_a_body_two_parsers_read_differently_is_refused_not_relayed(case, audit_lines):
    body = DIFFERENTIALS[case]
    seen = readings(body)
    assert len(seen) > 1, f"not a differential: every reader sees {seen}"
    upstream = Upstream()
    gw = make_gateway(upstream, policy=POLICY)
    r = post(gw, body)
    assert r.status_code == 400, (case, r.status_code, r.text)
    assert r.json()["error"]["code"] in (-32700, -32600), r.text
    assert upstream.received == [], f"{case}: relayed; readers disagree: {seen}"
    assert not [a for a in audit_lines if a.get("outcome") == "ok"]


UNJUDGEABLE = {
    "not JSON": (b"tools/call add", 400),
    "NaN": (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":NaN}}}', 400),
    "number out of range": (b'{"jsonrpc":"2.0","id":1e999,"method":"ping"}', 400),
    "UTF-16 body": ('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"}}'.encode("utf-16"), 400),
    "UTF-8 BOM": (b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"ping"}', 400),
    "invalid UTF-8": (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ad\xffd"}}', 400),
    "lone surrogate": (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ech\\ud800o"}}', 400),
    "deep nesting": (b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":' + b"[" * 300 + b"]" * 300 + b"}}", 400),
    "batch element not an object": (b'[{"jsonrpc":"2.0","id":1,"method":"ping"},1]', 400),
    "empty batch": (b"[]", 400),
    "top level not a message": (b'"tools/call"', 400),
    "float id": (b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', 400),
    "boolean id": (b'{"jsonrpc":"2.0","id":true,"method":"ping"}', 400),
    "null id": (b'{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"echo"}}', 400),
    "object id": (b'{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}', 400),
    "same id twice in a batch": (b'[{"jsonrpc":"2.0","id":3,"method":"tools/list"},'
                                 b'{"jsonrpc":"2.0","id":3,"method":"ping"}]', 400),
    "tool name not a string": (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["add"]}}', 400),
    "params not an object": (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["add"]}', 400),
    "method not a string": (b'{"jsonrpc":"2.0","id":1,"method":7}', 400),
    "request and response at once": (b'{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}', 400),
    "case-duplicate argument keys": (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",'
                                     b'"arguments":{"text":"a","Text":"b"}}}', 400),
}


@pytest.mark.parametrize("case", sorted(UNJUDGEABLE))
def test_a_body_the_gateway_cannot_fully_judge_is_refused(case):
    body, status = UNJUDGEABLE[case]
    upstream = Upstream()
    for policy in (POLICY, None):  # judged with and without a policy: audit depends on it always
        r = post(make_gateway(upstream, policy=policy), body)
        assert r.status_code == status, (case, policy is not None, r.status_code, r.text)
    assert upstream.received == []


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "identity, gzip", "GZIP"])
def test_a_compressed_body_is_refused_with_415(encoding):
    upstream = Upstream()
    body = gzip.compress(b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"}}')
    r = post(make_gateway(upstream, policy=POLICY), body, {"Content-Encoding": encoding})
    assert r.status_code == 415 and "Content-Encoding" in r.text
    assert upstream.received == []
    ok = post(make_gateway(upstream), b'{"jsonrpc":"2.0","id":1,"method":"ping"}', {"Content-Encoding": "identity"})
    assert ok.status_code == 200


def test_what_was_judged_is_what_is_forwarded():
    upstream = Upstream()
    sent = ('{ "jsonrpc" : "2.0", "id": 7, "method": "tools\\/call", "params": {"name": "\\u0065cho",'
            ' "arguments": {"text": "caf\\u00e9 \\ud83d\\ude00", "n": 1.0E2}} }').encode()
    r = post(make_gateway(upstream, policy=POLICY), sent, {"Content-Type": "application/json; charset=utf-16"})
    assert r.status_code == 200, r.text
    ((_, headers, forwarded),) = upstream.received
    assert forwarded == json.dumps(json.loads(sent), ensure_ascii=False, separators=(",", ":")).encode()
    assert forwarded == '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":' \
                        '{"text":"café 😀","n":100.0}}}'.encode()
    assert headers["content-type"] == "application/json"  # the client's charset label is not relayed
    assert headers["content-length"] == str(len(forwarded))


# -- routing headers (MCP 2026-07-28) ----------------------------------------------------------

def modern_call(tool: str, rid: object = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {
        "name": tool, "arguments": {"a": 1, "b": 2},
        "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN,
                  "io.modelcontextprotocol/clientCapabilities": {}}}}).encode()


MISMATCHES = {
    "Mcp-Name names an allowed tool, the body another": ({"Mcp-Method": "tools/call", "Mcp-Name": "echo"}, "add"),
    "Mcp-Method says list, the body calls": ({"Mcp-Method": "tools/list", "Mcp-Name": "add"}, "add"),
    "Mcp-Name missing on a modern call": ({"Mcp-Method": "tools/call"}, "add"),
    "Mcp-Method missing on a modern request": ({"Mcp-Name": "add"}, "add"),
    "base64 Mcp-Name of another tool": ({"Mcp-Method": "tools/call",
                                         "Mcp-Name": "=?base64?" + base64.b64encode(b"echo").decode() + "?="}, "add"),
    "malformed base64 Mcp-Name": ({"Mcp-Method": "tools/call", "Mcp-Name": "=?base64?ZWNobw?="}, "echo"),
    "protocol version header disagrees with the body": ({"Mcp-Method": "tools/call", "Mcp-Name": "echo",
                                                          "MCP-Protocol-Version": "2026-07-29"}, "echo"),
}


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_routing_headers_that_disagree_with_the_body_get_400_header_mismatch(case, audit_lines):
    headers, tool = MISMATCHES[case]
    upstream = Upstream()
    r = post(make_gateway(upstream, policy=POLICY), modern_call(tool, rid="r-9"),
             {"MCP-Protocol-Version": MODERN, **headers})
    assert r.status_code == 400, (case, r.status_code, r.text)
    assert r.json() == {"jsonrpc": "2.0", "id": "r-9", "error": {"code": -32020, "message": r.json()["error"]["message"]}}
    assert r.json()["error"]["message"].startswith("Header mismatch")
    assert upstream.received == []
    assert audit_lines == []  # refused before any policy decision: neither admitted nor denied


def test_routing_headers_sent_twice_are_refused():
    upstream = Upstream()

    async def go() -> httpx.Response:
        async with client(make_gateway(upstream)) as c:
            return await c.post("/mcp", content=modern_call("echo"), headers=[
                *JSON.items(), *ALICE.items(), ("MCP-Protocol-Version", MODERN), ("Mcp-Method", "tools/call"),
                ("Mcp-Name", "echo"), ("Mcp-Name", "add")])
    r = anyio.run(go)
    assert r.status_code == 400 and r.json()["error"]["code"] == -32020 and "more than once" in r.text
    assert upstream.received == []


def test_matching_routing_headers_pass_and_a_stateless_call_is_judged_and_audited(audit_lines):
    upstream = Upstream()
    gw = make_gateway(upstream, policy=POLICY)
    encoded = "=?base64?" + base64.b64encode(b"echo").decode() + "?="
    for name in ("echo", encoded):
        r = post(gw, modern_call("echo"), {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call",
                                           "Mcp-Name": name, "Mcp-Session-Id": "stray-legacy-id"})
        assert r.status_code == 200 and r.json()["result"]["content"][0]["text"] == "done", r.text
    # a stateless (2026-07-28) request carries no session: a stray id is not relayed for anyone to act on
    assert all("mcp-session-id" not in h for _, h, _ in upstream.received)
    r = post(gw, modern_call("add"), {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "add"})
    assert r.status_code == 200 and r.json()["error"]["code"] == -32001  # the policy, not the headers, said no
    assert [(a["event"], a["tool"], a.get("outcome")) for a in audit_lines] == [
        ("tool_call_admitted", "echo", None), ("tool_call", "echo", "ok"),
        ("tool_call_admitted", "echo", None), ("tool_call", "echo", "ok"),
        ("tool_call", "add", "denied")]


# -- audit at admission ------------------------------------------------------------------------

def test_an_allowed_call_is_audited_when_admitted_before_its_answer(audit_lines):
    upstream = Upstream()
    upstream.hold = {"tools/call"}
    gw = make_gateway(upstream, policy=POLICY)
    seen: dict = {}

    async def go() -> None:
        async with client(gw) as c, anyio.create_task_group() as tg:
            async def call() -> None:
                seen["answer"] = await c.post("/mcp", content=modern_call("echo"), headers={
                    **JSON, **ALICE, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "echo"})
            tg.start_soon(call)
            with anyio.fail_after(5):
                while not upstream.received:
                    await anyio.sleep(0.01)
            seen["while_in_flight"] = [dict(a) for a in audit_lines]
            upstream.release.set()
    anyio.run(go)
    assert seen["answer"].status_code == 200
    (admitted,) = seen["while_in_flight"]
    assert admitted["event"] == "tool_call_admitted" and admitted["tool"] == "echo"
    assert admitted["who"] == "alice@example.com" and admitted["source_ip"] == "100.64.0.10"
    done = audit_lines[-1]
    assert done["event"] == "tool_call" and done["outcome"] == "ok" and done["call_id"] == admitted["call_id"]


# -- sessions belong to whoever opened them ---------------------------------------------------------

INIT = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}).encode()
LIST = b'{"jsonrpc":"2.0","id":5,"method":"tools/list"}'


def test_a_session_id_is_bound_to_the_caller_that_opened_it():
    upstream = Upstream()
    gw = make_gateway(upstream)
    r = post(gw, INIT)
    sid = r.headers["mcp-session-id"]
    legacy = {"MCP-Protocol-Version": "2025-11-25", "Mcp-Session-Id": sid}
    assert post(gw, LIST, legacy).status_code == 200
    before = len(upstream.received)
    r = post(gw, LIST, {**legacy, **MALLORY})
    assert r.status_code == 404 and r.json()["error"]["message"] == "Session not found"
    r = post(gw, LIST, {**legacy, "Mcp-Session-Id": "never-issued"})
    assert r.status_code == 404
    assert len(upstream.received) == before  # neither reached the server
    # the same user from another device (another address) is the same owner
    assert post(gw, LIST, {**legacy, "X-Forwarded-For": "100.64.0.11"}).status_code == 200


def test_a_404_from_another_endpoint_does_not_end_a_session():
    """Only the endpoint that issued a session can end it: a 404 from another served path
    (an SSE message endpoint the id means nothing to) must not make the gateway forget it."""
    upstream = Upstream()
    upstream.missing = {"/message"}
    gw = make_gateway(upstream, paths=("/sse", "/message", "/mcp"))  # server-everything's SSE paths
    sid = post(gw, INIT).headers["mcp-session-id"]
    legacy = {"MCP-Protocol-Version": "2025-11-25", "Mcp-Session-Id": sid}
    assert post(gw, LIST, legacy, path="/message?sessionId=x").status_code == 404  # the server's answer
    assert post(gw, LIST, legacy).status_code == 200


def test_a_repeated_session_query_key_is_refused():
    upstream = Upstream()
    gw = make_gateway(upstream)
    for query in ("session_id=a&session_id=b", "session_id=a&session%5Fid=b", "session_id=&session_id=b"):
        r = post(gw, LIST, path=f"/messages/?{query}")
        assert r.status_code == 400 and "more than once" in r.text, (query, r.text)
    assert upstream.received == []
    # an unknown session id on an announced endpoint: test_gateway_sse_routes.py


# -- the pending-request tracker never drops silently --------------------------------------------------

def test_a_full_tracker_refuses_with_429_instead_of_dropping():
    upstream = Upstream()
    gw = make_gateway(upstream, policy=POLICY, max_pending=2)
    batch = json.dumps([{"jsonrpc": "2.0", "id": i, "method": "tools/list"} for i in range(3)]).encode()
    r = post(gw, batch)
    assert r.status_code == 429 and "SIDECAR_MAX_PENDING" in r.text
    assert upstream.received == []
    r = post(gw, json.dumps([{"jsonrpc": "2.0", "id": i, "method": "tools/list"} for i in range(2)]).encode())
    assert r.status_code == 200 and all(t["tools"] == [{"name": "echo", "inputSchema": {"type": "object"}}]
                                        for t in (a["result"] for a in r.json()))


def test_an_id_already_pending_in_the_session_is_refused():
    """Two requests with one id at once: the SDK routes an answer by id, so the ping's answer
    could settle the tools/list and the list's answer pass unfiltered."""
    upstream = Upstream()
    upstream.hold = {"tools/list"}
    gw = make_gateway(upstream, policy=POLICY)
    sid = post(gw, INIT).headers["mcp-session-id"]
    legacy = {**JSON, **ALICE, "MCP-Protocol-Version": "2025-11-25", "Mcp-Session-Id": sid}
    out: dict = {}

    async def go() -> None:
        async with client(gw) as c, anyio.create_task_group() as tg:
            async def first() -> None:
                out["list"] = await c.post("/mcp", content=LIST, headers=legacy)
            tg.start_soon(first)
            with anyio.fail_after(5):
                while len(upstream.received) < 2:
                    await anyio.sleep(0.01)
            out["ping"] = await c.post("/mcp", content=b'{"jsonrpc":"2.0","id":5,"method":"ping"}', headers=legacy)
            upstream.release.set()
    anyio.run(go)
    assert out["ping"].status_code == 400 and "already waiting" in out["ping"].text
    assert [t["name"] for t in out["list"].json()["result"]["tools"]] == ["echo"]
    assert len(upstream.received) == 2  # initialize and the list; the ping never left


# -- per-source limit -------------------------------------------------------------------------------

def test_the_per_source_limit_counts_the_serve_set_source_only():
    upstream = Upstream()
    upstream.hold = {"tools/call"}
    gw = make_gateway(upstream, max_concurrent_per_source=2)
    results: dict[str, int] = {}
    victim = "100.64.0.10"

    async def go() -> None:
        async with client(gw) as c, anyio.create_task_group() as tg:
            async def hold(i: int) -> None:
                r = await c.post("/mcp", content=modern_call("echo", rid=i), headers={
                    **JSON, "X-Forwarded-For": "100.64.0.66", "MCP-Protocol-Version": MODERN,
                    "Mcp-Method": "tools/call", "Mcp-Name": "echo"})
                results[f"held{i}"] = r.status_code
            for i in range(2):
                tg.start_soon(hold, i)
            with anyio.fail_after(5):
                while gw.limiter.active("100.64.0.66") < 2:
                    await anyio.sleep(0.01)
            ping = b'{"jsonrpc":"2.0","id":9,"method":"ping"}'
            r = await c.post("/mcp", content=ping, headers={**JSON, "X-Forwarded-For": "100.64.0.66"})
            results["third from the same source"] = r.status_code
            assert r.headers.get("retry-after") == "1"
            # what a client-sent X-Forwarded-For would look like had serve appended instead of replaced:
            # the gateway counts the last address, the one serve vouches for
            r = await c.post("/mcp", content=ping, headers={**JSON, "X-Forwarded-For": f"{victim}, 100.64.0.66"})
            results["forged victim address"] = r.status_code
            r = await c.post("/mcp", content=ping, headers={**JSON, "X-Forwarded-For": victim})
            results["the victim"] = r.status_code
            upstream.release.set()
    anyio.run(go)
    assert results == {"third from the same source": 429, "forged victim address": 429, "the victim": 200,
                       "held0": 200, "held1": 200}
    assert gw.limiter.active("100.64.0.66") == 0 and gw.limiter.active(victim) == 0
