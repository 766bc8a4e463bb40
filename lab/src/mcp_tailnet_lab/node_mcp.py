"""A raw MCP client on a lab tailnet node, over the three HTTP transports the gateway serves.

Raw HTTP (httpx through the node's tailscaled proxy), not an SDK client: a test chooses the
protocol exactly (2026-07-28 stateless, a 2025 session, legacy SSE), adds any header it wants
to forge, and sees whether an answer came as JSON or as an event stream. Every read is bounded
(READ_TIMEOUT per line, a bounded number of lines).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from mcp_tailnet_lab.tailnet import TailnetNode

MODERN = "2026-07-28"
SESSION_VERSION = "2025-06-18"
CLIENT_INFO = {"name": "mcp-tailnet-lab", "version": "1"}
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": CLIENT_INFO}
ACCEPT = "application/json, text/event-stream"
READ_TIMEOUT = 30.0
TRANSPORTS = ("modern", "session", "sse")


def answer_in(r: httpx.Response, id_: int) -> dict[str, Any]:
    """The JSON-RPC answer with `id_` in a JSON or event-stream response."""
    assert r.status_code == 200, (r.status_code, r.text[:300])
    if r.headers.get("content-type", "").startswith("application/json"):
        return r.json()
    for line in r.text.splitlines():
        if line.startswith("data:"):
            message = json.loads(line[5:])
            if message.get("id") == id_:
                return message
    raise AssertionError(f"no answer with id {id_} in {r.text[:300]!r}")


class NodeMcpClient:
    """One MCP client speaking from a tailnet node (through its proxy) over one transport:
    "modern" (2026-07-28 stateless POSTs), "session" (a 2025 Streamable HTTP session) or "sse"
    (the legacy transport; answers read from the stream). `request()` gives the JSON-RPC answer."""

    def __init__(self, node: TailnetNode, url: str, transport: str, headers: dict[str, str] | None = None) -> None:
        self.url, self.transport, self.extra = url, transport, headers or {}
        self.c = httpx.Client(proxy=node.proxy_url, timeout=httpx.Timeout(30, read=READ_TIMEOUT))
        self.ids = iter(range(1, 10_000))
        self.streamed: list[bool] = []  # per answer: did it come as an event stream
        self.sid: str | None = None
        self.stream: httpx.Response | None = None
        if transport == "session":
            r = self.c.post(f"{url}/mcp", headers={"Accept": ACCEPT, **self.extra}, json={
                "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": SESSION_VERSION, "capabilities": {},
                    "clientInfo": CLIENT_INFO}})
            answer_in(r, 0)
            self.sid = r.headers["mcp-session-id"]
            self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        elif transport == "sse":
            self.stream = self.c.send(self.c.build_request("GET", f"{url}/sse", headers=self.extra), stream=True)
            assert self.stream.status_code == 200, self.stream.status_code
            self.lines = self.stream.iter_lines()
            self.endpoint = self._event("endpoint")
            self.request("initialize", {"protocolVersion": SESSION_VERSION, "capabilities": {},
                                        "clientInfo": CLIENT_INFO})
            self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _event(self, kind: str) -> str:
        event = ""
        for _ in range(1000):  # bounded; each line waits at most READ_TIMEOUT
            line = next(self.lines)
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == kind:
                return line[5:].strip()
        raise AssertionError(f"no {kind} event on the stream")

    def _post(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        h = {"Accept": ACCEPT, **self.extra, **(headers or {})}
        if self.transport == "sse":
            return self.c.post(f"{self.url}{self.endpoint}", json=body, headers=h)
        if self.sid:
            h.update({"Mcp-Session-Id": self.sid, "MCP-Protocol-Version": SESSION_VERSION})
        return self.c.post(f"{self.url}/mcp", json=body, headers=h)

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        id_ = next(self.ids)
        headers = {}
        if self.transport == "modern":
            params = {**params, "_meta": META}
            headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": method}
            if method == "tools/call":
                headers["Mcp-Name"] = params["name"]
        r = self._post({"jsonrpc": "2.0", "id": id_, "method": method, "params": params}, headers)
        if self.transport == "sse":
            assert r.status_code == 202, (r.status_code, r.text[:300])
            for _ in range(100):
                message = json.loads(self._event("message"))
                if message.get("id") == id_:
                    self.streamed.append(True)
                    return message
            raise AssertionError(f"no answer to {method} on the SSE stream")
        self.streamed.append(r.headers.get("content-type", "").startswith("text/event-stream"))
        return answer_in(r, id_)

    def list(self) -> list[str]:
        return sorted(t["name"] for t in self.request("tools/list", {})["result"]["tools"])

    def call(self, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.request("tools/call", {"name": tool, "arguments": arguments or {}})

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.c.close()
