"""Hostile and broken input against the real eks-inspector, on the lab's real API server.

The inspector runs with a namespace allow-list (one namespace of two) and the lab
cluster's admin kubeconfig, so the allow-list and the Secret rules are the only things
between a caller and the rest of the cluster: exactly what bad input must not get past.
Each tool call goes over Streamable HTTP as raw JSON-RPC on one session (cheap enough to
fuzz); every answer is checked for stack traces and for the Secret's value, and the
server's log for crashes ("outcome": "crash"), traces and the value.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector_process import Running, running_inspector
from reliability_support import bad_log_lines, leaks

pytestmark = pytest.mark.slow

SECRET_VALUE = "s3cr3t-RELIABILITY-value-9d41"
OTHER_MARKER = "other-namespace-marker-77ab"
FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def inspector(cluster, tmp_path_factory) -> Iterator[Running]:
    tag = uuid.uuid4().hex[:6]
    allowed, other = f"rel-a-{tag}", f"rel-b-{tag}"
    for ns in (allowed, other):
        cluster.kubectl("create", "namespace", ns)
    # created the way kubectl users do: last-applied-configuration carries the data too
    cluster.kubectl("apply", "-n", allowed, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": SECRET_VALUE}}))
    cluster.kubectl("apply", "-n", other, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-b", "labels": {"marker": OTHER_MARKER}},
        "data": {"k": OTHER_MARKER}}))  # the label shows even where ConfigMap values are summarised
    cluster.kubectl("apply", "-n", allowed, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-a", "labels": {"app": "web"}},
        "data": {"k": "fine"}}))
    try:
        with running_inspector(cluster.kubeconfig, tmp_path_factory.mktemp("rel-inspector"),
                               INSPECTOR_NAMESPACES=allowed, INSPECTOR_CALL_TIMEOUT="15") as server:
            server.allowed, server.other = allowed, other
            yield server
    finally:
        for ns in (allowed, other):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def answered(inspector: Running, status: int, text: str, answer: dict | None, what: object) -> dict:
    assert status < 500, f"{what!r}: HTTP {status}: {text[:300]}"
    assert answer is not None, f"{what!r}: no JSON-RPC answer: {text[:300]}"
    assert not leaks(text, [SECRET_VALUE]), f"{what!r}: leaked: {text[:500]}"
    assert OTHER_MARKER not in text, f"{what!r}: read a namespace outside the allow-list: {text[:500]}"
    return answer


def test_sanity_the_allowed_namespace_answers(inspector):
    _, text, answer = inspector.call("get", {"resource": "configmaps", "namespace": inspector.allowed})
    assert "cm-a" in text and not answer["result"].get("isError"), text[:500]
    _, text, answer = inspector.call("get", {"resource": "configmaps", "namespace": inspector.other})
    assert answer["result"]["isError"] and "allow-list" in text


def test_names_cannot_walk_out_of_the_allowed_namespace(inspector):
    """A name is a path segment: dot segments in it must not reach another namespace or a Secret."""
    a, b = inspector.allowed, inspector.other
    tries = [("get", {"resource": "configmaps", "namespace": a, "name": f"../../{b}/configmaps/cm-b"}),
             ("get", {"resource": "configmaps", "namespace": a, "name": f"../../{b}/configmaps/cm-b", "output": "json"}),
             ("describe", {"resource": "configmaps", "namespace": a, "name": f"../../{b}/configmaps/cm-b"}),
             ("get", {"resource": "configmaps", "namespace": a, "name": f"x/../../../{b}/configmaps/cm-b"}),
             ("get", {"resource": "configmaps", "namespace": a, "name": "../secrets/db", "output": "json"}),
             ("get", {"resource": "configmaps", "namespace": a, "name": "%2e%2e/secrets/db", "output": "yaml"}),
             ("get", {"resource": "configmaps", "namespace": f"{a}/../{b}", "name": "cm-b"}),
             ("get", {"resource": "configmaps", "namespace": a, "name": "cm-a?fieldSelector=x"}),
             ("logs", {"resource": "pods", "name": f"../../{b}/configmaps/cm-b", "namespace": a}),
             ("events", {"namespace": a, "name": f"../../{b}/configmaps/cm-b"})]
    walked = []
    for tool, args in tries:
        status, text, answer = inspector.call(tool, args)
        assert status < 500 and answer is not None, (tool, args, status, text[:300])
        assert SECRET_VALUE not in text
        squeezed = text.replace(" ", "")
        if OTHER_MARKER in text or '"kind":"Secret"' in squeezed or "Opaque" in text:
            walked.append((tool, args))
    assert walked == [], f"these calls left the allow-list or the Secret rule: {walked}"


BAD_SELECTORS = ["!!!", "a in (", "a in (b", "=", "==x", "a=b,", ",", "a!=", "a=" + "v" * 70, "x" * 10000,
                 "a in (" + ",".join(str(i) for i in range(2000)) + ")", "\u202e=1", "a=\u0000", "a b c", "a==b==c",
                 "metadata.name=\n", "status.phase=Running&limit=1", "%", "{", "app=web\r\nX: y"]


# Selectors the API server certainly refuses (syntax, a key or value it cannot hold).
MALFORMED_LABEL_SELECTORS = {"!!!", "a in (", "a in (b", "=", "==x", "a=" + "v" * 70, "x" * 10000, "\u202e=1",
                             "a b c", "a==b==c", "status.phase=Running&limit=1", "%", "{", "app=web\r\nX: y"}


def test_bad_selectors_get_tool_errors(inspector):
    """Each selector gets a tool answer: a one-line refusal naming the request, or (for one the API
    server accepts) a list that holds nothing beyond the allowed namespace's own ConfigMap."""
    refused = set()
    for sel in BAD_SELECTORS:
        for key in ("label_selector", "field_selector"):
            args = {"resource": "configmaps", "namespace": inspector.allowed, key: sel}
            answer = answered(inspector, *inspector.call("get", args), (key, sel[:40]))
            assert "result" in answer, (key, sel[:40], answer)  # a tool answer, not a protocol error
            result = answer["result"]
            text = result["content"][0]["text"]
            if result.get("isError"):
                assert text.startswith("bad request for list configmaps") and "\n" not in text, (key, sel[:40], text)
                refused.add((key, sel))
            else:
                assert {row[0] for row in result["structuredContent"]["rows"]} <= {"cm-a"}, (key, sel[:40])
    # configmaps have no field but metadata.name/namespace; the API server reads ",", "=" and
    # "metadata.name=\n" as empty terms or an empty name (it answered them with no items above)
    assert {sel for key, sel in refused if key == "field_selector"} >= set(BAD_SELECTORS) - {",", "=", "metadata.name=\n"}
    assert {sel for key, sel in refused if key == "label_selector"} >= MALFORMED_LABEL_SELECTORS


