"""The real thing: tailscaled + serve + gateway in a network namespace, clients by MagicDNS name.

Topology (all real, on the lab headscale):
- node `srv`: tailscaled (userspace) in its own netns, the stock MCP server on 127.0.0.1
  inside that netns, and `mcp-tailnet-sidecar gateway --apply-serve` next to them: the
  gateway renders the serve config from the node's DNS name and applies it, serve proxies
  tailnet HTTP :80 to the gateway's unix socket;
- node `usr` (owned by a user) and node `bot` (tagged) are clients: the test process
  reaches the tailnet through their tailscaled HTTP proxies.
The last test runs the image's entrypoint (`mcp-tailnet-sidecar run`) with the real
containerboot in a namespace of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mcp_tailnet_lab.node_gateway import NodeGateway, start_node_gateway
from mcp_tailnet_lab.sidecar_run import STOCK_PORT, sidecar_run_env

from .conftest import SIDECAR, stop, wait_for

pytestmark = pytest.mark.slow



def proxied_client(proxy: str, transport: str, url_base: str, headers: dict | None = None) -> Client:
    if transport == "sse":
        def factory(headers=None, timeout=None, auth=None):
            return httpx2.AsyncClient(proxy=proxy, headers=headers, timeout=timeout, auth=auth)
        return Client(sse_client(f"{url_base}/sse", headers=headers, httpx_client_factory=factory))
    return Client(streamable_http_client(f"{url_base}/mcp",
                                         http_client=httpx2.AsyncClient(proxy=proxy, headers=headers,
                                                                        timeout=httpx2.Timeout(30, read=120))))


async def use(proxy: str, transport: str, url_base: str, headers: dict | None = None):
    """List the tools and try echo and add; 'denied' when the gateway policy refuses."""
    async with proxied_client(proxy, transport, url_base, headers) as client:
        tools = sorted(t.name for t in (await client.list_tools()).tools)
        results = {}
        for name, args in (("echo", {"text": "hello over the tailnet"}), ("add", {"a": 20, "b": 22})):
            try:
                res = await client.call_tool(name, args)
                results[name] = res.structured_content["result"] if not res.is_error else "tool_error"
            except MCPError as exc:
                assert "not allowed" in str(exc), exc
                results[name] = "denied"
        return tools, results


@dataclass
class Net:
    srv: object
    usr: object
    bot: object
    stock: subprocess.Popen
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://{self.srv.dns_name}"


@pytest.fixture(scope="module")
def net(tailnet) -> Iterator[Net]:
    srv = tailnet.node("srv")
    usr = tailnet.node("usr")
    bot = tailnet.node("bot", tags=("tag:bot",))
    stock = srv.popen([sys.executable, "-m", "mcp_tailnet_lab.stock_mcp_server", "--port", str(STOCK_PORT)],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workdir = Path(tempfile.mkdtemp(prefix="sct-", dir="/tmp"))
    try:
        wait_for(lambda: srv.exec(["python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', "
                                   f"{STOCK_PORT}), 2)"], check=False).returncode == 0,
                 "the stock server inside the srv namespace", proc=stock, timeout=30)
        yield Net(srv, usr, bot, stock, workdir)
    finally:
        stop(stock)
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


@pytest.fixture
def gateway_in_srv(net: Net):
    """The gateway beside the srv node (lab node_gateway), with a tool policy when given."""
    made: list[NodeGateway] = []

    def start(policy: dict | None = None) -> NodeGateway:
        env = {"SIDECAR_KEEPALIVE_INTERVAL": "5",
               # the stock server on 127.0.0.1 under allow-all: exposure accepted on purpose
               # (test_isolation.py shows readiness refusing it by default)
               "SIDECAR_ACCEPT_UPSTREAM_EXPOSURE": "true"}
        if policy is not None:
            policy_file = Path(tempfile.mkdtemp(prefix="p", dir=net.workdir)) / "policy.json"
            policy_file.write_text(json.dumps(policy))
            env["SIDECAR_POLICY_FILE"] = str(policy_file)
        gw = start_node_gateway(net.srv, net.workdir, **env)
        made.append(gw)
        return gw

    yield start
    for gw in made:
        assert gw.stop() == 0


def test_both_transports_reach_the_stock_server_by_magicdns_name(net, gateway_in_srv):
    gw = gateway_in_srv()
    serve = json.loads(net.srv.cli("serve", "status", "--json").stdout)
    assert f"{net.srv.dns_name}:80" in serve["Web"]  # rendered from the real name, not ${TS_CERT_DOMAIN}
    assert "443" not in (serve.get("TCP") or {})  # headscale issues no certs: HTTP only
    for transport in ("http", "sse"):
        tools, results = anyio.run(use, net.usr.proxy_url, transport, net.url)
        assert tools == ["add", "echo", "sleep"]
        assert results == {"echo": "hello over the tailnet", "add": 42}
    audit = gw.audit()
    assert [(a["tool"], a["outcome"], a["transport"]) for a in audit] == [
        ("echo", "ok", "streamable-http"), ("add", "ok", "streamable-http"), ("echo", "ok", "sse"), ("add", "ok", "sse")]
    for a in audit:  # user-owned node: identity from serve's headers, source IP from X-Forwarded-For
        assert a["identity_via"] == "serve-headers" and a["login"] and a["source_ip"] == net.usr.ip

    # doctor, from the client node's side of the tailnet
    r = subprocess.run([SIDECAR, "doctor", "--url", f"{net.url}/mcp", "--proxy", net.usr.proxy_url],
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 tool(s)" in r.stdout


def test_origin_is_checked_over_the_tailnet(net, gateway_in_srv):
    gateway_in_srv()
    with httpx.Client(proxy=net.usr.proxy_url, timeout=20) as c:
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        hdrs = {"Accept": "application/json, text/event-stream"}
        # a foreign Origin is refused by the gateway, even on the right name
        r = c.post(f"{net.url}/mcp", json=ping, headers={**hdrs, "Origin": "http://evil.example"})
        assert r.status_code == 403 and "evil.example" in r.text
        # the node's own name as Origin passes the gateway and the stock server answers (docs/design.md fact 2)
        r = c.post(f"{net.url}/mcp", json=ping, headers={**hdrs, "Origin": net.url})
        assert r.status_code not in (403, 421), r.text


def test_tagged_caller_is_identified_by_whois_and_forged_headers_gain_nothing(net, gateway_in_srv):
    usr_login = net.usr.status()["User"][str(net.usr.status()["Self"]["UserID"])]["LoginName"]
    gw = gateway_in_srv({"rules": [
        {"principals": ["admin@example.com"], "tools": ["*"]},
        {"principals": ["tag:bot"], "tools": ["echo"]},
        {"principals": [usr_login], "tools": ["add"]},
    ]})
    forged = {"Tailscale-User-Login": "admin@example.com", "Tailscale-User-Name": "Admin"}
    for transport in ("http", "sse"):
        # the tagged bot pretends to be admin: serve drops the forged headers, WhoIs says tag:bot
        assert anyio.run(use, net.bot.proxy_url, transport, net.url, forged) == (
            ["echo"], {"echo": "hello over the tailnet", "add": "denied"})
        # the user pretends to be admin: serve replaces the headers with the real user
        assert anyio.run(use, net.usr.proxy_url, transport, net.url, forged) == (
            ["add"], {"echo": "denied", "add": 42})
    audit = gw.audit()
    bot = [a for a in audit if a["source_ip"] == net.bot.ip]
    usr = [a for a in audit if a["source_ip"] == net.usr.ip]
    assert {(a["identity_via"], tuple(a["tags"]), a["login"]) for a in bot} == {("whois", ("tag:bot",), None)}
    assert all(a["who"].startswith(net.bot.dns_name) for a in bot)
    assert {(a["identity_via"], a["login"]) for a in usr} == {("serve-headers", usr_login)}
    assert not any(a["who"] == "admin@example.com" for a in audit)


def test_idle_sse_session_survives_90_seconds_with_keepalives(net, gateway_in_srv):
    gateway_in_srv()  # keepalive every 5 s in these tests

    async def idle_session() -> str:
        async with proxied_client(net.usr.proxy_url, "sse", net.url) as client:
            await client.list_tools()
            await anyio.sleep(90)
            res = await client.call_tool("echo", {"text": "still here"})
            return res.content[0].text

    async def count_keepalives() -> int:
        seen = b""
        async with httpx.AsyncClient(proxy=net.usr.proxy_url, timeout=30) as c:
            async with c.stream("GET", f"{net.url}/sse") as r:
                assert r.headers["x-accel-buffering"] == "no"
                with anyio.move_on_after(12):
                    async for chunk in r.aiter_raw():
                        seen += chunk
        return seen.count(b": keepalive")

    async def both():
        results = {}

        async def run(name, fn):
            results[name] = await fn()
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "idle", idle_session)
            tg.start_soon(run, "keepalives", count_keepalives)
        return results

    results = anyio.run(both)
    assert results["idle"] == "still here"
    assert results["keepalives"] >= 2  # through serve and the tailnet, comments flow on an idle stream


def test_entrypoint_runs_containerboot_and_serves(tailnet, headscale, net):
    """`mcp-tailnet-sidecar run` as root: the image's entrypoint with the real containerboot,
    the gateway on its unix socket (the non-root variant is test_nonroot.py)."""
    ns = tailnet.outsider("scrun")
    d = Path(tempfile.mkdtemp(prefix="r", dir=net.workdir))
    hostname = f"mcp-run-{os.getpid()}"
    env = sidecar_run_env(d, login_server=headscale.url, hostname=hostname, authkey=headscale.preauth_key("lab"))
    stock = ns.popen([sys.executable, "-m", "mcp_tailnet_lab.stock_mcp_server", "--port", str(STOCK_PORT)],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = d / "run.log"
    with log.open("wb") as fh:
        proc = ns.popen([SIDECAR, "run"], env=env, stdout=fh, stderr=fh)
    try:
        def ready() -> bool:
            return subprocess.run([SIDECAR, "probe", "ready", "--socket", str(d / "health.sock")],
                                  capture_output=True, timeout=30).returncode == 0
        wait_for(ready, f"the entrypoint to become ready; log:\n{log}", timeout=120, proc=proc)
        serve = json.loads((d / "serve" / "serve.json").read_text())
        ((hostport, site),) = serve["Web"].items()
        assert hostport.startswith(hostname + ".") and hostport.endswith(":80")
        assert os.geteuid() == 0 and site["Handlers"]["/"]["Proxy"] == f"unix:{d / 'gw.sock'}"  # root: unix socket
        dns_name = hostport[:-3]
        net.usr.wait_for_peers({dns_name})
        tools, results = anyio.run(use, net.usr.proxy_url, "http", f"http://{dns_name}")
        assert tools == ["add", "echo", "sleep"] and results["add"] == 42
        started = time.monotonic()
        proc.terminate()
        assert proc.wait(60) == 0
        assert time.monotonic() - started < 60
    finally:
        stop(proc)
        stop(stock)
    text = log.read_text()
    records = [json.loads(line) for line in text.splitlines()]  # every line is JSON, containerboot's too
    assert any(r.get("logger") == "containerboot" for r in records)
    assert env["TS_AUTHKEY"] not in text
