"""bench/inspector_plans.py: a scripted agent counts as having the root cause only when it does.

The troubleshooting bench's verdict (✓) is the evidence check; these tests hold it to the
scenarios' real wording in every form a server quotes it (plain, YAML-folded, JSON-escaped)
and make sure what the agent is told, or reads in any spec, never passes for the cause.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from inspector_plans import EVIDENCE, PLANS, TARGETS, missing_evidence, plan  # noqa: E402
from inspector_servers import Peer  # noqa: E402
from mcp_tailnet_lab.broken_workloads import SCENARIOS  # noqa: E402

NS = "broken-x"
# the words the lab's kubelet, scheduler and controllers write (broken_workloads.build)
CAUSES = {
    "image-pull": 'Failed to pull image "registry.example/missing:9": rpc error: code = NotFound desc = failed to '
                  'pull and unpack image "registry.example/missing:9": registry.example/missing:9: not found',
    "crash-loop": "panic: dial tcp 10.0.0.9:5432: connect: connection refused",
    "oom": "lastState: terminated: reason: OOMKilled exitCode: 137 limits: memory: 64Mi",
    "pending-resources": "0/1 nodes are available: 1 Insufficient cpu.",
    "pending-pvc": '0/1 nodes are available: persistentvolumeclaim "data-db-0" not found.',
    "readiness": "Readiness probe failed: HTTP probe failed with statuscode: 503",
    "configmap-key": f"couldn't find key DB_HOST in ConfigMap {NS}/app-settings",
    "stuck-rollout": 'reason: ProgressDeadlineExceeded message: ReplicaSet "stuck-v2" has timed out progressing.',
    "quota": 'Error creating: pods "greedy-0a0b-probe" is forbidden: exceeded quota: compute, requested: '
             "limits.cpu=2,requests.cpu=2",
    "job-oom": "terminated: reason: OOMKilled exitCode: 137",
}


def test_every_scenario_has_a_target_evidence_and_a_plan_per_peer() -> None:
    keys = [s.key for s in SCENARIOS]
    assert set(keys) == set(TARGETS) == set(EVIDENCE) == set(CAUSES)
    for peer in (Peer.KUBERNETES_MCP, Peer.EKS_MCP):
        assert set(PLANS[peer]) == set(keys)
        for key in keys:
            assert plan(peer, key, NS), (peer, key)
    for key in keys:
        assert [tool for tool, _ in plan(Peer.INSPECTOR, key, NS)] == ["diagnose"]


@pytest.mark.parametrize("key", list(CAUSES))
def test_the_cause_is_found_in_every_form_a_server_quotes_it(key: str) -> None:
    cause = CAUSES[key]
    folded = yaml.safe_dump({"message": cause}, width=40)  # YAML folds long strings onto lines
    quoted = yaml.safe_dump({"message": cause}, width=40, default_style='"')  # "...\<newline>  \ ..."
    escaped = json.dumps({"message": cause})  # JSON in a text block escapes the quotes
    for form in (cause, folded, quoted, escaped):
        assert missing_evidence(key, [form]) == [], (key, form)


@pytest.mark.parametrize("key", list(CAUSES))
def test_the_question_and_the_specs_are_no_evidence(key: str) -> None:
    """What the agent was told, and the workload's own spec, never pass for the root cause."""
    t = TARGETS[key]
    told = f"{t.kind} {t.name} in namespace {NS} is broken; pods {t.selector}, {t.pod} {t.replicaset}"
    specs = ("image: registry.example/missing:9\nconfigMapKeyRef: {name: app-settings, key: DB_HOST}\n"
             "resources: {limits: {memory: 64Mi, cpu: '2'}}\nreadinessProbe: {httpGet: {path: /ready}}\n"
             "claimName: data-db-0\nprogressDeadlineSeconds: 600\nstatus: {phase: Pending}")
    assert missing_evidence(key, [told, specs]), key


def test_evidence_split_over_several_answers_counts() -> None:
    assert missing_evidence("oom", ["reason: OOMKilled", "limits:\n  memory: 64Mi"]) == []
    assert missing_evidence("oom", ["reason: OOMKilled"]) == ["64Mi"]
