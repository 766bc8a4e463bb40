"""Judging a request before the gateway relays it: one strict reading, and that reading is what goes on.

Why (docs/design.md facts 9 and 10): policy and audit decide on what *this* parser saw;
the MCP server behind may use another parser. Go's `encoding/json` matches object keys
case-insensitively, C-string parsers stop at a NUL, some parsers keep the first of two
equal keys and Python keeps the last, `json.loads(bytes)` guesses UTF-16/32, Python accepts
`NaN`. So a body is judged only if every such reader would see the same request: else it is
refused (fail closed), never relayed as sent. A judged body is forwarded re-serialised from
the parsed value, in UTF-8, so the bytes the server parses are the ones that were judged.

The same holds for the 2026-07-28 routing headers (`Mcp-Method`, `Mcp-Name`,
`MCP-Protocol-Version`): a header that disagrees with the body, or appears twice, could
steer an intermediary or server that reads the header, while policy read the body; the
spec prescribes `400 Bad Request` with JSON-RPC error -32020 (HeaderMismatch).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
HEADER_MISMATCH = -32020  # MCP 2026-07-28, basic/transports/streamable-http "Server Validation"

MAX_DEPTH = 128  # nesting the gateway still re-serialises with certainty; MCP messages stay far below
# Protocol versions that still use the initialize handshake: any other MCP-Protocol-Version
# value makes a stock SDK server take its stateless 2026-07-28 path (mcp 2.3.0
# `StreamableHTTPSessionManager._handle_request` routes on the header alone).
HANDSHAKE_VERSIONS = frozenset({"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"})
VERSION_META_KEY = "io.modelcontextprotocol/protocolVersion"
NAME_BEARING = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
ROUTING_HEADERS = (b"mcp-protocol-version", b"mcp-method", b"mcp-name")
# Keys the gateway reads, per level: another spelling of one of them that folds to the same
# key (`METHOD`, `naMe`, `paramſ`) is what a case-insensitive parser would read instead.
MESSAGE_KEYS = frozenset({"jsonrpc", "id", "method", "params", "result", "error"})
PARAMS_KEYS = frozenset({"name", "uri", "_meta"})
META_KEYS = frozenset({VERSION_META_KEY})
_B64_SENTINEL = re.compile(r"=\?base64\?([A-Za-z0-9+/=]*)\?=")


class Unjudgeable(Exception):
    """The request cannot be judged without ambiguity; `status` and a JSON-RPC error say why."""

    def __init__(self, status: int, code: int, message: str, request_id: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id

    def answer(self) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": self.request_id, "error": {"code": self.code, "message": self.message}}


@dataclass(frozen=True)
class Judged:
    """A body read one way only: its messages, and the bytes to forward in its place."""

    messages: list[dict[str, Any]]
    body: bytes
    batch: bool
    modern: bool  # a 2026-07-28 request (stateless; an Mcp-Session-Id means nothing to it)


class _Ambiguous(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    folded: dict[str, str] = {}
    for key, _ in pairs:
        if "\x00" in key:
            raise _Ambiguous(f"object key {key[:40]!r} contains NUL (a C-string parser reads a different key)")
        fold = key.casefold()  # covers Go's folding (ASCII case, Kelvin sign, long s) and more
        if fold in folded:
            other = folded[fold]
            what = "duplicate key" if other == key else "keys differing only by case"
            raise _Ambiguous(f"{what} {other[:40]!r} / {key[:40]!r} (parsers disagree on which one counts)")
        folded[fold] = key
    return dict(pairs)


def _constant(name: str) -> float:
    raise _Ambiguous(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _Ambiguous(f"number {text[:40]} is out of range")
    return value


def _check_strings_and_depth(value: Any) -> None:
    """No lone surrogates (readers replace them differently), no nesting past MAX_DEPTH."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise _Ambiguous("a string holds a lone UTF-16 surrogate") from None
            continue
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise _Ambiguous(f"nested deeper than {MAX_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children)


def parse_strict(body: bytes) -> Any:
    """The one reading of a body every JSON parser agrees on, or Unjudgeable."""
    try:
        text = body.decode("utf-8")  # strictly UTF-8: json.loads(bytes) would also guess UTF-16/32
    except UnicodeDecodeError:
        raise Unjudgeable(400, PARSE_ERROR, "the body is not UTF-8 JSON") from None
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_constant=_constant, parse_float=_finite)
        _check_strings_and_depth(value)
    except _Ambiguous as exc:
        raise Unjudgeable(400, PARSE_ERROR, f"the body is ambiguous JSON: {exc}") from None
    except RecursionError:
        raise Unjudgeable(400, PARSE_ERROR, f"the body is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise Unjudgeable(400, PARSE_ERROR, f"the body is not JSON ({str(exc)[:120]})") from None
    return value


def _canonical_keys(obj: dict[str, Any], known: frozenset[str], where: str) -> None:
    for key in obj:
        fold = key.casefold()
        if key not in known and any(fold == k.casefold() for k in known):
            raise _Ambiguous(f"{where} key {key[:40]!r} is another spelling of a key the gateway reads")


def _check_message(m: object) -> dict[str, Any]:
    if not isinstance(m, dict):
        raise Unjudgeable(400, INVALID_REQUEST, "each JSON-RPC message must be an object")
    rid = m.get("id")
    try:
        _canonical_keys(m, MESSAGE_KEYS, "message")
        if "id" in m and (isinstance(rid, bool) or not isinstance(rid, (str, int))):
            raise _Ambiguous("a request id must be a string or an integer")
        if "method" in m:
            if not isinstance(m["method"], str):
                raise _Ambiguous("method must be a string")
            if "result" in m or "error" in m:
                raise _Ambiguous("a message cannot be both a request and a response")
            params = m.get("params", {})
            if not isinstance(params, dict):
                raise _Ambiguous("params must be an object")
            _canonical_keys(params, PARAMS_KEYS, "params")
            if isinstance(params.get("_meta"), dict):
                _canonical_keys(params["_meta"], META_KEYS, "params._meta")
            if m["method"] == "tools/call" and not isinstance(params.get("name"), str):
                raise _Ambiguous("tools/call needs params.name as a string")
        elif "id" not in m or ("result" in m) == ("error" in m):
            raise _Ambiguous("a message needs a method (request) or an id with a result or an error (response)")
    except _Ambiguous as exc:
        raise Unjudgeable(400, INVALID_REQUEST, f"invalid JSON-RPC message: {exc}",
                          rid if isinstance(rid, (str, int)) and not isinstance(rid, bool) else None) from None
    return m


def decode_header_value(value: str) -> str | None:
    """An `Mcp-Name` value as the spec encodes it (plain, or `=?base64?...?=` UTF-8); None if malformed."""
    match = _B64_SENTINEL.fullmatch(value)
    if match is None:
        return value
    payload = match.group(1)
    try:
        raw = base64.b64decode(payload, validate=True)
        if base64.b64encode(raw).decode("ascii") != payload:  # only the canonical form, as clients send it
            return None
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def routing_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, str]:
    """The 2026-07-28 routing headers, each at most once (a first-copy and a last-copy reader disagree)."""
    found: dict[bytes, str] = {}
    for name, value in raw:
        key = name.lower()
        if key in ROUTING_HEADERS:
            if key in found:
                raise Unjudgeable(400, HEADER_MISMATCH, f"Header mismatch: {key.decode()} appears more than once")
            found[key] = value.decode("latin-1")
    return found


