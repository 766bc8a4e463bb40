"""diagnose, rollout and explain with only the shipped ClusterRole: nothing they read is refused."""

from __future__ import annotations

import json

import yaml

from mcp_tailnet_lab.broken_workloads import Builder
from inspector_support import ok
from test_inspector_rbac import readonly_inspector  # noqa: F401 - the fixture: the shipped role, bound to an SA


def test_new_tools_need_no_more_than_the_shipped_role(cluster, readonly_inspector) -> None:  # noqa: F811
    server, ns = readonly_inspector
    b = Builder(cluster, ns, node="none")
    template = {"metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/db:2"}]}}
    sts = b.create({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
                    "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                             "template": template}})
    b.create({"apiVersion": "apps/v1", "kind": "ControllerRevision",
              "metadata": {"name": "db-r1", "labels": {"app": "db"}, "ownerReferences": [b.owner_ref(sts)]},
              "revision": 1, "data": {"spec": {"template": {**template, "$patch": "replace"}}}})
    rollout = server.call("rollout", {"resource": "statefulset", "name": "db", "namespace": ns})
    assert "forbidden" not in ok(rollout), ok(rollout)  # ControllerRevisions are in the role
    assert [h["revision"] for h in rollout.structured_content["history"]] == [1]
    diagnosis = server.call("diagnose", {"namespace": ns, "max_findings": 100})
    assert "forbidden" not in ok(diagnosis), ok(diagnosis)  # events, pods, configmaps, PVCs, nodes, pods/log
    assert json.dumps(yaml.safe_load(ok(diagnosis))).count("StatefulSet/db") >= 1  # a diagnosis is YAML text
    explained = server.call("explain", {"path": "statefulset.spec.updateStrategy"})
    assert "RollingUpdateStatefulSetStrategy" in ok(explained)  # /openapi/v3 is open to authenticated users
