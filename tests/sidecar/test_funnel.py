"""Funnel (the public internet) is refused: by the gateway process, and in readiness.

serve sets `Tailscale-Funnel-Request: ?1` on what it relays from Funnel and deletes a
client-sent copy (tailscale v1.102.3 ipn/ipnlocal/serve.go), so from the tailnet the header
cannot be forged and its presence means the internet. headscale has no Funnel, so the
header is sent here the way serve would send it, to the real `mcp-tailnet-sidecar gateway`.
"""

from __future__ import annotations

from mcp_tailnet_sidecar import serveconfig

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def test_a_funnel_request_is_refused_before_it_reaches_the_server(stock_server, gateway_factory):
    gw = gateway_factory(stock_server.url)
    with gw.client(timeout=10) as c:
        assert c.post("/mcp", json=INIT, headers=HEADERS).status_code == 200  # the same request, from the tailnet
        for value in ("?1", "1", ""):
            r = c.post("/mcp", json=INIT, headers={**HEADERS, "Tailscale-Funnel-Request": value})
            assert r.status_code == 403 and "Funnel" in r.text, (value, r.status_code, r.text)
        r = c.get("/sse", headers={"tailscale-FUNNEL-request": "?1"})
        assert r.status_code == 403
    refused = [r for r in gw.log_lines() if r.get("event") == "funnel_refused"]
    assert len(refused) == 4 and {r["path"] for r in refused} == {"/mcp", "/sse"}


def test_readiness_reads_funnel_from_the_live_serve_config():
    assert serveconfig.funnel({"AllowFunnel": {"srv.lab.tailnet:443": True}}) == ["srv.lab.tailnet:443"]
    assert serveconfig.funnel({"AllowFunnel": {"srv.lab.tailnet:443": False}}) == []
    assert serveconfig.funnel(serveconfig.render("srv.lab.tailnet", "unix:/g.sock", https=True)) == []
    assert serveconfig.funnel(None) == []
