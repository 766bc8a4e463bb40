"""The `tailscale serve` config that routes the node's tailnet name to the gateway.

Rendered from the node's real DNS name once tailscaled knows it, never from
`${TS_CERT_DOMAIN}`: without HTTPS certs (headscale, or HTTPS off in the tailnet) that
placeholder becomes `no-https`, the Web handler never matches and every request gets a
404 (tailscale issue 17728). HTTP :80 is always served; HTTPS :443 only when the tailnet
can issue a certificate for the name (containerboot refuses a config with HTTPS then).
Written atomically: containerboot watches the file's directory and exits on a half-read
file.

The target is the gateway: `unix:/path` when the sidecar runs as root, otherwise
`http://127.0.0.2:PORT` (a loopback alias, see settings.GatewayListen).

In grants mode the handler lists the tools capability in `AcceptAppCaps`: serve then sets
`Tailscale-App-Capabilities` to the caller's values of it (and deletes any client copy
first; docs/design.md). `applied` checks that too: without it every tool would be denied.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def render(dns_name: str, target: str, *, https: bool, accept_caps: tuple[str, ...] = ()) -> dict[str, Any]:
    """`target` is serve's Proxy value: `unix:/path` or `http://127.0.0.2:PORT`; `accept_caps`
    the app capabilities serve forwards to it."""
    handler: dict[str, Any] = {"Proxy": target}
    if accept_caps:
        handler["AcceptAppCaps"] = list(accept_caps)
    proxy = {"Handlers": {"/": handler}}
    tcp: dict[str, Any] = {"80": {"HTTP": True}}
    web: dict[str, Any] = {f"{dns_name}:80": proxy}
    if https:
        tcp["443"] = {"HTTPS": True}
        web[f"{dns_name}:443"] = proxy
    return {"TCP": tcp, "Web": web}


def write(path: Path, config: dict[str, Any]) -> bool:
    """Write the config if it differs from what is there; True when it changed."""
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".serve-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def funnel(current: dict[str, Any] | None) -> list[str]:
    """The `host:port`s tailscaled exposes through Funnel (we never render any)."""
    allowed = (current or {}).get("AllowFunnel") or {}
    return sorted(hostport for hostport, on in allowed.items() if on)


def applied(current: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    """Whether tailscaled's live serve config contains our listeners and handlers."""
    if not current:
        return False
    tcp = current.get("TCP") or {}
    web = current.get("Web") or {}
    for port, handler in wanted["TCP"].items():
        live = tcp.get(port) or {}
        if any(live.get(k) != v for k, v in handler.items()):
            return False
    for hostport, site in wanted["Web"].items():
        live_handlers = (web.get(hostport) or {}).get("Handlers") or {}
        for mount, handler in site["Handlers"].items():
            live = live_handlers.get(mount) or {}
            if live.get("Proxy") != handler["Proxy"]:
                return False
            if not set(handler.get("AcceptAppCaps") or ()) <= set(live.get("AcceptAppCaps") or ()):
                return False
    return True
