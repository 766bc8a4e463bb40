"""No listener stalls keep-alive calls (docs/design.md fact 13).

A keep-alive answer written in two pieces (head, then body) on a socket with Nagle's
algorithm on waits for the client's delayed ACK: ~40 ms a call, measured on the gateway's
default non-root TCP listener before it set TCP_NODELAY. Timed here in one run, on one kept-
alive connection per path, as ratios against the unix socket (which has no Nagle): every
listener kind the sidecar opens (gateway TCP alias, health TCP, health unix) and the hop
the gateway makes to its TCP upstream (gateway-over-unix against the upstream direct).
A stall is an order of magnitude off; the margins are wide enough for a busy machine.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import httpx
import pytest

from mcp_tailnet_lab.ports import free_port

CALLS = 25
WARMUP = 3
STALL_RATIO = 5.0  # a Nagle/delayed-ACK stall costs ~40 ms against ~1-3 ms: >10x
HOP_RATIO = 12.0  # gateway over unix against direct: ~3x measured, a stall on the upstream hop ~40x
ADD = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
       "params": {"name": "add", "arguments": {"a": 2, "b": 3},
                  "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                            "io.modelcontextprotocol/clientInfo": {"name": "latency-test", "version": "1"},
                            "io.modelcontextprotocol/clientCapabilities": {}}}}
ADD_HEADERS = {"Accept": "application/json, text/event-stream", "Mcp-Method": "tools/call", "Mcp-Name": "add",
               "MCP-Protocol-Version": "2026-07-28"}


def median_call(client: httpx.Client, call: Callable[[httpx.Client], httpx.Response]) -> float:
    """Median seconds of CALLS calls on one kept-alive connection (after a short warm-up)."""
    times = []
    for i in range(WARMUP + CALLS):
        t0 = time.perf_counter()
        response = call(client)
        elapsed = time.perf_counter() - t0
        assert response.status_code == 200, response.text[:300]
        if i >= WARMUP:
            times.append(elapsed)
    return statistics.median(times)


def tool_call(client: httpx.Client) -> httpx.Response:
    response = client.post("/mcp", json=ADD, headers=ADD_HEADERS)
    assert response.json()["result"]["structuredContent"] == {"result": 5}, response.text[:300]
    return response


def health(client: httpx.Client) -> httpx.Response:
    return client.get("/healthz")


@pytest.fixture
def gateways(stock_server, gateway_factory):
    """The same gateway twice: on a unix socket (root's default) and on the non-root TCP alias.

    TS_USERSPACE=false lets the health listener take a loopback alias here; in userspace
    mode settings refuse loopback for it (tailscaled forwards unserved ports there).
    """
    unix = gateway_factory(stock_server.url)
    tcp = gateway_factory(stock_server.url, SIDECAR_GATEWAY_LISTEN=f"tcp:127.0.0.2:{free_port()}",
                          TS_USERSPACE="false", SIDECAR_HEALTH_LISTEN=f"127.0.0.3:{free_port()}")
    return unix, tcp


def test_no_listener_stalls_keepalive_calls(stock_server, gateways):
    unix, tcp = gateways
    health_host, health_port = tcp.env["SIDECAR_HEALTH_LISTEN"].rsplit(":", 1)
    with httpx.Client(base_url=stock_server.url, timeout=30) as direct, \
            unix.client(timeout=30) as gw_unix, tcp.client(timeout=30) as gw_tcp, \
            httpx.Client(transport=httpx.HTTPTransport(uds=str(unix.health_socket)), base_url="http://localhost",
                         timeout=30) as health_unix, \
            httpx.Client(base_url=f"http://{health_host}:{health_port}", timeout=30) as health_tcp:
        measured = {
            "direct": median_call(direct, tool_call),
            "gateway unix": median_call(gw_unix, tool_call),
            "gateway tcp": median_call(gw_tcp, tool_call),
            "health unix": median_call(health_unix, health),
            "health tcp": median_call(health_tcp, health),
        }
    shown = ", ".join(f"{k} {v * 1000:.2f} ms" for k, v in measured.items())
    assert measured["gateway tcp"] < STALL_RATIO * measured["gateway unix"], shown
    assert measured["health tcp"] < STALL_RATIO * max(measured["health unix"], 0.001), shown
    # The gateway's own hop to its TCP upstream: relaying costs a few times the direct call
    # (the gateway's own work), a stall forty times.
    assert measured["gateway unix"] < HOP_RATIO * measured["direct"], shown
