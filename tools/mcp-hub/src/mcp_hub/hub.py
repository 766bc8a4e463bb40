"""Sessions and their upstreams: who owns which Link, and who hears what it says.

Each client session (a Streamable HTTP session or an SSE connection, on /mcp or on one
/servers/<name>/mcp) gets a HubSession the first time it asks for anything. It starts
its own Link for every `sharing = "session"` server of its endpoint (its own stdio
child, spawned for it and killed when the session ends) and borrows the hub-wide Link
of every shared server. A Link's list_changed (or its going down / coming back) is
sent to exactly the sessions that can see it.

Links run in the hub's task group, not in the request that created the session (a
request ends long before its session), each in its own cancel scope; the session's
teardown cancels them. The hub's own teardown cancels everything, and every child is
stopped by its Link's exit (stdio.spawn), so no child outlives its session or the hub.
"""

from __future__ import annotations

import logging
import uuid
import weakref
from typing import Any

import anyio
import mcp_types as types
from anyio.abc import TaskGroup
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from mcp_hub import config
from mcp_hub.link import Children, Kind, Link

log = logging.getLogger("mcp_hub.hub")

NOTIFICATION: dict[Kind, str] = {
    Kind.TOOLS: "notifications/tools/list_changed",
    Kind.PROMPTS: "notifications/prompts/list_changed",
    Kind.RESOURCES: "notifications/resources/list_changed",
    Kind.RESOURCE_TEMPLATES: "notifications/resources/list_changed",
}
STOP_WAIT = 4.0  # a session's teardown waits this long for its links (the SDK allows 5 s)
_STATE_KEY = "mcp_hub.session"


def handshake_only(requested: str) -> MCPError:
    """Refuse the 2026-07-28 era: it has no sessions, and per-session children need one
    (docs/design.md fact 9). Naming only handshake versions makes SDK clients fall back to
    `initialize` instead of failing (mcp.client._probe)."""
    return MCPError(code=types.UNSUPPORTED_PROTOCOL_VERSION,
                    message="this hub serves the initialize handshake (sessions own their stdio children)",
                    data={"supported": list(HANDSHAKE_PROTOCOL_VERSIONS), "requested": requested})


def connection_of(ctx: ServerRequestContext[Any, Any]) -> Connection:
    """The SDK's per-connection object (state + exit_stack); the one private reach of the hub."""
    connection = getattr(ctx.session, "_connection", None)
    if not isinstance(connection, Connection):
        raise RuntimeError("mcp SDK changed: ServerSession no longer carries its Connection")
    return connection


class _Running:
    """A Link started in the hub's task group, stoppable on its own."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()

    async def run(self) -> None:
        try:
            with self.scope:
                await self.link.run()
        finally:
            self.done.set()

    async def stop(self) -> None:
        self.scope.cancel()
        with anyio.move_on_after(STOP_WAIT, shield=True):
            await self.done.wait()


class HubSession:
    """One client session's view of its endpoint's upstreams."""

    def __init__(self, hub: Hub, servers: frozenset[str], connection: Connection) -> None:
        self.hub = hub
        self.id = connection.session_id or uuid.uuid4().hex[:12]
        self.servers = servers
        self.connection = connection
        self.own: list[_Running] = []
        self.links: dict[str, Link] = {}
        for name in sorted(servers):
            spec = hub.config.servers[name]
            if spec.sharing is config.Sharing.SHARED:
                self.links[name] = hub.shared[name]
            else:
                running = _Running(Link(spec, hub.config.limits, hub.children, self, owner=self.id))
                self.own.append(running)
                self.links[name] = running.link
                hub.task_group.start_soon(running.run)

    async def changed(self, link: Link, kinds: tuple[Kind, ...]) -> None:
        for method in dict.fromkeys(NOTIFICATION[k] for k in kinds):
            await self.connection.notify(method, None)

    async def logged(self, link: Link, params: types.LoggingMessageNotificationParams) -> None:
        data = params.model_dump(by_alias=True, mode="json", exclude_none=True)
        data["logger"] = f"{link.name}" + (f"/{params.logger}" if params.logger else "")
        await self.connection.notify("notifications/message", data)

    async def close(self) -> None:
        self.hub.sessions.discard(self)
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for running in self.own:
                    tg.start_soon(running.stop)
        log.info("session closed", extra={"session": self.id})


class SharedListener:
    """Fans a shared Link's news out to every session that can see it."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def changed(self, link: Link, kinds: tuple[Kind, ...]) -> None:
        for session in list(self.hub.sessions):
            if link.name in session.servers:
                await session.changed(link, kinds)

    async def logged(self, link: Link, params: types.LoggingMessageNotificationParams) -> None:
        for session in list(self.hub.sessions):
            if link.name in session.servers:
                await session.logged(link, params)


class Hub:
    """The running hub: its config, the children cap, shared links and live sessions."""

    def __init__(self, hub_config: config.HubConfig) -> None:
        self.config = hub_config
        self.children = Children(hub_config.limits.max_children)
        self.sessions: weakref.WeakSet[HubSession] = weakref.WeakSet()
        self.shared: dict[str, Link] = {}
        self._task_group: TaskGroup | None = None
        listener = SharedListener(self)
        for name, spec in hub_config.servers.items():
            if spec.sharing is config.Sharing.SHARED:
                self.shared[name] = Link(spec, hub_config.limits, self.children, listener, owner="shared")

    @property
    def task_group(self) -> TaskGroup:
        if self._task_group is None:
            raise RuntimeError("the hub is not running")
        return self._task_group

    async def run(self, task_group: TaskGroup) -> None:
        """Start the shared links in `task_group`, which then also holds every session's links."""
        self._task_group = task_group
        for link in self.shared.values():
            task_group.start_soon(_Running(link).run)

    def session_for(self, ctx: ServerRequestContext[Any, Any], servers: frozenset[str]) -> HubSession:
        """This request's HubSession, made (and tied to its connection's teardown) on first use."""
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            raise handshake_only(ctx.protocol_version)
        connection = connection_of(ctx)
        session = connection.state.get(_STATE_KEY)
        if session is None:
            session = HubSession(self, servers, connection)
            connection.state[_STATE_KEY] = session
            connection.exit_stack.push_async_callback(session.close)
            self.sessions.add(session)
            log.info("session opened", extra={"session": session.id, "outcome": ",".join(sorted(servers))})
        return session
