"""Run every offline check over a bundle of documents: model, Fargate rules, IAM.

One entry point so `render`, `validate` and `register` all refuse the same things.
"""

from __future__ import annotations

from mcp_tailnet_ecs import iam_rules, model, rules, templates
from mcp_tailnet_ecs.render import leftover_placeholders, sidecar_of
from mcp_tailnet_ecs.rules import Finding
from mcp_tailnet_ecs.templates import Bundle


def validate(bundle: Bundle, *, rendered: bool) -> list[Finding]:
    """Everything wrong with `bundle`; `rendered` also refuses leftover placeholders."""
    found: list[Finding] = []
    for name in templates.TASK_DEFINITIONS:
        if name not in bundle:
            continue
        td = bundle[name]
        found += [Finding("model", name, e) for e in model.model_errors(model.REGISTER_TASK_DEFINITION, td)]
        found += [Finding(f.rule, f"{name}: {f.where}", f.message) for f in rules.check_task_definition(td)]
        found += [Finding(f.rule, f"{name}: {f.where}", f.message) for f in rules.inspector_clusters(td)]
        sidecar = sidecar_of(td) or {}
        for secret in sidecar.get("secrets") or []:
            if secret.get("name") in rules.AUTH_KEY_NAMES and templates.EXECUTION_POLICY in bundle:
                found += iam_rules.secret_covered(bundle[templates.EXECUTION_POLICY], str(secret.get("valueFrom", "")))
    if templates.SERVICE in bundle:
        svc = bundle[templates.SERVICE]
        found += [Finding("model", templates.SERVICE, e) for e in model.model_errors(model.CREATE_SERVICE, svc)]
        found += [Finding(f.rule, f"{templates.SERVICE}: {f.where}", f.message) for f in rules.check_service(svc)]
    if templates.EXECUTION_POLICY in bundle:
        found += iam_rules.check_policy(bundle[templates.EXECUTION_POLICY], role="execution-role", allowed=iam_rules.EXECUTION_ACTIONS)
    if templates.TASK_POLICY in bundle:
        found += iam_rules.check_policy(bundle[templates.TASK_POLICY], role="task-role", allowed=iam_rules.TASK_ACTIONS)
        roles = rules.cluster_roles(bundle[templates.TASK_DEFINITION]) if templates.TASK_DEFINITION in bundle else set()
        found += iam_rules.roles_assumed(bundle[templates.TASK_POLICY], roles)
    if templates.TRUST_POLICY in bundle:
        found += iam_rules.check_trust(bundle[templates.TRUST_POLICY])
    if rendered:
        for name, doc in bundle.items():
            found += [Finding("placeholders", name, f"not rendered: {p}") for p in leftover_placeholders(doc)]
    return found
