"""`mcp-tailnet-sidecar clients`: each client's own native form, and the bridge only where it is needed.

Cursor and VS Code speak Streamable HTTP (and SSE) themselves: their config must be the URL,
not `npx mcp-remote` (a Node process and a failure point for nothing). Claude Desktop needs
the local stdio bridge, pinned to the mcp-remote version tests/clients measured, never
"whatever the registry serves today". Driven through the real command line.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from mcp_tailnet_lab.paths import versions
from mcp_tailnet_sidecar import clients

from .conftest import SIDECAR


def sections(*args: str) -> dict[str, str]:
    """The command's output as {section title: body}."""
    out = subprocess.run([SIDECAR, "clients", *args], capture_output=True, text=True, timeout=30, check=True).stdout
    parts = out.split("\n## ")
    return {title.strip(): body.strip() for title, _, body in (p.partition("\n") for p in parts[1:])}


def config(found: dict[str, str], client: str) -> dict:
    (title,) = [t for t in found if t.startswith(client)]
    return json.loads(found[title])


@pytest.mark.parametrize(("transport", "path", "remote"), [("http", "/mcp", "http-only"), ("sse", "/sse", "sse-only")])
def test_each_client_gets_its_native_form(transport: str, path: str, remote: str) -> None:
    found = sections("--host", "mcp-inspector", "--transport", transport, "--name", "inspector")
    url = f"http://mcp-inspector{path}"
    assert found["Claude Code"] == f"claude mcp add --transport {transport} inspector {url}"
    # Cursor and VS Code connect to the URL themselves: no command, no npx, no bridge
    assert config(found, "Cursor") == {"mcpServers": {"inspector": {"url": url}}}
    assert config(found, "VS Code") == {"servers": {"inspector": {"type": transport, "url": url}}}
    # Claude Desktop: the stdio bridge, pinned
    assert config(found, "Claude Desktop") == {"mcpServers": {"inspector": {"command": "npx", "args": [
        "-y", f"mcp-remote@{clients.MCP_REMOTE_VERSION}", url, "--transport", remote, "--allow-http"]}}}
    assert [t for t in found if "mcp-remote" in found[t]] == [t for t in found if t.startswith("Claude Desktop")]


def test_https_tailnet_drops_allow_http() -> None:
    found = sections("--host", "mcp-inspector.tail.example", "--https")
    url = "https://mcp-inspector.tail.example/mcp"
    assert config(found, "Claude Desktop")["mcpServers"]["tailnet-mcp"]["args"] == [
        "-y", f"mcp-remote@{clients.MCP_REMOTE_VERSION}", url, "--transport", "http-only"]
    assert config(found, "Cursor")["mcpServers"]["tailnet-mcp"]["url"] == url
    assert config(found, "VS Code")["servers"]["tailnet-mcp"] == {"type": "http", "url": url}


def test_the_bridge_is_the_version_the_matrix_measured() -> None:
    # tests/clients runs the mcp-remote that lab/provision installs from lab/versions.env
    assert clients.MCP_REMOTE_VERSION == versions()["MCP_REMOTE_VERSION"]
