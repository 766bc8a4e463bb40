"""The legacy SSE transport: a stream (GET) that announces its message endpoint, and POSTs to it.

The stream's first event, `endpoint`, tells the client where to POST and under which
query key its session id goes (routes.Routes.learn); the gateway binds that session to the
stream's opener (sessions.SseSessionTable) before the client can see the id. Every answer
to those POSTs comes back on the stream: tool calls are settled (audit), tool lists
filtered, denials injected there (gateway.py). A stream whose first event is not
`endpoint` is not a legacy SSE stream; it is relayed as an answer stream (relay_events).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anyio.streams.memory import MemoryObjectSendStream

from mcp_tailnet_sidecar.jsonrpc import Pending, Tracker
from mcp_tailnet_sidecar.relay_events import ENDPOINT_EVENT, AnswerWatcher, CloseStream
from mcp_tailnet_sidecar.routes import EndpointRefused, Routes, SseEndpoint, Transport
from mcp_tailnet_sidecar.sessions import SseSession, SseSessionTable
from mcp_tailnet_sidecar.sse import parse_event

Settle = Callable[[dict[str, Any]], "dict[str, Any] | None"]
SettleFor = Callable[[Tracker, Transport], Settle]  # a settle function for answers tracked on `tracker`


class SseStreamWatcher:
    """Watches a GET stream opened without a session: the first event decides what it is."""

    def __init__(self, routes: Routes, sessions: SseSessionTable, *, stream_raw_path: str, owner: str,
                 inject: MemoryObjectSendStream[tuple[str, bytes]], max_pending: int, settle_for: SettleFor,
                 on_refused: Callable[[str], None]) -> None:
        self.routes, self.sessions = routes, sessions
        self.stream_raw_path = stream_raw_path
        self.owner = owner
        self.max_pending = max_pending
        self.settle_for = settle_for
        self.on_refused = on_refused
        self._inject: MemoryObjectSendStream[tuple[str, bytes]] | None = inject
        self.session: SseSession | None = None
        self.bound: tuple[SseEndpoint, str] | None = None
        self._after: AnswerWatcher | None = None  # once the first event came

    @property
    def transport(self) -> Transport:
        return Transport.SSE if self.session is not None else Transport.STREAMABLE_HTTP

    def inspect(self, raw: bytes) -> bytes:
        if self._after is not None:
            return self._after.inspect(raw)
        event = parse_event(raw)
        if not event.fields:
            return raw  # a comment: the first event is still to come
        tracker = Tracker(limit=self.max_pending)
        if event.name == ENDPOINT_EVENT:
            self._open(event.data or "", tracker)
        self._after = AnswerWatcher(tracker, self.settle_for(tracker, self.transport))
        if self.session is None:
            self.close()  # not a legacy SSE stream: nothing will be injected
        return raw

    def _open(self, data: str, tracker: Tracker) -> None:
        try:
            endpoint, sid = self.routes.learn(self.stream_raw_path, data)
        except EndpointRefused as exc:
            self.on_refused(str(exc))
            raise CloseStream(f"legacy SSE stream refused: {exc}") from None
        session = SseSession(self.owner, tracker, self._inject)
        if not self.sessions.open(endpoint, sid, session):
            self.on_refused("session id announced twice")
            raise CloseStream("legacy SSE stream refused: the server announced a session id that is already live")
        self.session, self.bound = session, (endpoint, sid)

    def owes_answers(self) -> bool:
        return self._after is not None and self._after.owes_answers()

    def close(self) -> list[Pending]:
        """Forget the session (its id is worth nothing from now on); the requests still unanswered."""
        if self._inject is not None:
            self._inject.close()
            self._inject = None
        if self.session is None or self.bound is None:
            return []
        self.sessions.close(*self.bound, self.session)
        return self.session.tracker.drain()
