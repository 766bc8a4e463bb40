"""The hub's one naming rule, used both ways: `<server>_<tool>` for tools and prompts,
`<server>+<uri>` for resources and resource templates.

Server names contain no `_` (config.SERVER_NAME), so the first `_` always ends the
prefix: `time_get_current_time` is tool `get_current_time` of server `time`, whatever
the upstream's own names look like. `<server>+<scheme>:...` is itself a valid URI (a
scheme may contain `+`). The same names are served on /mcp and /servers/<name>/mcp, so
a gateway policy or grant written for one holds for the other.
"""

from __future__ import annotations

from dataclasses import dataclass

TOOL_SEPARATOR = "_"
URI_SEPARATOR = "+"


class UnknownName(LookupError):
    """A name that does not carry the prefix of a server this endpoint serves."""


@dataclass(frozen=True)
class Routed:
    server: str
    name: str  # the upstream's own name (or URI)


def prefixed(server: str, name: str) -> str:
    return f"{server}{TOOL_SEPARATOR}{name}"


def prefixed_uri(server: str, uri: str) -> str:
    return f"{server}{URI_SEPARATOR}{uri}"


def _split(name: str, separator: str, servers: frozenset[str], what: str) -> Routed:
    server, sep, rest = name.partition(separator)
    if not sep or not rest or server not in servers:
        known = ", ".join(sorted(servers))
        raise UnknownName(f"unknown {what} {name[:200]!r}: names here are <server>{separator}<name> "
                          f"with server one of: {known}")
    return Routed(server, rest)


def route(name: str, servers: frozenset[str]) -> Routed:
    """The server and upstream name of a prefixed tool or prompt name."""
    return _split(name, TOOL_SEPARATOR, servers, "tool or prompt")


def route_uri(uri: str, servers: frozenset[str]) -> Routed:
    """The server and upstream URI of a prefixed resource URI."""
    return _split(uri, URI_SEPARATOR, servers, "resource")
