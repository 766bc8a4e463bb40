"""One upstream as one session (or, when shared, every session) sees it.

A Link connects (spawns the stdio child, or opens the HTTP/SSE client), initializes,
and then watches: when the child exits or the connection breaks it goes down with a
reason, tells its listener (so clients re-list and its tools disappear), and tries
again after a delay that doubles up to `restart_max` (reset once a connection has
lived that long). Nothing here ever waits without a bound: listing waits at most
`list_timeout`, a call at most the server's `call_timeout`, a start `start_timeout`.
A call that was in flight when the upstream died is answered with the reason at once.

An HTTP/SSE upstream has no process to watch, and a dead one's connection may not break
until something is sent on it, so those links are pinged: every `ping_interval`, and
before a cached list is served. A ping that fails or gets no answer within `list_timeout`
takes the link down like a dead child (its tools leave, sessions are told), and the
reconnect loop brings it back when the upstream answers `initialize` again.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import anyio
import httpx2
from anyio.abc import TaskGroup
import mcp_types as types
from mcp.client.session import ClientSession, IncomingMessage
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mcp_hub import config, stdio
from mcp_hub.secret import reveal

log = logging.getLogger("mcp_hub.link")

MAX_PAGES = 100  # a paginating upstream that never ends cannot hang a listing


class Kind(enum.StrEnum):
    """What an upstream lists; each has its own cache and list_changed notification."""

    TOOLS = "tools"
    PROMPTS = "prompts"
    RESOURCES = "resources"
    RESOURCE_TEMPLATES = "resource_templates"


LIST_CHANGED: dict[type, tuple[Kind, ...]] = {
    types.ToolListChangedNotification: (Kind.TOOLS,),
    types.PromptListChangedNotification: (Kind.PROMPTS,),
    types.ResourceListChangedNotification: (Kind.RESOURCES, Kind.RESOURCE_TEMPLATES),
}


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups from task groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class Unavailable(Exception):
    """The upstream cannot answer now; str() says why, for the client and the log."""


class State(enum.StrEnum):
    STARTING = "starting"
    UP = "up"
    DOWN = "down"


class _Probe:
    """One ping in flight, shared by everyone who asks while it runs."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.failure: str | None = "the connection closed during a ping"  # until the ping says otherwise


class Listener(Protocol):
    async def changed(self, link: Link, kinds: tuple[Kind, ...]) -> None: ...
    async def logged(self, link: Link, params: types.LoggingMessageNotificationParams) -> None: ...


