"""The manifests against the lab's real kube-apiserver (RBAC and Pod Security admission on).

- `kubectl apply --dry-run=server` of `-f manifests/`, `-k manifests/` and every variant.
- Pod Security: the TUN pod is refused in the restricted namespace, the default pod is not.
- Applied for real, then used with ServiceAccount tokens: what the inspector and the
  sidecar identities can and cannot do, and that a re-apply keeps the sidecar's state.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shlex
from collections.abc import Iterator
from pathlib import Path

import kubernetes.client
import pytest

from manifests_support import (
    DEFAULT_NAMESPACE,
    MANIFESTS,
    VARIANTS,
    docs_from_files,
    dump,
    find,
    key,
    kustomize,
    load_docs,
    namespaces_created,
    one,
    pod_from_workload,
    variant_path,
)
from mcp_tailnet_lab.paths import REPO_DIR

INSPECTOR_SA = "eks-inspector"
SIDECAR_SA = "mcp-tailnet-sidecar"
STATE_SECRET = "eks-inspector-tailscale-state"

APPLIES = {
    "-f manifests/": (["-f", str(MANIFESTS)], lambda: docs_from_files()),
    "-k manifests/": (["-k", str(MANIFESTS)], lambda: load_docs(kustomize(MANIFESTS))),
    **{
        f"-k manifests-variants/{v}": (["-k", str(variant_path(v))], lambda v=v: load_docs(kustomize(variant_path(v))))
        for v in VARIANTS
    },
}


@pytest.mark.parametrize("how", list(APPLIES))
def test_server_side_dry_run_accepts(cluster, how):
    args, render = APPLIES[how]
    docs = render()
    with namespaces_created(cluster, docs):
        proc = cluster.kubectl("apply", "--dry-run=server", *args, check=False)
        assert proc.returncode == 0, f"kubectl apply --dry-run=server {how} failed: {proc.stderr}"
        # kubectl prints one line per object: `kind.group/name created (server dry run)`.
        printed = set()
        for line in proc.stdout.splitlines():
            if line.endswith("(server dry run)"):
                ref = line.split(" ")[0]
                printed.add((ref.split("/")[0].split(".")[0], ref.split("/", 1)[1]))
        assert printed == {(kind.lower(), name) for kind, _ns, name in map(key, docs)}, proc.stdout
        if how.endswith("/tun"):
            # Its namespace enforces `privileged` but still warns at `restricted`.
            assert 'would violate PodSecurity "restricted:latest"' in proc.stderr, proc.stderr
        else:
            assert "Warning" not in proc.stderr, f"the API server warned: {proc.stderr}"
        # A dry run persists nothing.
        deployment = one(docs, "Deployment", "eks-inspector")
        get = cluster.kubectl("get", "deployment", "eks-inspector", "-n",
                              deployment["metadata"]["namespace"], check=False)
        assert get.returncode != 0 and "NotFound" in get.stderr


def _tun_deployment() -> dict:
    return one(load_docs(kustomize(variant_path("tun"))), "Deployment", "eks-inspector")


def test_pod_security_refuses_the_tun_pod_in_the_restricted_namespace(cluster):
    docs = docs_from_files()
    with namespaces_created(cluster, docs):
        pod = pod_from_workload(_tun_deployment(), DEFAULT_NAMESPACE, "tun-in-restricted")
        proc = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=dump([pod]), check=False)
        assert proc.returncode != 0, "Pod Security admission let a NET_ADMIN/hostPath/root pod into a restricted namespace"
        assert 'violates PodSecurity "restricted:latest"' in proc.stderr, proc.stderr
        for reason in ("NET_ADMIN", "hostPath", "runAsNonRoot"):
            assert reason in proc.stderr, f"{reason} not named in: {proc.stderr}"

        # Control: the default pod (userspace sidecar) is admitted in the same namespace.
        default = pod_from_workload(one(docs, "Deployment", "eks-inspector"), DEFAULT_NAMESPACE, "default-pod")
        ok = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=dump([default]), check=False)
        assert ok.returncode == 0, ok.stderr
        assert "Warning" not in ok.stderr, ok.stderr

        # Workloads are only warned about (their pods are refused): the warning names the level.
        warned = cluster.kubectl("apply", "--dry-run=server", "-f", "-",
                                 input=dump([{**_tun_deployment(), "metadata": {
                                     **_tun_deployment()["metadata"], "namespace": DEFAULT_NAMESPACE}}]),
                                 check=False)
        assert 'would violate PodSecurity "restricted:latest"' in warned.stderr, warned.stderr


def test_pod_security_admits_the_tun_pod_in_its_own_namespace(cluster):
    docs = load_docs(kustomize(variant_path("tun")))
    with namespaces_created(cluster, docs) as (namespace,):
        pod = pod_from_workload(_tun_deployment(), namespace, "tun-pod")
        proc = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=dump([pod]), check=False)
        assert proc.returncode == 0, proc.stderr
        # Still audited and warned at `restricted`, so nobody mistakes it for the default.
        assert 'would violate PodSecurity "restricted:latest"' in proc.stderr, proc.stderr


# -- applied for real, used with ServiceAccount tokens ----------------------------------


class Identity:
    """kubectl as one ServiceAccount, through a token from the TokenRequest API."""

    def __init__(self, cluster, service_account: str, workdir: Path) -> None:
        token = cluster.mint_token(DEFAULT_NAMESPACE, service_account, expiration_seconds=3600)
        self.cluster = cluster
        self._token = token
        self.name = service_account
        self.kubeconfig = cluster.kubeconfig_for_token(token, workdir / f"{service_account}.kubeconfig")

    def core(self) -> kubernetes.client.CoreV1Api:
        """The API as a program (tailscaled's state store) calls it: no kubectl annotations."""
        cfg = kubernetes.client.Configuration()
        cfg.host = self.cluster.server
        cfg.ssl_ca_cert = str(self.cluster.ca_file)
        cfg.api_key = {"authorization": f"Bearer {self._token}"}
        return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(cfg))

    def run(self, *args: str, input: str | None = None):
        return self.cluster.kubectl(*args, input=input, kubeconfig=self.kubeconfig, check=False)

    def allowed(self, *args: str, input: str | None = None) -> str:
        proc = self.run(*args, input=input)
        assert proc.returncode == 0, f"{self.name} should be allowed `kubectl {' '.join(args)}`: {proc.stderr}"
        return proc.stdout

    def forbidden(self, *args: str, input: str | None = None) -> None:
        proc = self.run(*args, input=input)
        # RBAC's refusal: `... is forbidden: User "system:serviceaccount:..." cannot ...`
        assert proc.returncode != 0 and "forbidden" in proc.stderr.lower() and self.name in proc.stderr, (
            f"{self.name} should be forbidden `kubectl {' '.join(args)}`: rc={proc.returncode} {proc.stderr}"
        )

    def can_i(self, verb: str, resource: str, *, namespace: str | None = DEFAULT_NAMESPACE) -> bool:
        ns = ["-n", namespace] if namespace else ["--all-namespaces"]
        proc = self.run("auth", "can-i", verb, resource, *ns)
        assert proc.stdout.strip() in ("yes", "no"), proc.stderr
        return proc.stdout.strip() == "yes"


