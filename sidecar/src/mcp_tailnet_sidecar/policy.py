"""Which tailnet callers may use which tools.

The tailnet ACL decides who reaches the node at all; this finer policy decides which
tools each caller may call or see. Once a policy file exists, everything it does not
allow is denied.

File format (JSON):

    {
      "groups": {"group:sre": ["alice@example.com", "tag:ci"]},
      "rules": [
        {"principals": ["group:sre"], "tools": ["*"]},
        {"principals": ["bob@example.com", "tag:readonly"], "tools": ["get_*", "list_*"]}
      ]
    }

Principals: a user login (as Tailscale reports it), `tag:NAME` (a tagged node), a
`group:NAME` defined above (members are logins or tags), or `*` (any caller, even an
unidentified one). Tool patterns are shell-style globs (`fnmatch`, case-sensitive).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from mcp_tailnet_sidecar.identity import Identity


class PolicyError(ValueError):
    """The policy file is unreadable or malformed; the message says where."""


@dataclass(frozen=True)
class Rule:
    principals: tuple[str, ...]
    tools: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    groups: dict[str, frozenset[str]]
    rules: tuple[Rule, ...]

    def _matches(self, principal: str, who: Identity) -> bool:
        if principal == "*":
            return True
        if principal.startswith("group:"):
            return any(self._matches(member, who) for member in self.groups.get(principal, ()))
        if principal.startswith("tag:"):
            return principal in who.tags
        return who.login is not None and principal.lower() == who.login.lower()

    def patterns_for(self, who: Identity) -> list[str]:
        """The tool globs the rules grant `who` (what `doctor`/whoami shows)."""
        return [t for rule in self.rules if any(self._matches(p, who) for p in rule.principals) for t in rule.tools]

    def allows(self, who: Identity, tool: str) -> bool:
        """Whether `who` may call (and see) `tool`; deny unless a rule says yes."""
        for rule in self.rules:
            if any(self._matches(p, who) for p in rule.principals) and any(
                fnmatchcase(tool, pattern) for pattern in rule.tools
            ):
                return True
        return False


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where} must be a list of non-empty strings")
    return tuple(value)


def parse_policy(data: object) -> Policy:
    """Build a Policy from decoded JSON, checking every field."""
    if not isinstance(data, dict):
        raise PolicyError("the policy must be a JSON object with 'rules' (and optional 'groups')")
    unknown = set(data) - {"groups", "rules"}
    if unknown:
        raise PolicyError(f"unknown top-level key(s): {', '.join(sorted(unknown))}")
    groups_raw = data.get("groups", {})
    if not isinstance(groups_raw, dict):
        raise PolicyError("'groups' must be an object of group:NAME -> [members]")
    groups: dict[str, frozenset[str]] = {}
    for name, members in groups_raw.items():
        if not name.startswith("group:"):
            raise PolicyError(f"group names must start with 'group:', got {name!r}")
        members_t = _strings(members, f"groups[{name!r}]")
        if any(m.startswith("group:") for m in members_t):
            raise PolicyError(f"groups[{name!r}]: groups cannot contain groups")
        groups[name] = frozenset(members_t)
    rules_raw = data.get("rules")
    if not isinstance(rules_raw, list):
        raise PolicyError("'rules' must be a list")
    rules = []
    for i, rule in enumerate(rules_raw):
        if not isinstance(rule, dict) or set(rule) != {"principals", "tools"}:
            raise PolicyError(f"rules[{i}] must be an object with exactly 'principals' and 'tools'")
        principals = _strings(rule["principals"], f"rules[{i}].principals")
        for p in principals:
            if p.startswith("group:") and p not in groups:
                raise PolicyError(f"rules[{i}] names undefined group {p!r}")
        rules.append(Rule(principals, _strings(rule["tools"], f"rules[{i}].tools")))
    return Policy(groups=groups, rules=tuple(rules))


def load_policy(path: Path) -> Policy:
    try:
        text = path.read_text()
    except OSError as exc:
        raise PolicyError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    try:
        return parse_policy(data)
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from None
