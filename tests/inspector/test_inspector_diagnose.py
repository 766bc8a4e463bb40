"""`diagnose`: the root cause of each broken workload is the TOP finding of ONE call.

The scenarios (mcp_tailnet_lab.broken_workloads) are built in the lab's real kube-apiserver the way
the controllers, scheduler and kubelet would leave them; the crash loop's previous log is
served through the API server's pods/log proxy by a kubelet endpoint the test runs.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import yaml

from mcp_tailnet_lab.broken_workloads import CM_VALUE, LOG_SECRET, SCENARIOS, Scenario, build, container_log
from inspector_support import TRANSPORTS, err, ok, wire
from mcp_tailnet_lab.fake_kubelet import FakeKubelet, node_with_kubelet, running_kubelet


@pytest.fixture(scope="module")
def kubelet() -> Iterator[FakeKubelet]:
    with running_kubelet(container_log) as server:
        yield server


@pytest.fixture(scope="module")
def broken(cluster, kubelet: FakeKubelet) -> Iterator[str]:
    ns = f"diagnose-{secrets.token_hex(3)}"
    with node_with_kubelet(cluster, kubelet) as node:
        cluster.kubectl("create", "namespace", ns)
        try:
            build(cluster, ns, node)
            yield ns
        finally:
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def diagnosis(result) -> dict:
    """The answer's data: a diagnosis goes out once, as YAML text that parses to it (no structuredContent)."""
    assert result.structured_content is None
    return yaml.safe_load(ok(result))


def _top(result) -> dict:
    findings = diagnosis(result)["findings"]
    assert findings, ok(result)
    return findings[0]


def _never_shown(result) -> None:
    body = wire(result)
    assert CM_VALUE not in body and LOG_SECRET not in body


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.key for s in SCENARIOS])
def test_root_cause_is_the_top_finding_of_one_call(inspector, broken: str, scenario: Scenario) -> None:
    result = inspector.call("diagnose", {"resource": scenario.resource, "name": scenario.name, "namespace": broken})
    top = _top(result)
    assert top["reason"] == scenario.reason, diagnosis(result)["findings"][:3]
    for word in scenario.words:
        assert word in top["message"] + str(top.get("memoryLimit", "")), top
    assert top["object"].split("/", 1)[0] in ("Pod", "Deployment", "ReplicaSet", "StatefulSet", "Job")
    assert diagnosis(result)["rootCause"].endswith(top["message"][:100]) or \
        top["reason"] in diagnosis(result)["rootCause"]
    assert ok(result).splitlines()[0] == f"# Diagnosis of {scenario.resource}/{scenario.name}"
    _never_shown(result)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_crash_loop_with_exit_code_and_the_previous_instances_log(inspector, broken: str, kubelet: FakeKubelet,
                                                                   transport: str) -> None:
    before = len(kubelet.requests)
    result = inspector.call("diagnose", {"resource": "deployment", "name": "crashy", "namespace": broken,
                                         "log_lines": 5}, transport)
    top = _top(result)
    assert (top["reason"], top["object"], top["container"], top["exitCode"]) == (
        "CrashLoopBackOff", "Pod/crashy-3c4d-xxxxx", "app", 1)
    assert "6 restarts" in top["message"] and "last termination: Error, exit code 1" in top["message"]
    logs = top["lastLogLines"]
    assert logs[-1] == "panic: dial tcp 10.0.0.9:5432: connect: connection refused"
    assert "connecting with DB_PASSWORD=[REDACTED]" in logs  # scrubbed at the renderer's exit
    path, query = kubelet.requests[before]
    assert path == f"/containerLogs/{broken}/crashy-3c4d-xxxxx/app"
    assert query["previous"] == ["true"] and query["tailLines"] == ["5"] and "limitBytes" in query
    # the BackOff event explains nothing new: it is consumed, not listed again
    assert not any(f["reason"] == "BackOff" for f in diagnosis(result)["findings"])
    _never_shown(result)


