"""The client compatibility matrix: which clients, which servers, what each cell is expected to do.

One definition for the tests (each cell asserts what it measured against `EXPECTED`) and
for docs/clients.md (its table must be `render_table()`, so the doc says what was measured).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from importlib.metadata import version
from itertools import product

from mcp_tailnet_lab.paths import versions
from mcp_tailnet_sidecar.clients import Transport

V = versions()
PY_SDK = f"mcp {version('mcp')}"
MODERN = "2026-07-28"
HANDSHAKE = "2025-11-25"


# how the doc names each transport
TRANSPORT_LABEL = {Transport.HTTP: "Streamable HTTP", Transport.SSE: "SSE"}


@dataclass(frozen=True)
class Server:
    key: str
    label: str
    tool: str
    arguments: dict = field(compare=False)  # a dict is unhashable; the key names the server
    answer: str  # the text content of the tool's answer
    tools: tuple[str, ...]  # what tools/list returns, sorted


STOCK = Server("stock", f"stock server: Python SDK {PY_SDK} (2026-era)", "add", {"a": 20, "b": 22}, "42",
               ("add", "echo", "sleep"))
EVERYTHING = Server(
    "everything",
    f"server-everything {V['MCP_SERVER_EVERYTHING_VERSION']}: TypeScript SDK (2025-era)",
    "get-sum", {"a": 20, "b": 22}, "The sum of 20 and 22 is 42.",
    ("echo", "get-annotated-message", "get-env", "get-resource-links", "get-resource-reference",
     "get-structured-content", "get-sum", "get-tiny-image", "gzip-file-as-resource", "simulate-research-query",
     "toggle-simulated-logging", "toggle-subscriber-updates", "trigger-long-running-operation"))
SERVERS = (STOCK, EVERYTHING)


class Client(Enum):
    PY_AUTO = f"Python SDK {PY_SDK} (default `mode=\"auto\"`)"
    PY_LEGACY = f"Python SDK {PY_SDK}, `mode=\"legacy\"` (2025-11-25 handshake)"
    TS = f"TypeScript SDK {V['MCP_TS_SDK_VERSION']} (`Client`)"
    REMOTE = f"mcp-remote {V['MCP_REMOTE_VERSION']} (Claude Desktop's bridge, default `--protocol legacy`)"
    REMOTE_AUTO = f"mcp-remote {V['MCP_REMOTE_VERSION']} `--protocol auto`"


@dataclass(frozen=True)
class Expect:
    """What a cell does: `app` is the version the application sees, `wire` the one on the tailnet.

    They differ only behind mcp-remote `--protocol auto`, which answers the app's 2025-11-25
    handshake itself and speaks 2026-07-28 to a server that has it.
    """

    app: str
    wire: str


@dataclass(frozen=True)
class Cell:
    client: Client
    server: Server
    transport: Transport

    def __str__(self) -> str:
        return f"{self.client.name.lower()}-{self.server.key}-{self.transport.name.lower()}"


def _expect(client: Client, server: Server) -> Expect:
    if server is STOCK and client is Client.PY_AUTO:
        return Expect(MODERN, MODERN)
    if server is STOCK and client is Client.REMOTE_AUTO:
        return Expect(HANDSHAKE, MODERN)
    return Expect(HANDSHAKE, HANDSHAKE)


CELLS = tuple(Cell(c, s, t) for c, s, t in product(Client, SERVERS, Transport))
EXPECTED = {cell: _expect(cell.client, cell.server) for cell in CELLS}


def render_table() -> str:
    """The matrix as docs/clients.md shows it."""
    lines = ["| Client | Server | Transport | Lists tools, calls one | Protocol on the tailnet | Protocol the app sees |",
             "|---|---|---|---|---|---|"]
    for cell in CELLS:
        e = EXPECTED[cell]
        lines.append(f"| {cell.client.value} | {cell.server.label} | {TRANSPORT_LABEL[cell.transport]} | pass | {e.wire} | {e.app} |")
    return "\n".join(lines)
