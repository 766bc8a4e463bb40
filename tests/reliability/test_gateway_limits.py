"""Each bound of the gateway holding, against the real gateway process and the stock server.

The headers are the ones `tailscale serve` sets (X-Forwarded-For = the caller's tailnet
address, Tailscale-User-Login for user-owned nodes); through serve itself the per-source
limit is shown in tests/sidecar/test_forged_headers.py. Every test ends by proving the
limited caller gets served again once it lets go, and that others were never refused.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from reliability_support import TAILNET_HOST, GatewayProc, roundtrip

pytestmark = pytest.mark.slow

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


def caller(ip: str, login: str = "alice@example.com") -> dict[str, str]:
    return {"X-Forwarded-For": ip, "Tailscale-User-Login": login}


Held = tuple[httpx.Client, httpx.Response, Iterator[str]]


def open_streams(gw: GatewayProc, headers: dict, n: int) -> list[Held]:
    """`n` legacy SSE streams held open (their endpoint event read); the caller closes them.
    The line iterator is kept: dropping it would close the response, and the stream with it."""
    held = []
    for _ in range(n):
        c = gw.client(timeout=httpx.Timeout(10, read=30))
        r = c.send(c.build_request("GET", "/sse", headers=headers), stream=True)
        lines = r.iter_lines()
        held.append((c, r, lines))
        if r.status_code == 200:
            next(line for line in lines if line.startswith("data:"))
    return held


def close_all(held: list[Held]) -> None:
    for c, r, _ in held:
        r.close()
        c.close()


def test_per_source_limit_on_requests_and_streams(gateway_factory):
    gw = gateway_factory(SIDECAR_MAX_CONCURRENT_PER_SOURCE="3")
    greedy = caller("100.64.0.66", "mallory@example.com")
    held = open_streams(gw, greedy, 3)
    try:
        assert [r.status_code for _, r, _ in held] == [200, 200, 200]
        held += open_streams(gw, greedy, 1)  # a fourth stream: its status, never its (endless) body unless refused
        r = held[-1][1]
        assert r.status_code == 429 and "SIDECAR_MAX_CONCURRENT_PER_SOURCE" in r.read().decode(), r.status_code
        assert r.headers["retry-after"] == "1"
        with gw.client(timeout=20) as c:
            r = c.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers={**ACCEPT, **greedy})
            assert r.status_code == 429  # requests and streams share the quota
        # another tailnet source is not affected, on either transport
        other = caller("100.64.0.10")
        assert roundtrip(gw.socket, "http", other) == 42 and roundtrip(gw.socket, "sse", other) == 42
        metrics = gw.health("/metrics").text
        assert 'mcp_gateway_refused_total{reason="source_limit"} 2.0' in metrics
    finally:
        close_all(held)
    deadline = time.monotonic() + 20  # the stream ends reach the gateway asynchronously: bounded retry
    while time.monotonic() < deadline and roundtrip_status(gw, greedy) == 429:
        time.sleep(0.2)
    assert roundtrip(gw.socket, "http", greedy) == 42


def roundtrip_status(gw: GatewayProc, headers: dict) -> int:
    with gw.client(timeout=20) as c:
        return c.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers={**ACCEPT, **headers}
                      ).status_code


def test_a_body_that_never_finishes_gets_408_and_frees_its_slot(gateway_factory):
    gw = gateway_factory(SIDECAR_BODY_READ_TIMEOUT="1", SIDECAR_MAX_CONCURRENT_PER_SOURCE="1")
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.settimeout(15)
    try:
        slow.connect(str(gw.socket))
        slow.sendall(b"POST /mcp HTTP/1.1\r\nHost: " + TAILNET_HOST.encode() + b"\r\nContent-Type: application/json\r\n"
                     b"X-Forwarded-For: 100.64.0.66\r\nTailscale-User-Login: mallory@example.com\r\n"
                     b"Content-Length: 100\r\n\r\n" + b'{"jsonrpc":')
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = slow.recv(4096)  # bounded by the socket timeout: no answer at all fails the test
            if not chunk:
                break
            reply += chunk
    finally:
        slow.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"SIDECAR_BODY_READ_TIMEOUT" in reply or b"408" in reply
    # the slot the dribbling request held is free again
    assert roundtrip(gw.socket, "http", caller("100.64.0.66", "mallory@example.com")) == 42


def test_the_buffered_json_answer_is_bounded(gateway_factory):
    gw = gateway_factory(SIDECAR_MAX_JSON_RESPONSE_BYTES="4096")

    def echo(text: str) -> httpx.Response:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": text}, "_meta": META}}
        with gw.client(timeout=20) as c:  # 2026-07-28: the stock server answers a quick call with JSON
            return c.post("/mcp", json=body, headers={**ACCEPT, "MCP-Protocol-Version": MODERN,
                                                      "Mcp-Method": "tools/call", "Mcp-Name": "echo"})
    small = echo("x" * 100)
    assert small.status_code == 200 and small.headers["content-type"].startswith("application/json"), small.text
    big = echo("x" * 8000)
    assert big.status_code == 502 and "SIDECAR_MAX_JSON_RESPONSE_BYTES" in big.text, big.text[:300]
    audit = [(a["tool"], a["outcome"]) for a in gw.audit_lines()]
    assert audit == [("echo", "ok"), ("echo", "aborted")], audit  # the cut answer is on record too


def test_pending_requests_are_refused_not_dropped_when_the_tracker_is_full(gateway_factory):
    """On a legacy SSE session every POST's request waits in one tracker until its answer
    passes on the stream. Full: 429. The same id again while it waits: 400. Nothing is lost."""
    gw = gateway_factory(SIDECAR_MAX_PENDING="2")
    alice = caller("100.64.0.10")

    def call(c: httpx.Client, endpoint: str, rid: int, seconds: float) -> httpx.Response:
        return c.post(endpoint, json={"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                                      "params": {"name": "sleep", "arguments": {"seconds": seconds}}},
                      headers={**ACCEPT, **alice})

    with gw.client(timeout=httpx.Timeout(20, read=60)) as c, c.stream("GET", "/sse", headers=alice) as stream:
        lines = stream.iter_lines()
        endpoint = next(line for line in lines if line.startswith("data:")).split(":", 1)[1].strip()
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "rel", "version": "1"}}}
        assert c.post(endpoint, json=init, headers={**ACCEPT, **alice}).status_code == 202
        assert c.post(endpoint, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                      headers={**ACCEPT, **alice}).status_code == 202
        statuses = [call(c, endpoint, rid, 3).status_code for rid in (1, 2)]
        third = call(c, endpoint, 3, 0)
        again = call(c, endpoint, 1, 0)
        assert statuses == [202, 202]
        assert third.status_code == 429 and "SIDECAR_MAX_PENDING" in third.text, third.text
        assert again.status_code == 400 and "already waiting" in again.text, again.text
        # the two admitted calls are answered on the stream; then there is room again
        got = {}
        deadline = time.monotonic() + 30
        for line in lines:
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                got[msg.get("id")] = msg
            if {1, 2} <= set(got) or time.monotonic() > deadline:
                break
        assert got[1]["result"]["content"][0]["text"] == "slept 3.0" and 2 in got
        dup_free = call(c, endpoint, 1, 0)
        assert dup_free.status_code == 202, dup_free.text
    audit = [(a["tool"], a["outcome"]) for a in gw.audit_lines()]
    assert audit[:2] == [("sleep", "ok"), ("sleep", "ok")], audit
    assert ("sleep", "denied") not in audit
