"""Which caller owns which MCP session, so that a session id is worth nothing to anyone else.

Why (MCP security best practices, "Session Hijacking"): a session id is all the upstream
asks for. A stock SDK server binds a session to a credential only when it authenticates
callers itself; behind the gateway every caller is anonymous to it. So the gateway binds
each Streamable HTTP `Mcp-Session-Id` (and, in gateway.py, each legacy SSE `session_id`)
to the identity that opened it (`Identity.owner`: a user's login, a tagged node's name)
and answers 404, as if the session did not exist, to anyone else and to ids it never saw
opened. A session also tracks the request ids in flight over all its POSTs: the SDK routes
an answer by id, so an id used twice at once could carry one request's answer to the other.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from mcp_tailnet_sidecar.jsonrpc import MAX_PENDING, Tracker

MAX_SESSIONS = 16_384  # the least recently used is forgotten beyond this (its owner then gets 404)


@dataclass
class McpSession:
    owner: str
    inflight: Tracker = field(default_factory=Tracker)


@dataclass
class SessionTable:
    """Streamable HTTP sessions seen opened through this gateway, by id, least recently used first."""

    max_pending: int = MAX_PENDING
    max_sessions: int = MAX_SESSIONS
    _sessions: OrderedDict[str, McpSession] = field(default_factory=OrderedDict)

    def lookup(self, sid: str, owner: str) -> McpSession | None:
        """The session if `owner` opened it; None for an unknown or someone else's id."""
        session = self._sessions.get(sid)
        if session is None or session.owner != owner:
            return None
        self._sessions.move_to_end(sid)
        return session

    def bind(self, sid: str, owner: str) -> None:
        """Record a session id the upstream just issued to `owner` (never rebinds an existing id)."""
        if sid in self._sessions:
            return
        self._sessions[sid] = McpSession(owner, Tracker(limit=self.max_pending))
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)

    def forget(self, sid: str) -> None:
        self._sessions.pop(sid, None)

    def __len__(self) -> int:
        return len(self._sessions)
