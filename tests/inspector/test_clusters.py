"""Several clusters behind one inspector: two real lab API servers, one inspector process.

Cluster `a` is the session's lab cluster (reached through a context of a merged kubeconfig),
`b` a second LocalCluster started for this module only (its own kubeconfig file). Each holds
a ConfigMap `whoami` labelled with its own name, so the same question shows which cluster
answered. The last test stops `b`: `a` keeps answering and `clusters` says why `b` does not.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcp_tailnet_lab.cluster import LocalCluster

from inspector_support import TRANSPORTS, Inspector, base_env, err, ok, running_inspector

WHOAMI = "whoami-" + secrets.token_hex(3)


def _merged_kubeconfig(a: LocalCluster, path: Path) -> Path:
    """A's admin kubeconfig with its context renamed `ctx-a` (plus a decoy context `ctx-b` for a
    name a caller might try), as an operator's multi-context kubeconfig looks."""
    doc = yaml.safe_load(a.kubeconfig.read_text())
    doc["contexts"] = [{"name": "ctx-a", "context": {"cluster": "lab", "user": "lab-admin"}},
                       {"name": "ctx-b", "context": {"cluster": "lab", "user": "lab-admin"}}]
    doc["current-context"] = "ctx-a"
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def two(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The second API server, the content that tells them apart, and one inspector serving both."""
    b = LocalCluster.start()
    tmp = tmp_path_factory.mktemp("clusters")
    try:
        for c, label in ((cluster, "a"), (b, "b")):
            c.kubectl("create", "configmap", WHOAMI, "-n", "default", f"--from-literal=cluster={label}")
            c.kubectl("label", "configmap", WHOAMI, "-n", "default", f"owner={label}")
        clusters_file = tmp / "clusters.yaml"
        clusters_file.write_text(yaml.safe_dump({"clusters": [
            {"name": "a", "context": "ctx-a"},
            {"name": "b", "kubeconfig": str(b.kubeconfig)},
        ]}))
        env = {**base_env(_merged_kubeconfig(cluster, tmp / "merged.kubeconfig")),
               "INSPECTOR_CLUSTERS": str(clusters_file), "INSPECTOR_CALL_TIMEOUT": "15"}
        with running_inspector(env, tmp) as server:
            yield {"server": server, "a": cluster, "b": b}
    finally:
        cluster.kubectl("delete", "configmap", WHOAMI, "-n", "default", check=False)
        b.stop()


def _owner(server: Inspector, transport: str, **where: str) -> str:
    result = server.call("get", {"resource": "configmaps", "name": WHOAMI, "namespace": "default",
                                 "output": "json", **where}, transport)
    ok(result)
    return result.structured_content["metadata"]["labels"]["owner"]


def test_every_tool_takes_a_configured_cluster_name(two: dict[str, Any]) -> None:
    tools = {t.name: t for t in two["server"].tools()}
    assert "clusters" in tools and "cluster" not in tools["clusters"].input_schema.get("properties", {})
    for name, tool in tools.items():
        if name == "clusters":
            continue
        prop = tool.input_schema["properties"].get("cluster")
        assert prop is not None, f"{name} has no cluster parameter"
        assert "default, a, b" in prop["description"], prop
        assert "cluster" not in tool.input_schema.get("required", [])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_same_question_gets_each_clusters_answer(two: dict[str, Any], transport: str) -> None:
    server = two["server"]
    assert _owner(server, transport, cluster="a") == "a"
    assert _owner(server, transport, cluster="b") == "b"
    assert _owner(server, transport) == "a"  # no cluster: the single-cluster settings' (ctx-a)
    assert _owner(server, transport, cluster="default") == "a"
    b_only = server.call("describe", {"resource": "configmap", "name": WHOAMI, "namespace": "default",
                                      "cluster": "b"}, transport)
    assert "owner: b" in ok(b_only) or "owner=b" in ok(b_only)


@pytest.mark.parametrize("name", ["c", "ctx-b", "B", " b", "b ", "../b", "lab", "https://127.0.0.1:6443",
                                  "arn:aws:iam::999999999999:role/admin", ""])
def test_unknown_cluster_is_refused_with_the_names(two: dict[str, Any], name: str) -> None:
    """Only a configured name picks a cluster: not a kubeconfig context (ctx-b exists in the file),
    not a URL, not a role; nothing close to a name is taken for it."""
    message = err(two["server"].call("get", {"resource": "configmaps", "namespace": "default", "cluster": name}))
    assert "unknown cluster" in message and "default, a, b" in message and "\n" not in message
    calls = [json.loads(line) for line in two["server"].logs().splitlines() if '"tool call"' in line]
    assert calls[-1]["cluster"] == "(unknown)"  # the caller's text stays out of the log


def test_the_log_names_the_cluster_of_each_call(two: dict[str, Any]) -> None:
    server = two["server"]
    ok(server.call("get", {"resource": "namespaces", "cluster": "b"}))
    calls = [json.loads(line) for line in server.logs().splitlines() if '"tool call"' in line]
    assert calls[-1]["tool"] == "get" and calls[-1]["cluster"] == "b" and calls[-1]["outcome"] == "ok"


def test_clusters_lists_source_version_and_reachability(two: dict[str, Any]) -> None:
    result = two["server"].call("clusters")
    ok(result)
    rows = {r["name"]: r for r in result.structured_content["clusters"]}
    assert list(rows) == ["default", "a", "b"]
    for name, c in (("default", two["a"]), ("a", two["a"]), ("b", two["b"])):
        assert rows[name]["reachable"] is True, rows[name]
        assert rows[name]["server"] == c.server and rows[name]["version"] == c.version
    assert rows["a"]["source"] == {"context": "ctx-a"}
    assert rows["b"]["source"] == {"context": "(current context)", "kubeconfig": str(two["b"].kubeconfig)}
    assert rows["default"]["default"] is True and rows["a"]["default"] is False


def test_one_cluster_down_degrades_only_its_own_answers(two: dict[str, Any]) -> None:
    """Runs last: stops b's API server for good."""
    server = two["server"]
    two["b"].stop()
    down = err(server.call("get", {"resource": "configmaps", "namespace": "default", "cluster": "b"}))
    assert "\n" not in down and "API server" in down, down
    assert _owner(server, "streamable-http", cluster="a") == "a"
    assert _owner(server, "sse") == "a"
    result = server.call("clusters")
    ok(result)
    rows = {r["name"]: r for r in result.structured_content["clusters"]}
    assert rows["b"]["reachable"] is False and "API server" in rows["b"]["reason"]
    assert rows["a"]["reachable"] is True and rows["default"]["reachable"] is True
    assert "not answering: b" in ok(result)
