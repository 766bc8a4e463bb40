"""Shared helpers for the reliability tests: real processes, raw sockets, leak checks.

Why raw sockets: httpx normalises URLs (dot segments, encoding) and refuses bytes a
hostile client would send, so bad input that matters (odd paths, obs-text headers,
slow headers) is written byte by byte onto the gateway's unix socket, as `tailscale
serve` would hand it on.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from mcp_tailnet_lab.gateway_process import (  # noqa: F401 - re-exported for the tests
    SIDECAR,
    TAILNET_HOST,
    GatewayProc,
    StockServer,
    start_gateway,
    start_stock_server,
    stop,
)
from mcp_tailnet_lab.ports import free_port  # noqa: F401 - re-exported for the tests
from mcp_tailnet_lab.waiting import wait_for  # noqa: F401 - re-exported for the tests
from mcp_tailnet_lab.sidecar_run import STOCK_PORT, sidecar_run_env

# What a leaked stack trace looks like in a body or a log line.
TRACE_PATTERNS = (re.compile(r"Traceback \(most recent call last\)"), re.compile(r'File "[^"]+", line \d+'))
# 5xx answers the gateway gives on purpose (upstream down / names unknown / upstream timeout).
DELIBERATE_5XX = {502, 503, 504}


# -- leak checks ------------------------------------------------------------------------

def leaks(text: str, secrets: Iterable[str] = ()) -> list[str]:
    """What in `text` must never reach a client or a log: stack traces and secrets."""
    found = [p.pattern for p in TRACE_PATTERNS if p.search(text)]
    found += [f"secret {s[:6]}..." for s in secrets if s and s in text]
    return found


def bad_log_lines(text: str, secrets: Iterable[str] = ()) -> list[str]:
    """Log lines that are not one JSON object, or that carry a trace or a secret."""
    secrets = list(secrets)
    bad = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            bad.append(f"not JSON: {line[:200]}")
            continue
        if not isinstance(obj, dict):
            bad.append(f"not an object: {line[:200]}")
        elif problems := leaks(line, secrets):
            bad.append(f"{problems}: {line[:200]} ... {line[-600:]}")
    return bad


# -- raw HTTP over a unix socket ----------------------------------------------------------

@dataclass
class RawResponse:
    status: int
    head: bytes
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def raw_request(socket_path: Path | str, request: bytes, timeout: float = 10.0) -> RawResponse:
    """Send bytes, read until the server closes or `timeout`; parse the status line."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    data = b""
    try:
        s.connect(str(socket_path))
        s.sendall(request)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return RawResponse(int(m.group(1)) if m else 0, head, body)


def get_request(path: bytes, host: bytes = TAILNET_HOST.encode(), headers: bytes = b"") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + headers + b"Connection: close\r\n\r\n"


def post_request(path: bytes, body: bytes, host: bytes = TAILNET_HOST.encode(), headers: bytes = b"") -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\nContent-Type: application/json\r\n"
            b"Accept: application/json, text/event-stream\r\n" + headers
            + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


# -- processes ------------------------------------------------------------------------------

def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- MCP clients ------------------------------------------------------------------------------

def uds_mcp_client(socket_path: Path | str, transport: str, headers: dict | None = None) -> Client:
    """An SDK client whose HTTP goes to a gateway's unix socket (as serve would relay it)."""
    def make(headers=None, timeout=None, auth=None) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.AsyncHTTPTransport(uds=str(socket_path)), headers=headers,
                                  timeout=timeout or httpx2.Timeout(30, read=120), auth=auth)
    if transport == "sse":
        return Client(sse_client(f"http://{TAILNET_HOST}/sse", headers=headers, httpx_client_factory=make))
    return Client(streamable_http_client(f"http://{TAILNET_HOST}/mcp", http_client=make(headers)))


def roundtrip(socket_path: Path | str, transport: str = "http", headers: dict | None = None,
              timeout: float = 60) -> int:
    """A full MCP session through the gateway: list tools, call add; returns the sum."""
    async def go() -> int:
        with anyio.fail_after(timeout):
            async with uds_mcp_client(socket_path, transport, headers) as client:
                await client.list_tools()
                res = await client.call_tool("add", {"a": 40, "b": 2})
                assert not res.is_error, res
                return res.structured_content["result"]
    return anyio.run(go)


# -- the image entrypoint, for real (containerboot + tailscaled + gateway) ------------------------