class Children:
    """The cap on stdio children alive at once, across every session."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    @contextlib.contextmanager
    def reserve(self, server: str) -> Any:
        if self.count >= self.limit:
            raise Unavailable(f"the hub runs its limit of {self.limit} stdio children (hub.max_children); "
                              f"'{server}' starts when a session ends")
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1


class Link:
    def __init__(self, server: config.Server, limits: config.Limits, children: Children, listener: Listener,
                 owner: str) -> None:
        self.server = server
        self.limits = limits
        self.children = children
        self.listener = listener
        self.owner = owner  # "shared" or the session that owns it, for the log
        self.state = State.STARTING
        self.reason = "starting"
        self.child: stdio.Child | None = None
        self._session: ClientSession | None = None
        self._settled = anyio.Event()
        self._dead = anyio.Event()
        self._dead_reason = ""
        self._cache: dict[Kind, list[Any]] = {}
        self._retry_at = 0.0
        self._probes: TaskGroup | None = None  # the live connection's task group, for pings
        self._probe: _Probe | None = None

    @property
    def pinged(self) -> bool:
        """Whether liveness comes from pings: an HTTP/SSE upstream has no process to watch."""
        return self.server.transport is not config.Transport.STDIO

    @property
    def name(self) -> str:
        return self.server.name

    def _log(self) -> dict[str, Any]:
        return {"server": self.name, "session": self.owner, "pid": self.child.pid if self.child else None}

    # -- the supervisor ------------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve until the upstream dies, wait, again; ends only by cancellation."""
        delay = self.limits.restart_initial
        while True:
            started = anyio.current_time()
            try:
                async with self._connect() as session, anyio.create_task_group() as probes:
                    self._up(session, probes)
                    if self.pinged:
                        probes.start_soon(self._watch, session)
                    await self.listener.changed(self, tuple(Kind))
                    await self._dead.wait()
                    probes.cancel_scope.cancel()
                    reason = self._dead_reason
            except Exception as exc:  # the hub keeps serving the others whatever one upstream does
                reason = self._why(_leaf(exc))
            if anyio.current_time() - started >= self.limits.restart_max:
                delay = self.limits.restart_initial
            was_up = self.state is State.UP
            self._down(reason, delay)
            if was_up:
                await self.listener.changed(self, tuple(Kind))
            await anyio.sleep(delay)
            delay = min(delay * 2, self.limits.restart_max)

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[ClientSession]:
        self._dead = anyio.Event()
        async with contextlib.AsyncExitStack() as stack:
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)
            if self.server.transport is config.Transport.STDIO:
                stack.enter_context(self.children.reserve(self.name))
                read, write, child = await stack.enter_async_context(stdio.spawn(self.server))
                self.child = child
                tg.start_soon(self._watch_child, child)
            elif self.server.transport is config.Transport.STREAMABLE_HTTP:
                # No DELETE on close: sent from a cancelled link it held the hub's shutdown
                # forever (tests/hub: SIGTERM with a shared HTTP upstream); the upstream's own
                # idle timeout ends the session instead.
                client = await stack.enter_async_context(httpx2.AsyncClient(
                    headers=self._headers(), timeout=httpx2.Timeout(self.limits.start_timeout,
                                                                    read=self.server.call_timeout + 5)))
                read, write = await stack.enter_async_context(streamable_http_client(self.server.url,
                                                                                    http_client=client,
                                                                                    terminate_on_close=False))
            else:
                read, write = await stack.enter_async_context(sse_client(
                    self.server.url, headers=self._headers(), timeout=self.limits.start_timeout,
                    sse_read_timeout=max(300.0, self.server.call_timeout + 5)))
            session = await stack.enter_async_context(ClientSession(
                read, write, message_handler=self._on_message, logging_callback=self._on_log))
            with anyio.fail_after(self.limits.start_timeout):
                await session.initialize()
            yield session

    def _why(self, exc: BaseException) -> str:
        if isinstance(exc, Unavailable):
            return str(exc)
        if isinstance(exc, MCPError):
            return f"the upstream refused to start: {exc.error.message}"
        if isinstance(exc, TimeoutError):
            return f"no answer to initialize within {self.limits.start_timeout:g} s"
        if isinstance(exc, OSError):
            return f"cannot start: {exc.strerror or exc}"
        detail = str(exc)[:300]  # a broken connection often says nothing more than its kind
        return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__

    def _headers(self) -> dict[str, str]:
        return {k: reveal(v) for k, v in self.server.headers.items()}

    async def _watch_child(self, child: stdio.Child) -> None:
        await child.exited.wait()
        self.die(f"the process ended ({child.describe_exit()})")

    def die(self, reason: str) -> None:
        """Mark the connection dead; the supervisor takes it down and restarts it."""
        if not self._dead.is_set():
            self._dead_reason = reason
            self._dead.set()

    def _up(self, session: ClientSession, probes: TaskGroup) -> None:
        self._session = session
        self._probes = probes
        self._cache = {}
        self.state = State.UP
        self.reason = ""
        self._settled.set()
        log.info("upstream up", extra=self._log() | {"outcome": "up"})

    def _down(self, reason: str, retry_in: float) -> None:
        self._session = None
        self._probes = None
        self._probe = None
        self._cache = {}
        self.state = State.DOWN
        self.reason = reason
        self._retry_at = anyio.current_time() + retry_in
        self._settled.set()
        log.warning("upstream down: %s; next attempt in %.1f s", reason, retry_in,
                    extra=self._log() | {"outcome": "down"})
        self.child = None

    # -- liveness of HTTP/SSE upstreams ----------------------------------------------

    async def _watch(self, session: ClientSession) -> None:
        """Ping every ping_interval while connected; the first failure takes the link down."""
        while True:  # ends with the connection: run() cancels this task group
            await anyio.sleep(self.limits.ping_interval)
            failure = await self._alive(session)
            if failure is not None:
                self.die(failure)
                return

    async def _alive(self, session: ClientSession) -> str | None:
        """None when the upstream answers a ping within list_timeout, else why not.

        Concurrent askers (the timer, every session's list) share one ping, which runs in the
        connection's task group so that a caller giving up does not cancel it for the others.
        """
        probe = self._probe
        if probe is None:
            if self._probes is None or session is not self._session:
                return "the connection closed"
            probe = self._probe = _Probe()
            self._probes.start_soon(self._ping, session, probe)
        with anyio.move_on_after(self.limits.list_timeout + 1.0):  # _ping is bounded too; this bounds the wait
            await probe.done.wait()
            return probe.failure
        return f"no answer to ping within {self.limits.list_timeout:g} s (hub.list_timeout)"

    async def _ping(self, session: ClientSession, probe: _Probe) -> None:
        try:
            with anyio.fail_after(self.limits.list_timeout):
                await session.send_ping()
            probe.failure = None
        except TimeoutError:
            probe.failure = f"no answer to ping within {self.limits.list_timeout:g} s (hub.list_timeout)"
        except MCPError as exc:  # ping is mandatory in MCP: an error means this session is gone
            probe.failure = f"ping failed: {exc.error.message[:300]}"
        except Exception as exc:  # whatever the transport raises, the upstream did not answer
            probe.failure = f"ping failed ({type(exc).__name__})"
        finally:
            if self._probe is probe:
                self._probe = None
            probe.done.set()

    # -- notifications from the upstream -------------------------------------------

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            log.warning("upstream transport error: %s", f"{type(message).__name__}: {message}"[:300],
                        extra=self._log())
            return
        kinds = LIST_CHANGED.get(type(message))
        if kinds:
            for kind in kinds:
                self._cache.pop(kind, None)
            await self.listener.changed(self, kinds)

    async def _on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        await self.listener.logged(self, params)

    # -- what the hub asks -----------------------------------------------------------

    def unavailable(self) -> Unavailable:
        if self.state is State.STARTING:
            return Unavailable(f"'{self.name}' is still starting")
        wait = max(0.0, self._retry_at - anyio.current_time())
        return Unavailable(f"'{self.name}' is unavailable: {self.reason}; the hub tries again in {wait:.1f} s")

    async def _ready(self, timeout: float) -> ClientSession:
        if self.state is State.STARTING:
            with anyio.move_on_after(timeout):
                await self._settled.wait()
        if self._session is None or self.state is not State.UP:
            raise self.unavailable()
        return self._session

    def offers(self, kind: Kind) -> bool:
        """Whether the upstream declared the capability behind `kind` (tools, prompts, resources)."""
        caps = self._session.server_capabilities if self._session is not None else None
        if caps is None:
            return False
        if kind is Kind.TOOLS:
            return caps.tools is not None
        if kind is Kind.PROMPTS:
            return caps.prompts is not None
        return caps.resources is not None

    async def listing(self, kind: Kind) -> list[Any]:
        """The upstream's whole list of `kind`, cached until it says the list changed."""
        session = await self._ready(self.limits.list_timeout)
        if kind in self._cache:
            if self.pinged:  # a cache cannot tell whether its upstream still lives
                failure = await self._alive(session)
                if failure is not None:
                    self.die(failure)
                    raise Unavailable(f"'{self.name}' is unavailable: {failure}; the hub reconnects")
            return self._cache[kind]
        if not self.offers(kind):
            return []
        fetch: Callable[..., Awaitable[Any]] = {
            Kind.TOOLS: session.list_tools, Kind.PROMPTS: session.list_prompts,
            Kind.RESOURCES: session.list_resources, Kind.RESOURCE_TEMPLATES: session.list_resource_templates,
        }[kind]
        field_name = {Kind.TOOLS: "tools", Kind.PROMPTS: "prompts", Kind.RESOURCES: "resources",
                      Kind.RESOURCE_TEMPLATES: "resource_templates"}[kind]
        items: list[Any] = []
        cursor: str | None = None
        try:
            with anyio.fail_after(self.limits.list_timeout):
                for _ in range(MAX_PAGES):
                    params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
                    page = await fetch(params=params)
                    items.extend(getattr(page, field_name))
                    cursor = page.next_cursor
                    if not cursor:
                        break
        except TimeoutError:
            raise Unavailable(f"'{self.name}' did not list its {kind} within {self.limits.list_timeout:g} s "
                              f"(hub.list_timeout)") from None
        except MCPError as exc:
            self._transport_failure(exc)
            raise Unavailable(f"'{self.name}' failed to list its {kind}: {exc.error.message}") from None
        if session is self._session:
            self._cache[kind] = items
        return items

    def _transport_failure(self, exc: MCPError) -> None:
        if exc.error.code == types.CONNECTION_CLOSED:
            self.die(f"the connection closed ({exc.error.message})")

    async def request(self, what: str, call: Callable[[ClientSession], Awaitable[Any]]) -> Any:
        """Run one request on the upstream within its call_timeout; failures become Unavailable.

        A call may wait for a starting upstream up to start_timeout (it targets that one
        server); a listing waits only list_timeout (it must not hold up the others).
        """
        session = await self._ready(self.limits.start_timeout)
        child = self.child
        try:
            with anyio.fail_after(self.server.call_timeout):
                return await call(session)
        except TimeoutError:
            raise Unavailable(f"'{self.name}' gave no answer to {what} within {self.server.call_timeout:g} s "
                              f"(call_timeout); the other servers are unaffected") from None
        except MCPError as exc:
            if exc.error.code != types.CONNECTION_CLOSED:
                raise
            if child is not None:
                with anyio.move_on_after(1.0):
                    await child.exited.wait()
                ended = f"its process ended ({child.describe_exit()}) during {what}"
            else:
                ended = f"the connection closed during {what}"
            self.die(ended)
            raise Unavailable(f"'{self.name}' failed: {ended}; the hub restarts it, retry shortly") from None
        except (httpx2.TransportError, OSError) as exc:
            self.die(f"{type(exc).__name__}")
            raise Unavailable(f"'{self.name}' is not answering ({type(exc).__name__}); the hub reconnects") from None
