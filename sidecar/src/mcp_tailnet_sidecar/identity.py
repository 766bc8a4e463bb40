"""Who is calling: a tailnet user, or a tagged node.

Requests reach the gateway from the tailnet only through `tailscale serve` (the gateway
listens on a unix socket, or on a loopback alias the userspace forwarder never dials;
other processes of the pod could reach it, but they could reach the MCP server directly
too). Serve deletes any client-supplied
`Tailscale-User-*` headers and sets them itself for nodes owned by a user; for tagged
nodes it sets none. It also replaces `X-Forwarded-For` with the real tailnet source IP.
So: user identity comes from serve's headers; a tagged caller is identified by asking
tailscaled (LocalAPI WhoIs) about the `X-Forwarded-For` address. A user's node name is not
in serve's headers either, so it comes from the same (cached) WhoIs: the caller headers
the gateway hands upstream name the node for users too.
"""

from __future__ import annotations

import email.header
import ipaddress
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp_tailnet_sidecar.access import Grant

TAGGED_DEVICES_LOGIN = "tagged-devices"  # the UserProfile Tailscale reports for tagged nodes
WHOIS_CACHE_SECONDS = 10.0
WHOIS_CACHE_MAX = 4096


@dataclass(frozen=True)
class Identity:
    login: str | None = None
    display_name: str | None = None
    node: str | None = None
    tags: tuple[str, ...] = ()
    source_ip: str | None = None
    via: str = "none"  # "serve-headers", "whois" or "none"
    grant: Grant | None = None  # grants mode: what the tailnet policy grants (access.py), per request

    @property
    def who(self) -> str:
        """A short label for logs: the login, else the node and its tags."""
        if self.login:
            return self.login
        if self.node or self.tags:
            return f"{self.node or '?'} ({','.join(self.tags)})" if self.tags else (self.node or "?")
        return "unknown"

    @property
    def owner(self) -> str:
        """Whom a session opened by this caller belongs to: a user's login, else the node
        (tagged devices), else the source address; "local" for callers inside the pod."""
        if self.login:
            return "login:" + self.login.lower()
        if self.node:
            return "node:" + self.node.lower()
        if self.tags:
            return "tags:" + ",".join(sorted(self.tags))
        return "ip:" + self.source_ip if self.source_ip else "local"

    def audit_fields(self) -> dict[str, object]:
        return {"who": self.who, "login": self.login, "node": self.node, "tags": list(self.tags),
                "source_ip": self.source_ip, "identity_via": self.via}


def decode_header_value(value: str | None) -> str | None:
    """Serve encodes non-ASCII names as RFC 2047 words; undo that."""
    if not value:
        return None
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError):
        return value


def source_ip(headers: Mapping[str, str]) -> str | None:
    """The tailnet address of the caller: serve sets X-Forwarded-For to it, replacing any
    client-sent value (tailscale v1.102.3 `addProxyForwardedHeaders`). None when absent or
    not an address: a caller inside the pod, not one from the tailnet."""
    raw = (headers.get("x-forwarded-for") or "").split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return None


WhoIsFn = Callable[[str], Awaitable[dict | None]]


@dataclass
class IdentityResolver:
    """Turns request headers into an Identity, with a short WhoIs cache."""

    whois: WhoIsFn | None = None
    _cache: dict[str, tuple[float, Identity]] = field(default_factory=dict)

    async def resolve(self, headers: Mapping[str, str]) -> Identity:
        ip = source_ip(headers)
        login = decode_header_value(headers.get("tailscale-user-login"))
        if login:
            user = Identity(login=login, display_name=decode_header_value(headers.get("tailscale-user-name")),
                            source_ip=ip, via="serve-headers")
            if ip is None or self.whois is None:
                return user
            try:
                return replace(user, node=(await self._whois(ip)).node)  # login and name stay serve's
            except Exception:  # noqa: BLE001 - the node name is a detail; the user stays who serve says
                return user
        if ip is None or self.whois is None:
            return Identity(source_ip=ip)
        return await self._whois(ip)

    async def _whois(self, ip: str) -> Identity:
        now = time.monotonic()
        hit = self._cache.get(ip)
        if hit and now - hit[0] < WHOIS_CACHE_SECONDS:
            return hit[1]
        assert self.whois is not None
        ident = self._from_whois(await self.whois(ip), ip)
        if len(self._cache) >= WHOIS_CACHE_MAX:
            self._cache.clear()
        self._cache[ip] = (now, ident)
        return ident

    @staticmethod
    def _from_whois(data: dict | None, source_ip: str) -> Identity:
        if not data:
            return Identity(source_ip=source_ip)
        node = data.get("Node") or {}
        user = data.get("UserProfile") or {}
        tags = tuple(node.get("Tags") or ())
        login = user.get("LoginName") or None
        if tags or login == TAGGED_DEVICES_LOGIN:
            login = None
        name = (node.get("Name") or "").rstrip(".") or None
        return Identity(login=login, display_name=user.get("DisplayName") or None, node=name,
                        tags=tags, source_ip=source_ip, via="whois")