def documented_authkey_command() -> list[str]:
    """kubectl's arguments in docs/eks.md's auth-key step (`... | kubectl ARGS; unset ...`)."""
    text = (REPO_DIR / "docs" / "eks.md").read_text().replace("\\\n", " ")
    match = re.search(r"\| kubectl (-n mcp-tailnet create secret generic [^;\n]+);", text)
    assert match, "docs/eks.md no longer shows the `| kubectl -n mcp-tailnet create secret generic ...;` step"
    args = shlex.split(match.group(1))
    assert "--from-file=TS_AUTHKEY=/dev/stdin" in args
    return args


@pytest.fixture(scope="module")
def deployed(cluster, tmp_path_factory) -> Iterator[dict]:
    """`kubectl apply -f manifests/` for real (namespace first), plus a Secret that is not ours."""
    docs = docs_from_files()
    workdir = tmp_path_factory.mktemp("identities")
    with namespaces_created(cluster, docs):
        cluster.kubectl("apply", "-f", str(MANIFESTS))
        authkey = f"tskey-auth-lab{secrets.token_hex(8)}"
        cluster.kubectl(*documented_authkey_command(), input=authkey)
        cluster.kubectl("create", "secret", "generic", "someone-elses", "-n", DEFAULT_NAMESPACE,
                        "--from-literal=password=" + secrets.token_hex(8))
        yield {
            "docs": docs,
            "authkey": authkey,
            "inspector": Identity(cluster, INSPECTOR_SA, workdir),
            "sidecar": Identity(cluster, SIDECAR_SA, workdir),
        }


