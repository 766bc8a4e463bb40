"""Least-privilege rules for the two role policies and their trust policy.

Each role gets an allow-list of actions; wildcards in actions are refused, and
`Resource: "*"` only where AWS offers no narrower resource. The secret the task
definition reads must be the one and only secret the execution role can read.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from mcp_tailnet_ecs.rules import Finding

EXECUTION_ACTIONS = frozenset({
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchGetImage",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "secretsmanager:GetSecretValue",
    "kms:Decrypt",
})
#: The EKS calls eks_inspector makes (eks_auth.py and tools/eks.py), read-only, one cluster.
TASK_ACTIONS = frozenset({
    "eks:DescribeCluster",
    "eks:ListNodegroups",
    "eks:DescribeNodegroup",
    "eks:ListAddons",
    "eks:DescribeAddon",
    "eks:ListAccessEntries",
    "eks:DescribeAccessEntry",
    "eks:ListAssociatedAccessPolicies",
    "eks:ListInsights",
    "eks:DescribeInsight",
    "elasticfilesystem:ClientMount",
    "elasticfilesystem:ClientWrite",
    # --cluster ... ROLE_ARN: exactly the configured roles (render names each one)
    "sts:AssumeRole",
})
#: Actions AWS authorizes only against "*".
STAR_RESOURCE_OK = frozenset({"ecr:GetAuthorizationToken"})


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def check_policy(policy: Any, *, role: str, allowed: frozenset[str]) -> list[Finding]:
    """Shape, allow-list and wildcard checks for one identity policy."""
    if not isinstance(policy, dict) or policy.get("Version") != "2012-10-17" or not isinstance(policy.get("Statement"), list):
        return [Finding("iam-shape", role, 'needs "Version": "2012-10-17" and a "Statement" list')]
    found = []
    for i, st in enumerate(policy["Statement"]):
        where = f"{role}.Statement[{i}]({st.get('Sid', '')})"
        if set(st) & {"NotAction", "NotResource", "Principal", "NotPrincipal"}:
            found.append(Finding("iam-shape", where, "no NotAction/NotResource/Principal in a role policy"))
        if st.get("Effect") != "Allow" or "Action" not in st or "Resource" not in st:
            found.append(Finding("iam-shape", where, "each statement: Effect Allow, Action, Resource"))
            continue
        actions = [str(a) for a in _as_list(st["Action"])]
        resources = [str(r) for r in _as_list(st["Resource"])]
        for action in actions:
            if "*" in action or "?" in action:
                found.append(Finding("iam-wildcard-action", where, f"{action!r}: name each action"))
            elif action not in allowed:
                found.append(Finding("iam-allowed-actions", where, f"{action} is not something the {role} needs"))
        if "*" in resources and not set(actions) <= STAR_RESOURCE_OK:
            found.append(Finding("iam-wildcard-resource", where, 'Resource "*" only for ecr:GetAuthorizationToken'))
    return found


def check_trust(policy: Any) -> list[Finding]:
    """Only ECS tasks of this account may assume the roles."""
    try:
        statements = policy["Statement"]
        principals = [st["Principal"]["Service"] for st in statements]
    except (KeyError, TypeError):
        return [Finding("iam-trust", "trust-policy", "one statement per principal, Principal.Service")]
    found = []
    if any(p != "ecs-tasks.amazonaws.com" for p in principals):
        found.append(Finding("iam-trust", "trust-policy", "only ecs-tasks.amazonaws.com may assume the task roles"))
    if any("aws:SourceAccount" not in (st.get("Condition") or {}).get("StringEquals", {}) for st in statements):
        found.append(Finding("iam-trust", "trust-policy", "condition aws:SourceAccount guards against the confused deputy"))
    return found


def secret_covered(policy: dict[str, Any], value_from: str) -> list[Finding]:
    """The execution role reads exactly the secret the task definition names."""
    resources = [
        str(r)
        for st in policy.get("Statement", [])
        if "secretsmanager:GetSecretValue" in _as_list(st.get("Action", []))
        for r in _as_list(st.get("Resource", []))
    ]
    if not resources:
        return [Finding("iam-one-secret", "execution-role-policy", "cannot read the auth key secret")]
    arn = value_from.split(":", 7)
    base = ":".join(arn[:7]) if len(arn) >= 7 else value_from  # drop :json-key:stage:version suffixes
    found = []
    if not any(base == r or fnmatch.fnmatchcase(base, r) or fnmatch.fnmatchcase(base + "-AbCdEf", r) for r in resources):
        found.append(Finding("iam-one-secret", "execution-role-policy", "does not cover the secret the task definition reads"))
    too_wide = [r for r in resources if r.endswith("*") or r.count("?") > 6]
    if too_wide or len(resources) > 1:
        found.append(Finding("iam-one-secret", "execution-role-policy", "read exactly one secret (suffix -?????? at most)"))
    return found


def roles_assumed(policy: dict[str, Any], configured: set[str]) -> list[Finding]:
    """The task role may assume exactly the roles the inspector's clusters name (`--cluster ... ROLE_ARN`):
    each one by its full ARN, never a pattern, never a role no cluster uses."""
    found = []
    for i, st in enumerate(policy.get("Statement", [])):
        if "sts:AssumeRole" not in _as_list(st.get("Action", [])):
            continue
        where = f"task-role.Statement[{i}]({st.get('Sid', '')})"
        for r in (str(r) for r in _as_list(st.get("Resource", []))):
            if "*" in r or "?" in r:
                found.append(Finding("iam-assume-role", where, f"{r!r}: name each role the clusters use, no pattern"))
            elif r not in configured:
                found.append(Finding("iam-assume-role", where, f"{r} is no role of the inspector's clusters (--cluster)"))
    return found
