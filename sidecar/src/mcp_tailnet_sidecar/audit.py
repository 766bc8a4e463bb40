"""JSON lines per tool call: who, which tool, how long, how it ended.

An allowed call gets a line when it is admitted (`tool_call_admitted`), before it reaches
the server, and one when it ends (`tool_call`, with its outcome); both carry the same
`call_id`. So a call is on record even if its answer never passes the gateway (a stream
cut, a crash, a client that never reads). A denied call gets only its `tool_call` line.

Never the arguments: they may hold secrets or personal data, and the audit stream is
read by more people than the tool's own logs.
"""

from __future__ import annotations

import logging
import time

from mcp_tailnet_sidecar.jsonrpc import Pending

logger = logging.getLogger("mcp_tailnet_sidecar.audit")


MAX_TOOL_NAME = 200  # the name comes from the client: a 4 MiB name must not become a 4 MiB log line


def _bounded(name: str | None) -> str | None:
    if name is None or len(name) <= MAX_TOOL_NAME:
        return name
    return f"{name[:MAX_TOOL_NAME]}...[{len(name)} chars]"


def tool_call(entry: Pending, outcome: str, *, transport: str, error_code: int | None = None) -> None:
    duration_ms = round((time.monotonic() - entry.started) * 1000, 2)
    tool = _bounded(entry.tool)
    fields = {
        "event": "tool_call",
        "tool": tool,
        "outcome": outcome,
        "duration_ms": duration_ms,
        "transport": transport,
        "call_id": entry.call_id,
        **entry.identity.audit_fields(),
    }
    if error_code is not None:
        fields["error_code"] = error_code
    logger.info("tool call %s by %s: %s", tool, entry.identity.who, outcome, extra=fields)


def tool_call_admitted(entry: Pending, *, transport: str) -> None:
    tool = _bounded(entry.tool)
    fields = {"event": "tool_call_admitted", "tool": tool, "transport": transport, "call_id": entry.call_id,
              **entry.identity.audit_fields()}
    logger.info("tool call %s by %s: admitted", tool, entry.identity.who, extra=fields)
