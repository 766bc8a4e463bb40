"""What this node's tailnet packet filter lets peers open, and whether that reaches the MCP server.

Why (docs/design.md facts 1 and 7): in userspace mode tailscaled forwards TCP for every
tailnet port it does not serve to `127.0.0.1:<port>`. Our own servers listen on a
loopback alias the forwarder never dials, but an unchanged third-party server that
insists on 127.0.0.1 is reachable past serve and the gateway (no identity, tool policy
or audit) by any peer the tailnet policy lets open its port. Only the policy closes that,
so the sidecar reads what its node accepts and says so.

Source: tailscaled's LocalAPI `debug-packet-filter-matches` (tailscale v1.102.3
ipn/localapi/debug.go: the netmap's compiled `PacketFilter`, the rules the node enforces;
it needs LocalAPI write access, which the daemon's own uid has). Each match is
`{"IPProto": [6, ...], "Srcs": [prefix...], "SrcCaps": [...], "Dsts": [{"Net": prefix,
"Ports": {"First": n, "Last": m}}]}` (wgengine/filter/filtertype).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

TCP = 6
ALL_PORTS = (0, 65535)
# Where userspace tailscaled's forwarder dials for the node's own tailnet addresses
# (wgengine/netstack/netstack.go: ipv4Loopback for TCP; ::1 for the service IP).
FORWARDER_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
ACCEPT_VARIABLE = "SIDECAR_ACCEPT_UPSTREAM_EXPOSURE"


class FilterFormatError(ValueError):
    """tailscaled's answer is not the packet filter shape we know; treated as unknown."""


@dataclass(frozen=True, order=True)
class PortRange:
    first: int
    last: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


def _merge(ranges: Iterable[PortRange]) -> tuple[PortRange, ...]:
    merged: list[PortRange] = []
    for r in sorted(ranges):
        if merged and r.first <= merged[-1].last + 1:
            merged[-1] = PortRange(merged[-1].first, max(merged[-1].last, r.last))
        else:
            merged.append(r)
    return tuple(merged)


def _minus(ranges: Sequence[PortRange], ports: Iterable[int]) -> tuple[PortRange, ...]:
    out = list(ranges)
    for port in sorted(set(ports)):
        nxt: list[PortRange] = []
        for r in out:
            if port not in r:
                nxt.append(r)
                continue
            if r.first < port:
                nxt.append(PortRange(r.first, port - 1))
            if port < r.last:
                nxt.append(PortRange(port + 1, r.last))
        out = nxt
    return tuple(out)


def describe(ranges: Sequence[PortRange]) -> str:
    return ",".join(str(r) for r in ranges) or "none"


def count(ranges: Sequence[PortRange]) -> int:
    return sum(r.last - r.first + 1 for r in ranges)


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise FilterFormatError(f"{what}: {value!r} is not a number")
    try:
        return int(value)
    except ValueError:
        raise FilterFormatError(f"{what}: {value!r} is not a number") from None


def open_tcp_ports(matches: Any, own_ips: Iterable[str]) -> tuple[PortRange, ...]:
    """TCP port ranges of this node's tailnet addresses that at least one peer may open."""
    if matches is None:
        return ()
    if not isinstance(matches, list):
        raise FilterFormatError(f"expected a list of matches, got {type(matches).__name__}")
    ips = [ipaddress.ip_address(ip) for ip in own_ips]
    found: list[PortRange] = []
    for m in matches:
        if not isinstance(m, Mapping):
            raise FilterFormatError(f"a match is {type(m).__name__}, not an object")
        protos = {_int(p, "IPProto") for p in m.get("IPProto") or ()}
        if TCP not in protos or not (m.get("Srcs") or m.get("SrcCaps")):
            continue  # no TCP, or no peer it applies to
        for dst in m.get("Dsts") or ():
            try:
                net = ipaddress.ip_network(dst["Net"], strict=False)
                ports = dst["Ports"]
                first, last = _int(ports["First"], "Ports.First"), _int(ports["Last"], "Ports.Last")
            except (KeyError, TypeError, ValueError) as exc:
                raise FilterFormatError(f"a destination {dst!r} is not Net + Ports: {exc}") from None
            if any(ip.version == net.version and ip in net for ip in ips):
                found.append(PortRange(max(first, 0), min(last, 65535)))
    return _merge(found)


