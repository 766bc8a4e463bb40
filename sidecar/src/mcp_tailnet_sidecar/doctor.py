"""`mcp-tailnet-sidecar doctor --url ...`: why can't my client use the server?

Runs the steps a client goes through, in order, and stops at the first that fails with
what to do about it: name resolution (MagicDNS), TCP reachability (tailnet path and
ACL), the HTTP answer of the sidecar (serve + gateway), the MCP handshake and the tool
list (the MCP server behind it); with `--call TOOL` also one tool call, so a check from
a tailnet machine proves the whole path end to end (the compose demo's client uses it).

After the HTTP step, `whoami` asks the sidecar who it thinks the caller is
(`/.well-known/mcp-tailnet/whoami`, answered by the gateway itself): identity, the values
of the tools capability the tailnet policy grants, and how tools are decided. It warns
when grants mode leaves this caller no tool (no grant for this server, or a malformed
value); a server without a sidecar in front (404) skips the step.

Beside the path, one warning step: `bypass` tries the node's MCP server port (8080, or
`--bypass-port`) directly. In userspace mode tailscaled forwards an unserved tailnet port
to 127.0.0.1, so if this machine can open it, the tailnet policy opens more than the
served ports and a server on 127.0.0.1 is reachable past the gateway (docs/design.md
fact 1). It warns and names the policy to use; it does not fail the run.
"""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import dataclass
from typing import TextIO
from urllib.parse import urlsplit

import anyio
import httpx

from mcp_tailnet_sidecar.routes import WHOAMI_PATH

HINTS = {
    421: "the sidecar does not know this host name: use the node's MagicDNS name (or its tailnet IP) "
         "exactly as `tailscale status` shows it",
    403: "the Origin header is not the node's tailnet name; clients that send an Origin must use the "
         "node's name in it",
    404: "nothing is served on this path: check the path (/mcp or /sse) and that the sidecar's /readyz "
         "reports serve applied",
    502: "the sidecar answers but the MCP server behind it does not: check the MCP server container "
         "(it must listen on the upstream URL, default 127.0.0.1:8080)",
    503: "the sidecar is still starting (its tailnet name is not known yet); retry in a few seconds",
    504: "the MCP server did not answer in time",
}


BYPASS_PORT = 8080  # the MCP server's port in every deployment this repo ships
BYPASS_TIMEOUT = 2.0  # a port the policy filters drops the SYN: no answer is "closed"


@dataclass
class Step:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warn: bool = False


