"""Legacy SSE on whatever message endpoint the server announces: in-process, as an ASGI app.

The SSE transport's POST path and session key are the server's choice, announced in the
stream's `endpoint` event: the Python SDK's `/messages/?session_id=`, server-everything's
`/message?sessionId=` (run behind SIDECAR_PATHS=/sse,/message), a hub's per-server
`/servers/<name>/messages/`, or a relative URL. On each, a session belongs to whoever
opened it (404 for anyone else and for ids never issued, nothing relayed), a denied call
is answered on the stream, tools/list answers on the stream are filtered, and a call
answered on the stream is audited `ok` as `sse`. An endpoint the gateway cannot bind
closes the stream before the client learns it (fail closed).

The gateway runs as the ASGI app it is; the client and the upstream talk to it through a
streaming ASGI transport (tests/sidecar/gateway_fakes.py), callers are identified by
serve's headers or, for tagged nodes, by a fake WhoIs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest

from mcp_tailnet_sidecar.identity import IdentityResolver
from mcp_tailnet_sidecar.policy import parse_policy

from .gateway_fakes import (  # noqa: F401 - audit_lines is a fixture
    ALICE,
    JSON,
    MALLORY,
    FakeWhoIs,
    LegacySseUpstream,
    audit_lines,
    client,
    make_gateway,
)

POLICY = parse_policy({"rules": [{"principals": ["*"], "tools": ["echo"]}]})  # add is denied to everyone
EVENT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Layout:
    paths: tuple[str, ...]
    stream: str
    post: str
    key: str
    endpoint: Any = None  # how the server writes the endpoint (default: post?key=id)


LAYOUTS = {
    "server-everything /message?sessionId=": Layout(("/sse", "/message"), "/sse", "/message", "sessionId"),
    "hub per-server /servers/time/messages/": Layout(("/sse", "/messages/", "/mcp", "/servers/"),
                                                      "/servers/time/sse", "/servers/time/messages/", "session_id"),
    "relative endpoint under /api/": Layout(("/api/",), "/api/v1/sse", "/api/v1/messages", "sid",
                                            lambda sid: f"messages?sid={sid}"),
    "SDK default /messages/?session_id= (control)": Layout(("/sse", "/messages/", "/mcp"), "/sse", "/messages/",
                                                           "session_id"),
}


class Events:
    """Whole events (name, data) read off a relayed event stream."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self) -> tuple[str, str] | None:
        """The next event with data (comments skipped); None when the stream ends."""
        name, data = "message", []
        with anyio.fail_after(EVENT_TIMEOUT):
            async for line in self.lines:
                if not line:
                    if data:
                        return name, "\n".join(data)
                    name = "message"
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
        return None

    async def answer(self) -> dict:
        event = await self.next()
        assert event is not None and event[0] == "message", event
        return json.loads(event[1])


@asynccontextmanager
async def session(c: httpx.AsyncClient, layout: Layout, headers: dict) -> AsyncIterator[tuple[str, Events]]:
    """Open the stream as `headers`' caller; the endpoint URL it announced, and its events."""
    async with c.stream("GET", layout.stream, headers={"Accept": "text/event-stream", **headers}) as r:
        assert r.status_code == 200, await r.aread()
        events = Events(r)
        first = await events.next()
        assert first is not None and first[0] == "endpoint", first
        yield first[1], events


