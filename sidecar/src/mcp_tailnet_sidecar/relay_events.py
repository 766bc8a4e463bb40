"""Relaying an event stream event by event: a held head, keepalives, injected events, drain.

Why event by event: the gateway may add a `: keepalive` comment or an event of its own (a
policy denial on a legacy SSE stream) only between events, and must see a whole event to
settle or rewrite the JSON-RPC message it carries. What to do with each event is the
transport's business (`StreamWatcher`): it may rewrite it, or end the stream (CloseStream).
An answer to a POST goes out with its head and first event in one write (HEAD_HOLD).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

import anyio
import anyio.abc
import httpx
from anyio.streams.memory import MemoryObjectSendStream

from mcp_tailnet_sidecar.jsonrpc import Tracker
from mcp_tailnet_sidecar.relay_json import settle_all
from mcp_tailnet_sidecar.sse import KEEPALIVE, EventSplitter, EventTooLarge, parse_event

logger = logging.getLogger("mcp_tailnet_sidecar.gateway")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
INJECT = "inject"
DRAIN = "drain"
_DATA, _EOF = "data", "eof"
ENDPOINT_EVENT = "endpoint"  # the legacy SSE transport's announcement of its message endpoint
QUEUE = 64  # upstream chunks buffered ahead of the client
# An answer to a request with a body starts (its head goes to the client) in one write with its
# first event, or alone after this long without one. Behind `tailscale serve`, a head that reaches
# serve before serve has finished with the request's body makes serve close the backend connection
# the rest of the answer was coming on (golang/go#40747, docs/design.md fact 20); written with its
# first event, the answer is in serve's read buffer with its head. The client can do nothing with a
# head alone, so holding it costs no time it sees.
HEAD_HOLD = 1.0


class CloseStream(Exception):
    """End the relayed stream now; the message says why (logged)."""


class StreamWatcher(Protocol):
    def inspect(self, raw: bytes) -> bytes:
        """The event to pass on (raw, or rewritten); raises CloseStream to end the stream."""

    def owes_answers(self) -> bool:
        """True while a tool call or list waits for its answer on this stream (drain waits)."""


class EventRelay:
    """One relayed stream. `injector()` gives a channel to add whole events to it."""

    def __init__(self, *, keepalive_interval: float, max_event_bytes: int, draining: Callable[[], bool]) -> None:
        self.keepalive = keepalive_interval or None
        self.splitter = EventSplitter(max_event_bytes)
        self.draining = draining
        self._tx, self._rx = anyio.create_memory_object_stream[tuple[str, bytes]](QUEUE)

    def injector(self) -> MemoryObjectSendStream[tuple[str, bytes]]:
        return self._tx.clone()

    def wake(self) -> None:
        """Make an idle stream look at `draining` now."""
        try:
            self._tx.send_nowait((DRAIN, b""))
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    async def run(self, response: httpx.Response, head: dict[str, Any], send: Send, receive: Receive,
                  watcher: StreamWatcher, *, hold_head: bool,
                  together: Callable[[], AbstractContextManager[None]] = nullcontext) -> None:
        """Relay `response`, its head first, until it ends, the client goes or the watcher says.

        With `hold_head`, the head waits for the first event (HEAD_HOLD at most) and goes out
        with it inside `together()` (serving.WRITE_TOGETHER: one write)."""
        tx, rx, splitter = self._tx, self._rx, self.splitter
        head_due = anyio.current_time() + HEAD_HOLD if hold_head else None  # None once the head went
        if head_due is None:
            await send(head)

        async def send_body(body: bytes, more: bool) -> None:
            nonlocal head_due
            message = {"type": "http.response.body", "body": body, "more_body": more}
            if head_due is None:
                await send(message)
                return
            head_due = None
            with together():
                await send(head)
                await send(message)

        async def pump(task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            async with tx:
                task_status.started()
                try:
                    async for chunk in response.aiter_raw():
                        await tx.send((_DATA, chunk))
                except httpx.HTTPError as exc:
                    logger.info("upstream event stream ended: %r", exc)
                # an explicit end marker: injector clones keep the channel open
                await tx.send((_EOF, b""))

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        try:
            async with anyio.create_task_group() as tg:
                await tg.start(pump)
                tg.start_soon(watch_disconnect)
                held: list[bytes] = []  # injected events wait for an event boundary
                closing = False
                try:
                    while True:
                        if self.draining() and not watcher.owes_answers() and not splitter.partial:
                            break
                        timeout = self.keepalive if not self.draining() else min(self.keepalive or 0.5, 0.5)
                        if head_due is not None:
                            timeout = min(timeout or HEAD_HOLD, max(0.0, head_due - anyio.current_time()))
                        item = None
                        with anyio.move_on_after(timeout):
                            item = await rx.receive()
                        out = b""
                        if item is None:
                            if head_due is not None and anyio.current_time() >= head_due:
                                head_due = None  # nothing to say yet: the head alone
                                await send(head)
                            elif self.keepalive and not splitter.partial and not self.draining():
                                out = KEEPALIVE
                        elif item[0] == _DATA:
                            try:
                                for event in splitter.feed(item[1]):
                                    out += watcher.inspect(event)
                            except EventTooLarge as exc:
                                logger.warning("closing event stream: %s", exc)
                                break
                            except CloseStream as exc:  # what came before goes out, nothing after
                                logger.warning("closing event stream: %s", exc)
                                splitter.flush()
                                closing = True
                        elif item[0] == INJECT:
                            held.append(item[1])
                        elif item[0] == _EOF:
                            break
                        if held and not splitter.partial:
                            out += b"".join(held)
                            held.clear()
                        if out:
                            await send_body(out, True)
                        if closing:
                            break
                finally:
                    tg.cancel_scope.cancel()
            rx.close()
            await send_body(splitter.flush(), False)
        except OSError:  # client gone while we were writing
            pass
        finally:
            rx.close()


class AnswerWatcher:
    """A stream that carries answers to requests in `tracker` (a Streamable HTTP POST's or
    resumed stream): settle each, filter tools/list. An `endpoint` event here closes the
    stream: the client would post to a path the gateway did not route as legacy SSE."""

    def __init__(self, tracker: Tracker, settle: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
        self.tracker = tracker
        self.settle = settle

    def inspect(self, raw: bytes) -> bytes:
        if ENDPOINT_EVENT.encode() in raw and parse_event(raw).name == ENDPOINT_EVENT:
            raise CloseStream("an SSE `endpoint` event that is not the first event of a legacy SSE stream")
        if not self.tracker:
            return raw
        event = parse_event(raw)
        if not event.data:
            return raw
        new = settle_all(event.data, self.settle)
        return raw if new is None else event.with_data(new)  # type: ignore[arg-type]

    def owes_answers(self) -> bool:
        return self.tracker.owes_answers()