def test_missing_configmap_key_names_only(inspector, broken: str) -> None:
    result = inspector.call("diagnose", {"resource": "deploy", "name": "cfg", "namespace": broken})
    top = _top(result)
    assert (top.get("configMapName"), top.get("missingKey"), top.get("container")) == (
        "app-settings", "DB_HOST", "app"), top
    reasons = [f["reason"] for f in diagnosis(result)["findings"]]
    # the kubelet's config error is listed too, after its cause; the key that exists is no finding
    assert "CreateContainerConfigError" in reasons and reasons.count("MissingConfigMapKey") == 1
    _never_shown(result)


def test_pod_and_namespace_targets(inspector, broken: str) -> None:
    pod = inspector.call("diagnose", {"resource": "pod", "name": "hungry-5e6f-xxxxx", "namespace": broken,
                                      "log_lines": 0})
    top = _top(pod)
    assert top["reason"] == "OOMKilled" and top["memoryLimit"] == "64Mi"
    assert top["lastLogLines"] == ["(logs not read (log_lines=0))"]
    whole = inspector.call("diagnose", {"namespace": broken, "max_findings": 100, "log_lines": 2})
    findings = diagnosis(whole)["findings"]
    objects = {f["object"] for f in findings}
    reasons = {f["reason"] for f in findings}
    assert {s.reason for s in SCENARIOS} <= reasons
    assert not any("fine" in o for o in objects)  # the healthy deployment is no finding
    ranks = [f["severity"] for f in findings]
    assert ranks == sorted(ranks)  # errors before warnings ("error" < "warning")
    assert diagnosis(whole)["target"] == f"namespace/{broken}"
    _never_shown(whole)


def test_root_cause_names_the_top_finding_without_repeating_it(inspector, broken: str) -> None:
    """Answers are read by the byte: rootCause points at findings[0], whose message is not said twice."""
    result = inspector.call("diagnose", {"resource": "deployment", "name": "imgpull", "namespace": broken})
    top = _top(result)
    assert diagnosis(result)["rootCause"] == f"{top['object']} (container app): ImagePullBackOff"
    # the registry's answer, not also the kubelet's "Back-off pulling image" that adds nothing
    assert top["message"].startswith("image 'registry.example/missing:9' cannot be pulled: Failed to pull image")
    assert "Back-off pulling" not in top["message"]
    assert ok(result).count("code = NotFound") == 1


def test_the_workloads_own_symptom_goes_when_an_error_explains_it(inspector, broken: str) -> None:
    for name in ("crashy", "hungry", "cfg"):
        result = inspector.call("diagnose", {"resource": "deployment", "name": name, "namespace": broken})
        reasons = [f["reason"] for f in diagnosis(result)["findings"]]
        assert "ReplicasUnavailable" not in reasons and reasons, reasons
    # a namespace-wide answer still lists every workload's state
    whole = inspector.call("diagnose", {"namespace": broken, "max_findings": 100, "log_lines": 0})
    assert any(f["reason"] == "ReplicasUnavailable" and f["object"] == "Deployment/crashy"
               for f in diagnosis(whole)["findings"])


def test_healthy_workload_has_no_findings(inspector, broken: str) -> None:
    result = inspector.call("diagnose", {"resource": "deployment", "name": "fine", "namespace": broken})
    out = ok(result)
    assert diagnosis(result)["findings"] == [] and diagnosis(result)["rootCause"] is None
    assert "no problems found" in out


def test_bounded_and_refused_inputs(inspector, broken: str) -> None:
    few = inspector.call("diagnose", {"namespace": broken, "max_findings": 3, "log_lines": 1})
    assert len(diagnosis(few)["findings"]) == 3
    assert any("showing the top 3 of" in n for n in diagnosis(few)["notes"])
    assert "between" in err(inspector.call("diagnose", {"namespace": broken, "max_findings": 1000}))
    assert "between" in err(inspector.call("diagnose", {"namespace": broken, "log_lines": 100000}))
    assert "ConfigMap" in err(inspector.call("diagnose", {"resource": "configmap", "name": "x", "namespace": broken}))
    assert "not found" in err(inspector.call("diagnose", {"resource": "deployment", "name": "nope",
                                                          "namespace": broken}))
    assert "name the Deployment" in err(inspector.call("diagnose", {"resource": "deployment", "namespace": broken}))


def test_diagnose_is_read_only(inspector) -> None:
    tool = next(t for t in inspector.tools() if t.name == "diagnose")
    assert tool.annotations.read_only_hint is True and tool.annotations.destructive_hint is False
