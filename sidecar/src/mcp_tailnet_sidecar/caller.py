"""The caller's identity, handed to the upstream in `Mcp-Tailnet-Caller-*` headers (contract of issue 13).

Why the gateway owns every `Mcp-Tailnet-*` header: a server that reads them must be able to
trust them, so any copy a client sent is dropped (serve passes client headers on) and the
gateway sets them itself, only for callers that came through serve (a tailnet source
address in serve's X-Forwarded-For); a caller inside the pod gets none. Values are
percent-encoded UTF-8 (decode with `urllib.parse.unquote`): non-ASCII names survive and
no value can carry CR/LF into a header.
"""

from __future__ import annotations

from urllib.parse import quote

from mcp_tailnet_sidecar.identity import Identity

PREFIX = b"mcp-tailnet-"
SERVE_PREFIX = b"tailscale-"
LOGIN = b"mcp-tailnet-caller-login"
NODE = b"mcp-tailnet-caller-node"
TAGS = b"mcp-tailnet-caller-tags"
CAPABILITY = b"mcp-tailnet-caller-capability"
_SAFE = "@:,._-+~/"


def encode(value: str) -> bytes:
    return quote(value, safe=_SAFE).encode("ascii")


def _claims(name: bytes) -> bool:
    """Whether a request header could pass for ours or serve's at a server that folds `_` into `-`
    (WSGI's HTTP_* keys, some proxies): `Mcp_Tailnet_Caller_Login` is `Mcp-Tailnet-Caller-Login` there.
    Serve writes its `Tailscale-*` names with hyphens only, so an underscore variant is the client's."""
    folded = name.lower().replace(b"_", b"-")
    return folded.startswith(PREFIX) or (b"_" in name and folded.startswith(SERVE_PREFIX))


def strip(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` without any whose name starts with `Mcp-Tailnet-` (any case, `_` for `-`), nor
    underscore look-alikes of serve's `Tailscale-*` headers."""
    return [(k, v) for k, v in headers if not _claims(k)]


def caller_headers(who: Identity) -> list[tuple[bytes, bytes]]:
    """The headers naming `who` upstream; none for a caller that did not come through serve."""
    if who.source_ip is None:
        return []
    out = []
    if who.login:
        out.append((LOGIN, encode(who.login)))
    if who.node:
        out.append((NODE, encode(who.node)))
    if who.tags:
        out.append((TAGS, encode(",".join(who.tags))))
    if who.grant is not None:
        out.append((CAPABILITY, encode(who.grant.header_value())))
    return out
