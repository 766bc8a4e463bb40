"""The names this node answers to on the tailnet, learned from tailscaled.

The gateway accepts a request only if its (forwarded) Host, and its Origin when there is
one, is one of these: the MagicDNS FQDN, its first label (what MagicDNS search domains
let people type), the node's tailnet IPs, and any extra names configured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class NodeNames:
    dns_name: str | None = None  # FQDN without trailing dot
    ips: tuple[str, ...] = ()
    cert_domains: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    backend_state: str = "Unknown"
    _allowed: frozenset[str] = field(default=frozenset(), compare=False)

    def __post_init__(self) -> None:
        names = set(self.extra) | set(self.ips)
        if self.dns_name:
            names.add(self.dns_name)
            names.add(self.dns_name.split(".", 1)[0])
        object.__setattr__(self, "_allowed", frozenset(n.lower() for n in names))

    @classmethod
    def from_status(cls, status: dict[str, Any], extra: tuple[str, ...] = ()) -> NodeNames:
        me = status.get("Self") or {}
        dns = (me.get("DNSName") or "").rstrip(".").lower() or None
        return cls(dns_name=dns, ips=tuple(status.get("TailscaleIPs") or me.get("TailscaleIPs") or ()),
                   cert_domains=tuple(status.get("CertDomains") or ()), extra=extra,
                   backend_state=status.get("BackendState") or "Unknown")

    @property
    def known(self) -> bool:
        return bool(self._allowed)

    @property
    def https(self) -> bool:
        """Whether the tailnet can issue a certificate for our name (else HTTP only)."""
        return self.dns_name is not None and self.dns_name in {d.rstrip(".").lower() for d in self.cert_domains}

    def host_allowed(self, host: str) -> bool:
        return _strip_port(host) in self._allowed

    def origin_allowed(self, origin: str) -> bool:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        return parts.hostname.lower().rstrip(".") in self._allowed

    def describe(self) -> str:
        return ", ".join(sorted(self._allowed)) or "(none known yet)"


def _strip_port(host: str) -> str:
    """`name:port`, `[v6]:port`, `v4`, `v6` -> the bare lower-case name or address."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:  # more than one colon: a bare IPv6 address, keep it whole
        host = host.split(":", 1)[0]
    return host.rstrip(".")
