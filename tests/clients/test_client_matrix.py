"""Real clients through the sidecar, by tailnet hostname: each lists the tools and calls one.

Clients: the Python SDK (its default 2026-era negotiation, and forced to the 2025-11-25
handshake), the official TypeScript SDK client, and mcp-remote (the stdio bridge Claude
Desktop runs; as printed by `mcp-tailnet-sidecar clients`, and with `--protocol auto`).
Servers: the stock server (2026-era) and server-everything (2025-era). Transports:
Streamable HTTP and SSE. Every cell runs the real client process inside a tailnet client
node's namespace against a sidecar on the lab headscale (tests/clients/conftest.py).

Each cell asserts what it measured (tools, the tool's answer, the protocol version on the
tailnet and the one the application sees) against tests/clients/matrix.py, and docs/clients.md
must show exactly that matrix.
"""

from __future__ import annotations

import pytest

from mcp_tailnet_lab.paths import REPO_DIR

from .conftest import REMOTE_BRIDGED, Matrix, run_client
from .matrix import CELLS, EXPECTED, Cell, Client, Expect, render_table

pytestmark = pytest.mark.slow


def _text(report: dict) -> list[str]:
    return [c.get("text") for c in report["call"]["content"] if c.get("type") == "text"]


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_cell(matrix: Matrix, cell: Cell) -> None:
    target = matrix.target(cell.server, cell.transport)
    audited_before = len(target.gateway.audit())
    seen = run_client(matrix, cell)
    report = seen.report
    assert "error" not in report and seen.returncode == 0, f"{cell}: {report.get('error')}; stderr: {seen.stderr[-1500:]}"
    assert report["serverInfo"]["name"] == ("stock-mcp-server" if cell.server.key == "stock" else "mcp-servers/everything")
    assert report["tools"] == list(cell.server.tools)
    assert report["call"]["isError"] is False
    assert _text(report) == [cell.server.answer]
    if cell.server.key == "stock":  # the SDK server also returns the typed result
        assert report["call"]["structuredContent"] == {"result": 42}

    app = report["protocolVersion"]
    wire = app
    if cell.client in (Client.REMOTE, Client.REMOTE_AUTO):
        bridged = REMOTE_BRIDGED in seen.stderr
        assert bridged == (cell.client is Client.REMOTE_AUTO and cell.server.key == "stock"), seen.stderr[-1500:]
        wire = "2026-07-28" if bridged else app
    assert Expect(app, wire) == EXPECTED[cell]

    # the call went through this server's sidecar, from the laptop's tailnet address
    new = target.gateway.audit()[audited_before:]
    assert [(a["tool"], a["source_ip"], a["outcome"], a["transport"]) for a in new] == [(cell.server.tool, matrix.laptop.ip, "ok", "sse" if cell.transport.value == "sse" else "streamable-http")]


def test_docs_show_the_measured_matrix() -> None:
    doc = (REPO_DIR / "docs" / "clients.md").read_text()
    table = render_table()
    assert table in doc, f"docs/clients.md must contain the matrix as measured:\n{table}"
