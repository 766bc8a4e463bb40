"""An answer streamed as events starts with its first event: in-process, as an ASGI app.

Behind `tailscale serve`, an answer whose head reaches serve before serve has finished with
the request's body loses the rest of the answer (golang/go#40747, docs/design.md fact 20):
the client's event stream ends without it. The gateway holds the head of an event-stream
answer to a request with a body until the answer's first event (`relay_events.HEAD_HOLD` at
most), so the two come in together. Streams opened with GET carry no body and start at once.
`bench/serve_body_race.py --tail-delay 2ms` measures the effect through the proxy serve uses.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from mcp_tailnet_sidecar import relay_events

from .gateway_fakes import ALICE, JSON, client, make_gateway, read_body

CALL = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                   "params": {"name": "echo", "arguments": {"text": "x"}}}).encode()
ANSWER = {"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": "done"}]}}
BOUND = 10.0  # every wait in these tests ends by then


class LateEventUpstream:
    """Answers `initialize` at once (session `s1`); anything else with an event stream whose
    head goes out at once and whose one event waits for `release` (set by the test, or `after`
    seconds); records when it sent that event."""

    def __init__(self, after: float | None = None, *, ends_empty: bool = False) -> None:
        self.after = after
        self.ends_empty = ends_empty  # the stream ends without its event
        self.release = anyio.Event()
        self.event_sent = False
        self.events: list[bytes] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if body and json.loads(body).get("method") == "initialize":
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/json"), (b"mcp-session-id", b"s1")]})
            await send({"type": "http.response.body", "body": json.dumps(
                {"jsonrpc": "2.0", "id": 0, "result": {"protocolVersion": "2025-11-25", "capabilities": {},
                                                       "serverInfo": {"name": "late", "version": "1"}}}).encode()})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"mcp-session-id", b"s1")]})
        with anyio.fail_after(BOUND):
            if self.after is not None:
                await anyio.sleep(self.after)
            else:
                await self.release.wait()
        if self.ends_empty:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        event = f"event: message\r\ndata: {json.dumps(ANSWER)}\r\n\r\n".encode()
        self.event_sent = True
        await send({"type": "http.response.body", "body": event, "more_body": False})


async def open_session(c: Any) -> None:
    """initialize as ALICE, so that the gateway knows session `s1` as hers."""
    r = await c.post("/mcp", headers={**JSON, **ALICE}, content=json.dumps(
        {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}).encode())
    assert (r.status_code, r.headers.get("mcp-session-id")) == (200, "s1"), r.text


def events_of(text: str) -> list[dict]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def test_the_head_of_a_posted_answer_waits_for_its_first_event():
    upstream = LateEventUpstream(after=0.3)
    gw = make_gateway(upstream, streaming=True)

    async def go() -> tuple[bool, int, str, str]:
        async with client(gw, streaming=True) as c:
            with anyio.fail_after(BOUND):
                async with c.stream("POST", "/mcp", content=CALL, headers={**JSON, **ALICE}) as r:
                    sent_when_head_came = upstream.event_sent
                    return sent_when_head_came, r.status_code, r.headers["mcp-session-id"], \
                        (await r.aread()).decode()

    sent_when_head_came, status, session_id, body = anyio.run(go)
    assert sent_when_head_came, "the head reached the client before the answer's first event existed"
    assert (status, session_id) == (200, "s1")
    assert events_of(body) == [ANSWER]


def test_a_held_head_goes_alone_when_no_event_comes_within_the_hold(monkeypatch):
    monkeypatch.setattr(relay_events, "HEAD_HOLD", 0.1)
    upstream = LateEventUpstream()
    gw = make_gateway(upstream, streaming=True)

    async def go() -> tuple[bool, str]:
        async with client(gw, streaming=True) as c:
            with anyio.fail_after(BOUND):
                async with c.stream("POST", "/mcp", content=CALL, headers={**JSON, **ALICE}) as r:
                    sent_when_head_came = upstream.event_sent
                    upstream.release.set()
                    return sent_when_head_came, (await r.aread()).decode()

    sent_when_head_came, body = anyio.run(go)
    assert not sent_when_head_came  # the head came on its own, before the event existed
    assert events_of(body) == [ANSWER]


def test_a_stream_opened_with_get_starts_at_once(monkeypatch):
    monkeypatch.setattr(relay_events, "HEAD_HOLD", 60.0)  # a held head would outlast BOUND
    upstream = LateEventUpstream()
    gw = make_gateway(upstream, streaming=True)

    async def go() -> tuple[bool, int, str]:
        async with client(gw, streaming=True) as c:
            with anyio.fail_after(BOUND):
                await open_session(c)
                async with c.stream("GET", "/mcp", headers={"Accept": "text/event-stream", "Mcp-Session-Id": "s1",
                                                            **ALICE}) as r:
                    sent_when_head_came = upstream.event_sent
                    upstream.release.set()
                    return sent_when_head_came, r.status_code, (await r.aread()).decode()

    sent_when_head_came, status, body = anyio.run(go)
    assert (sent_when_head_came, status) == (False, 200)
    assert events_of(body) == [ANSWER]


@pytest.mark.parametrize("hold", [True, False])
def test_an_answer_stream_that_ends_without_an_event_still_gets_its_head(hold, monkeypatch):
    monkeypatch.setattr(relay_events, "HEAD_HOLD", 60.0)

    gw = make_gateway(LateEventUpstream(after=0.0, ends_empty=True), streaming=True)

    async def go() -> tuple[int, bytes]:
        async with client(gw, streaming=True) as c:
            with anyio.fail_after(BOUND):
                if hold:
                    r = await c.post("/mcp", content=CALL, headers={**JSON, **ALICE})
                else:
                    await open_session(c)
                    r = await c.get("/mcp", headers={"Accept": "text/event-stream", "Mcp-Session-Id": "s1", **ALICE})
                return r.status_code, r.content

    assert anyio.run(go) == (200, b"")
