"""Reading the JSON-RPC messages that pass through, without changing what we don't own.

The gateway needs only three things from the traffic: the name in each `tools/call`
(policy, audit), which requests are `tools/list` (their answers get filtered), and the
answer that settles each of those requests (audit outcome and duration). A request is
remembered by its JSON-RPC id in a Tracker until its answer passes by, in the POST's own
response or, for the SSE transport and resumed streams, on a session's stream.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mcp_tailnet_sidecar.identity import Identity
from mcp_tailnet_sidecar.settings import Settings

POLICY_DENIED = -32001  # implementation-defined server error range of JSON-RPC 2.0
MAX_PENDING = Settings.max_pending  # per tracker (SIDECAR_MAX_PENDING); beyond it new requests get 429
ANSWER_KINDS = ("call", "list")  # kinds whose answer the gateway must see (audit, filtering)


class PendingFull(Exception):
    """The tracker holds as many requests as it may: refuse the new one (429), never drop it."""


class DuplicatePending(Exception):
    """A request id that is already waiting for its answer: the two answers could not be told apart."""


@dataclass
class Pending:
    kind: str  # "call", "list", or "other" (any other request: tracked so its id cannot be reused)
    identity: Identity
    tool: str | None = None
    started: float = field(default_factory=time.monotonic)
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])  # ties the audit lines of one call


def decode_messages(body: bytes) -> list[dict[str, Any]] | None:
    """The JSON-RPC message(s) in a body, or None if it is not JSON-RPC."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting: not ours to judge, relay it
        return None
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(m, dict) for m in items):
        return None
    return items


def request_key(message: dict[str, Any]) -> str | None:
    """A hashable key for a request id (ids may be strings or numbers)."""
    if "id" not in message or message.get("id") is None:
        return None
    return json.dumps(message["id"])


def tool_name(message: dict[str, Any]) -> str | None:
    params = message.get("params")
    name = params.get("name") if isinstance(params, dict) else None
    return name if isinstance(name, str) else None


def denial(message: dict[str, Any], who: str, tool: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": message.get("id"),
        "error": {
            "code": POLICY_DENIED,
            "message": f"tool {tool!r} is not allowed for {who} by the sidecar's tool policy",
            "data": {"tool": tool},
        },
    }


def outcome_of(response: dict[str, Any]) -> tuple[str, int | None]:
    """Audit outcome of a tools/call answer: ok, tool_error (isError) or error (JSON-RPC)."""
    if "error" in response:
        err = response.get("error")
        code = err.get("code") if isinstance(err, dict) else None
        return "error", code if isinstance(code, int) else None
    result = response.get("result")
    if isinstance(result, dict) and result.get("isError") is True:
        return "tool_error", None
    return "ok", None


@dataclass
class Tracker:
    """Requests waiting for their answer, keyed by JSON-RPC id.

    It never drops a request silently: a full tracker or an id already waiting raises, and
    the gateway refuses that request. A dropped tools/list would go unfiltered; an id used
    twice would let one answer settle the other request (its outcome, or its filtering).
    """

    pending: dict[str, Pending] = field(default_factory=dict)
    limit: int = MAX_PENDING

    def check(self, keys: list[str]) -> None:
        """Raise unless all of `keys` could be added now."""
        if any(k in self.pending for k in keys):
            raise DuplicatePending(next(k for k in keys if k in self.pending))
        if len(self.pending) + len(keys) > self.limit:
            raise PendingFull(self.limit)

    def add(self, key: str, entry: Pending) -> None:
        self.check([key])
        self.pending[key] = entry

    def owes_answers(self) -> bool:
        """True while a tool call or list waits (other requests do not hold a draining stream open)."""
        return any(e.kind in ANSWER_KINDS for e in self.pending.values())

    def take(self, key: str) -> Pending | None:
        return self.pending.pop(key, None)

    def drain(self) -> list[Pending]:
        left = list(self.pending.values())
        self.pending.clear()
        return left

    def __bool__(self) -> bool:
        return bool(self.pending)


def settle(
    message: dict[str, Any],
    tracker: Tracker,
    allows: Callable[[Identity, str], bool] | None,
    on_call_done: Callable[[Pending, str, int | None], None],
) -> dict[str, Any] | None:
    """Match one outgoing message to its pending request.

    Returns a replacement message when the answer had to change (a filtered tools/list),
    else None. Finished tool calls are reported through `on_call_done`.
    """
    if "method" in message:  # a server-to-client request or notification: not an answer
        return None
    key = request_key(message)
    entry = tracker.take(key) if key is not None else None
    if entry is None or entry.kind not in ANSWER_KINDS:
        return None
    if entry.kind == "call":
        outcome, code = outcome_of(message)
        on_call_done(entry, outcome, code)
        return None
    result = message.get("result")
    if allows is None or not isinstance(result, dict) or not isinstance(result.get("tools"), list):
        return None
    tools = result["tools"]
    kept = [t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)
            and allows(entry.identity, t["name"])]
    if len(kept) == len(tools):
        return None
    filtered = {**result, "tools": kept}
    if "cacheScope" in filtered:  # a filtered list is this caller's alone, never a shared cache entry
        filtered["cacheScope"] = "private"
    return {**message, "result": filtered}
