"""`GET /.well-known/mcp-tailnet/whoami`: the caller as this gateway sees it, and what decides its tools.

Why: a grant that does not work is otherwise invisible (serve sets the capability header
only on requests it proxies). The gateway answers this path itself, never the upstream, with
the caller's identity, its values of the tools capability and the other decision inputs
(`mcp-tailnet-sidecar doctor` prints it). It holds nothing secret: only the caller's own
identity and grants, and the globs the policy file gives that caller.
"""

from __future__ import annotations

from typing import Any

from mcp_tailnet_sidecar.access import CAPABILITY, Access
from mcp_tailnet_sidecar.identity import Identity


def whoami(who: Identity, access: Access, server_name: str | None) -> dict[str, Any]:
    grant = who.grant
    decision: dict[str, Any] = {
        "rule": access.rule,
        "tailnet_grants": access.grants,
        "server_name": server_name,
        "policy_file": access.policy is not None,
    }
    if access.policy is not None:
        decision["policy_file_tools"] = access.policy.patterns_for(who)
    if access.grants:
        decision["grant"] = {
            "capability": CAPABILITY,
            "header_present": bool(grant and grant.present),
            "values": [v.as_json() for v in grant.all_values] if grant else [],
            "kept_for_this_server": [v.as_json() for v in grant.values] if grant else [],
            "malformed": grant.error if grant else None,
        }
    return {
        "identity": {"login": who.login, "display_name": who.display_name, "node": who.node,
                     "tags": list(who.tags), "source_ip": who.source_ip, "via": who.via,
                     "through_serve": who.source_ip is not None},
        "tools_decision": decision,
    }
