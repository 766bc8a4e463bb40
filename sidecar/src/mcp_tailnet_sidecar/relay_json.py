"""Relaying an answer that is not an event stream: as bytes, or read whole to settle its JSON-RPC answers.

Why read whole: a JSON answer to a tracked request (a tool call's outcome for the audit, a
tools/list to filter) can only be judged complete; it is bounded by
SIDECAR_MAX_JSON_RESPONSE_BYTES and SIDECAR_REQUEST_TIMEOUT. Anything else streams through.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx

from mcp_tailnet_sidecar.jsonrpc import decode_messages
from mcp_tailnet_sidecar.responses import DROP_RESPONSE, Reject, Send, relayed_headers, start

logger = logging.getLogger("mcp_tailnet_sidecar.gateway")

Settle = Callable[[dict[str, Any]], "dict[str, Any] | None"]  # a replacement message, or None to keep it


def settle_all(data: bytes | str, settle: Settle) -> bytes | str | None:
    """`data` (one JSON-RPC message or a batch) with every answer settled; None if nothing changed."""
    messages = decode_messages(data.encode() if isinstance(data, str) else data)
    if messages is None:
        return None
    changed = False
    result = []
    for m in messages:
        new = settle(m)
        changed |= new is not None
        result.append(new or m)
    if not changed:
        return None
    is_batch = data.lstrip()[:1] in ("[", b"[")
    out = json.dumps(result if is_batch else result[0])
    return out if isinstance(data, str) else out.encode()


async def relay_bytes(response: httpx.Response, send: Send, request_timeout: float) -> None:
    extra = []
    if "content-length" in response.headers and "content-encoding" not in response.headers:
        extra = [(b"content-length", response.headers["content-length"].encode())]
    await start(send, response, extra)
    chunks = response.aiter_raw()
    while True:
        try:
            async with asyncio.timeout(request_timeout):
                chunk = await chunks.__anext__()
        except StopAsyncIteration:
            break
        except TimeoutError:
            logger.warning("upstream body stalled for %s s; closing", request_timeout)
            break
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def relay_json(response: httpx.Response, send: Send, settle: Settle, *, max_bytes: int,
                     request_timeout: float) -> None:
    body = bytearray()
    async with asyncio.timeout(request_timeout):
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise Reject(502, f"the MCP server's JSON answer is larger than the gateway relays "
                                  f"({max_bytes} bytes, SIDECAR_MAX_JSON_RESPONSE_BYTES)")
    out = settle_all(bytes(body), settle) or bytes(body)
    assert isinstance(out, bytes)
    headers = relayed_headers(response, DROP_RESPONSE | {"content-encoding"},
                              [(b"content-length", str(len(out)).encode())])
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": out, "more_body": False})
