"""One JSON line per tool call: who, which tool, how long, how it ended.

Never the arguments: they may hold secrets or personal data, and the audit stream is
read by more people than the tool's own logs.
"""

from __future__ import annotations

import logging
import time

from mcp_tailnet_sidecar.jsonrpc import Pending

logger = logging.getLogger("mcp_tailnet_sidecar.audit")


def tool_call(entry: Pending, outcome: str, *, transport: str, error_code: int | None = None) -> None:
    duration_ms = round((time.monotonic() - entry.started) * 1000, 2)
    fields = {
        "event": "tool_call",
        "tool": entry.tool,
        "outcome": outcome,
        "duration_ms": duration_ms,
        "transport": transport,
        **entry.identity.audit_fields(),
    }
    if error_code is not None:
        fields["error_code"] = error_code
    logger.info("tool call %s by %s: %s", entry.tool, entry.identity.who, outcome, extra=fields)