def test_inspector_reads_the_cluster(deployed):
    inspector = deployed["inspector"]
    pods = json.loads(inspector.allowed("get", "pods", "--all-namespaces", "-o", "json"))
    assert pods["kind"] == "List"
    deployments = json.loads(inspector.allowed("get", "deployments", "-n", DEFAULT_NAMESPACE, "-o", "json"))
    assert [d["metadata"]["name"] for d in deployments["items"]] == ["eks-inspector"]
    inspector.allowed("get", "namespaces")
    inspector.allowed("get", "nodes")
    inspector.allowed("get", "events", "--all-namespaces")


def test_inspector_cannot_read_any_secret(deployed):
    inspector = deployed["inspector"]
    inspector.forbidden("get", "secret", STATE_SECRET, "-n", DEFAULT_NAMESPACE)
    inspector.forbidden("get", "secret", "someone-elses", "-n", DEFAULT_NAMESPACE)
    inspector.forbidden("get", "secrets", "--all-namespaces")
    assert not inspector.can_i("watch", "secrets", namespace=None)


def test_inspector_cannot_create_change_or_delete_anything(deployed):
    inspector = deployed["inspector"]
    inspector.forbidden("create", "configmap", "x", "-n", DEFAULT_NAMESPACE)
    inspector.forbidden("create", "namespace", "made-by-inspector")
    inspector.forbidden("delete", "deployment", "eks-inspector", "-n", DEFAULT_NAMESPACE)
    inspector.forbidden("scale", "deployment", "eks-inspector", "--replicas=0", "-n", DEFAULT_NAMESPACE)
    inspector.forbidden("label", "namespace", DEFAULT_NAMESPACE, "touched=yes")
    for verb in ("create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "impersonate"):
        for resource in ("pods", "deployments.apps", "configmaps", "secrets", "serviceaccounts",
                         "clusterroles.rbac.authorization.k8s.io", "rolebindings.rbac.authorization.k8s.io",
                         "pods/exec", "pods/portforward", "serviceaccounts/token"):
            assert not inspector.can_i(verb, resource, namespace=None), f"inspector may {verb} {resource}"


def test_sidecar_reads_and_writes_only_its_own_state_secret(deployed):
    sidecar = deployed["sidecar"]
    got = json.loads(sidecar.allowed("get", "secret", STATE_SECRET, "-n", DEFAULT_NAMESPACE, "-o", "json"))
    assert got["metadata"]["name"] == STATE_SECRET
    # patch (containerboot's strategic-merge patches) and update (tailscaled's state store)
    sidecar.allowed("patch", "secret", STATE_SECRET, "-n", DEFAULT_NAMESPACE, "--type=merge",
                    "-p", json.dumps({"data": {"device_id": base64.b64encode(b"n123").decode()}}))
    # An update (PUT) of the whole object, as tailscaled's Kubernetes state store does it.
    # (Not `kubectl replace`: kubectl rewrites its last-applied annotation on replace/edit,
    # after which a re-apply would remove these keys; docs/eks.md warns about it.)
    core = sidecar.core()
    live = core.read_namespaced_secret(STATE_SECRET, DEFAULT_NAMESPACE)
    live.data = {**(live.data or {}), "_current-profile": base64.b64encode(b"profile-abcd").decode()}
    core.replace_namespaced_secret(STATE_SECRET, DEFAULT_NAMESPACE, live)
    assert "_current-profile" in core.read_namespaced_secret(STATE_SECRET, DEFAULT_NAMESPACE).data

    for other in ("someone-elses", "mcp-tailnet-sidecar-token"):
        sidecar.forbidden("get", "secret", other, "-n", DEFAULT_NAMESPACE)
        sidecar.forbidden("patch", "secret", other, "-n", DEFAULT_NAMESPACE, "--type=merge", "-p", '{"data":{}}')
    sidecar.forbidden("get", "secrets", "-n", DEFAULT_NAMESPACE)
    sidecar.forbidden("get", "secret", STATE_SECRET, "-n", "kube-system")
    sidecar.forbidden("create", "secret", "generic", "made-by-sidecar", "-n", DEFAULT_NAMESPACE)
    sidecar.forbidden("delete", "secret", STATE_SECRET, "-n", DEFAULT_NAMESPACE)
    sidecar.forbidden("get", "pods", "-n", DEFAULT_NAMESPACE)


def test_sidecar_passes_the_checks_containerboot_makes(deployed):
    """containerboot asks with SelfSubjectAccessReview: get+update required, patch used, create not needed."""
    sidecar = deployed["sidecar"]
    answers = {verb: sidecar.can_i(verb, f"secrets/{STATE_SECRET}") for verb in ("get", "update", "patch", "create")}
    assert answers == {"get": True, "update": True, "patch": True, "create": False}
    assert not sidecar.can_i("get", "secrets/someone-elses")
    event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"eks-inspector.{secrets.token_hex(4)}", "namespace": DEFAULT_NAMESPACE},
        "involvedObject": {"kind": "Pod", "name": "eks-inspector-x", "namespace": DEFAULT_NAMESPACE},
        "reason": "AuthKeyUsed", "message": "node logged in", "type": "Normal",
        "source": {"component": "tailscale-container"},
    }
    sidecar.allowed("create", "-f", "-", input=json.dumps(event))


