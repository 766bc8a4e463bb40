"""One tailnet for the whole client matrix: three served MCP servers and a laptop.

Topology (all real, on the lab headscale, under the tailnet policy the README tells people
to use, lab/compose/headscale/policy.json: tag:mcp-client may open tag:mcp:80,443, nothing else):
- `mcp26`: the stock server (Python SDK 2.3.0, 2026-era), SSE and Streamable HTTP on one port;
- `mcp25`: server-everything over Streamable HTTP (TypeScript SDK, 2025-era);
- `mcp25sse`: server-everything over SSE (its SSE server is a separate process; it posts to
  `/message`, so that sidecar serves SIDECAR_PATHS=/sse,/message);
  each node: userspace tailscaled, the server on 127.0.0.1:8080 of its namespace, and
  `mcp-tailnet-sidecar gateway --apply-serve` (serve :80 -> gateway -> server);
- `laptop`: a tag:mcp-client node in TUN mode whose resolver is MagicDNS only. Every client
  runs inside its namespace and dials `http://mcp26/mcp` etc. by short name, as a user's
  machine on the tailnet would. The lab bridge drops everything bound elsewhere, so a
  client that tried to reach the internet (a registry, an OAuth server) would fail here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcp_tailnet_lab.gateway_process import stop
from mcp_tailnet_lab.headscale import ALLOW_ALL_POLICY
from mcp_tailnet_lab.node_clients import NodeClients, node_clients
from mcp_tailnet_lab.node_gateway import NodeGateway, start_node_gateway
from mcp_tailnet_lab.paths import REPO_DIR
from mcp_tailnet_lab.sidecar_run import STOCK_PORT
from mcp_tailnet_lab.tailnet import TailnetNode
from mcp_tailnet_sidecar.clients import Target, mcp_remote_args


from .matrix import EVERYTHING, STOCK, Cell, Client, Server, Transport

HERE = Path(__file__).parent
SHIPPED_POLICY = REPO_DIR / "lab" / "compose" / "headscale" / "policy.json"
CLIENT_TIMEOUT = 60  # seconds one client session may take (each client's own bound)
# the line mcp-remote --protocol auto logs when it bridges to a 2026-07-28 server
REMOTE_BRIDGED = "Remote server speaks MCP 2026-07-28"


@dataclass
class Served:
    node: TailnetNode
    server: subprocess.Popen
    gateway: NodeGateway

    @property
    def host(self) -> str:
        """The short MagicDNS name, what people type (the search domain completes it)."""
        return self.node.dns_name.split(".", 1)[0]


@dataclass
class Matrix:
    laptop: TailnetNode
    served: dict[tuple[str, Transport], Served]
    node_clients: NodeClients
    workdir: Path

    def target(self, server: Server, transport: Transport) -> Served:
        return self.served[(server.key, transport)]

    def printed(self, server: Server, transport: Transport) -> Target:
        """What `mcp-tailnet-sidecar clients --host <short name>` configures for this server."""
        return Target(self.target(server, transport).host, transport)


@dataclass
class Observed:
    """One client session as it happened."""

    report: dict  # the client script's JSON line
    stderr: str
    returncode: int


@pytest.fixture(scope="module")
def matrix(tailnet, headscale) -> Iterator[Matrix]:
    clients = node_clients()  # MissingComponent (names the provisioning step) when not installed
    workdir = Path(tempfile.mkdtemp(prefix="cm-", dir="/tmp"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)

        def node(name: str, **kw) -> TailnetNode:
            n = tailnet.node(name, **kw)
            stack.callback(tailnet.remove, n)
            return n

        laptop = node("laptop", mode="tun", tags=("tag:mcp-client",))
        mcp26, mcp25, mcp25sse = (node(name, tags=("tag:mcp",)) for name in ("mcp26", "mcp25", "mcp25sse"))

        def server(n: TailnetNode, argv: list[str], **env: str) -> subprocess.Popen:
            with (workdir / f"{n.name}-server.log").open("wb") as log:
                proc = n.popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
            stack.callback(stop, proc)
            return proc

        stock = server(mcp26, [sys.executable, "-m", "mcp_tailnet_lab.stock_mcp_server", "--port", str(STOCK_PORT)])
        # server-everything has no bind-address option: it listens on every interface of its
        # namespace; the tailnet policy keeps :8080 closed to peers, the lab bridge to the rest.
        ev_http = server(mcp25, clients.server_everything("streamableHttp"), PORT=str(STOCK_PORT))
        ev_sse = server(mcp25sse, clients.server_everything("sse"), PORT=str(STOCK_PORT))

        headscale.set_policy(json.loads(SHIPPED_POLICY.read_text()))
        stack.callback(headscale.set_policy, ALLOW_ALL_POLICY)

        def gateway(n: TailnetNode, **env: str) -> NodeGateway:
            gw = start_node_gateway(n, workdir, **env)
            stack.callback(gw.stop)
            return gw

        gw26 = gateway(mcp26)
        gw25 = gateway(mcp25)
        gw25sse = gateway(mcp25sse, SIDECAR_PATHS="/sse,/message")
        laptop.wait_for_peers({mcp26.dns_name, mcp25.dns_name, mcp25sse.dns_name})
        served = {
            (STOCK.key, Transport.HTTP): Served(mcp26, stock, gw26),
            (STOCK.key, Transport.SSE): Served(mcp26, stock, gw26),
            (EVERYTHING.key, Transport.HTTP): Served(mcp25, ev_http, gw25),
            (EVERYTHING.key, Transport.SSE): Served(mcp25sse, ev_sse, gw25sse),
        }
        yield Matrix(laptop, served, clients, workdir)


def client_argv(m: Matrix, cell: Cell) -> list[str]:
    """The command that runs `cell`'s client once: list the tools, call the server's tool."""
    target = m.printed(cell.server, cell.transport)
    call = ["--tool", cell.server.tool, "--arguments", json.dumps(cell.server.arguments),
            "--timeout", str(CLIENT_TIMEOUT)]
    kind = target.transport.value
    if cell.client in (Client.PY_AUTO, Client.PY_LEGACY):
        mode = "auto" if cell.client is Client.PY_AUTO else "legacy"
        return [sys.executable, str(HERE / "py_client.py"), "--url", target.url, "--transport", kind, "--mode", mode,
                *call]
    ts = [m.node_clients.node, str(HERE / "ts_client.mjs"), "--sdk-dir", str(m.node_clients.sdk_dir)]
    if cell.client is Client.TS:
        return [*ts, "--url", target.url, "--transport", kind, *call]
    # mcp-remote with exactly the arguments `mcp-tailnet-sidecar clients` prints for Claude
    # Desktop (npx's package spec replaced by the lab's install of that same version), driven
    # over stdio by the TypeScript SDK's client, as a desktop app does
    npx_args = mcp_remote_args(target)
    assert npx_args[:2] == ["-y", f"mcp-remote@{m.node_clients.versions['mcp-remote']}"], npx_args
    extra = ["--protocol", "auto"] if cell.client is Client.REMOTE_AUTO else []
    return [*ts, "--transport", "stdio", *call, "--", *m.node_clients.mcp_remote(*npx_args[2:], *extra)]


def run_client(m: Matrix, cell: Cell) -> Observed:
    """Run the cell's client inside the laptop's namespace; its JSON report and stderr."""
    home = Path(tempfile.mkdtemp(prefix="home-", dir=m.workdir))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
           "MCP_REMOTE_CONFIG_DIR": str(home / "mcp-auth")}  # no proxy variables: straight over the tailnet
    proc = m.laptop.netns.exec(client_argv(m, cell), check=False, timeout=CLIENT_TIMEOUT + 30, env=env)
    lines = proc.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise AssertionError(f"{cell}: the client printed no report (exit {proc.returncode}); "
                             f"stdout: {proc.stdout[-800:]!r}; stderr: {proc.stderr[-1500:]!r}") from None
    return Observed(report, proc.stderr, proc.returncode)
