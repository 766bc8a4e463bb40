"""What the gateway answers itself, and how it starts a relayed answer.

One place for the refusal reasons (the `reason` label of mcp_gateway_refused_total), the
plain-text and JSON-RPC refusals, and the response headers never relayed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

import httpx

from mcp_tailnet_sidecar.judge import Unjudgeable

Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = tuple[tuple[bytes, bytes], ...]

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
})
# `date`: uvicorn writes the gateway's own Date on every answer (as nginx does in front of an
# upstream), so the upstream's is dropped rather than sent as a second Date header.
DROP_RESPONSE = HOP_BY_HOP | {"content-length", "date"}


class Refused(str, Enum):
    """Why the gateway refused a request (or closed a stream) itself."""

    UNJUDGEABLE = "unjudgeable"
    HEADER_MISMATCH = "header_mismatch"
    CONTENT_ENCODING = "content_encoding"
    QUERY = "query"
    METHOD = "method"
    SESSION = "session"
    SOURCE_LIMIT = "source_limit"
    PENDING_FULL = "pending_full"
    DUPLICATE_ID = "duplicate_id"
    BODY_TIMEOUT = "body_timeout"
    BODY_TOO_LARGE = "body_too_large"
    SSE_ENDPOINT = "sse_endpoint"  # an SSE `endpoint` event the gateway cannot bind: the stream is closed


class Reject(Exception):
    """Refuse the request with `status`: plain text, or a JSON-RPC error when `answer` is set."""

    def __init__(self, status: int, message: str, reason: Refused | None = None, *,
                 answer: dict[str, Any] | None = None, headers: Headers = ()) -> None:
        self.status = status
        self.message = message
        self.reason = reason
        self.answer = answer
        self.headers = headers

    @classmethod
    def unjudgeable(cls, exc: Unjudgeable) -> Reject:
        reason = Refused.HEADER_MISMATCH if "Header mismatch" in exc.message else Refused.UNJUDGEABLE
        return cls(exc.status, exc.message, reason, answer=exc.answer())


async def plain(send: Send, status: int, text: str, extra: Headers = ()) -> None:
    body = (text + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def json_answer(send: Send, status: int, data: object, extra: Headers = ()) -> None:
    body = json.dumps(data).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def relayed_headers(response: httpx.Response, drop: frozenset[str] = DROP_RESPONSE,
                    extra: list[tuple[bytes, bytes]] | tuple[()] = ()) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers minus `drop`; ours (`extra`) win, never doubled."""
    replaced = {k for k, _ in extra}
    raw = [(k.lower(), v) for k, v in response.headers.raw
           if k.lower().decode("latin-1") not in drop and k.lower() not in replaced]
    return raw + list(extra)


def head(response: httpx.Response, extra: list[tuple[bytes, bytes]] | tuple[()] = ()) -> dict[str, Any]:
    """The ASGI start message relaying `response`'s status and headers."""
    return {"type": "http.response.start", "status": response.status_code,
            "headers": relayed_headers(response, extra=extra)}


async def start(send: Send, response: httpx.Response, extra: list[tuple[bytes, bytes]] | tuple[()] = ()) -> None:
    await send(head(response, extra))
