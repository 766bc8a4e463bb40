"""Legacy SSE servers whose message endpoint is not `/messages/?session_id=`, end to end.

The real `mcp-tailnet-sidecar gateway` process in front of real servers, driven by the
MCP SDK's SSE client over the gateway's unix socket:
- server-everything (TypeScript SDK), which announces `/message?sessionId=`, behind
  SIDECAR_PATHS=/sse,/message as tests/clients runs it; it binds every interface, so it
  runs in a network namespace this test creates and the gateway reaches it over the lab bridge;
- the stock Python SDK server with its SSE transport under a prefix, as the hub serves each server (`/servers/stock/sse` + `/servers/stock/messages/`),
  behind SIDECAR_PATHS=/servers/.
On both, a tool call is audited `ok` as `sse`, a session belongs to its opener (404 for
anyone else, nothing relayed), and a denied call is answered on the stream.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.shared.exceptions import MCPError

from mcp_tailnet_lab.gateway_process import stop
from mcp_tailnet_lab.netns import LabNetwork
from mcp_tailnet_lab.node_clients import node_clients

from .conftest import TAILNET_HOST, free_port, wait_for

ALICE = {"Tailscale-User-Login": "alice@example.com"}
MALLORY = {"Tailscale-User-Login": "mallory@example.com"}
CLIENT_TIMEOUT = 60.0
PREFIXED_STOCK = """
import sys, uvicorn
from starlette.applications import Starlette
from mcp_tailnet_lab.stock_mcp_server import build_server
app = build_server().sse_app(sse_path="/servers/stock/sse", message_path="/servers/stock/messages/")
uvicorn.run(Starlette(routes=app.routes), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def _uds(socket_path, headers=None, timeout=None, auth=None) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.AsyncHTTPTransport(uds=str(socket_path)), headers=headers,
                              timeout=timeout or httpx2.Timeout(30, read=300), auth=auth)


async def call_over_sse(socket_path, stream_path: str, tool: str, args: dict) -> tuple[list[str], object, str]:
    """As alice with the SDK's SSE client: the tool names, `tool`'s result, and what a denied call got."""
    def factory(headers=None, timeout=None, auth=None):
        return _uds(socket_path, headers, timeout, auth)
    with anyio.fail_after(CLIENT_TIMEOUT):  # an answer that never comes on the stream fails, never hangs
        return await _calls(factory, stream_path, tool, args)


async def _calls(factory, stream_path: str, tool: str, args: dict) -> tuple[list[str], object, str]:
    async with Client(sse_client(f"http://{TAILNET_HOST}{stream_path}", headers=ALICE,
                                 httpx_client_factory=factory)) as c:
        names = sorted(t.name for t in (await c.list_tools()).tools)
        result = await c.call_tool(tool, args)
        try:
            await c.call_tool("denied-by-policy", {})
            denied = "not denied"
        except MCPError as exc:  # answered on the stream: the SDK client matched it to its request
            denied = str(exc)
        return names, result, denied


def foreign_post_refused(gw, stream_path: str) -> tuple[int, int]:
    """Mallory posts into alice's session; alice posts an id never issued: both 404."""
    with gw.client(timeout=20) as c, c.stream("GET", stream_path, headers=ALICE) as stream:
        lines = stream.iter_lines()
        endpoint = next(line for line in lines if line.startswith("data:")).split(":", 1)[1].strip()
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        theirs = c.post(endpoint, json=ping, headers=MALLORY).status_code
        never = c.post(endpoint.rsplit("=", 1)[0] + "=00000000000000000000000000000000", json=ping,
                       headers=ALICE).status_code
        return theirs, never


def policy_file(short_tmp, allowed: str) -> str:
    path = short_tmp / "policy.json"
    path.write_text(json.dumps({"rules": [{"principals": ["alice@example.com"], "tools": [allowed]}]}))
    return str(path)


@pytest.fixture
def everything_sse() -> Iterator[str]:
    """server-everything over SSE in a namespace of its own; its URL on the lab bridge."""
    clients = node_clients()
    port = 18090
    with LabNetwork() as net:
        ns = net.add_namespace("ev")
        proc = ns.popen(clients.server_everything("sse"), env={"PATH": "/usr/bin:/bin", "PORT": str(port)},
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://{ns.lan_ip}:{port}"
            wait_for(lambda: httpx.get(url + "/nope", timeout=1).status_code > 0, "server-everything", timeout=30,
                     proc=proc)
            yield url
        finally:
            stop(proc)


@pytest.fixture
def prefixed_stock() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", PREFIXED_STOCK, str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(url + "/nope", timeout=1).status_code > 0, "the prefixed stock server",
                 timeout=30, proc=proc)
        yield url
    finally:
        stop(proc)


def test_server_everything_sse_behind_custom_paths(everything_sse, gateway_factory, short_tmp):
    gw = gateway_factory(everything_sse, SIDECAR_PATHS="/sse,/message",
                         SIDECAR_POLICY_FILE=policy_file(short_tmp, "echo"))
    names, result, denied = anyio.run(call_over_sse, gw.socket, "/sse", "echo", {"message": "hi"})
    assert names == ["echo"], names  # tools/list answered on the stream, filtered
    assert "Echo: hi" in result.content[0].text and not result.is_error
    assert "not allowed" in denied, denied
    assert foreign_post_refused(gw, "/sse") == (404, 404)
    audit = [(a["tool"], a["outcome"], a["transport"]) for a in gw.audit_lines()]
    assert audit == [("echo", "ok", "sse"), ("denied-by-policy", "denied", "sse")], audit


def test_stock_server_sse_under_a_prefix_as_the_hub_serves_it(prefixed_stock, gateway_factory, short_tmp):
    gw = gateway_factory(prefixed_stock, SIDECAR_PATHS="/servers/", SIDECAR_POLICY_FILE=policy_file(short_tmp, "add"))
    names, result, denied = anyio.run(call_over_sse, gw.socket, "/servers/stock/sse", "add", {"a": 2, "b": 40})
    assert names == ["add"], names
    assert result.structured_content == {"result": 42}
    assert "not allowed" in denied, denied
    assert foreign_post_refused(gw, "/servers/stock/sse") == (404, 404)
    audit = [(a["tool"], a["outcome"], a["transport"]) for a in gw.audit_lines()]
    assert audit == [("add", "ok", "sse"), ("denied-by-policy", "denied", "sse")], audit