def test_reapplying_keeps_the_state_the_sidecar_wrote(deployed, cluster):
    sidecar = deployed["sidecar"]
    marker = base64.b64encode(secrets.token_bytes(8)).decode()
    # containerboot patches; tailscaled's store updates the whole object: do both.
    sidecar.allowed("patch", "secret", STATE_SECRET, "-n", DEFAULT_NAMESPACE, "--type=merge",
                    "-p", json.dumps({"data": {"device_fqdn": base64.b64encode(b"eks-inspector.ts.net").decode()}}))
    core = sidecar.core()
    live = core.read_namespaced_secret(STATE_SECRET, DEFAULT_NAMESPACE)
    live.data = {**(live.data or {}), "_machinekey": marker}
    core.replace_namespaced_secret(STATE_SECRET, DEFAULT_NAMESPACE, live)
    authkey_before = _secret_data(cluster, "mcp-tailnet-authkey")
    for args in (["-f", str(MANIFESTS)], ["-k", str(MANIFESTS)]):
        cluster.kubectl("apply", *args)
        data = _secret_data(cluster, STATE_SECRET)
        assert data.get("_machinekey") == marker and "device_fqdn" in data, f"apply {args[0]} wiped the state"
        assert _secret_data(cluster, "mcp-tailnet-authkey") == authkey_before, f"apply {args[0]} touched the key"


def _secret_data(cluster, name: str) -> dict:
    live = json.loads(cluster.kubectl("get", "secret", name, "-n", DEFAULT_NAMESPACE, "-o", "json").stdout)
    return live.get("data", {})


def test_the_documented_auth_key_command_stores_the_key_verbatim(deployed, cluster):
    """docs/eks.md's `kubectl create secret` line, run as written (the key on stdin)."""
    assert base64.b64decode(_secret_data(cluster, "mcp-tailnet-authkey")["TS_AUTHKEY"]) == deployed["authkey"].encode()
    # Nobody's token can read it: the kubelet mounts it into the sidecar, no API call needed.
    deployed["sidecar"].forbidden("get", "secret", "mcp-tailnet-authkey", "-n", DEFAULT_NAMESPACE)
    deployed["inspector"].forbidden("get", "secret", "mcp-tailnet-authkey", "-n", DEFAULT_NAMESPACE)


def test_applied_objects_are_what_the_files_say(deployed, cluster):
    for doc in deployed["docs"]:
        kind, ns, name = key(doc)
        args = ["get", kind, name, "-o", "json"] + (["-n", ns] if ns else [])
        live = json.loads(cluster.kubectl(*args).stdout)
        assert live["metadata"]["name"] == name
    ns = json.loads(cluster.kubectl("get", "namespace", DEFAULT_NAMESPACE, "-o", "json").stdout)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert not find(deployed["docs"], "Service")
