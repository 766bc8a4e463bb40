"""The hub behind the real sidecar, called by tailnet hostname over both transports.

Topology (all real, on the lab headscale): node `hubsrv` runs, in its own netns, the
hub on the loopback alias 127.0.0.3 (mcp-server-time and server-everything as
per-session stdio children, the lab's stock SDK server over Streamable HTTP as a
shared upstream) and `mcp-tailnet-sidecar gateway --apply-serve` in front of it with
SIDECAR_PATHS covering /servers/; `hubusr` (a user's node) and `hubbot` (tagged) call
it by MagicDNS name through their tailscaled proxies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from hub_support import HUB, HUB_HOST, client, everything_server, render_toml, text, time_server
from mcp_tailnet_lab.gateway_process import SIDECAR, stop
from mcp_tailnet_lab.ports import free_port
from mcp_tailnet_lab.waiting import wait_for

pytestmark = pytest.mark.slow

HUB_PORT = 18080
STOCK_PORT = 18081


@pytest.fixture(scope="module")
def net(tailnet) -> Iterator[dict]:
    srv = tailnet.node("hubsrv")
    usr = tailnet.node("hubusr")
    bot = tailnet.node("hubbot", tags=("tag:bot",))
    workdir = Path(tempfile.mkdtemp(prefix="hubt-", dir="/tmp"))
    procs: list[subprocess.Popen] = []
    try:
        stock = srv.popen([sys.executable, "-m", "mcp_tailnet_lab.stock_mcp_server", "--port", str(STOCK_PORT)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(stock)
        config = workdir / "hub.toml"
        config.write_text(render_toml({"list_timeout": 10}, {
            "time": time_server(), "everything": everything_server(),
            "stock": {"transport": "streamable-http", "url": f"http://127.0.0.1:{STOCK_PORT}/mcp"}}))
        log = workdir / "hub.log"
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "SIDECAR_", "TS_"))},
               "HUB_CONFIG": str(config), "HUB_HOST": HUB_HOST, "HUB_PORT": str(HUB_PORT)}
        with log.open("wb") as fh:
            hub = srv.popen([HUB], env=env, stdout=fh, stderr=fh)
        procs.append(hub)
        wait_for(lambda: srv.exec(["python3", "-c", f"import urllib.request; urllib.request.urlopen("
                                   f"'http://{HUB_HOST}:{HUB_PORT}/healthz', timeout=2)"], check=False).returncode == 0,
                 "the hub inside the hubsrv namespace", proc=hub, timeout=60)
        yield {"srv": srv, "usr": usr, "bot": bot, "workdir": workdir, "hub": hub, "hub_log": log,
               "url": f"http://{srv.dns_name}"}
    finally:
        for proc in reversed(procs):
            assert stop(proc) == 0 or proc is procs[0]
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


@pytest.fixture
def gateway(net):
    made: list[subprocess.Popen] = []

    def start(policy: dict | None = None) -> Path:
        d = Path(tempfile.mkdtemp(prefix="g", dir=net["workdir"]))
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "TS_", "HUB_"))},
               "TS_SOCKET": str(net["srv"].socket),
               "SIDECAR_UPSTREAM_URL": f"http://{HUB_HOST}:{HUB_PORT}",
               "SIDECAR_PATHS": "/sse,/messages/,/mcp,/servers/",
               "SIDECAR_GATEWAY_SOCKET": str(d / "gw.sock"),
               "SIDECAR_HEALTH_SOCKET": str(d / "health.sock")}
        if policy is not None:
            (d / "policy.json").write_text(json.dumps(policy))
            env["SIDECAR_POLICY_FILE"] = str(d / "policy.json")
        log = d / "gateway.log"
        with log.open("wb") as fh:
            proc = net["srv"].popen([SIDECAR, "gateway", "--apply-serve"], env=env, stdout=fh, stderr=fh)
        made.append(proc)
        wait_for(lambda: subprocess.run([SIDECAR, "probe", "ready", "--socket", str(d / "health.sock")],
                                        capture_output=True, timeout=30).returncode == 0,
                 "the gateway in front of the hub to be ready", timeout=60, proc=proc)
        return log

    yield start
    for proc in made:
        assert stop(proc) == 0
    net["srv"].cli("serve", "reset", check=False)


async def names_and_calls(proxy: str, transport: str, url: str, path: str = "") -> tuple[set[str], dict[str, str]]:
    async with client(url, transport, path, proxy=proxy) as c:
        names = {t.name for t in (await c.list_tools()).tools}
        out: dict[str, str] = {}
        for tool, args in (("time_get_current_time", {"timezone": "UTC"}), ("everything_echo", {"message": "hub"}),
                           ("stock_add", {"a": 20, "b": 22})):
            if path and not tool.startswith(path.rsplit("/", 1)[-1] + "_"):
                continue
            try:
                r = await c.call_tool(tool, args)
                out[tool] = "tool_error: " + text(r) if r.is_error else text(r)
            except MCPError as exc:
                out[tool] = f"refused: {exc}"
        return names, out


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
def test_every_server_on_one_tailnet_name(net, gateway, transport: str) -> None:
    gateway()
    names, calls = anyio.run(names_and_calls, net["usr"].proxy_url, transport, net["url"])
    assert {"time_get_current_time", "everything_echo", "stock_add", "stock_echo"} <= names
    assert all(n.split("_", 1)[0] in ("time", "everything", "stock") for n in names), names
    assert '"timezone": "UTC"' in calls["time_get_current_time"]
    assert "Echo: hub" in calls["everything_echo"]
    assert "42" in calls["stock_add"]
    # one upstream alone, under the same names
    names, calls = anyio.run(names_and_calls, net["usr"].proxy_url, transport, net["url"], "/servers/time")
    assert names == {"time_get_current_time", "time_convert_time"}
    assert '"timezone": "UTC"' in calls["time_get_current_time"]


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
def test_the_gateway_policy_filters_the_aggregate_by_prefixed_names(net, gateway, transport: str) -> None:
    usr_login = net["usr"].status()["User"][str(net["usr"].status()["Self"]["UserID"])]["LoginName"]
    gateway({"rules": [{"principals": [usr_login], "tools": ["time_*", "stock_add"]},
                       {"principals": ["tag:bot"], "tools": ["everything_*"]}]})
    names, calls = anyio.run(names_and_calls, net["usr"].proxy_url, transport, net["url"])
    assert names == {"time_get_current_time", "time_convert_time", "stock_add"}
    assert '"timezone": "UTC"' in calls["time_get_current_time"] and "42" in calls["stock_add"]
    assert calls["everything_echo"].startswith("refused") and "not allowed" in calls["everything_echo"]
    names, calls = anyio.run(names_and_calls, net["bot"].proxy_url, transport, net["url"])
    assert names and all(n.startswith("everything_") for n in names)
    assert calls["time_get_current_time"].startswith("refused")
    # the per-server endpoint carries the same names, so the same rule holds there
    names, calls = anyio.run(names_and_calls, net["bot"].proxy_url, "streamable-http", net["url"], "/servers/time")
    assert names == set() and calls["time_get_current_time"].startswith("refused")
