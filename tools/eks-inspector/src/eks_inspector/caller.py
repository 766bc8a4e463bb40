"""Who a tool call acts for when INSPECTOR_IMPERSONATE=caller (issue 13's identity contract).

The sidecar's gateway strips every client-sent `Mcp-Tailnet-*` header and sets the verified
caller's login, node and tags itself (docs/security.md); this module turns those headers into
the Kubernetes identity the API server impersonates, and refuses anything that could name a
privileged one: a `system:` user, a login that poses as our own `tailnet:` names, a tag that is
not a tag. Groups come only from tags, so no header value can produce `system:masters`.

The caller is held in a context variable for the tool call (set in the server's guard, read by
kube.py alone); discovery runs under `as_inspector()`, with the inspector's own identity.
"""

from __future__ import annotations

import contextlib
import enum
import re
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote

from eks_inspector.errors import InspectorError


class CallerHeader(enum.StrEnum):
    """The contract's caller headers (lower case: Starlette's Headers are case-insensitive)."""

    LOGIN = "mcp-tailnet-caller-login"
    NODE = "mcp-tailnet-caller-node"
    TAGS = "mcp-tailnet-caller-tags"


#: Kubernetes names this module produces; `tailnet:` is ours, `system:` is Kubernetes'.
NODE_USER_PREFIX = "tailnet:node:"
TAG_GROUP_PREFIX = "tailnet:tag:"
OUR_PREFIX = "tailnet:"
RESERVED_PREFIX = "system:"
MAX_VALUE = 512
MAX_TAGS = 64
_TAG = re.compile(r"tag:[A-Za-z0-9][A-Za-z0-9-]{0,126}")
_NODE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

REFUSED_NO_IDENTITY = ("refused: this server acts as its caller (INSPECTOR_IMPERSONATE=caller) and the request "
                       "carries no tailnet identity; reach it through its Tailscale sidecar (tailscale serve), "
                       "which sets Mcp-Tailnet-Caller-* for every tailnet caller")


class Headers(Protocol):
    def getlist(self, key: str) -> list[str]: ...


@dataclass(frozen=True)
class Caller:
    """A verified tailnet caller: a user's login, or a tagged node (then `login` is None)."""

    login: str | None
    node: str | None
    tags: tuple[str, ...] = ()

    @property
    def user(self) -> str:
        """The Kubernetes user this caller is impersonated as."""
        return self.login if self.login else f"{NODE_USER_PREFIX}{self.node}"

    @property
    def groups(self) -> tuple[str, ...]:
        """The Kubernetes groups: one `tailnet:tag:NAME` per tag, nothing else."""
        return tuple(f"{TAG_GROUP_PREFIX}{t.removeprefix('tag:')}" for t in self.tags)

    def describe(self) -> str:
        """How an error names the caller: `tailnet user "alice@example.com"`."""
        tags = f" ({', '.join(self.tags)})" if self.tags else ""
        if self.login:
            return f'tailnet user "{self.login}"{tags}'
        return f'tailnet node "{self.node}"{tags}'


class _Own(enum.Enum):
    INSPECTOR = "inspector"


#: The calls made with the inspector's own identity (shared caches: discovery).
INSPECTOR = _Own.INSPECTOR
_acting: ContextVar[Caller | _Own | None] = ContextVar("eks_inspector_caller", default=None)


def _one(headers: Headers, name: CallerHeader) -> str | None:
    values = headers.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise InspectorError(f"refused: {len(values)} {name.title()} headers; the gateway sets exactly one")
    raw = values[0]
    if len(raw) > 3 * MAX_VALUE:
        raise InspectorError(f"refused: {name.title()} is longer than {MAX_VALUE} characters")
    try:
        value = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise InspectorError(f"refused: {name.title()} is not percent-encoded UTF-8") from None
    if _CONTROL.search(value):
        raise InspectorError(f"refused: {name.title()} holds a control character")
    return value or None


def from_headers(headers: Headers) -> Caller:
    """The caller the gateway vouched for, validated; InspectorError (a refusal) otherwise."""
    login = _one(headers, CallerHeader.LOGIN)
    node = _one(headers, CallerHeader.NODE)
    tags_raw = _one(headers, CallerHeader.TAGS)
    tags = tuple(t.strip() for t in tags_raw.split(",")) if tags_raw else ()
    if not login and not node:
        raise InspectorError(REFUSED_NO_IDENTITY)
    if len(tags) > MAX_TAGS:
        raise InspectorError(f"refused: more than {MAX_TAGS} tags")
    for tag in tags:
        if not _TAG.fullmatch(tag):
            raise InspectorError(f"refused: {tag[:100]!r} is not a tailnet tag (tag:NAME)")
    if node is not None and not _NODE.fullmatch(node):
        raise InspectorError(f"refused: {node[:100]!r} is not a MagicDNS node name")
    if login is not None:
        folded = login.casefold()
        if folded.startswith(RESERVED_PREFIX):
            raise InspectorError(f"refused: the login {login[:100]!r} is a Kubernetes system name; "
                                 f"system: names are never impersonated")
        if folded.startswith(OUR_PREFIX):
            raise InspectorError(f"refused: the login {login[:100]!r} poses as a tailnet node or tag name")
    return Caller(login=login, node=node, tags=tuple(dict.fromkeys(tags)))


@contextlib.contextmanager
def acting_for(who: Caller | _Own | None) -> Iterator[None]:
    """Run the body (one tool call, in its worker thread) on behalf of `who`."""
    token = _acting.set(who)
    try:
        yield
    finally:
        _acting.reset(token)


def as_inspector() -> contextlib.AbstractContextManager[None]:
    """Run the body with the inspector's own identity (discovery: one cache for every caller)."""
    return acting_for(INSPECTOR)


def acting() -> Caller | _Own | None:
    return _acting.get()


def impersonation_headers(who: Caller) -> Sequence[tuple[str, bytes]]:
    """Impersonate-User and one Impersonate-Group per group, as UTF-8 bytes (a non-ASCII login
    reaches the API server as the same UTF-8 string a RoleBinding names)."""
    for name in (who.user, *who.groups):
        # from_headers already refuses these; checked again where the header is made.
        if name.casefold().startswith(RESERVED_PREFIX) or _CONTROL.search(name):
            raise InspectorError(f"refused: {name[:100]!r} is never impersonated")
    return [("Impersonate-User", who.user.encode()),
            *(("Impersonate-Group", g.encode()) for g in who.groups)]
