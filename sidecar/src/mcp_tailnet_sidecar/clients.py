"""`mcp-tailnet-sidecar clients`: ready-to-paste client configuration for a tailnet name.

The URL is plain http:// unless told otherwise: tailnet traffic is already encrypted
end to end by WireGuard, and HTTPS certificates exist only when the tailnet has HTTPS
enabled (never with headscale). Clients that insist on https (mcp-remote) get the flag
that allows http.
"""

from __future__ import annotations

import json


def url_for(host: str, transport: str, scheme: str = "http") -> str:
    return f"{scheme}://{host}/{'sse' if transport == 'sse' else 'mcp'}"


def render(host: str, transport: str = "http", *, name: str = "tailnet-mcp", scheme: str = "http") -> str:
    url = url_for(host, transport, scheme)
    remote_args = ["-y", "mcp-remote", url, "--transport", "sse-only" if transport == "sse" else "http-only"]
    if scheme == "http":
        remote_args.append("--allow-http")
    desktop = {"mcpServers": {name: {"command": "npx", "args": remote_args}}}
    if transport == "sse":
        sdk = (
            "import anyio\n"
            "from mcp import Client\n"
            "from mcp.client.sse import sse_client\n\n"
            "async def main():\n"
            f"    async with Client(sse_client({url!r})) as client:\n"
            "        print([t.name for t in (await client.list_tools()).tools])\n\n"
            "anyio.run(main)\n"
        )
    else:
        sdk = (
            "import anyio\n"
            "from mcp import Client\n\n"
            "async def main():\n"
            f"    async with Client({url!r}) as client:\n"
            "        print([t.name for t in (await client.list_tools()).tools])\n\n"
            "anyio.run(main)\n"
        )
    sections = [
        f"# MCP server on the tailnet: {url}  (run from a machine on the same tailnet)",
        "",
        "## Claude Code",
        f"claude mcp add --transport {'sse' if transport == 'sse' else 'http'} {name} {url}",
        "",
        "## Claude Desktop (claude_desktop_config.json), through mcp-remote",
        json.dumps(desktop, indent=2),
        "",
        "## Cursor (~/.cursor/mcp.json), through mcp-remote",
        json.dumps(desktop, indent=2),
        "",
        "## Python (mcp SDK 2.x)",
        sdk,
        f"## Check it from here: mcp-tailnet-sidecar doctor --url {url}",
    ]
    return "\n".join(sections)
