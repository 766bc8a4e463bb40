"""Which tools a caller may call and see: the one decision, from the tailnet policy's grants and the policy file.

Grants mode (SIDECAR_TAILNET_GRANTS=true): the tailnet policy grants tools with an app
capability, and `tailscale serve` hands the caller's values of it to the gateway in the
`Tailscale-App-Capabilities` header (the serve config lists the capability in
`AcceptAppCaps`). Serve deletes any client-sent copy of that header before it sets its own,
also for tagged callers (tailscale v1.102.3 ipn/ipnlocal/serve.go `addAppCapabilitiesHeader`;
docs/design.md), so its content is the control server's word, evaluated per request: a
policy change reaches the next request without a restart.

Capability `github.com/mcp-tailnet/cap/tools`; each value is `{"tools": [glob, ...],
"servers": [glob, ...]}` (`servers` optional: every server). Values whose `servers` match
this server's name (SIDECAR_SERVER_NAME) are kept; a tool is allowed iff a kept value's
`tools` matches it. Deny by default: no header, or no value, allows nothing; one malformed
value (unknown key, wrong type, empty list, duplicate key, bad JSON) denies every tool and
is logged once per distinct reason. When a policy file is set too, both must allow.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from mcp_tailnet_sidecar.identity import Identity, decode_header_value
from mcp_tailnet_sidecar.policy import Policy

CAPABILITY = "github.com/mcp-tailnet/cap/tools"
CAPABILITIES_HEADER = "tailscale-app-capabilities"
MAX_REASONS_LOGGED = 256  # distinct malformed reasons remembered (log once each), bounded
_VALUE_KEYS = frozenset({"tools", "servers"})

logger = logging.getLogger("mcp_tailnet_sidecar.access")


class Malformed(ValueError):
    """A capability value (or the header around it) that is not what the contract says; the message says where."""


@dataclass(frozen=True)
class GrantValue:
    tools: tuple[str, ...]
    servers: tuple[str, ...] | None = None  # None: every server

    def applies_to(self, server: str) -> bool:
        return self.servers is None or any(fnmatchcase(server, g) for g in self.servers)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tools": list(self.tools)}
        if self.servers is not None:
            out["servers"] = list(self.servers)
        return out


@dataclass(frozen=True)
class Grant:
    """What the tailnet policy grants this caller on this server, as parsed from one request."""

    values: tuple[GrantValue, ...] = ()  # kept: they apply to this server
    all_values: tuple[GrantValue, ...] = ()  # every value of our capability in the header, before the server match
    present: bool = False  # serve sent the header at all
    error: str | None = None  # why the header was malformed: then nothing is allowed

    def allows(self, tool: str) -> bool:
        return self.error is None and any(fnmatchcase(tool, g) for v in self.values for g in v.tools)

    def header_value(self) -> str:
        """The Mcp-Tailnet-Caller-Capability value: the kept values as compact JSON (`[]` when malformed)."""
        kept = [] if self.error is not None else [v.as_json() for v in self.values]
        return json.dumps(kept, separators=(",", ":"), ensure_ascii=False)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise Malformed(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


def _globs(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise Malformed(f"{where} must be a non-empty list of strings")
    if not all(isinstance(g, str) and g for g in value):
        raise Malformed(f"{where} must hold non-empty strings only")
    return tuple(value)


def parse_value(value: object, index: int) -> GrantValue:
    """One value of our capability, checked strictly (contract-13)."""
    where = f"{CAPABILITY} value {index}"
    if not isinstance(value, dict):
        raise Malformed(f"{where} must be a JSON object, got {type(value).__name__}")
    if unknown := set(value) - _VALUE_KEYS:
        raise Malformed(f"{where} has unknown key(s) {', '.join(sorted(map(repr, unknown)))[:120]}")
    if "tools" not in value:
        raise Malformed(f"{where} has no 'tools'")
    tools = _globs(value["tools"], f"{where} 'tools'")
    servers = _globs(value["servers"], f"{where} 'servers'") if "servers" in value else None
    return GrantValue(tools, servers)


def parse_grant(raw: list[str], server: str) -> Grant:
    """The Grant in the capability header(s) serve set (`raw`: every copy; serve sets at most one)."""
    if not raw:
        return Grant()
    try:
        if len(raw) > 1:
            raise Malformed(f"Tailscale-App-Capabilities appears {len(raw)} times")
        text = decode_header_value(raw[0]) or ""
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicates)
        except (ValueError, RecursionError) as exc:
            if isinstance(exc, Malformed):
                raise
            raise Malformed("Tailscale-App-Capabilities is not JSON") from None
        if not isinstance(data, dict):
            raise Malformed("Tailscale-App-Capabilities is not a JSON object")
        values = data.get(CAPABILITY, [])
        if not isinstance(values, list):
            raise Malformed(f"{CAPABILITY} is not a list of values")
        parsed = [parse_value(v, i) for i, v in enumerate(values)]
    except Malformed as exc:
        return Grant(present=True, error=str(exc))
    return Grant(tuple(v for v in parsed if v.applies_to(server)), tuple(parsed), present=True)


@dataclass
class Access:
    """The tools decision: policy file and/or tailnet grants. Inactive (None from `allows_fn`) when neither is set."""

    policy: Policy | None = None
    grants: bool = False
    _reasons: set[str] = field(default_factory=set)  # malformed reasons already logged

    @property
    def active(self) -> bool:
        return self.policy is not None or self.grants

    @property
    def rule(self) -> str:
        """How tools are decided, in words (whoami, doctor)."""
        if self.policy is not None and self.grants:
            return "policy file and tailnet grants must both allow"
        if self.grants:
            return "tailnet grants"
        return "policy file" if self.policy is not None else "no tool policy: every tool allowed"

    def allows(self, who: Identity, tool: str) -> bool:
        """Whether `who` may call (and see) `tool`: every configured source must say yes."""
        if self.policy is not None and not self.policy.allows(who, tool):
            return False
        if self.grants:
            grant = who.grant
            if grant is None or not grant.allows(tool):
                return False
        return True

    def note(self, who: Identity) -> None:
        """Log why a caller's grant is malformed, once per distinct reason (never the values themselves)."""
        grant = who.grant
        if grant is None or grant.error is None:
            return
        if grant.error in self._reasons:
            return
        if len(self._reasons) < MAX_REASONS_LOGGED:
            self._reasons.add(grant.error)
        logger.warning("tailnet grant of %s is malformed, every tool denied: %s", who.who, grant.error,
                       extra={"capability": CAPABILITY, "reason": grant.error})
