"""The gateway in front of a stock MCP SDK server, over a real unix socket.

The client side is the MCP SDK's own client (Streamable HTTP and SSE) talking HTTP over
the gateway's unix socket with the tailnet Host a `tailscale serve` caller would use.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import threading
import time

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from .conftest import SIDECAR, TAILNET_HOST, wait_for

TEXT_MARKER = "argument-value-that-must-never-be-logged-7f3a"


def _uds_client(socket_path, headers=None, timeout=None, auth=None) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.AsyncHTTPTransport(uds=str(socket_path)), headers=headers,
                              timeout=timeout or httpx2.Timeout(30, read=300), auth=auth)


def mcp_client(socket_path, transport: str, headers: dict | None = None, mode: str = "auto") -> Client:
    """An SDK client whose HTTP goes to the gateway's unix socket."""
    if transport == "sse":
        def factory(headers=None, timeout=None, auth=None):
            return _uds_client(socket_path, headers, timeout, auth)
        return Client(sse_client(f"http://{TAILNET_HOST}/sse", headers=headers, httpx_client_factory=factory),
                      mode=mode)
    http_client = _uds_client(socket_path, headers)
    return Client(streamable_http_client(f"http://{TAILNET_HOST}/mcp", http_client=http_client), mode=mode)


async def _list_and_call(socket_path, transport: str, headers=None, mode="auto"):
    async with mcp_client(socket_path, transport, headers, mode) as client:
        tools = sorted(t.name for t in (await client.list_tools()).tools)
        added = await client.call_tool("add", {"a": 2, "b": 40})
        echoed = await client.call_tool("echo", {"text": TEXT_MARKER})
        return tools, added, echoed, client.protocol_version


@pytest.mark.parametrize("transport,mode", [("http", "auto"), ("http", "legacy"), ("sse", "auto"),
                                            ("sse", "legacy")])
def test_stock_server_works_behind_the_gateway(stock_server, gateway_factory, transport, mode):
    gw = gateway_factory(stock_server.url)
    tools, added, echoed, version = anyio.run(_list_and_call, gw.socket, transport, None, mode)
    assert tools == ["add", "echo", "sleep"]
    assert added.structured_content == {"result": 42} and not added.is_error
    assert echoed.content[0].text == TEXT_MARKER
    assert version  # a protocol version was negotiated through the gateway

    audit = gw.audit_lines()
    assert [(a["tool"], a["outcome"], a["transport"]) for a in audit] == [
        ("add", "ok", "sse" if transport == "sse" else "streamable-http"),
        ("echo", "ok", "sse" if transport == "sse" else "streamable-http"),
    ]
    for a in audit:
        assert a["duration_ms"] >= 0 and a["who"] == "unknown"
    assert TEXT_MARKER not in gw.log_path.read_text()  # argument values never reach the logs