def forwarder_reaches(upstream_url: str) -> bool:
    """Whether the upstream listens where userspace tailscaled forwards unserved ports."""
    host = (urlsplit(upstream_url).hostname or "").lower()
    return host in FORWARDER_HOSTS


def upstream_port(upstream_url: str) -> int:
    parts = urlsplit(upstream_url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def _destination(tags: Sequence[str], ips: Sequence[str], served: Sequence[int]) -> str:
    ports = ",".join(str(p) for p in sorted(served))
    if tags:
        return f"{tags[0]}:{ports}"
    v4 = [ip for ip in ips if ":" not in ip]
    return f"{(v4 or list(ips) or ['<this node>'])[0]}:{ports}"


def policy_fix(tags: Sequence[str], ips: Sequence[str], served: Sequence[int]) -> str:
    """The exact ACL entry (and its grants form) that opens only the served ports."""
    dst = _destination(tags, ips, served)
    target, _, _ports = dst.rpartition(":")
    acl = {"action": "accept", "src": ["<your MCP clients>"], "dst": [dst]}
    grant = {"src": ["<your MCP clients>"], "dst": [target], "ip": [f"tcp:{p}" for p in sorted(served)]}
    return (f"allow only the served ports in the tailnet policy, e.g. the ACL {json.dumps(acl)} "
            f"or the grant {json.dumps(grant)}, and no rule that opens other ports of this node")


@dataclass(frozen=True)
class Exposure:
    """The verdict the readiness check, the metrics, the log and the doctor share."""

    known: bool
    ok: bool
    detail: str
    unserved: tuple[PortRange, ...] = ()
    upstream_exposed: bool = False


def assess(matches: Any, status: Mapping[str, Any], *, served: Sequence[int], upstream_url: str,
           accept_risk: bool) -> Exposure:
    """Judge the node's packet filter against the served ports and the upstream's address.

    Not ready (by default) only when the upstream is where the forwarder dials, the node
    runs in userspace mode and the filter opens the upstream's port to some peer.
    """
    me = status.get("Self") or {}
    ips = tuple(status.get("TailscaleIPs") or me.get("TailscaleIPs") or ())
    tags = tuple(me.get("Tags") or ())
    try:
        opened = open_tcp_ports(matches, ips)
    except FilterFormatError as exc:
        return unknown(f"cannot read the node's packet filter ({exc})", upstream_url, accept_risk)
    unserved = _minus(opened, served)
    port = upstream_port(upstream_url)
    userspace = not status.get("TUN", False)
    # a served port is answered by serve inside tailscaled, never forwarded to loopback
    exposed = userspace and forwarder_reaches(upstream_url) and port not in served and any(port in r for r in opened)
    served_ranges = _merge(PortRange(p, p) for p in served)
    summary = f"peers may open TCP {describe(opened)} of this node; beyond the served {describe(served_ranges)}: " \
              f"{describe(unserved)}"
    if not exposed:
        why = ("the upstream is on a loopback alias the forwarder never dials" if not forwarder_reaches(upstream_url)
               else "TUN mode: no loopback forwarding" if not userspace
               else f"the upstream's port {port} is served, not forwarded" if port in served
               else f"the upstream's port {port} is closed to peers")
        return Exposure(True, True, f"{summary} ({why})", unserved, False)
    risk = (f"the tailnet policy lets peers open port {port} of this node, which userspace tailscaled forwards to "
            f"the MCP server at {upstream_url}, past serve and the gateway (no identity, tool policy or audit)")
    fix = policy_fix(tags, ips, served)
    if accept_risk:
        return Exposure(True, True, f"{risk}; accepted by {ACCEPT_VARIABLE}=true. {summary}", unserved, True)
    return Exposure(True, False, f"{risk}. Fix: {fix}; or set {ACCEPT_VARIABLE}=true to accept the risk. {summary}",
                    unserved, True)


def unknown(why: str, upstream_url: str, accept_risk: bool) -> Exposure:
    """Fail closed: an upstream on the forwarder's target is not ready while we cannot tell."""
    if not forwarder_reaches(upstream_url):
        return Exposure(False, True, f"{why}; the upstream is on a loopback alias the forwarder never dials")
    if accept_risk:
        return Exposure(False, True, f"{why}; accepted by {ACCEPT_VARIABLE}=true")
    return Exposure(False, False, f"{why}; the upstream {upstream_url} is where userspace tailscaled forwards "
                                  f"unserved ports, so it may be reachable past serve (set {ACCEPT_VARIABLE}=true "
                                  f"to accept the risk)")
