"""upstream_client.UpstreamClient on its own: what the gateway relies on from httpx.AsyncClient.

Against the stock MCP server and against raw upstreams that send the framings a real server
may send (Content-Length, chunked, read-until-close, 100 Continue, HEAD, 204) and the failures
it may have (refused, garbage, closed mid-answer). The desync cases matter most: a connection
whose answer was not read to its end (a cancelled or abandoned request) must never carry the
next request, or that request would get the previous one's answer.

The gateway suites run against it too, by replacing the gateway's client in every gateway
process they start:
    PYTHONPATH=bench/gateway_variants BENCH_GATEWAY_STEPS=upstream-client .venv/bin/pytest -q \\
        tests/sidecar/test_gateway.py tests/sidecar/test_gateway_sse_endpoints.py tests/sidecar/test_keepalive.py
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import httpx
import pytest

from mcp_tailnet_sidecar.upstream_client import MAX_ANSWER_HEAD_BYTES, UpstreamClient, supports

from .conftest import ADD_CALL, ADD_CALL_HEADERS, free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def _read_head(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines[1:] if ln)}
    return lines[0], headers


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    line, headers = await _read_head(reader)
    body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return line, headers, body


class RawUpstream:
    """An asyncio server calling `handler(reader, writer, connection_number)`; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.port = free_port()
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self.connections)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> RawUpstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def client(self) -> UpstreamClient:
        return UpstreamClient(f"http://127.0.0.1:{self.port}", connect_timeout=5)


async def _echo_keepalive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    """Answers every request on the connection with its own request line and body, by Content-Length."""
    while True:
        line, _, body = await _read_request(reader)
        out = json.dumps({"line": line.decode(), "body": body.decode(), "conn": n}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(out), out))
        await writer.drain()


async def _call(client: UpstreamClient, path: str, body: bytes = b"", method: str = "POST") -> httpx.Response:
    request = client.build_request(method, f"http://127.0.0.1/{path.lstrip('/')}",
                                   headers=[(b"content-type", b"application/json")], content=body)
    response = await client.send(request, stream=True)
    try:
        await response.aread()
    finally:
        await response.aclose()
    return response


def test_stock_server_call_and_one_kept_alive_connection(stock_server, loop_run):
    async def main() -> None:
        client = UpstreamClient(stock_server.url, connect_timeout=5)
        try:
            for _ in range(5):
                r = await client.send(client.build_request("POST", f"{stock_server.url}/mcp", headers=ADD_CALL_HEADERS,
                                                           content=ADD_CALL))
                body = await r.aread()
                await r.aclose()
                assert r.status_code == 200, body
                assert json.loads(body)["result"]["structuredContent"] == {"result": 5}
                assert len(r.headers.get_list("date")) == 1
            assert len(client._idle) == 1 and not client._busy  # five calls, one connection
        finally:
            await client.aclose()

    loop_run(main())


def test_sequential_requests_reuse_one_connection_and_get_their_own_answers(loop_run):
    async def main() -> None:
        async with RawUpstream(_echo_keepalive) as up:
            client = up.client()
            for i in range(20):
                r = await _call(client, f"/n{i}", b'{"i": %d}' % i)
                answer = r.json()
                assert answer["line"] == f"POST /n{i} HTTP/1.1" and answer["body"] == f'{{"i": {i}}}'
            assert up.connections == 1
            await client.aclose()

    loop_run(main())


@pytest.mark.parametrize("framing", ["chunked", "until-close", "continue", "head", "no-content"])
def test_framings(framing, loop_run):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _read_request(reader)
        if framing == "chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        elif framing == "until-close":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: a\n\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"data: b\n\n")
            await writer.drain()
            writer.close()
            return
        elif framing == "continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world")
        elif framing == "head":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)  # keep the connection open: the answer must end by its framing

    expected = {"chunked": b"hello world", "until-close": b"data: a\n\ndata: b\n\n", "continue": b"hello world",
                "head": b"", "no-content": b""}[framing]

    async def main() -> None:
        async with RawUpstream(handler) as up:
            client = up.client()
            method = "HEAD" if framing == "head" else "POST"
            request = client.build_request(method, "http://127.0.0.1/x", headers=[], content=b"{}")
            r = await asyncio.wait_for(client.send(request), 5)
            body = b"".join([c async for c in r.aiter_raw()])
            await r.aclose()
            assert (r.status_code, body) == (204 if framing == "no-content" else 200, expected)
            await client.aclose()

    loop_run(main())


def test_failures_raise_what_the_gateway_catches(loop_run):
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()

    async def endless_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(4 * MAX_ANSWER_HEAD_BYTES // 1024):  # bounded: 4x the limit, then stop
            writer.write(b"X-%d: %s\r\n" % (i, b"h" * 1000))
            await writer.drain()
        await asyncio.sleep(5)

    async def main() -> None:
        async with RawUpstream(endless_head) as up:  # cut off, not buffered for ever
            with pytest.raises(httpx.RemoteProtocolError, match="head is larger"):
                await asyncio.wait_for(_call(up.client(), "/"), 4)
        refused = UpstreamClient(f"http://127.0.0.1:{free_port()}", connect_timeout=5)
        with pytest.raises(httpx.ConnectError):
            await _call(refused, "/")
        async with RawUpstream(garbage) as up:
            with pytest.raises(httpx.RemoteProtocolError):
                await _call(up.client(), "/")
        async with RawUpstream(cut) as up:
            client = up.client()
            r = await client.send(client.build_request("POST", "http://127.0.0.1/", headers=[], content=b"{}"))
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                async for _ in r.aiter_raw():  # a truncated answer is an error, never a short success
                    pass
            await r.aclose()
            assert not client._idle

    loop_run(main())


def test_unfinished_answers_never_carry_the_next_request(loop_run):
    """Cancelled while waiting, or closed before the body was read: that connection is dropped."""

    async def slow_then_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            line, _, body = await _read_request(reader)
            if b"/slow" in line:
                await asyncio.sleep(0.3)
            out = json.dumps({"line": line.decode(), "conn": n}).encode() * (1 if b"/big" not in line else 5000)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))
            await writer.drain()

    async def main() -> None:
        async with RawUpstream(slow_then_echo) as up:
            client = up.client()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(_call(client, "/slow"), 0.05)
            assert (await _call(client, "/after-cancel")).json()["line"] == "POST /after-cancel HTTP/1.1"
            # an answer abandoned after its head: its rest must not be read as the next answer
            r = await client.send(client.build_request("POST", "http://127.0.0.1/big", headers=[], content=b"{}"))
            assert r.status_code == 200
            await r.aclose()
            assert (await _call(client, "/after-abandon")).json()["line"] == "POST /after-abandon HTTP/1.1"
            assert up.connections == 3
            await client.aclose()

    loop_run(main())


def test_only_plain_http():
    assert supports("http://127.0.0.1:8080") and not supports("https://mcp.internal")
    with pytest.raises(ValueError):
        UpstreamClient("https://mcp.internal", connect_timeout=5)