@dataclass
class SidecarRun:
    """`mcp-tailnet-sidecar run` in a lab namespace, as the container would run it."""

    ns: object  # mcp_tailnet_lab.netns.Namespace
    dir: Path
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    states: list[tuple[float, str]] = field(default_factory=list)

    @property
    def health_socket(self) -> Path:
        return self.dir / "health.sock"

    @property
    def ts_socket(self) -> Path:
        return self.dir / "ts.sock"

    @property
    def log(self) -> Path:
        return self.dir / "run.log"

    def start(self) -> SidecarRun:
        with self.log.open("ab") as fh:
            self.proc = self.ns.popen([SIDECAR, "run"], env=self.env, stdout=fh, stderr=fh)
        return self

    def readiness(self) -> str:
        """One poll of /readyz: 'ready', 'not-ready:<failing checks>' or 'down:<why>'; recorded."""
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.health_socket)), timeout=5) as c:
                r = c.get("http://localhost/readyz")
            if r.status_code == 200:
                state = "ready"
            else:
                failing = sorted(k for k, v in (r.json().get("checks") or {}).items() if not v.get("ok"))
                state = "not-ready:" + ",".join(failing)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            state = f"down:{type(exc).__name__}"
        if not self.states or self.states[-1][1] != state:
            self.states.append((time.monotonic(), state))
        return state

    def wait_state(self, want: Callable[[str], bool], what: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.readiness()
            if want(state):
                return state
            if self.proc is not None and self.proc.poll() is not None and not want("exited"):
                raise AssertionError(f"sidecar exited ({self.proc.returncode}) waiting for {what}; "
                                     f"states {self.states}; log tail: {self.log_tail()}")
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; states {self.states}; log tail: {self.log_tail()}")

    def wait_ready(self, timeout: float = 120) -> None:
        self.wait_state(lambda s: s == "ready", "readiness", timeout)

    def dns_name(self) -> str:
        serve = json.loads((self.dir / "serve" / "serve.json").read_text())
        (hostport,) = [h for h in serve["Web"] if h.endswith(":80")]
        return hostport[:-3]

    def tailscaled_pid(self) -> int:
        """The tailscaled that containerboot started for this sidecar (found by its socket)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"tailscaled") and any(str(self.ts_socket).encode() in a for a in argv):
                return int(entry.name)
        raise AssertionError(f"no tailscaled with socket {self.ts_socket}")

    def log_tail(self, n: int = 15) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 90) -> int | None:
        if self.proc is None:
            return None
        return stop(self.proc, timeout)


def sidecar_env(d: Path, headscale, hostname: str, authkey: str | None, **extra: str) -> dict[str, str]:
    return sidecar_run_env(d, login_server=headscale.url, hostname=hostname, authkey=authkey,
                           SIDECAR_DRAIN_TIMEOUT="20", **extra)


def start_stock_in(ns, log: Path | None = None) -> subprocess.Popen:
    out = log.open("ab") if log else subprocess.DEVNULL
    proc = ns.popen([sys.executable, "-m", "mcp_tailnet_lab.stock_mcp_server", "--port", str(STOCK_PORT)],
                    stdout=out, stderr=subprocess.STDOUT)
    wait_for(lambda: ns.exec([sys.executable, "-c", f"import socket; socket.create_connection(('127.0.0.1', "
                                                    f"{STOCK_PORT}), 2)"], check=False).returncode == 0,
             "the stock server in its namespace", timeout=30, proc=proc)
    return proc


def proxied_mcp_client(proxy: str, transport: str, url_base: str) -> Client:
    """An SDK client reaching the tailnet through a userspace node's HTTP proxy."""
    def make(headers=None, timeout=None, auth=None) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(proxy=proxy, headers=headers, timeout=timeout or httpx2.Timeout(30, read=120),
                                  auth=auth)
    if transport == "sse":
        return Client(sse_client(f"{url_base}/sse", httpx_client_factory=make))
    return Client(streamable_http_client(f"{url_base}/mcp", http_client=make()))


def tailnet_roundtrip(proxy: str, url_base: str, transport: str = "http", timeout: float = 60) -> int:
    async def go() -> int:
        with anyio.fail_after(timeout):
            async with proxied_mcp_client(proxy, transport, url_base) as client:
                res = await client.call_tool("add", {"a": 40, "b": 2})
                assert not res.is_error, res
                return res.structured_content["result"]
    return anyio.run(go)
