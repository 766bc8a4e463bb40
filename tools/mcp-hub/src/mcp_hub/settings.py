"""The hub's process settings, read from HUB_* environment variables in one place.

A bad value stops the process before it listens, with one line naming the variable.
What the hub serves (its upstreams) is the config file's business (config.py).

The listen address must be a loopback alias (default 127.0.0.3), never 127.0.0.1, ::1
or a wildcard: userspace tailscaled forwards every unserved tailnet port to 127.0.0.1
(docs/design.md facts 1 and 7), so a hub there would be reachable past the gateway.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.3"
DEFAULT_CONFIG = Path("/etc/mcp-hub/hub.toml")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class SettingsError(ValueError):
    """A setting is invalid; str() is the one line printed at start."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    config: Path = DEFAULT_CONFIG
    host: str = DEFAULT_HOST
    port: int = 8080
    log_level: str = "INFO"
    shutdown_grace: float = 10.0
    session_idle_timeout: float = 300.0
    max_sessions: int = 1000


def _number(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw.removesuffix("s"))
    except ValueError:
        raise SettingsError(name, f"expected a number between {lo:g} and {hi:g}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(name, f"must be between {lo:g} and {hi:g}, got {value:g}")
    return value


def listen_host(raw: str) -> str:
    """A loopback alias, refusing the addresses tailscaled's userspace forwarder dials."""
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        raise SettingsError("HUB_HOST", f"expected a loopback IP address such as {DEFAULT_HOST}, got {raw!r}") from None
    if ip.is_unspecified or ip == ipaddress.ip_address("127.0.0.1") or ip == ipaddress.ip_address("::1"):
        raise SettingsError("HUB_HOST", f"{raw} is reachable past the gateway (userspace tailscaled forwards "
                                        f"unserved tailnet ports to 127.0.0.1 and ::1); use a loopback alias "
                                        f"such as {DEFAULT_HOST}")
    if not ip.is_loopback:
        raise SettingsError("HUB_HOST", f"{raw} is not a loopback address; the sidecar in the same network "
                                        f"namespace is the only way in")
    return raw


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every HUB_* variable."""
    env = os.environ if env is None else env
    config = Path(env.get("HUB_CONFIG", "").strip() or DEFAULT_CONFIG)
    if not config.is_file():
        raise SettingsError("HUB_CONFIG", f"no such file {str(config)!r}")
    host = listen_host(env.get("HUB_HOST", "").strip() or DEFAULT_HOST)
    port = int(_number(env, "HUB_PORT", 8080, 1, 65535))
    if env.get("HUB_PORT", "").strip() and not env["HUB_PORT"].strip().isdigit():
        raise SettingsError("HUB_PORT", f"expected a whole port number, got {env['HUB_PORT']!r}")
    log_level = env.get("HUB_LOG_LEVEL", "").strip().upper() or "INFO"
    if log_level not in LOG_LEVELS:
        raise SettingsError("HUB_LOG_LEVEL", f"must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    return Settings(
        config=config,
        host=host,
        port=port,
        log_level=log_level,
        shutdown_grace=_number(env, "HUB_SHUTDOWN_GRACE", 10.0, 0, 300),
        session_idle_timeout=_number(env, "HUB_SESSION_IDLE_TIMEOUT", 300.0, 5, 86400),
        max_sessions=int(_number(env, "HUB_MAX_SESSIONS", 1000, 1, 100000)),
    )
