"""The IAM documents grant what the task needs and nothing more."""

from __future__ import annotations

import copy

import pytest

from mcp_tailnet_ecs import iam_rules, templates
from mcp_tailnet_ecs.render import render
from mcp_tailnet_ecs.validate import validate

from ecs_support import render_options

EXEC = templates.EXECUTION_POLICY


def _statement(bundle: templates.Bundle, sid: str) -> dict:
    return next(st for st in bundle[EXEC]["Statement"] if st.get("Sid") == sid)


def test_execution_role_reads_exactly_the_referenced_secret(bundle: templates.Bundle) -> None:
    st = _statement(bundle, "ReadTheTailscaleAuthKey")
    assert st["Resource"] == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mcp-tailnet/ts-authkey-??????"
    assert validate(bundle, rendered=True) == []


def test_ecr_rights_only_for_an_ecr_registry(bundle: templates.Bundle) -> None:
    actions = {a for st in bundle[EXEC]["Statement"] for a in iam_rules._as_list(st["Action"])}
    assert not any(a.startswith("ecr:") for a in actions), "ghcr.io images need no ECR rights"
    ecr = render(render_options(owner=None, registry="123456789012.dkr.ecr.eu-west-1.amazonaws.com/mcp"))
    pull = next(st for st in ecr[EXEC]["Statement"] if st["Sid"] == "EcrPullOurImages")
    assert pull["Resource"] == [
        "arn:aws:ecr:eu-west-1:123456789012:repository/mcp/eks-inspector",
        "arn:aws:ecr:eu-west-1:123456789012:repository/mcp/mcp-hub",  # the hub task's
        "arn:aws:ecr:eu-west-1:123456789012:repository/mcp/mcp-tailnet-sidecar",
    ]


def test_task_role_scoped_to_the_one_cluster(bundle: templates.Bundle) -> None:
    cluster, parts = bundle[templates.TASK_POLICY]["Statement"]
    assert "eks:DescribeCluster" in cluster["Action"]
    assert cluster["Resource"] == "arn:aws:eks:eu-west-1:123456789012:cluster/prod"
    assert all(r.startswith("arn:aws:eks:eu-west-1:123456789012:") and "/prod/" in r for r in parts["Resource"])
    actions = [a for st in (cluster, parts) for a in st["Action"]]
    assert all(a.split(":")[1].startswith(("Describe", "List")) for a in actions), "read-only"


BREAKS = {
    "action wildcard": ("iam-wildcard-action", EXEC, lambda p: p["Statement"][0].update(Action="secretsmanager:*")),
    "resource wildcard": ("iam-wildcard-resource", EXEC, lambda p: p["Statement"][0].update(Resource="*")),
    "an action nobody needs": ("iam-allowed-actions", templates.TASK_POLICY,
                               lambda p: p["Statement"][0]["Action"].append("eks:DeleteCluster")),
    "every cluster": ("iam-wildcard-resource", templates.TASK_POLICY, lambda p: p["Statement"][0].update(Resource="*")),
    "NotAction": ("iam-shape", EXEC, lambda p: p["Statement"][0].update(NotAction="iam:*")),
    "every secret": ("iam-one-secret", EXEC,
                     lambda p: [st.update(Resource="arn:aws:secretsmanager:eu-west-1:123456789012:secret:*")
                                for st in p["Statement"] if st["Sid"] == "ReadTheTailscaleAuthKey"]),
    "another secret": ("iam-one-secret", EXEC,
                       lambda p: [st.update(Resource="arn:aws:secretsmanager:eu-west-1:123456789012:secret:other-??????")
                                  for st in p["Statement"] if st["Sid"] == "ReadTheTailscaleAuthKey"]),
    "any service may assume": ("iam-trust", templates.TRUST_POLICY,
                               lambda p: p["Statement"][0]["Principal"].update(Service="ec2.amazonaws.com")),
    "no confused-deputy guard": ("iam-trust", templates.TRUST_POLICY, lambda p: p["Statement"][0].pop("Condition")),
}


@pytest.mark.parametrize("variant", BREAKS)
def test_broken_policy_fails_its_rule(bundle: templates.Bundle, variant: str) -> None:
    rule, name, breaker = BREAKS[variant]
    broken = copy.deepcopy(bundle)
    breaker(broken[name])
    assert rule in {f.rule for f in validate(broken, rendered=True)}
