"""`explain` documents what the lab's real `kubectl explain` documents, from the same OpenAPI v3."""

from __future__ import annotations

import re

import pytest

from inspector_support import TRANSPORTS, err, ok

PATHS = ["deployment", "deployment.spec.strategy", "pods.spec.containers.env", "pod.spec.containers.resources.limits",
         "svc.spec.ports", "cronjob.spec.jobTemplate.spec"]


def _words(text: str) -> list[str]:
    return text.split()


def _parse(out: str) -> dict:
    """kubectl explain's plaintext: header lines, description words, and each field's name/type/required."""
    head, _, rest = out.partition("DESCRIPTION:")
    description, _, fields = rest.partition("\nFIELDS:")
    rows = re.findall(r"^  (\S+)\t<([^>]+)>( -required-)?$", fields, re.M)
    return {"head": [ln.strip() for ln in head.strip().splitlines() if ln.strip()],
            "description": _words(description), "fields": rows, "field_words": _words(fields)}


@pytest.mark.parametrize("path", PATHS)
def test_explain_matches_kubectl(cluster, inspector, path: str) -> None:
    ours = _parse(ok(inspector.call("explain", {"path": path})))
    theirs = _parse(cluster.kubectl("explain", path).stdout)
    assert ours["head"] == theirs["head"]  # GROUP / KIND / VERSION / FIELD: name <type>
    assert ours["description"] == theirs["description"]  # the same words (wrapping aside)
    assert ours["fields"] == theirs["fields"]
    assert ours["fields"] or path.endswith(".limits")  # a map of Quantity has no fields below it
    assert ours["field_words"] == theirs["field_words"]  # enums and field descriptions too


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_explain_structured_and_errors(inspector, transport: str) -> None:
    result = inspector.call("explain", {"path": "deploy.spec.strategy", "api_version": "apps/v1"}, transport)
    ok(result)
    data = result.structured_content
    assert (data["group"], data["kind"], data["version"], data["field"], data["type"]) == (
        "apps", "Deployment", "v1", "spec.strategy", "DeploymentStrategy")
    assert {"name": "type", "type": "string", "required": False} in data["fields"]
    assert 'field "nope" does not exist' in err(inspector.call("explain", {"path": "deployment.spec.nope"}, transport))
    assert "RESOURCE[.FIELD" in err(inspector.call("explain", {"path": "deployment.spec/../x"}, transport))
    assert "doesn't have a resource type" in err(inspector.call("explain", {"path": "nosuchkind.spec"}, transport))


def test_explain_is_read_only(inspector) -> None:
    tool = next(t for t in inspector.tools() if t.name == "explain")
    assert tool.annotations.read_only_hint is True
