"""Answers survive serve's race with its own request body (golang/go#40747, docs/design.md fact 20).

Behind `tailscale serve`, an answer whose head reaches serve before serve's transport has
finished with the request's body is cut: serve's HTTP server closes the client's body when
the answer starts, the transport's last read of that body fails, and it closes the backend
connection the rest of the answer was coming on. On a quiet machine the window is
microseconds; on a busy one (CI) it sometimes stays open long enough — one tool call in a
CI run lost its answer that way. Here the real proxy code (Go's `httputil.ReverseProxy`, set up
as serve sets it up: lab/src/mcp_tailnet_lab/race_proxy.py) holds that window open for
TAIL_DELAY, and a tool runs longer than that, so every answer whose head goes out at once is
cut. The control is the stock SDK server straight behind the proxy (its head goes at once):
it must lose its answers, or this harness proves nothing. Through the gateway, on both
listener kinds, the head waits for the answer's first event and goes out in one write with
it (relay_events.HEAD_HOLD, serving.WRITE_TOGETHER): no answer is lost.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from mcp_tailnet_lab import race_proxy
from mcp_tailnet_lab.gateway_process import TAILNET_HOST
from mcp_tailnet_lab.ports import free_port

pytestmark = pytest.mark.slow

TAIL_DELAY = "50ms"  # the window held open; the tool below runs six times longer
TOOL_SECONDS = 0.3
CALLS = 6
VERSION = "2025-11-25"  # the session transport, whose answers to POSTs come as event streams
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def rpc(rid: int, method: str, params: dict) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})


def answers_through(base: str) -> tuple[int, list[str]]:
    """Calls `sleep` CALLS times in one session; the answers that came, and what the others saw
    (a cut `initialize` ends it there: no answer came)."""
    with httpx.Client(base_url=base, timeout=30) as c:
        try:  # initialize's answer is an event stream too: on a busy machine it can come late enough to be cut
            r = c.post("/mcp", headers=ACCEPT, content=rpc(0, "initialize", {
                "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "race", "version": "1"}}))
        except httpx.HTTPError as exc:
            return 0, [f"initialize: {exc!r}"]
        assert r.status_code == 200, r.text
        session = {**ACCEPT, "Mcp-Session-Id": r.headers["mcp-session-id"], "Mcp-Protocol-Version": VERSION}
        initialized = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
        r = c.post("/mcp", headers=session, content=initialized)
        assert r.status_code == 202, r.text
        came, lost = 0, []
        for rid in range(1, CALLS + 1):
            body = rpc(rid, "tools/call", {"name": "sleep", "arguments": {"seconds": TOOL_SECONDS}})
            try:
                with c.stream("POST", "/mcp", headers=session, content=body) as r:
                    text = r.read().decode()
            except httpx.HTTPError as exc:
                lost.append(f"call {rid}: {exc!r}")
                continue
            answers = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]
            if any(a.get("id") == rid and "result" in a for a in answers):
                came += 1
            else:
                lost.append(f"call {rid}: HTTP {r.status_code}, body {text[:200]!r}")
        return came, lost


def test_the_race_cuts_a_stock_server_answer_behind_the_proxy(stock_server, short_tmp: Path):
    """The control: without the gateway, the proxy's race window costs the answers. (One may escape
    on a busy machine: a server whose head is itself later than the window loses nothing.)"""
    with race_proxy.running(f"tcp:127.0.0.1:{stock_server.port}", f"127.0.0.1:{stock_server.port}",
                            short_tmp / "proxy.log", tail_delay=TAIL_DELAY) as base:
        came, _ = answers_through(base)
    assert came <= 1, f"{came} of {CALLS} answers came through: the harness no longer opens the race window"
    assert "ReverseProxy read error during body copy" in (short_tmp / "proxy.log").read_text(errors="replace")


@pytest.mark.parametrize("listener", ["unix", "tcp"])
def test_no_answer_is_cut_through_the_gateway(listener, stock_server, gateway_factory, short_tmp: Path):
    env = {"SIDECAR_GATEWAY_LISTEN": f"tcp:127.0.0.2:{free_port()}"} if listener == "tcp" else {}
    gw = gateway_factory(stock_server.url, **env)
    backend = f"tcp:{gw.tcp[0]}:{gw.tcp[1]}" if gw.tcp else str(gw.socket)
    with race_proxy.running(backend, TAILNET_HOST, short_tmp / "proxy.log", tail_delay=TAIL_DELAY) as base:
        came, lost = answers_through(base)
    assert (came, lost) == (CALLS, [])