HUGE = "n" * 200_000


def test_huge_unicode_and_odd_names(inspector):
    for resource in ("", " ", "pods/log", "../secrets", "secrets", "Secret", "secret.v1.", "v1", ".", "..",
                     "\U0001f600", "\u0000", "pods" * 5000, "a.b.c.d.e.f", "*", "configmaps.", ".configmaps"):
        for tool in ("get", "describe"):
            args = {"resource": resource, "namespace": inspector.allowed, "name": "x"} if tool == "describe" \
                else {"resource": resource, "namespace": inspector.allowed}
            answered(inspector, *inspector.call(tool, args), (tool, resource[:40]))
    for name in (HUGE, "\U0001f600" * 1000, "a\u0000b", "\n", "..", ".", "/", "//", "a/b", "%00", "\\", "~"):
        for tool in ("get", "describe"):
            answered(inspector, *inspector.call(tool, {"resource": "configmaps", "namespace": inspector.allowed,
                                                       "name": name}), (tool, name[:40]))
    for ns in (HUGE, "\U0001f600", "", "..", "kube-system", inspector.other.upper()):
        answered(inspector, *inspector.call("get", {"resource": "configmaps", "namespace": ns}), ("ns", ns[:40]))


def test_malformed_arguments_and_jsonrpc(inspector):
    cases = [("tools/call", {"name": "get"}), ("tools/call", {"name": "get", "arguments": None}),
             ("tools/call", {"name": "get", "arguments": []}), ("tools/call", {"name": "get", "arguments": "x"}),
             ("tools/call", {"name": "get", "arguments": {"resource": 7}}),
             ("tools/call", {"name": "get", "arguments": {"resource": "pods", "limit": -1}}),
             ("tools/call", {"name": "get", "arguments": {"resource": "pods", "limit": 10**30}}),
             ("tools/call", {"name": "get", "arguments": {"resource": "pods", "output": "go-template={{.}}"}}),
             ("tools/call", {"name": "get", "arguments": {"resource": "pods", "sort_by": "{" * 1000}}),
             ("tools/call", {"name": "get", "arguments": {"resource": "configmaps", "continue_token": "garbage=="}}),
             ("tools/call", {"name": "logs", "arguments": {"resource": "pods", "name": "p", "grep": "(" * 50,
                                                          "regex": True}}),
             ("tools/call", {"name": "logs", "arguments": {"resource": "pods", "name": "p", "tail_lines": -5}}),
             ("tools/call", {"name": "describe", "arguments": {"resource": "pods", "name": "p", "events_limit": 10**9}}),
             ("tools/call", {"name": "top", "arguments": {"what": "everything"}}),
             ("tools/call", {"name": "api_resources", "arguments": {"api_group": "\u0000" * 100}}),
             ("tools/call", {"name": "nope", "arguments": {}}),
             ("tools/call", {"name": "x" * 100_000, "arguments": {}}),
             ("tools/call", None), ("tools/list", {"cursor": "x" * 1000}), ("resources/read", {"uri": "file:///etc/passwd"}),
             ("prompts/get", {"name": "x"}), ("", None), ("x" * 10_000, {})]
    for method, params in cases:
        answered(inspector, *inspector.rpc(method, params), (method[:30], str(params)[:80]))


