"""The gateway's speed steps keep its behaviour (docs/benchmarks.md, "Gateway speed steps").

- one Date header on a relayed answer (uvicorn writes its own; the upstream's is not passed on too);
- the running gateway parses HTTP with httptools, and still refuses a request head larger than
  serving.MAX_HEAD_BYTES (h11 did, httptools alone does not);
- serving.run puts the process on uvloop when it is installed, on asyncio's loop when it is not.

No timing here: tests/sidecar/test_listener_latency.py and bench/gateway_steps.py do that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from pathlib import Path

import pytest

from mcp_tailnet_sidecar import serving

from .conftest import TAILNET_HOST, free_port

PROTOCOL = "2026-07-28"
CALL = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "add", "arguments": {"a": 2, "b": 3},
                              "_meta": {"io.modelcontextprotocol/protocolVersion": PROTOCOL,
                                        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
                                        "io.modelcontextprotocol/clientCapabilities": {}}}})
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
           "Mcp-Method": "tools/call", "Mcp-Name": "add", "MCP-Protocol-Version": PROTOCOL}


def _tcp_gateway(gateway_factory, stock_server):
    return gateway_factory(stock_server.url, SIDECAR_GATEWAY_LISTEN=f"tcp:127.0.0.2:{free_port('127.0.0.2')}")


def _raw_request(addr: tuple[str, int], head: bytes, body: bytes = b"") -> bytes:
    """Send one request on a fresh connection; everything the gateway sends until it closes or 10 s pass."""
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(head + body)
        out = b""
        while b"\r\n\r\n" not in out or len(out) < out.index(b"\r\n\r\n") + 4 + _length(out):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30  # no length: read to close


def _call_head(extra: bytes = b"") -> bytes:
    lines = [b"POST /mcp HTTP/1.1", b"Host: " + TAILNET_HOST.encode(), b"Connection: close",
             b"Content-Length: " + str(len(CALL)).encode()]
    lines += [f"{k}: {v}".encode() for k, v in HEADERS.items()]
    return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n"


@pytest.mark.parametrize("listener", ["unix", "tcp"])
def test_one_date_header_on_a_relayed_answer(listener, gateway_factory, stock_server):
    gw = (_tcp_gateway(gateway_factory, stock_server) if listener == "tcp"
          else gateway_factory(stock_server.url))
    with gw.client(timeout=30) as c:
        r = c.post("/mcp", content=CALL, headers=HEADERS)
        assert r.status_code == 200, r.text
        assert '"structuredContent":{"result":5}' in r.text.replace(" ", "")
        assert len(r.headers.get_list("date")) == 1, r.headers.raw
        # the gateway's own answers (a refusal here) carry one too
        refused = c.post("/mcp", content=b"{not json", headers=HEADERS)
        assert refused.status_code == 400
        assert len(refused.headers.get_list("date")) == 1, refused.headers.raw


def _mapped(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_running_gateway_parses_with_httptools(gateway_factory, stock_server):
    gw = _tcp_gateway(gateway_factory, stock_server)
    with gw.client(timeout=30) as c:  # one request, so the parser has been used
        assert c.post("/mcp", content=CALL, headers=HEADERS).status_code == 200
    maps = _mapped(gw.proc.pid)
    assert "/httptools/parser/parser." in maps, "the gateway process has not loaded httptools' parser"


def test_request_head_larger_than_the_bound_is_refused(gateway_factory, stock_server):
    gw = _tcp_gateway(gateway_factory, stock_server)
    addr = gw.tcp
    assert addr is not None
    # well within the bound: answered
    small = _raw_request(addr, _call_head(b"X-Pad: " + b"a" * (serving.MAX_HEAD_BYTES // 2) + b"\r\n"),
                         CALL.encode())
    assert small.startswith(b"HTTP/1.1 200"), small[:200]
    # over it, in many headers as in one: 400 and the connection closed, nothing relayed
    for extra in (b"X-Pad: " + b"a" * (serving.MAX_HEAD_BYTES + 1024) + b"\r\n",
                  b"".join(b"X-Pad-%d: %s\r\n" % (i, b"b" * 1000) for i in range(80))):
        big = _raw_request(addr, _call_head(extra), CALL.encode())
        assert big.startswith(b"HTTP/1.1 400"), big[:200]
        assert b"connection: close" in big.lower()
    # only the small call reached the upstream (one audited call)
    assert [a["tool"] for a in gw.audit_lines()] == ["add"]


def test_endless_header_in_small_writes_is_refused(gateway_factory, stock_server):
    """A header that never ends, sent a little at a time: refused once past the bound, not held."""
    gw = _tcp_gateway(gateway_factory, stock_server)
    assert gw.tcp is not None
    with socket.create_connection(gw.tcp, timeout=10) as s:
        s.sendall(b"POST /mcp HTTP/1.1\r\nHost: " + TAILNET_HOST.encode() + b"\r\nX-Endless: ")
        answer = b""
        for _ in range(4 * serving.MAX_HEAD_BYTES // 4096):  # bounded: at most 4x the limit
            try:
                s.sendall(b"c" * 4096)
            except (BrokenPipeError, ConnectionResetError):
                break
            s.settimeout(0.02)
            try:
                answer += s.recv(65536)
            except (TimeoutError, BlockingIOError):
                continue
            if answer:
                break
        s.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert gw.audit_lines() == []


def test_running_gateway_is_on_uvloop(gateway_factory, stock_server):
    pytest.importorskip("uvloop", reason="uvloop is the sidecar's optional `uvloop` extra (and in the dev group)")
    gw = _tcp_gateway(gateway_factory, stock_server)
    assert "/uvloop/loop." in _mapped(gw.proc.pid)


def test_run_is_on_uvloop_when_installed():
    uvloop = pytest.importorskip("uvloop", reason="uvloop is the sidecar's optional `uvloop` extra")

    async def loop_type() -> type:
        return type(asyncio.get_running_loop())

    assert issubclass(serving.run(loop_type()), uvloop.Loop)


def test_run_is_on_asyncio_without_uvloop(monkeypatch):
    real = serving._installed
    monkeypatch.setattr(serving, "_installed", lambda m: m != "uvloop" and real(m))

    async def loop_type() -> type:
        return type(asyncio.get_running_loop())

    assert serving.run(loop_type()).__module__.startswith("asyncio")


def test_h11_without_httptools(monkeypatch):
    real = serving._installed
    monkeypatch.setattr(serving, "_installed", lambda m: m != "httptools" and real(m))
    assert serving.http_protocol() == "h11"
