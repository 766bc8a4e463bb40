"""Forged forwarding headers through `tailscale serve` on the lab tailnet gain nothing.

The gateway reads X-Forwarded-For (the caller's tailnet address: identity lookups, the
per-source quota, the audit) and X-Forwarded-Host (the Host check) as serve sets them;
serve replaces client-sent copies (tailscale v1.102.3 ipn/ipnlocal/serve.go
`addProxyForwardedHeaders`). Here a tagged node, whose identity comes from WhoIs, sends
its own X-Forwarded-For / X-Forwarded-Host / Forwarded / Tailscale-User-Login naming a
user's node: it keeps its own rights, its own audit identity and its own quota, and the
user it impersonates is never refused on its account.

Topology: `fhsrv` runs the stock server and `mcp-tailnet-sidecar gateway --apply-serve`
(per-source limit 2); `fhusr` is a user-owned client, `fhbot` a tag:bot client; the test
reaches the tailnet through their tailscaled HTTP proxies.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mcp_tailnet_lab.gateway_process import stop
from mcp_tailnet_lab.node_gateway import NodeGateway, start_node_gateway
from mcp_tailnet_lab.sidecar_run import STOCK_PORT
from mcp_tailnet_lab.tailnet import TailnetNode
from mcp_tailnet_lab.waiting import wait_for

pytestmark = pytest.mark.slow

PER_SOURCE = 2
MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


@dataclass
class Lab:
    srv: TailnetNode
    usr: TailnetNode
    bot: TailnetNode
    usr_login: str
    gw: NodeGateway

    @property
    def url(self) -> str:
        return f"http://{self.srv.dns_name}"

    def forged(self) -> dict[str, str]:
        """What the bot sends to pass as the user's node, from the user's address, to another host."""
        return {"X-Forwarded-For": self.usr.ip, "X-Forwarded-Host": "evil.example",
                "Forwarded": f"for={self.usr.ip};host=evil.example", "Tailscale-User-Login": self.usr_login}


@pytest.fixture(scope="module")
def lab(tailnet) -> Iterator[Lab]:
    workdir = Path(tempfile.mkdtemp(prefix="fh-", dir="/tmp"))
    nodes = [tailnet.node("fhsrv"), tailnet.node("fhusr"), tailnet.node("fhbot", tags=("tag:bot",))]
    srv, usr, bot = nodes
    stock = srv.popen([sys.executable, "-m", "mcp_tailnet_lab.stock_mcp_server", "--port", str(STOCK_PORT)],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gw = None
    try:
        wait_for(lambda: srv.exec([sys.executable, "-c", f"import socket; socket.create_connection(('127.0.0.1', "
                                                         f"{STOCK_PORT}), 2)"], check=False).returncode == 0,
                 "the stock server inside fhsrv", timeout=30, proc=stock)
        status = usr.status()
        usr_login = status["User"][str(status["Self"]["UserID"])]["LoginName"]
        policy = workdir / "policy.json"
        policy.write_text(json.dumps({"rules": [{"principals": [usr_login], "tools": ["add"]},
                                                {"principals": ["tag:bot"], "tools": ["echo"]}]}))
        # The lab tailnet allows all: readiness would (rightly) flag the upstream's loopback port
        # as reachable past serve; that exposure is test_isolation's subject, accepted here.
        gw = start_node_gateway(srv, workdir, SIDECAR_POLICY_FILE=str(policy),
                                SIDECAR_MAX_CONCURRENT_PER_SOURCE=str(PER_SOURCE),
                                SIDECAR_ACCEPT_UPSTREAM_EXPOSURE="true")
        for client in (usr, bot):
            client.wait_for_peers({srv.dns_name})
        yield Lab(srv, usr, bot, usr_login, gw)
    finally:
        if gw is not None:
            gw.stop()
        stop(stock)
        for n in nodes:
            tailnet.remove(n)
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


def call(c: httpx.Client, url: str, tool: str, arguments: dict, headers: dict | None = None) -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments,
                                                                           "_meta": META}}
    return c.post(f"{url}/mcp", json=body, headers={"Accept": "application/json, text/event-stream",
                                                    "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call",
                                                    "Mcp-Name": tool, **(headers or {})})


def test_forged_forwarding_headers_from_a_tagged_node_change_nothing(lab):
    with httpx.Client(proxy=lab.bot.proxy_url, timeout=30) as bot:
        r = call(bot, lab.url, "add", {"a": 1, "b": 2}, lab.forged())
        # not 421: serve replaced the forged X-Forwarded-Host with the Host it routed on;
        # denied: the bot is still tag:bot (WhoIs on the address serve saw), not the user
        assert r.status_code == 200 and r.json()["error"]["code"] == -32001, r.text
        r = call(bot, lab.url, "echo", {"text": "as myself"}, lab.forged())
        assert r.status_code == 200 and r.json()["result"]["content"][0]["text"] == "as myself", r.text
    with httpx.Client(proxy=lab.usr.proxy_url, timeout=30) as usr:
        r = call(usr, lab.url, "add", {"a": 20, "b": 22})
        assert r.json()["result"]["structuredContent"] == {"result": 42}, r.text
    audit = lab.gw.audit()
    bot_lines = [a for a in audit if a["source_ip"] == lab.bot.ip]
    assert [(a["tool"], a["outcome"]) for a in bot_lines] == [("add", "denied"), ("echo", "ok")], audit
    assert {(a["identity_via"], tuple(a["tags"]), a["login"]) for a in bot_lines} == {("whois", ("tag:bot",), None)}
    assert [(a["tool"], a["login"]) for a in audit if a["source_ip"] == lab.usr.ip] == [("add", lab.usr_login)]
    assert "evil.example" not in lab.gw.log.read_text()


Held = tuple[httpx.Client, httpx.Response, Iterator[str]]


def open_stream(proxy: str, url: str, headers: dict | None = None) -> Held:
    """A legacy SSE stream held open; keep the line iterator (dropping it closes the stream)."""
    c = httpx.Client(proxy=proxy, timeout=httpx.Timeout(30, read=60))
    r = c.send(c.build_request("GET", f"{url}/sse", headers=headers), stream=True)
    lines = r.iter_lines()
    if r.status_code == 200:
        next(line for line in lines if line.startswith("data:"))
    return c, r, lines


def test_a_forged_source_address_cannot_spend_someone_elses_quota(lab):
    """The bot holds streams while claiming the user's address: the quota charged is the
    bot's own (its third stream gets 429), the user still gets in."""
    held = []
    try:
        for _ in range(PER_SOURCE):
            held.append(open_stream(lab.bot.proxy_url, lab.url, lab.forged()))
        assert [r.status_code for _, r, _ in held] == [200] * PER_SOURCE
        held.append(open_stream(lab.bot.proxy_url, lab.url, lab.forged()))
        assert held[-1][1].status_code == 429, held[-1][1].status_code
        with httpx.Client(proxy=lab.usr.proxy_url, timeout=30) as usr:
            r = call(usr, lab.url, "add", {"a": 1, "b": 1})
            assert r.status_code == 200 and r.json()["result"]["structuredContent"] == {"result": 2}, r.text
            held.append(open_stream(lab.usr.proxy_url, lab.url))
            assert held[-1][1].status_code == 200
    finally:
        for c, r, _ in held:
            r.close()
            c.close()
    # once its streams end, the bot is served again (bounded wait: the ends reach the gateway asynchronously)
    deadline = time.monotonic() + 30
    with httpx.Client(proxy=lab.bot.proxy_url, timeout=30) as bot:
        while (status := call(bot, lab.url, "echo", {"text": "x"}).status_code) == 429 and time.monotonic() < deadline:
            time.sleep(0.5)
    assert status == 200
