"""`mcp-tailnet-sidecar clients`: ready-to-paste client configuration for a tailnet name.

Each client gets its own native form where it has one: Claude Code, Cursor (`"url"` in
mcp.json) and VS Code (`"type": "http"` in .vscode/mcp.json) speak Streamable HTTP and SSE
themselves, so they connect straight to the tailnet name; routing them through
`npx mcp-remote` would add a Node process and a failure point for nothing. Claude Desktop
reaches remote servers only through a local stdio bridge, so it gets mcp-remote, pinned to
the version tests/clients measured (`npx -y mcp-remote` alone runs whatever the registry
serves that day). docs/clients.md has the measured compatibility matrix.

The URL is plain http:// unless told otherwise: tailnet traffic is already encrypted end to
end by WireGuard, and HTTPS certificates exist only when the tailnet has HTTPS enabled
(never with headscale). mcp-remote refuses http:// without `--allow-http`, so it gets it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum

# The mcp-remote that tests/clients ran through the sidecar; lab/versions.env pins the same
# (MCP_REMOTE_VERSION, checked by tests/sidecar/test_clients_output.py).
MCP_REMOTE_VERSION = "0.15.1"


class Transport(Enum):
    HTTP = "http"  # Streamable HTTP
    SSE = "sse"

    @property
    def path(self) -> str:
        return "/sse" if self is Transport.SSE else "/mcp"


@dataclass(frozen=True)
class Target:
    """Where a client connects: the server's tailnet URL and the name clients list it under."""

    host: str
    transport: Transport = Transport.HTTP
    name: str = "tailnet-mcp"
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}{self.transport.path}"


def claude_code(t: Target) -> str:
    return f"claude mcp add --transport {t.transport.value} {t.name} {t.url}"


def mcp_remote_args(t: Target) -> list[str]:
    """`npx` arguments of the mcp-remote bridge (Claude Desktop)."""
    args = ["-y", f"mcp-remote@{MCP_REMOTE_VERSION}", t.url,
            "--transport", "sse-only" if t.transport is Transport.SSE else "http-only"]
    if t.scheme == "http":
        args.append("--allow-http")
    return args


def claude_desktop(t: Target) -> dict:
    """claude_desktop_config.json: Claude Desktop needs the local stdio bridge."""
    return {"mcpServers": {t.name: {"command": "npx", "args": mcp_remote_args(t)}}}


def cursor(t: Target) -> dict:
    """~/.cursor/mcp.json (or .cursor/mcp.json in a project): Cursor connects to the URL itself."""
    return {"mcpServers": {t.name: {"url": t.url}}}


def vscode(t: Target) -> dict:
    """.vscode/mcp.json: VS Code connects itself; "http" is Streamable HTTP, "sse" the old transport."""
    return {"servers": {t.name: {"type": t.transport.value, "url": t.url}}}


def python_sdk(t: Target) -> str:
    if t.transport is Transport.SSE:
        return (
            "import anyio\n"
            "from mcp import Client\n"
            "from mcp.client.sse import sse_client\n\n"
            "async def main():\n"
            f"    async with Client(sse_client({t.url!r})) as client:\n"
            "        print([t.name for t in (await client.list_tools()).tools])\n\n"
            "anyio.run(main)\n"
        )
    return (
        "import anyio\n"
        "from mcp import Client\n\n"
        "async def main():\n"
        f"    async with Client({t.url!r}) as client:\n"
        "        print([t.name for t in (await client.list_tools()).tools])\n\n"
        "anyio.run(main)\n"
    )


def render(host: str, transport: str = "http", *, name: str = "tailnet-mcp", scheme: str = "http") -> str:
    t = Target(host, Transport(transport), name, scheme)
    sections = [
        f"# MCP server on the tailnet: {t.url}  (run from a machine on the same tailnet)",
        "",
        "## Claude Code",
        claude_code(t),
        "",
        "## Claude Desktop (claude_desktop_config.json), through the mcp-remote stdio bridge",
        json.dumps(claude_desktop(t), indent=2),
        "",
        "## Cursor (~/.cursor/mcp.json), connects to the URL itself",
        json.dumps(cursor(t), indent=2),
        "",
        "## VS Code (.vscode/mcp.json), connects to the URL itself",
        json.dumps(vscode(t), indent=2),
        "",
        "## Python (mcp SDK 2.x)",
        python_sdk(t),
        f"## Check it from here: mcp-tailnet-sidecar doctor --url {t.url}",
    ]
    return "\n".join(sections)