def is_modern(headers: dict[bytes, str]) -> bool:
    version = headers.get(b"mcp-protocol-version")
    return version is not None and version not in HANDSHAKE_VERSIONS


def _check_headers(messages: list[dict[str, Any]], batch: bool, headers: dict[bytes, str]) -> None:
    method_h = headers.get(b"mcp-method")
    name_h = headers.get(b"mcp-name")
    version_h = headers.get(b"mcp-protocol-version")
    first = messages[0]
    rid = first.get("id")

    def mismatch(text: str) -> Unjudgeable:
        return Unjudgeable(400, HEADER_MISMATCH, f"Header mismatch: {text}", rid)

    if batch and (method_h is not None or name_h is not None or is_modern(headers)):
        raise mismatch("a batch cannot carry Mcp-Method/Mcp-Name, nor be a 2026-07-28 request")
    method = first.get("method")
    params = first.get("params") if isinstance(first.get("params"), dict) else {}
    meta = params.get("_meta") if isinstance(params.get("_meta"), dict) else {}
    body_version = meta.get(VERSION_META_KEY)
    if version_h is not None and body_version is not None and version_h != body_version:
        raise mismatch(f"MCP-Protocol-Version header {version_h[:40]!r} does not match the body's "
                       f"{str(body_version)[:40]!r}")
    is_request = method is not None and "id" in first
    if is_modern(headers) and is_request:
        if method_h is None:
            raise mismatch("Mcp-Method header is required on a 2026-07-28 request")
        key = NAME_BEARING.get(method)
        if key is not None and params.get(key) is not None and name_h is None:
            raise mismatch("Mcp-Name header is required on a 2026-07-28 " + method + " request")
    if method_h is not None and method_h != method:
        raise mismatch(f"Mcp-Method header value {method_h[:60]!r} does not match body value {str(method)[:60]!r}")
    if name_h is not None:
        key = NAME_BEARING.get(method) if isinstance(method, str) else None
        if key is None:
            raise mismatch(f"Mcp-Name header on a {str(method)[:60]!r} request, which names nothing")
        decoded = decode_header_value(name_h)
        if decoded is None or decoded != params.get(key):
            raise mismatch(f"Mcp-Name header value {name_h[:60]!r} does not match body value "
                           f"{str(params.get(key))[:60]!r}")


def judge(body: bytes, raw_headers: Iterable[tuple[bytes, bytes]]) -> Judged:
    """Judge a POST body with its headers; Unjudgeable says what to answer instead."""
    headers = routing_headers(raw_headers)
    value = parse_strict(body)
    batch = isinstance(value, list)
    items = value if batch else [value]
    if not items:
        raise Unjudgeable(400, INVALID_REQUEST, "an empty batch is not a JSON-RPC request")
    messages = [_check_message(m) for m in items]
    ids = [json.dumps(m["id"]) for m in messages if "method" in m and "id" in m]
    if len(ids) != len(set(ids)):
        raise Unjudgeable(400, INVALID_REQUEST, "a batch carries the same request id twice")
    _check_headers(messages, batch, headers)
    out = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return Judged(messages, out, batch, is_modern(headers))


def content_encoding_refusal(raw: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Why a Content-Encoding makes the body unjudgeable (415), or None for identity."""
    for name, value in raw:
        if name.lower() == b"content-encoding":
            codings = [c.strip().lower() for c in value.decode("latin-1").split(",")]
            if any(c not in ("", "identity") for c in codings):
                return (f"Content-Encoding {value.decode('latin-1')[:40]!r} is not accepted: the gateway judges "
                        f"request bodies as sent and relays only identity-encoded JSON")
    return None


def query_pairs(query: str) -> dict[str, str]:
    """Query parameters, each at most once: the gateway would read the first, Starlette reads the last."""
    pairs: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in pairs:
            raise Unjudgeable(400, INVALID_REQUEST, f"query parameter {key[:40]!r} appears more than once")
        pairs[key] = value
    return pairs
