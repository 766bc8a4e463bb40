"""The MCP side of the hub: one lowlevel Server per endpoint (the aggregate, and one per
upstream), each answering from the upstreams its endpoint shows.

Listing asks every upstream at once, each bounded by hub.list_timeout: one that is
down, starting or slow is left out of that answer (with its reason logged) and the
rest are answered anyway, never an empty list because of one. A call goes to exactly
one upstream, bounded by its call_timeout; an upstream that cannot answer becomes a
tool error that says why, not a hang.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_hub import __version__, names
from mcp_hub.hub import Hub, HubSession, handshake_only
from mcp_hub.link import Kind, Link, Unavailable

log = logging.getLogger("mcp_hub.server")

Ctx = Any  # ServerRequestContext[Any, Any]


class HubServer(Server[Any]):
    """A lowlevel Server that says it sends list_changed: it passes its upstreams' on."""

    def create_initialization_options(self, notification_options: NotificationOptions | None = None,
                                      experimental_capabilities: dict[str, dict[str, Any]] | None = None,
                                      extensions: dict[str, dict[str, Any]] | None = None) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(prompts_changed=True, resources_changed=True,
                                                        tools_changed=True),
            experimental_capabilities, extensions)


async def _gather(session: HubSession, kind: Kind) -> list[tuple[Link, list[Any]]]:
    """Every visible upstream's list of `kind`, in server-name order, leaving out who cannot answer."""
    found: dict[str, list[Any]] = {}

    async def one(link: Link) -> None:
        try:
            found[link.name] = await link.listing(kind)
        except Unavailable as exc:
            log.warning("left out of %s/list: %s", kind, exc, extra={"server": link.name, "session": session.id,
                                                                         "outcome": "left_out"})

    async with anyio.create_task_group() as tg:
        for link in session.links.values():
            tg.start_soon(one, link)
    return [(session.links[name], found[name]) for name in sorted(found)]


def _tool_error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def _unknown(exc: names.UnknownName) -> MCPError:
    return MCPError(code=types.INVALID_PARAMS, message=str(exc))


def _routed(find: Callable[[str, frozenset[str]], names.Routed], name: str,
            servers: frozenset[str]) -> names.Routed:
    """`find(name, servers)`, an unknown name answered as the JSON-RPC error clients expect."""
    try:
        return find(name, servers)
    except names.UnknownName as exc:
        raise _unknown(exc) from None


def build(hub: Hub, servers: frozenset[str], label: str) -> HubServer:
    """The Server for an endpoint that shows `servers` (all of them on /mcp, one on /servers/<name>/mcp)."""

    def session_of(ctx: Ctx) -> HubSession:
        return hub.session_for(ctx, servers)

    async def discover(ctx: Ctx, params: types.RequestParams | None) -> types.DiscoverResult:
        raise handshake_only(MODERN_PROTOCOL_VERSIONS[-1])

    async def list_tools(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        session = session_of(ctx)
        tools = [tool.model_copy(update={"name": names.prefixed(link.name, tool.name)})
                 for link, items in await _gather(session, Kind.TOOLS) for tool in items]
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        session = session_of(ctx)
        routed = _routed(names.route, params.name, servers)
        link = session.links[routed.server]

        async def progress(value: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(value, total, message)

        started = time.monotonic()
        outcome = "ok"
        try:
            result = await link.request(f"tools/call {routed.name}", lambda s: s.call_tool(
                routed.name, params.arguments, progress_callback=progress))
            if result.is_error:
                outcome = "tool_error"
            return result
        except Unavailable as exc:
            outcome = "unavailable"
            return _tool_error(str(exc))
        except MCPError as exc:
            outcome = "error"
            return _tool_error(f"'{routed.server}' refused {routed.name}: {exc.error.message}")
        except Exception as exc:  # the hub keeps serving whatever one upstream sends back
            outcome = "crash"
            log.error("call failed", exc_info=exc, extra={"server": routed.server, "tool": routed.name})
            return _tool_error(f"'{routed.server}' {routed.name} failed in the hub ({type(exc).__name__})")
        finally:
            log.info("tool call", extra={"server": routed.server, "tool": routed.name, "session": session.id,
                                         "pid": link.child.pid if link.child else None, "outcome": outcome,
                                         "duration_ms": round((time.monotonic() - started) * 1000, 1)})

    async def list_prompts(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        session = session_of(ctx)
        prompts = [p.model_copy(update={"name": names.prefixed(link.name, p.name)})
                   for link, items in await _gather(session, Kind.PROMPTS) for p in items]
        return types.ListPromptsResult(prompts=prompts)

    async def get_prompt(ctx: Ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        session = session_of(ctx)
        routed = _routed(names.route, params.name, servers)
        try:
            return await session.links[routed.server].request(
                f"prompts/get {routed.name}", lambda s: s.get_prompt(routed.name, params.arguments))
        except Unavailable as exc:
            raise MCPError(code=types.INTERNAL_ERROR, message=str(exc)) from None

    async def list_resources(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        session = session_of(ctx)
        resources = [r.model_copy(update={"uri": names.prefixed_uri(link.name, str(r.uri))})
                     for link, items in await _gather(session, Kind.RESOURCES) for r in items]
        return types.ListResourcesResult(resources=resources)

    async def list_templates(ctx: Ctx, params: types.PaginatedRequestParams | None
                             ) -> types.ListResourceTemplatesResult:
        session = session_of(ctx)
        templates = [t.model_copy(update={"uri_template": names.prefixed_uri(link.name, t.uri_template)})
                     for link, items in await _gather(session, Kind.RESOURCE_TEMPLATES) for t in items]
        return types.ListResourceTemplatesResult(resource_templates=templates)

    async def read_resource(ctx: Ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        session = session_of(ctx)
        routed = _routed(names.route_uri, str(params.uri), servers)
        try:
            result = await session.links[routed.server].request(
                f"resources/read {routed.name}", lambda s: s.read_resource(routed.name))
        except Unavailable as exc:
            raise MCPError(code=types.INTERNAL_ERROR, message=str(exc)) from None
        contents = [c.model_copy(update={"uri": names.prefixed_uri(routed.server, str(c.uri))})
                    for c in result.contents]
        return result.model_copy(update={"contents": contents})

    server = HubServer(
        f"mcp-hub/{label}", version=__version__, title=f"MCP hub ({label})",
        instructions="Tools, prompts and resources of several MCP servers. Names are <server>_<name>; "
                     "resource URIs are <server>+<uri>.",
        on_list_tools=list_tools, on_call_tool=call_tool,
        on_list_prompts=list_prompts, on_get_prompt=get_prompt,
        on_list_resources=list_resources, on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
    )
    server.add_request_handler("server/discover", types.RequestParams, discover)
    # OpenTelemetry middleware is on by default; the hub logs its own calls.
    server.middleware = []
    return server
