"""Which caller owns which MCP session, so that a session id is worth nothing to anyone else.

Why (MCP security best practices, "Session Hijacking"): a session id is all the upstream
asks for. A stock SDK server binds a session to a credential only when it authenticates
callers itself; behind the gateway every caller is anonymous to it. So the gateway binds
each Streamable HTTP `Mcp-Session-Id` (SessionTable) and each legacy SSE session id, the
query value of the endpoint its stream announced (SseSessionTable), to the identity that opened it (`Identity.owner`: a user's login, a tagged node's name)
and answers 404, as if the session did not exist, to anyone else and to ids it never saw
opened. A session also tracks the request ids in flight over all its POSTs: the SDK routes
an answer by id, so an id used twice at once could carry one request's answer to the other.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from anyio.streams.memory import MemoryObjectSendStream

from mcp_tailnet_sidecar.jsonrpc import MAX_PENDING, Tracker
from mcp_tailnet_sidecar.routes import SseEndpoint

MAX_SESSIONS = 16_384  # the least recently used is forgotten beyond this (its owner then gets 404)


@dataclass
class McpSession:
    owner: str
    inflight: Tracker = field(default_factory=Tracker)
    path: str = ""  # the endpoint that issued it: only its answers can end the session


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

    def bind(self, sid: str, owner: str, path: str = "") -> None:
        """Record a session id the upstream just issued to `owner` at `path` (never rebinds an existing id)."""
        if sid in self._sessions:
            return
        self._sessions[sid] = McpSession(owner, Tracker(limit=self.max_pending), path)
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)

    def forget(self, sid: str, path: str | None = None) -> bool:
        """Forget `sid` (if `path` is given: only if that endpoint issued it); whether it was forgotten.
        A 404 from another path (an SSE message endpoint, say) says nothing about this session."""
        session = self._sessions.get(sid)
        if session is None or (path is not None and session.path != path):
            return False
        del self._sessions[sid]
        return True

    def __len__(self) -> int:
        return len(self._sessions)


@dataclass
class SseSession:
    """A legacy SSE session: who opened it, its pending requests (answered on its stream),
    and a way to add events to that stream (denials)."""

    owner: str
    tracker: Tracker
    inject: MemoryObjectSendStream[tuple[str, bytes]] | None = None


@dataclass
class SseSessionTable:
    """Live legacy SSE sessions by (endpoint path, session id); a session lives as long as its stream."""

    _sessions: dict[tuple[str, str], SseSession] = field(default_factory=dict)

    def open(self, endpoint: SseEndpoint, sid: str, session: SseSession) -> bool:
        """Record a session its stream just announced; False if that id is live already (never rebound)."""
        key = (endpoint.path, sid)
        if key in self._sessions:
            return False
        self._sessions[key] = session
        return True

    def lookup(self, endpoint: SseEndpoint, sid: str, owner: str) -> SseSession | None:
        """The session if `owner` opened it; None for an unknown or someone else's id."""
        session = self._sessions.get((endpoint.path, sid))
        return session if session is not None and session.owner == owner else None

    def close(self, endpoint: SseEndpoint, sid: str, session: SseSession) -> None:
        if self._sessions.get((endpoint.path, sid)) is session:
            del self._sessions[(endpoint.path, sid)]

    def __len__(self) -> int:
        return len(self._sessions)
