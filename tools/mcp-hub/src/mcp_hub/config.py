"""The hub's config file (TOML): which upstreams it mounts and how.

TOML because the standard library reads it (no new dependency) and it refuses repeated
keys, so a file cannot say one thing to a reader and another to the hub. Every key is
checked; an unknown key is an error (a typo must not silently drop a limit). The whole
format, with a complete example, is in docs/hub.md.

Server names become tool-name prefixes (`<name>_<tool>`), resource URI prefixes
(`<name>+<uri>`) and URL paths (`/servers/<name>/mcp`), so they are restricted to
lower-case letters, digits and inner hyphens, starting with a letter: no `_` (the
prefix separator, so `a_b_c` has exactly one reading), nothing a path or a policy glob
would read specially.
"""

from __future__ import annotations

import enum
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mcp_hub.secret import SecretError, Value, resolve

SERVER_NAME = re.compile(r"^[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?$")


class ConfigError(ValueError):
    """The config file is unreadable or wrong; the message names the key."""


class Transport(enum.StrEnum):
    STDIO = "stdio"
    STREAMABLE_HTTP = "streamable-http"
    SSE = "sse"


class Sharing(enum.StrEnum):
    SESSION = "session"  # one child per client session (stdio default)
    SHARED = "shared"    # one connection for every session (HTTP default)


@dataclass(frozen=True)
class Limits:
    max_children: int = 64        # stdio children alive at once, all sessions together
    list_timeout: float = 5.0     # an upstream slower than this is left out of one list answer
    call_timeout: float = 60.0    # default for a server's call_timeout
    start_timeout: float = 30.0   # spawn/connect + initialize
    restart_initial: float = 0.5  # first restart delay after a child dies; doubles
    restart_max: float = 30.0     # ceiling of that delay
    ping_interval: float = 10.0   # an HTTP/SSE upstream is pinged this often (and on each cached list)


@dataclass(frozen=True)
class Server:
    name: str
    transport: Transport
    sharing: Sharing
    call_timeout: float
    command: str = ""
    args: tuple[str, ...] = ()
    env: Mapping[str, Value] = field(default_factory=dict)
    cwd: Path | None = None
    url: str = ""
    headers: Mapping[str, Value] = field(default_factory=dict)


@dataclass(frozen=True)
class HubConfig:
    limits: Limits
    servers: Mapping[str, Server]


_LIMIT_RANGES: dict[str, tuple[type, float, float]] = {
    "max_children": (int, 1, 10000),
    "list_timeout": (float, 0.1, 600),
    "call_timeout": (float, 0.1, 3600),
    "start_timeout": (float, 0.5, 600),
    "restart_initial": (float, 0.05, 600),
    "restart_max": (float, 0.05, 3600),
    "ping_interval": (float, 0.5, 3600),
}
_STDIO_KEYS = {"transport", "command", "args", "env", "cwd", "sharing", "call_timeout"}
_HTTP_KEYS = {"transport", "url", "headers", "sharing", "call_timeout"}


def _number(raw: object, where: str, kind: type, lo: float, hi: float) -> Any:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or (kind is int and not isinstance(raw, int)):
        raise ConfigError(f"{where}: expected {'a whole number' if kind is int else 'a number'}, got {raw!r}")
    if not lo <= raw <= hi:
        raise ConfigError(f"{where}: must be between {lo:g} and {hi:g}, got {raw!r}")
    return kind(raw)


def _limits(raw: object) -> Limits:
    if not isinstance(raw, dict):
        raise ConfigError("hub: expected a table")
    unknown = set(raw) - set(_LIMIT_RANGES)
    if unknown:
        raise ConfigError(f"hub: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(_LIMIT_RANGES)})")
    values = {k: _number(v, f"hub.{k}", *_LIMIT_RANGES[k]) for k, v in raw.items()}
    limits = Limits(**values)
    if limits.restart_max < limits.restart_initial:
        raise ConfigError("hub.restart_max: must not be less than hub.restart_initial")
    return limits


def _strings(raw: object, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise ConfigError(f"{where}: expected a list of strings")
    return tuple(raw)


def _values(raw: object, where: str, env: Mapping[str, str] | None) -> dict[str, Value]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table of NAME = value")
    out: dict[str, Value] = {}
    for key, value in raw.items():
        if not key or "=" in key or "\0" in key:
            raise ConfigError(f"{where}: {key!r} is not a valid name")
        try:
            out[key] = resolve(value, f"{where}.{key}", env)
        except SecretError as exc:
            raise ConfigError(str(exc)) from None
    return out


def _server(name: str, raw: object, limits: Limits, env: Mapping[str, str] | None) -> Server:
    where = f"servers.{name}"
    if not SERVER_NAME.match(name):
        raise ConfigError(f"{where}: a server name is 1-32 lower-case letters, digits and inner hyphens, "
                          f"starting with a letter (no '_': it separates the prefix from the tool name)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table")
    try:
        transport = Transport(raw.get("transport", ""))
    except ValueError:
        raise ConfigError(f"{where}.transport: must be one of {', '.join(t.value for t in Transport)}") from None
    allowed = _STDIO_KEYS if transport is Transport.STDIO else _HTTP_KEYS
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) for a {transport} server: {', '.join(sorted(unknown))}")
    default_sharing = Sharing.SESSION if transport is Transport.STDIO else Sharing.SHARED
    try:
        sharing = Sharing(raw.get("sharing", default_sharing))
    except ValueError:
        raise ConfigError(f"{where}.sharing: must be 'session' or 'shared'") from None
    call_timeout = _number(raw.get("call_timeout", limits.call_timeout), f"{where}.call_timeout",
                           *_LIMIT_RANGES["call_timeout"])
    if transport is Transport.STDIO:
        command = raw.get("command")
        if not isinstance(command, str) or not command.strip() or "\0" in command:
            raise ConfigError(f"{where}.command: expected the program to run")
        cwd = raw.get("cwd")
        if cwd is not None and (not isinstance(cwd, str) or not Path(cwd).is_dir()):
            raise ConfigError(f"{where}.cwd: expected an existing directory, got {cwd!r}")
        args = _strings(raw.get("args", []), f"{where}.args")
        if any("\0" in a for a in args):
            raise ConfigError(f"{where}.args: NUL bytes are not allowed")
        return Server(name=name, transport=transport, sharing=sharing, call_timeout=call_timeout,
                      command=command, args=args, env=_values(raw.get("env", {}), f"{where}.env", env),
                      cwd=Path(cwd) if cwd else None)
    url = raw.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        raise ConfigError(f"{where}.url: expected an http(s)://host[:port]/path URL without credentials "
                          f"(put them in {where}.headers)")
    return Server(name=name, transport=transport, sharing=sharing, call_timeout=call_timeout, url=url,
                  headers=_values(raw.get("headers", {}), f"{where}.headers", env))


def parse(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> HubConfig:
    """Build a HubConfig from decoded TOML, checking every key."""
    unknown = set(data) - {"hub", "servers"}
    if unknown:
        raise ConfigError(f"unknown top-level key(s): {', '.join(sorted(unknown))} (known: hub, servers)")
    limits = _limits(data.get("hub", {}))
    servers_raw = data.get("servers")
    if not isinstance(servers_raw, dict) or not servers_raw:
        raise ConfigError("servers: at least one [servers.NAME] table is required")
    servers = {name: _server(name, raw, limits, env) for name, raw in servers_raw.items()}
    return HubConfig(limits=limits, servers=servers)


def load(path: Path, env: Mapping[str, str] | None = None) -> HubConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc})") from None
    try:
        return parse(data, env)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