def test_the_stock_server_alone_rejects_a_tailnet_host(stock_server):
    """docs/design.md fact 2: why the gateway must rewrite Host and drop Origin."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    hdrs = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    r = httpx.post(stock_server.url + "/mcp", json=body, headers={**hdrs, "Host": TAILNET_HOST})
    assert r.status_code == 421
    r = httpx.post(stock_server.url + "/mcp", json=body, headers={**hdrs, "Origin": f"http://{TAILNET_HOST}"})
    assert r.status_code == 403


def test_wrong_host_and_origin_are_rejected(stock_server, gateway_factory):
    gw = gateway_factory(stock_server.url)
    with gw.client() as c:
        r = c.get("/sse", headers={"Host": "evil.example"})
        assert r.status_code == 421 and "evil.example" in r.text and TAILNET_HOST in r.text
        # what serve sends: Host localhost and the client's Host in X-Forwarded-Host
        r = c.get("/sse", headers={"Host": "localhost", "X-Forwarded-Host": "rebind.attacker.example"})
        assert r.status_code == 421
        r = c.post("/mcp", json={}, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403 and "evil.example" in r.text
        r = c.post("/mcp", json={}, headers={"Origin": "null"})
        assert r.status_code == 403
        r = c.get("/not-mcp")
        assert r.status_code == 404
        # the right names pass the gateway (the stock server then judges the body)
        for headers in ({"Origin": f"http://{TAILNET_HOST}"},
                        {"Host": "localhost", "X-Forwarded-Host": f"{TAILNET_HOST}:80"}):
            r = c.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                       headers={"Accept": "application/json, text/event-stream", **headers})
            assert r.status_code not in (403, 421), (headers, r.status_code, r.text)


def test_event_stream_headers_set_once(stock_server, gateway_factory):
    gw = gateway_factory(stock_server.url)
    with gw.client(timeout=10) as c, c.stream("GET", "/sse") as r:
        assert r.status_code == 200
        assert r.headers.get_list("x-accel-buffering") == ["no"]  # the SDK sets it too: never doubled
        assert r.headers["content-type"].startswith("text/event-stream")


def test_oversized_body_is_refused_with_413(stock_server, gateway_factory):
    gw = gateway_factory(stock_server.url, SIDECAR_MAX_BODY_BYTES="2048")
    big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": "x" * 4096}}}).encode()
    with gw.client() as c:
        r = c.post("/mcp", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "2048" in r.text

        def chunks():  # no Content-Length: the limit must hold while streaming too
            for i in range(0, len(big), 512):
                yield big[i:i + 512]
        r = c.post("/mcp", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413


def test_socket_is_not_world_accessible(stock_server, gateway_factory):
    gw = gateway_factory(stock_server.url)
    mode = stat.S_IMODE(os.stat(gw.socket).st_mode)
    assert mode & 0o007 == 0, oct(mode)


POLICY = {
    "groups": {"group:ops": ["ops@example.com"]},
    "rules": [
        {"principals": ["alice@example.com"], "tools": ["echo"]},
        {"principals": ["group:ops"], "tools": ["*"]},
    ],
}


@pytest.mark.parametrize("transport", ["http", "sse"])
def test_policy_filters_lists_and_denies_calls(stock_server, gateway_factory, short_tmp, transport):
    policy_file = short_tmp / "policy.json"
    policy_file.write_text(json.dumps(POLICY))
    gw = gateway_factory(stock_server.url, SIDECAR_POLICY_FILE=str(policy_file))

    async def as_user(login: str | None):
        headers = {"Tailscale-User-Login": login} if login else None
        async with mcp_client(gw.socket, transport, headers) as client:
            tools = sorted(t.name for t in (await client.list_tools()).tools)
            results = {}
            for name, args in (("echo", {"text": TEXT_MARKER}), ("add", {"a": 1, "b": 1})):
                try:
                    res = await client.call_tool(name, args)
                    results[name] = "ok" if not res.is_error else "tool_error"
                except MCPError as exc:
                    assert "not allowed" in str(exc), exc
                    results[name] = "denied"
            return tools, results

    assert anyio.run(as_user, "alice@example.com") == (["echo"], {"echo": "ok", "add": "denied"})
    assert anyio.run(as_user, "ops@example.com") == (["add", "echo", "sleep"], {"echo": "ok", "add": "ok"})
    assert anyio.run(as_user, None) == ([], {"echo": "denied", "add": "denied"})  # deny by default

    audit = [(a["who"], a["tool"], a["outcome"]) for a in gw.audit_lines()]
    assert audit == [
        ("alice@example.com", "echo", "ok"), ("alice@example.com", "add", "denied"),
        ("ops@example.com", "echo", "ok"), ("ops@example.com", "add", "ok"),
        ("unknown", "echo", "denied"), ("unknown", "add", "denied"),
    ]
    assert TEXT_MARKER not in gw.log_path.read_text()
    metrics = gw.health("/metrics").text
    assert 'mcp_gateway_tool_calls_total{outcome="denied"} 3.0' in metrics
    assert 'mcp_gateway_tool_calls_total{outcome="ok"} 3.0' in metrics
    assert "mcp_gateway_upstream_latency_seconds_bucket" in metrics


def test_tool_errors_and_unknown_tools_are_audited(stock_server, gateway_factory):
    gw = gateway_factory(stock_server.url)

    async def go():
        async with mcp_client(gw.socket, "http", mode="legacy") as client:
            res = await client.call_tool("add", {"a": "not-a-number", "b": 1})
            assert res.is_error
            try:  # SDK versions answer an unknown tool with isError or a JSON-RPC error
                res = await client.call_tool("no_such_tool", {})
                assert res.is_error
            except MCPError:
                pass
    anyio.run(go)
    outcomes = [(a["tool"], a["outcome"]) for a in gw.audit_lines()]
    assert outcomes[0] == ("add", "tool_error")
    assert outcomes[1][0] == "no_such_tool" and outcomes[1][1] in ("error", "tool_error")


def test_readiness_reports_each_part(stock_server, gateway_factory):
    gw = gateway_factory(stock_server.url)
    assert gw.health("/healthz").json() == {"status": "alive"}
    r = gw.health("/readyz")
    assert r.status_code == 503  # no tailscaled in this test: not ready, and it says why
    checks = r.json()["checks"]
    assert checks["upstream"]["ok"] is True
    assert checks["tailnet"]["ok"] is False and "no-tailscaled.sock" in checks["tailnet"]["detail"]
    assert checks["serve"]["ok"] is False
    probe = subprocess.run([SIDECAR, "probe", "ready", "--socket", str(gw.health_socket)],
                           capture_output=True, text=True)
    assert probe.returncode == 1 and "tailnet" in probe.stderr
    probe = subprocess.run([SIDECAR, "probe", "alive", "--socket", str(gw.health_socket)],
                           capture_output=True, text=True)
    assert probe.returncode == 0


def test_upstream_down_is_a_clear_502(gateway_factory):
    from .conftest import free_port
    gw = gateway_factory(f"http://127.0.0.1:{free_port()}")
    with gw.client() as c:
        r = c.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                 "params": {"name": "echo", "arguments": {}}})
    assert r.status_code == 502 and "not answering" in r.text
    assert [(a["tool"], a["outcome"]) for a in gw.audit_lines()] == [("echo", "upstream_unavailable")]


def test_sigterm_drains_in_flight_calls_and_exits_zero(stock_server, gateway_factory):
    gw = gateway_factory(stock_server.url)
    result: dict = {}

    async def slow_call():
        async with mcp_client(gw.socket, "http", mode="legacy") as client:
            result["tools"] = len((await client.list_tools()).tools)
            result["started"] = time.monotonic()
            res = await client.call_tool("sleep", {"seconds": 2})
            result["answer"] = res.content[0].text

    t = threading.Thread(target=anyio.run, args=(slow_call,))
    t.start()
    wait_for(lambda: "started" in result, "the slow call to start")
    time.sleep(0.3)
    gw.proc.send_signal(signal.SIGTERM)
    t.join(30)
    assert result.get("answer") == "slept 2.0"  # the in-flight call finished during the drain
    assert gw.proc.wait(20) == 0
    assert not gw.socket.exists()


# -- MCP 2026-07-28 through the gateway (docs/design.md fact 9) --------------------------------------

MODERN = "2026-07-28"
MODERN_META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {},
               "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"}}


def modern_post(c: httpx.Client, method: str, params: dict, headers: dict, rid: object = 1) -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": rid, "method": method, "params": {**params, "_meta": MODERN_META}}
    return c.post("/mcp", json=body, headers={"Accept": "application/json, text/event-stream",
                                              "MCP-Protocol-Version": MODERN, **headers})


def test_routing_headers_are_checked_against_the_body_before_the_policy(stock_server, gateway_factory, short_tmp):
    policy_file = short_tmp / "policy.json"
    policy_file.write_text(json.dumps({"rules": [{"principals": ["alice@example.com"], "tools": ["echo"]}]}))
    gw = gateway_factory(stock_server.url, SIDECAR_POLICY_FILE=str(policy_file))
    alice = {"Tailscale-User-Login": "alice@example.com"}
    call_add = {"name": "add", "arguments": {"a": 1, "b": 2}}
    with gw.client(timeout=20) as c:
        # the headers name the allowed tool, the body calls the denied one: refused as the spec says
        r = modern_post(c, "tools/call", call_add, {**alice, "Mcp-Method": "tools/call", "Mcp-Name": "echo"})
        assert r.status_code == 400 and r.json()["error"]["code"] == -32020, r.text
        r = modern_post(c, "tools/call", call_add, {**alice, "Mcp-Method": "tools/list", "Mcp-Name": "add"})
        assert r.status_code == 400 and r.json()["error"]["code"] == -32020, r.text
        # consistent headers: the policy decides, the stock server answers what it allows
        r = modern_post(c, "tools/call", call_add, {**alice, "Mcp-Method": "tools/call", "Mcp-Name": "add"})
        assert r.status_code == 200 and r.json()["error"]["code"] == -32001, r.text
        r = modern_post(c, "tools/call", {"name": "echo", "arguments": {"text": "hi"}},
                        {**alice, "Mcp-Method": "tools/call", "Mcp-Name": "echo"})
        assert r.status_code == 200 and r.json()["result"]["content"][0]["text"] == "hi", r.text
        r = modern_post(c, "tools/list", {}, {**alice, "Mcp-Method": "tools/list"}, rid="l")
        assert [t["name"] for t in r.json()["result"]["tools"]] == ["echo"], r.text
    assert [(a["tool"], a["outcome"]) for a in gw.audit_lines()] == [("add", "denied"), ("echo", "ok")]
    admitted = [r for r in gw.log_lines() if r.get("event") == "tool_call_admitted"]
    assert [(a["tool"], a["who"]) for a in admitted] == [("echo", "alice@example.com")]
    assert admitted[0]["call_id"] == gw.audit_lines()[1]["call_id"]


def test_a_stateless_client_is_served_and_its_listen_stream_kept_alive(stock_server, gateway_factory):
    """The mcp 2.3.0 client probes server/discover and speaks 2026-07-28; subscriptions/listen
    is an event stream on a POST that stays open: the gateway keeps it alive between events."""
    gw = gateway_factory(stock_server.url, SIDECAR_KEEPALIVE_INTERVAL="1")
    seen: dict = {}

    async def go() -> None:
        async with mcp_client(gw.socket, "http") as client:
            seen["version"] = client.protocol_version
            async with client.listen(tools_list_changed=True):
                await anyio.sleep(2.5)
                seen["call"] = (await client.call_tool("add", {"a": 2, "b": 3})).structured_content
        async with _uds_client(gw.socket, timeout=httpx2.Timeout(10)) as raw:
            body = {"jsonrpc": "2.0", "id": "listen-raw", "method": "subscriptions/listen",
                    "params": {"notifications": {"toolsListChanged": True}, "_meta": MODERN_META}}
            headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": MODERN,
                       "Mcp-Method": "subscriptions/listen"}
            got = b""
            async with raw.stream("POST", f"http://{TAILNET_HOST}/mcp", json=body, headers=headers) as r:
                seen["listen_status"] = r.status_code
                with anyio.move_on_after(3.5):
                    async for chunk in r.aiter_raw():
                        got += chunk
            seen["stream"] = got
    anyio.run(go)
    assert seen["version"] == MODERN
    assert seen["call"] == {"result": 5}
    assert seen["listen_status"] == 200
    assert b"notifications/subscriptions/acknowledged" in seen["stream"]
    assert seen["stream"].count(b": keepalive") >= 2, seen["stream"][-300:]
    assert [(a["tool"], a["outcome"], a["transport"]) for a in gw.audit_lines()] == [("add", "ok", "streamable-http")]