def rpc(rid: int, method: str, **params: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode()


def absolute(layout: Layout, endpoint: str) -> str:
    return endpoint if endpoint.startswith("/") else layout.stream.rsplit("/", 1)[0] + "/" + endpoint


def gateway_for(layout: Layout, **config: Any):
    upstream = LegacySseUpstream(layout.stream, layout.post, layout.key, layout.endpoint)
    return upstream, make_gateway(upstream, streaming=True, paths=layout.paths, **config)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_a_session_is_bound_to_its_opener_on_any_announced_endpoint(name):
    layout = LAYOUTS[name]
    upstream, gw = gateway_for(layout)
    seen: dict[str, Any] = {}

    async def go() -> None:
        async with client(gw, streaming=True) as c, session(c, layout, ALICE) as (endpoint, events):
            url = absolute(layout, endpoint)
            r = await c.post(url, content=rpc(1, "tools/list"), headers={**JSON, **MALLORY})
            seen["someone else"] = r.status_code
            forged = url.split("=")[0] + "=s9999"  # an id the server never issued
            seen["never issued"] = (await c.post(forged, content=rpc(2, "tools/list"),
                                                 headers={**JSON, **ALICE})).status_code
            seen["missing key"] = (await c.post(url.split("?")[0], content=rpc(3, "tools/list"),
                                                headers={**JSON, **ALICE})).status_code
            seen["relayed before the owner posted"] = list(upstream.posted)
            seen["owner"] = (await c.post(url, content=rpc(4, "tools/list"), headers={**JSON, **ALICE})).status_code
            seen["answer"] = await events.answer()
    anyio.run(go)
    assert (seen["someone else"], seen["never issued"], seen["missing key"]) == (404, 404, 400), seen
    assert seen["relayed before the owner posted"] == []
    assert seen["owner"] == 202 and seen["answer"]["id"] == 4


def test_tagged_nodes_are_told_apart_by_whois():
    """No Tailscale-User-* headers for tagged nodes: the gateway asks WhoIs, and the node owns the session."""
    layout = LAYOUTS["server-everything /message?sessionId="]
    upstream = LegacySseUpstream(layout.stream, layout.post, layout.key)
    whois = FakeWhoIs({"100.64.0.20": "ci-runner", "100.64.0.21": "other-runner"})
    gw = make_gateway(upstream, streaming=True, paths=layout.paths, resolver=IdentityResolver(whois=whois))
    runner, other = {"X-Forwarded-For": "100.64.0.20"}, {"X-Forwarded-For": "100.64.0.21"}
    seen: dict[str, Any] = {}

    async def go() -> None:
        async with client(gw, streaming=True) as c, session(c, layout, runner) as (endpoint, events):
            seen["other node"] = (await c.post(endpoint, content=rpc(1, "tools/list"),
                                               headers={**JSON, **other})).status_code
            seen["the node"] = (await c.post(endpoint, content=rpc(2, "tools/list"),
                                             headers={**JSON, **runner})).status_code
            seen["answer"] = await events.answer()
    anyio.run(go)
    assert seen["other node"] == 404 and seen["the node"] == 202 and seen["answer"]["id"] == 2, seen
    assert [sid for sid, _ in upstream.posted] == ["s0001"]


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_policy_and_audit_hold_on_the_stream_of_any_announced_endpoint(name, audit_lines):
    """A denied call is answered on the stream (the POST gets 202, as from the server),
    tools/list answers on the stream are filtered, an allowed call is audited ok as sse."""
    layout = LAYOUTS[name]
    upstream, gw = gateway_for(layout, policy=POLICY)
    seen: dict[str, Any] = {}

    async def go() -> None:
        async with client(gw, streaming=True) as c, session(c, layout, ALICE) as (endpoint, events):
            url = absolute(layout, endpoint)
            for rid, method, params in ((1, "tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}}),
                                        (2, "tools/list", {}),
                                        (3, "tools/call", {"name": "echo", "arguments": {"text": "x"}})):
                r = await c.post(url, content=rpc(rid, method, **params), headers={**JSON, **ALICE})
                seen[rid] = (r.status_code, await events.answer())
    anyio.run(go)
    status, denied = seen[1]
    assert status == 202 and denied["id"] == 1 and denied["error"]["code"] == -32001, seen[1]
    status, listed = seen[2]
    assert status == 202 and [t["name"] for t in listed["result"]["tools"]] == ["echo"], seen[2]
    status, called = seen[3]
    assert status == 202 and called["result"]["content"][0]["text"] == "done", seen[3]
    assert [m["params"].get("name") for _, m in upstream.posted] == [None, "echo"]  # the denied call never left
    assert [(a["event"], a["tool"], a.get("outcome"), a["transport"]) for a in audit_lines] == [
        ("tool_call", "add", "denied", "sse"),
        ("tool_call_admitted", "echo", None, "sse"),
        ("tool_call", "echo", "ok", "sse"),
    ]


BAD_ENDPOINTS = {
    "another origin": lambda sid: f"http://evil.example/message?sessionId={sid}",
    "scheme-relative another host": lambda sid: f"//evil.example/message?sessionId={sid}",
    "a path the gateway does not serve": lambda sid: f"/elsewhere?sessionId={sid}",
    "dot segments out of the served path": lambda sid: f"/message/%2e%2e/elsewhere?sessionId={sid}",
    "no session key": lambda sid: "/message",
    "two query parameters": lambda sid: f"/message?sessionId={sid}&sessionId=other",
}


@pytest.mark.parametrize("case", sorted(BAD_ENDPOINTS))
def test_an_endpoint_the_gateway_cannot_bind_closes_the_stream(case, caplog):
    upstream = LegacySseUpstream("/sse", "/message", "sessionId", BAD_ENDPOINTS[case])
    gw = make_gateway(upstream, streaming=True, paths=("/sse", "/message"))
    seen: list[tuple[str, str] | None] = []

    async def go() -> None:
        async with client(gw, streaming=True) as c, c.stream("GET", "/sse", headers=ALICE) as r:
            events = Events(r)
            seen.append(await events.next())
    with caplog.at_level("WARNING", logger="mcp_tailnet_sidecar.gateway"):
        anyio.run(go)
    assert seen == [None], f"{case}: the client got {seen}"
    assert any("endpoint" in rec.getMessage() for rec in caplog.records), [r.getMessage() for r in caplog.records]
    assert 'mcp_gateway_refused_total{reason="sse_endpoint"} 1.0' in gw.metrics.render().decode()


def test_an_endpoint_event_that_is_not_the_first_closes_the_stream():
    """The SSE transport announces the endpoint first; one later (or on a Streamable HTTP
    stream) would send the client to a path the gateway routed as something else."""
    early = (b": a comment is fine\r\n\r\n", b'event: message\r\ndata: {"jsonrpc":"2.0","method":"x"}\r\n\r\n')
    upstream = LegacySseUpstream("/sse", "/message", "sessionId", first_events=early)
    gw = make_gateway(upstream, streaming=True, paths=("/sse", "/message"))
    seen: list[tuple[str, str] | None] = []

    async def go() -> None:
        async with client(gw, streaming=True) as c, c.stream("GET", "/sse", headers=ALICE) as r:
            events = Events(r)
            for _ in range(3):
                seen.append(await events.next())
    anyio.run(go)
    assert seen == [("message", '{"jsonrpc":"2.0","method":"x"}'), None, None], seen
