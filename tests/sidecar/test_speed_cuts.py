"""The CPU cuts of gateway speed step 5 change how, not what (docs/benchmarks.md, "Gateway speed steps").

- UpstreamClient's requests are no longer httpx.Request objects: the head it writes must be
  byte for byte the head it wrote from an httpx.Request (same percent-encoding, Host and
  Content-Length rules), and an URL httpx refuses is still refused.
- Metrics.of memoises label children: counts land where `labels()` would have put them.
- Log records skip caller/thread/process fields and reuse one strftime a second: a line is
  the same JSON as before, also across a second boundary.
"""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from mcp_tailnet_sidecar import logs
from mcp_tailnet_sidecar.metrics import Metrics
from mcp_tailnet_sidecar.upstream_client import UpstreamClient

URLS = [
    "http://127.0.0.1:8080/mcp",
    "http://127.0.0.1/mcp",  # port 80: Host without it, as httpx writes it
    "http://127.0.0.1:8080/messages/?session_id=0f3a",
    "http://127.0.0.1:8080/a%20b/c?x=%zz&y=é",  # an invalid escape, non-ASCII: httpx's quoting
    "http://127.0.0.1:8080/p;q=1/ü?z=a+b&z=c",
    "http://[::1]:8080/mcp",
]
METHODS = ["GET", "POST", "DELETE", "HEAD", "OPTIONS", "PUT", "PATCH"]
HEADERS = [
    [(b"accept", b"application/json, text/event-stream"), (b"content-type", b"application/json")],
    [(b"x-obs", b"caf\xe9"), (b"mcp-session-id", b"abc")],  # obs-text relayed as sent
    [(b"Host", b"upstream.example"), (b"Content-Length", b"2")],  # present: httpx adds neither
    [(b"transfer-encoding", b"chunked")],
]


def _httpx_head(method: str, url: str, headers: list[tuple[bytes, bytes]], content: bytes) -> bytes:
    """The head UpstreamClient wrote before step 5d: from an httpx.Request."""
    r = httpx.Request(method, url, headers=headers, content=content)
    lines = [r.method.encode("ascii") + b" " + r.url.raw_path + b" HTTP/1.1"]
    lines += [k + b": " + v for k, v in r.headers.raw]
    return b"\r\n".join(lines) + b"\r\n\r\n"


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("content", [b"", b'{"jsonrpc":"2.0"}'])
@pytest.mark.parametrize("headers", HEADERS, ids=["plain", "obs-text", "host-and-length", "chunked"])
def test_upstream_request_head_is_the_httpx_request_head(url, method, content, headers):
    client = UpstreamClient("http://127.0.0.1:8080", connect_timeout=5)
    request = client.build_request(method, url, headers=list(headers), content=content)
    assert request.head() == _httpx_head(method, url, list(headers), content)
    assert request.content == content and request.method == method


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/m\x7fcp", "http://127.0.0.1:8080/a\nb",
                                 "http://127.0.0.1:8080/\x00"])
def test_an_url_httpx_refuses_is_still_refused(url):
    client = UpstreamClient("http://127.0.0.1:8080", connect_timeout=5)
    with pytest.raises(httpx.InvalidURL):
        httpx.Request("GET", url)
    with pytest.raises(httpx.InvalidURL):
        client.build_request("GET", url, headers=[])


def test_memoised_metric_children_count_where_labels_would():
    m = Metrics()
    for _ in range(3):
        m.of(m.requests, "/mcp", "POST", "200").inc()
    m.of(m.requests, "/mcp", "POST", "403").inc()
    m.of(m.upstream_latency, "/mcp").observe(0.002)
    assert m.of(m.tool_calls, "ok") is m.tool_calls.labels("ok")
    text = m.render().decode()
    assert 'mcp_gateway_requests_total{method="POST",route="/mcp",status="200"} 3.0' in text
    assert 'mcp_gateway_requests_total{method="POST",route="/mcp",status="403"} 1.0' in text
    assert 'mcp_gateway_upstream_latency_seconds_count{route="/mcp"} 1.0' in text


def _line(formatter: logs.JsonFormatter, created: float, **extra: object) -> dict:
    record = logging.LogRecord("mcp_tailnet_sidecar.audit", logging.INFO, "", 0, "tool call %s", ("add",), None)
    record.created, record.msecs = created, (created - int(created)) * 1000
    record.__dict__.update(extra)
    return json.loads(formatter.format(record))


def test_log_lines_keep_their_shape_across_a_second_boundary():
    f = logs.JsonFormatter()
    a = _line(f, 1_780_000_000.875, event="tool_call", tool="add")  # binary fractions: msecs exact
    b = _line(f, 1_780_000_001.0625, event="tool_call", tool="add")
    c = _line(f, 1_780_000_001.5)
    assert a["ts"] == "2026-05-28T20:26:40.875Z"
    assert b["ts"] == "2026-05-28T20:26:41.062Z"
    assert c["ts"] == "2026-05-28T20:26:41.500Z"
    assert a == {"ts": a["ts"], "level": "info", "logger": "mcp_tailnet_sidecar.audit", "msg": "tool call add",
                 "event": "tool_call", "tool": "add"}


def test_setup_stops_collecting_caller_thread_and_process_fields():
    saved = (logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logs.setup("info")
        record = logging.getLogger("mcp_tailnet_sidecar.audit").makeRecord(
            "mcp_tailnet_sidecar.audit", logging.INFO, "(unknown file)", 0, "x", (), None)
        assert (record.thread, record.process, record.processName) == (None, None, None)
        assert logging._srcfile is None  # no findCaller() per record
    finally:
        logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing = saved
        root.handlers[:] = handlers
        root.setLevel(level)