tool_names = st.sampled_from(["get", "describe", "logs", "events", "top", "api_resources", "cluster_overview"])
texts = st.text(max_size=60) | st.sampled_from(["..", "../..", "pods", "secrets", "configmaps", "cm-a", "db",
                                                "kube-system", "default", "a=b", "status.phase=Running"])


@FUZZ
@given(tool=tool_names, args=st.fixed_dictionaries({}, optional={
    "resource": texts, "name": texts, "namespace": texts, "label_selector": texts, "field_selector": texts,
    "output": st.sampled_from(["table", "wide", "name", "yaml", "json", "jsonpath", ""]),
    "limit": st.integers(-5, 10_000), "continue_token": texts, "sort_by": texts, "all_namespaces": st.booleans(),
    "include_secret_metadata": st.booleans(), "grep": texts, "regex": st.booleans(), "tail_lines": st.integers(-1, 10**6),
    "what": texts, "events_limit": st.integers(-1, 500), "warnings_only": st.booleans()}))
def test_fuzz_tool_arguments(inspector, tool, args):
    answered(inspector, *inspector.call(tool, args), (tool, args))


def test_zz_the_inspector_survived_everything_above(inspector):
    assert inspector.proc.poll() is None, "eks-inspector died"
    _, text, answer = inspector.call("get", {"resource": "configmaps", "namespace": inspector.allowed})
    assert "cm-a" in text
    log = inspector.log.read_text(errors="replace")
    bad = bad_log_lines(log, [SECRET_VALUE])
    assert not bad, "\n".join(bad[:5])
    crashes = [line for line in log.splitlines() if '"outcome": "crash"' in line]
    assert not crashes, "tools failed unexpectedly:\n" + "\n".join(crashes[:5])