class Doctor:
    def __init__(self, url: str, *, transport: str | None = None, proxy: str | None = None,
                 timeout: float = 10.0, out: TextIO = sys.stdout, call: str | None = None,
                 arguments: dict | None = None, excerpt: int = 300, bypass_port: int = BYPASS_PORT) -> None:
        self.url = url
        self.call = call
        self.arguments = arguments or {}
        self.excerpt = excerpt
        self.parts = urlsplit(url)
        self.transport = transport or ("sse" if self.parts.path.rstrip("/").endswith("/sse") else "http")
        self.proxy = proxy
        self.timeout = timeout
        self.out = out
        self.steps: list[Step] = []
        self.bypass_port = bypass_port

    def _report(self, step: Step) -> bool:
        self.steps.append(step)
        print(f"{'WARN' if step.warn else 'ok  ' if step.ok else 'FAIL'} {step.name}: {step.detail}", file=self.out)
        if (step.warn or not step.ok) and step.fix:
            print(f"     what to do: {step.fix}", file=self.out)
        return step.ok

    def run(self) -> int:
        p = self.parts
        if p.scheme not in ("http", "https") or not p.hostname:
            self._report(Step("url", False, f"{self.url!r} is not an http(s) URL",
                              "pass the server URL, e.g. http://mcp-inspector/mcp"))
            return 1
        port = p.port or (443 if p.scheme == "https" else 80)
        if self.proxy:
            self._report(Step("dns", True, f"resolved by the proxy {self.proxy}"))
            proxy = urlsplit(self.proxy)
            target = (proxy.hostname or "", proxy.port or 80)
        else:
            try:
                infos = socket.getaddrinfo(p.hostname, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                self._report(Step("dns", False, f"{p.hostname} does not resolve ({exc.strerror})",
                                  "is this machine on the tailnet (`tailscale status`) with MagicDNS on? "
                                  "try the full name <host>.<tailnet domain>, or the node's 100.x address"))
                return 1
            address = infos[0][4][0]
            self._report(Step("dns", True, f"{p.hostname} -> {address}"))
            target = (address, port)
        try:
            with socket.create_connection(target, timeout=self.timeout):
                pass
        except OSError as exc:
            self._report(Step("tcp", False, f"cannot connect to {target[0]}:{target[1]} ({exc})",
                              "check `tailscale ping <host>`, that the tailnet policy lets you reach port "
                              f"{port} of the node, and that the sidecar container is running"))
            return 1
        self._report(Step("tcp", True, f"connected to {target[0]}:{target[1]}"))
        if self.bypass_port and self.bypass_port != port:
            self._bypass_check(p.hostname, target)
        if not self._http_check():
            return 1
        self._whoami()
        return 0 if anyio.run(self._mcp_check) else 1

    def _bypass_check(self, host: str, target: tuple[str, int]) -> None:
        """Can this machine open the node's unserved MCP server port (a warning, never a failure)?"""
        port = self.bypass_port
        try:
            if self.proxy:  # a CONNECT tunnel through the client's (userspace tailscaled) proxy
                with socket.create_connection(target, timeout=BYPASS_TIMEOUT) as c:
                    c.settimeout(BYPASS_TIMEOUT)
                    c.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
                    opened = c.recv(64).startswith(b"HTTP/1.1 200")
            else:
                with socket.create_connection((target[0], port), timeout=BYPASS_TIMEOUT):
                    opened = True
        except OSError:
            opened = False
        if not opened:
            self._report(Step("bypass", True, f"port {port} of {host} is closed to this machine (only serve's "
                                              f"ports lead in)"))
            return
        self._report(Step("bypass", True, f"port {port} of {host} is open to this machine, past serve and the "
                                          f"gateway: the tailnet policy opens more than the served ports, and in "
                                          f"userspace mode a server on 127.0.0.1:{port} is reachable without "
                                          f"identity, tool policy or audit", warn=True,
                          fix='allow only the served ports of the server\'s tag, e.g. "dst": ["tag:mcp:80,443"]; '
                              "the sidecar's /readyz (exposure) names the exact rule"))

    def _http_check(self) -> bool:
        try:
            with httpx.Client(proxy=self.proxy, timeout=self.timeout) as client:
                if self.transport == "sse":
                    with client.stream("GET", self.url, headers={"Accept": "text/event-stream"}) as resp:
                        status, ctype = resp.status_code, resp.headers.get("content-type", "")
                        body = "" if resp.status_code == 200 else resp.read().decode(errors="replace")[:200]
                else:
                    resp = client.post(self.url, content=b"{}", headers={
                        "Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
                    status, ctype, body = resp.status_code, resp.headers.get("content-type", ""), resp.text[:200]
        except httpx.HTTPError as exc:
            return self._report(Step("http", False, f"no HTTP answer ({type(exc).__name__}: {exc})",
                                     "the node is reachable but nothing answers HTTP: is the sidecar's serve "
                                     "config applied (`mcp-tailnet-sidecar probe ready` in the sidecar)?"))
        if status in HINTS:
            return self._report(Step("http", False, f"HTTP {status}: {body.strip()}", HINTS[status]))
        return self._report(Step("http", True, f"the sidecar answered HTTP {status} ({ctype or 'no type'})"))

    def _whoami(self) -> None:
        """Print the caller as the sidecar sees it (a warning at most, never a failure)."""
        p = self.parts
        url = f"{p.scheme}://{p.netloc}{WHOAMI_PATH}"
        try:
            with httpx.Client(proxy=self.proxy, timeout=self.timeout) as client:
                resp = client.get(url)
            data = resp.json() if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("identity"), dict):
            return  # no sidecar (or an older one) in front of this server: nothing to show
        who, decision = data["identity"], data.get("tools_decision") or {}
        name = who.get("login") or who.get("node") or who.get("source_ip") or "unknown"
        tags = ",".join(who.get("tags") or []) or "none"
        detail = (f"you are {name} (node {who.get('node') or '?'}, tags {tags}, from {who.get('source_ip')}); "
                  f"tools: {decision.get('rule')}")
        lines = [f"server name {decision.get('server_name')!r}"]
        if "policy_file_tools" in decision:
            lines.append(f"policy file grants you: {json.dumps(decision['policy_file_tools'])}")
        grant = decision.get("grant")
        step = Step("whoami", True, detail)
        if isinstance(grant, dict):
            lines.append(f"{grant.get('capability')}: {json.dumps(grant.get('values'))} "
                         f"(kept for this server: {json.dumps(grant.get('kept_for_this_server'))})")
            if grant.get("malformed"):
                step = Step("whoami", True, detail, warn=True, fix=f"your grant is malformed, every tool is denied: "
                            f"{grant['malformed']}; fix the value in the tailnet policy (docs/access.md)")
            elif not grant.get("kept_for_this_server"):
                step = Step("whoami", True, detail, warn=True,
                            fix="the tailnet policy grants you no tool on this server: add a grant with the "
                                "capability above for your user, group or tag (docs/access.md)")
        self._report(step)
        for line in lines:
            print(f"     {line}", file=self.out)

    async def _mcp_check(self) -> bool:
        try:
            import httpx2
            from mcp import Client
            from mcp.client.sse import sse_client
            from mcp.client.streamable_http import streamable_http_client
        except ImportError as exc:
            return self._report(Step("handshake", False, f"the MCP SDK is not installed here ({exc.name})",
                                     "install the doctor extra: pip install 'mcp-tailnet-sidecar[doctor]'"))

        try:
            with anyio.fail_after(self.timeout * 3):
                if self.transport == "sse":
                    def factory(headers=None, timeout=None, auth=None):  # noqa: ANN001 - SDK protocol
                        return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth, proxy=self.proxy)
                    transport = sse_client(self.url, httpx_client_factory=factory)
                    http_client = None
                else:
                    http_client = httpx2.AsyncClient(proxy=self.proxy, timeout=self.timeout)
                    transport = streamable_http_client(self.url, http_client=http_client)
                try:
                    async with Client(transport) as client:
                        self._report(Step("handshake", True, f"MCP protocol {client.protocol_version}, server "
                                          f"{getattr(client.server_info, 'name', '?')}"))
                        tools = (await client.list_tools()).tools
                        names = ", ".join(t.name for t in tools) or "(none)"
                        self._report(Step("tools", True, f"{len(tools)} tool(s): {names}"))
                        if self.call:
                            return await self._call(client, {t.name for t in tools})
                finally:
                    if http_client is not None:
                        await http_client.aclose()
        except BaseException as exc:  # noqa: BLE001 - reported, with the step it failed at
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            done = {s.name for s in self.steps}
            step = "call" if "tools" in done else "tools" if "handshake" in done else "handshake"
            return self._report(Step(step, False, f"{type(exc).__name__}: {_root(exc)}",
                                     "the HTTP path works but MCP does not: check the MCP server's logs and "
                                     "that the transport matches (/mcp = Streamable HTTP, /sse = SSE)"))
        return True

    async def _call(self, client, names: set[str]) -> bool:  # noqa: ANN001 - mcp.Client
        """Call one tool; its answer's first text, cut to `excerpt` characters, is the proof."""
        if self.call not in names:
            return self._report(Step("call", False, f"the server has no tool {self.call!r}",
                                     "pick one of the tools listed above"))
        result = await client.call_tool(self.call, self.arguments)
        text = " ".join(getattr(c, "text", "") for c in result.content if getattr(c, "text", None))
        text = " ".join(text.split())
        if len(text) > self.excerpt:
            text = text[: self.excerpt] + "..."
        if result.is_error:
            return self._report(Step("call", False, f"{self.call} answered with an error: {text}",
                                     "the path works; the tool refused these arguments or failed on the server"))
        return self._report(Step("call", True, f"{self.call} -> {text or '(no text content)'}"))


def parse_arguments(raw: str) -> dict:
    """`--arguments` is a JSON object; anything else is a usage error with the reason."""
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"--arguments is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("--arguments must be a JSON object, e.g. '{\"text\": \"hi\"}'")
    return value


def _root(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__
