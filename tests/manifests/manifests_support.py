"""Reading the manifests the way kubectl does, for the tests in this folder.

Every test reads the real files (or kustomize's real rendering of them with the
lab-built kubectl), never a copy of their values, so a change to a manifest is what
the tests judge.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kubernetes.client
import yaml

from mcp_tailnet_lab.cluster import delete_namespace
from mcp_tailnet_lab.paths import REPO_DIR, binary

MANIFESTS = REPO_DIR / "manifests"
VARIANTS_DIR = REPO_DIR / "manifests-variants"
#: Every deployable variant: a kustomization beside manifests/, applied with -k.
VARIANTS = sorted(p.name for p in VARIANTS_DIR.iterdir() if (p / "kustomization.yaml").is_file())

DEFAULT_NAMESPACE = "mcp-tailnet"
SA_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

Doc = dict[str, Any]


def applied_files() -> list[Path]:
    """What `kubectl apply -f manifests/` reads: *.yaml, *.yml, *.json directly in the folder."""
    return sorted(p for p in MANIFESTS.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml", ".json"))


def load_docs(text: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(text) if d]


def docs_from_files(paths: Iterable[Path] | None = None) -> list[Doc]:
    """The objects `kubectl apply -f manifests/` sends, in file order."""
    out: list[Doc] = []
    for path in paths if paths is not None else applied_files():
        out.extend(load_docs(path.read_text()))
    return out


def kustomize(path: Path) -> str:
    """`kubectl kustomize PATH` with the lab-built kubectl (the same kustomize as `apply -k`)."""
    proc = subprocess.run(
        [str(binary("kubectl")), "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed: {proc.stderr.strip()}")
    return proc.stdout


def variant_path(name: str) -> Path:
    return VARIANTS_DIR / name


def key(doc: Doc) -> tuple[str, str, str]:
    """(kind, namespace, name): how kubectl identifies an object."""
    meta = doc["metadata"]
    return doc["kind"], meta.get("namespace", ""), meta["name"]


def find(docs: Iterable[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: Iterable[Doc], kind: str, name: str | None = None) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected exactly one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_specs(docs: Iterable[Doc]) -> Iterator[tuple[Doc, Doc]]:
    """(workload, pod spec) for every object that makes pods."""
    for d in docs:
        if d["kind"] == "Pod":
            yield d, d["spec"]
        elif d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            yield d, d["spec"]["template"]["spec"]
        elif d["kind"] == "CronJob":
            yield d, d["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def container(spec: Doc, name: str) -> Doc:
    matches = [c for c in spec["containers"] if c["name"] == name]
    assert matches, f"no container named {name!r} in {[c['name'] for c in spec['containers']]}"
    return matches[0]


def env_value(c: Doc, name: str) -> str | None:
    for e in c.get("env", []):
        if e["name"] == name:
            return e.get("value")
    return None


def pod_from_workload(workload: Doc, namespace: str, name: str) -> Doc:
    """A bare Pod with the workload's pod template: what its controller would create.

    The lab runs no controller-manager, so Pod Security admission (which judges Pods,
    and only warns about workloads) is exercised with the Pod the controller would make.
    """
    template = workload["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": template["metadata"].get("labels", {})},
        "spec": template["spec"],
    }


def dump(docs: Iterable[Doc]) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False)


# -- a real API server ------------------------------------------------------------------

#: What tests may leave in a namespace; deleted before the namespace itself.
_NAMESPACED_KINDS = "deployments,pods,secrets,serviceaccounts,roles,rolebindings,networkpolicies,events,configmaps"


def namespaces_of(docs: Iterable[Doc]) -> list[str]:
    return [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]


@contextmanager
def namespaces_created(cluster: Any, docs: list[Doc]) -> Iterator[list[str]]:
    """Create (for real) the Namespaces among docs, then remove every object docs name.

    `kubectl apply --dry-run=server` cannot see a Namespace created by the same apply, so
    the namespaces come first, as a user's first apply would have made them.
    """
    names = namespaces_of(docs)
    try:
        cluster.kubectl("apply", "-f", "-", input=dump(d for d in docs if d["kind"] == "Namespace"))
        yield names
    finally:
        remove(cluster, docs)


def remove(cluster: Any, docs: list[Doc]) -> None:
    """Delete what docs created (and what tests added in their namespaces), for good.

    No controller-manager runs here, so nothing empties a Terminating namespace: we delete
    its objects ourselves and clear its finalizer, or they would reappear with it.
    """
    cluster_scoped = [d for d in docs if "namespace" not in d["metadata"] and d["kind"] != "Namespace"]
    if cluster_scoped:
        cluster.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=dump(cluster_scoped))
    with cluster.api_client() as api:
        core = kubernetes.client.CoreV1Api(api)
        for ns in namespaces_of(docs):
            cluster.kubectl("delete", _NAMESPACED_KINDS, "--all", "-n", ns, "--ignore-not-found", "--wait=false")
            delete_namespace(core, ns)


# -- a pod run in Docker (tests/manifests/test_manifests_docker_pod.py, tests/charts) ----


def wait_alive(containers: dict[str, Any], spec: Doc, timeout: float, logs: Any) -> None:
    """Like the kubelet before it counts restarts: every container running, every liveness probe passing."""
    from mcp_tailnet_lab.waiting import wait_for

    def alive() -> bool:
        for c in spec["containers"]:
            container = containers[c["name"]]
            container.reload()
            assert container.status == "running", f"{c['name']} exited:\n{logs(container)}"
        return all(containers[c["name"]].exec_run(c["livenessProbe"]["exec"]["command"]).exit_code == 0
                   for c in spec["containers"])

    try:
        wait_for(alive, "every liveness probe of the pod", timeout, interval=2.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n" + "\n".join(f"--- {n}:\n{logs(c)}" for n, c in containers.items())) from None
