"""What the manifests promise, read from the files (and kustomize's rendering of them).

No API server here: these check the shape users deploy. The API-server tests in
test_manifests_apiserver.py prove the same objects against a real kube-apiserver.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler
from socketserver import UnixStreamServer

import pytest
import yaml

from manifests_support import (
    DEFAULT_NAMESPACE,
    MANIFESTS,
    SA_TOKEN_DIR,
    VARIANTS,
    applied_files,
    container,
    docs_from_files,
    env_value,
    find,
    key,
    kustomize,
    load_docs,
    one,
    pod_specs,
    variant_path,
)
from mcp_tailnet_lab.paths import REPO_DIR

READ_VERBS = {"get", "list", "watch"}


def all_renderings() -> dict[str, list[dict]]:
    out = {"-f manifests/": docs_from_files(), "-k manifests/": load_docs(kustomize(MANIFESTS))}
    for v in VARIANTS:
        out[f"-k manifests-variants/{v}"] = load_docs(kustomize(variant_path(v)))
    return out


@pytest.fixture(scope="module")
def renderings() -> dict[str, list[dict]]:
    return all_renderings()


def test_variants_exist():
    assert {"tun", "irsa", "pod-identity", "example-server"} <= set(VARIANTS)


def test_apply_f_and_apply_k_deploy_the_same_objects():
    by_file = {key(d): d for d in docs_from_files()}
    by_kustomize = {key(d): d for d in load_docs(kustomize(MANIFESTS))}
    assert by_file.keys() == by_kustomize.keys()
    for k, doc in by_file.items():
        assert by_kustomize[k] == doc, f"{k} differs between apply -f and apply -k"


def test_kustomization_lists_every_applied_file_and_nothing_else():
    kustomization = yaml.safe_load((MANIFESTS / "Kustomization").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in applied_files()]
    # `kubectl apply -f` would try to apply a kustomization.yaml as an object.
    assert not (MANIFESTS / "kustomization.yaml").exists()
    assert not (MANIFESTS / "kustomization.yml").exists()


def test_no_auth_key_or_any_secret_data_among_applied_objects(renderings):
    for how, docs in renderings.items():
        for secret in find(docs, "Secret"):
            assert not secret.get("data") and not secret.get("stringData"), (
                f"{how}: Secret {secret['metadata']['name']} carries data; a re-apply would overwrite the live value"
            )
        assert not find(docs, "Secret", "mcp-tailnet-authkey"), f"{how} would apply the auth-key Secret"


def test_auth_key_template_exists_but_apply_f_does_not_read_it():
    template = MANIFESTS / "templates" / "authkey-secret.yaml.template"
    doc = load_docs(template.read_text())[0]
    assert doc["kind"] == "Secret" and doc["metadata"]["name"] == "mcp-tailnet-authkey"
    assert doc["stringData"]["TS_AUTHKEY"].endswith("REPLACE-ME")
    assert template not in applied_files()
    assert "kubectl -n mcp-tailnet create secret generic" in template.read_text()


def test_default_namespace_enforces_restricted():
    ns = one(docs_from_files(), "Namespace", DEFAULT_NAMESPACE)
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"


def test_tun_variant_lives_in_its_own_non_restricted_namespace(renderings):
    docs = renderings["-k manifests-variants/tun"]
    (ns,) = find(docs, "Namespace")
    assert ns["metadata"]["name"] != DEFAULT_NAMESPACE
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    for d in docs:
        if d["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"]["namespace"] == ns["metadata"]["name"], key(d)
    binding = one(docs, "ClusterRoleBinding")
    assert binding["metadata"]["name"] != "mcp-tailnet-eks-inspector-read", "would clobber the default deployment's"
    assert binding["subjects"][0]["namespace"] == ns["metadata"]["name"]


def test_nothing_is_exposed_outside_the_tailnet(renderings):
    for how, docs in renderings.items():
        for svc in find(docs, "Service"):
            assert svc["spec"].get("type", "ClusterIP") not in ("LoadBalancer", "NodePort"), how
        for workload, spec in pod_specs(docs):
            assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), how
            for c in spec["containers"]:
                for port in c.get("ports", []):
                    assert "hostPort" not in port, (how, c["name"])
        policies = [p for p in find(docs, "NetworkPolicy") if p["spec"]["podSelector"] == {}]
        assert any(p["spec"]["policyTypes"] == ["Ingress"] and not p["spec"].get("ingress") for p in policies), (
            f"{how}: no NetworkPolicy denying all ingress"
        )


def test_every_container_is_locked_down_where_the_variant_allows(renderings):
    for how, docs in renderings.items():
        for workload, spec in pod_specs(docs):
            assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", how
            assert spec["securityContext"]["runAsNonRoot"] is True, how
            assert spec.get("automountServiceAccountToken") is False, how
            for c in spec["containers"] + spec.get("initContainers", []):
                where = f"{how}: {workload['metadata']['name']}/{c['name']}"
                res = c["resources"]
                assert {"cpu", "memory"} <= res["requests"].keys() and {"cpu", "memory"} <= res["limits"].keys(), where
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False, where
                assert sc["readOnlyRootFilesystem"] is True, where
                assert sc.get("privileged", False) is False, where
                assert sc["capabilities"]["drop"] == ["ALL"], where
                assert c["livenessProbe"] and c["readinessProbe"], where
                tun_sidecar = how.endswith("/tun") and c["name"] == "tailscale"
                if tun_sidecar:
                    assert sc["capabilities"]["add"] == ["NET_ADMIN"], where
                    assert env_value(c, "TS_USERSPACE") == "false", where
                    tun = [v for v in spec["volumes"] if v.get("hostPath", {}).get("path") == "/dev/net/tun"]
                    assert tun and tun[0]["hostPath"]["type"] == "CharDevice", where
                else:
                    assert "add" not in sc["capabilities"], where
                    assert sc.get("runAsNonRoot", True) is True, where
                    host_volumes = {v["name"] for v in spec["volumes"] if "hostPath" in v}
                    assert not host_volumes & {m["name"] for m in c.get("volumeMounts", [])}, where


def test_sidecar_runs_userspace_with_state_in_its_own_secret(renderings):
    for how, docs in renderings.items():
        for workload, spec in pod_specs(docs):
            sidecar = container(spec, "tailscale")
            if not how.endswith("/tun"):
                assert env_value(sidecar, "TS_USERSPACE") == "true", how
            state = env_value(sidecar, "TS_KUBE_SECRET")
            secret = one(docs, "Secret", state)
            assert secret["metadata"]["namespace"] == workload["metadata"]["namespace"]
            authkey = env_value(sidecar, "TS_AUTHKEY")
            assert authkey and authkey.startswith("file:"), "the auth key is read from a file, never an env value"
            mount = next(m for m in sidecar["volumeMounts"] if authkey.removeprefix("file:").startswith(m["mountPath"]))
            volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
            assert volume["secret"]["secretName"] == "mcp-tailnet-authkey"


def _sa_mount(spec: dict, c: dict) -> dict | None:
    mounts = [m for m in c.get("volumeMounts", []) if m["mountPath"] == SA_TOKEN_DIR]
    if not mounts:
        return None
    return next(v for v in spec["volumes"] if v["name"] == mounts[0]["name"])


def _rules_for(docs: list[dict], namespace: str, sa: str) -> list[dict]:
    """Every RBAC rule bound to one ServiceAccount in these docs."""
    rules = []
    for binding in find(docs, "RoleBinding") + find(docs, "ClusterRoleBinding"):
        for s in binding["subjects"]:
            if s["kind"] == "ServiceAccount" and s["name"] == sa and s["namespace"] == namespace:
                role = one(docs, binding["roleRef"]["kind"], binding["roleRef"]["name"])
                rules.extend(role["rules"])
    return rules


def test_each_container_holds_only_its_own_identity(renderings):
    """The MCP server never holds a token that can read the tailnet node's state Secret."""
    for how, docs in renderings.items():
        for workload, spec in pod_specs(docs):
            ns = workload["metadata"]["namespace"]
            sidecar = container(spec, "tailscale")
            state = env_value(sidecar, "TS_KUBE_SECRET")
            for c in spec["containers"]:
                volume = _sa_mount(spec, c)
                if volume is None:
                    continue
                if "projected" in volume:
                    assert any("serviceAccountToken" in s for s in volume["projected"]["sources"])
                    sa = spec["serviceAccountName"]
                else:
                    token_secret = one(docs, "Secret", volume["secret"]["secretName"])
                    assert token_secret["type"] == "kubernetes.io/service-account-token"
                    sa = token_secret["metadata"]["annotations"]["kubernetes.io/service-account.name"]
                rules = _rules_for(docs, ns, sa)
                touches_secrets = [r for r in rules if "secrets" in r["resources"] or "*" in r["resources"]]
                if c["name"] == "tailscale":
                    assert touches_secrets == [
                        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [state],
                         "verbs": ["get", "update", "patch"]}
                    ], f"{how}: sidecar identity {sa}"
                else:
                    assert not touches_secrets, f"{how}: {c['name']} identity {sa} can touch Secrets"
            assert _sa_mount(spec, sidecar) is not None, f"{how}: the sidecar needs its Kubernetes credentials"


def test_inspector_cluster_role_is_read_only_without_secrets():
    role = one(docs_from_files(), "ClusterRole", "mcp-tailnet-eks-inspector-read")
    for rule in role["rules"]:
        assert set(rule["verbs"]) <= READ_VERBS, rule
        assert "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule
        assert "secrets" not in rule["resources"], rule
        assert "resourceNames" not in rule, rule
    core = next(r for r in role["rules"] if r["apiGroups"] == [""])
    assert "pods" in core["resources"]


def _normalized_rules(rules: list[dict]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for r in rules
        for group in r.get("apiGroups", [])
        for resource in r.get("resources", [])
        for verb in r["verbs"]
    }


def test_inspector_ships_the_same_cluster_role_it_is_deployed_with():
    """One source of truth: manifests/ is what is deployed; the inspector's copy must agree."""
    shipped_path = REPO_DIR / "tools" / "eks-inspector" / "rbac" / "clusterrole.yaml"
    assert shipped_path.is_file(), f"{shipped_path} is missing (the inspector ships its ClusterRole there)"
    shipped = [d for d in load_docs(shipped_path.read_text()) if d["kind"] == "ClusterRole"]
    assert len(shipped) == 1
    deployed = one(docs_from_files(), "ClusterRole", "mcp-tailnet-eks-inspector-read")
    assert _normalized_rules(shipped[0]["rules"]) == _normalized_rules(deployed["rules"])


def test_sidecar_role_matches_what_containerboot_checks():
    docs = docs_from_files()
    role = one(docs, "Role", "mcp-tailnet-sidecar-state")
    secret_rules = [r for r in role["rules"] if "secrets" in r["resources"]]
    (rule,) = secret_rules
    # containerboot requires get+update and uses patch; create cannot be narrowed by name.
    assert set(rule["verbs"]) == {"get", "update", "patch"}
    assert rule["resourceNames"] == ["eks-inspector-tailscale-state"]
    events = [r for r in role["rules"] if "events" in r["resources"]]
    assert events and set(events[0]["verbs"]) == {"get", "create", "patch"}
    for r in role["rules"]:
        assert not {"list", "watch", "delete", "deletecollection", "*"} & set(r["verbs"]), r


def test_irsa_annotates_the_inspector_identity_and_keeps_aws_out_of_the_sidecar(renderings):
    docs = renderings["-k manifests-variants/irsa"]
    sa = one(docs, "ServiceAccount", "eks-inspector")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    deployment = one(docs, "Deployment", "eks-inspector")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "eks-inspector"
    for v in ("irsa", "pod-identity"):
        d = one(renderings[f"-k manifests-variants/{v}"], "Deployment", "eks-inspector")
        assert d["spec"]["template"]["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"] == "tailscale"
        assert env_value(container(d["spec"]["template"]["spec"], "eks-inspector"), "INSPECTOR_EKS_CLUSTER")


def test_example_server_pairs_an_unchanged_image_with_the_same_sidecar(renderings):
    docs = renderings["-k manifests-variants/example-server"]
    base = one(docs, "Deployment", "eks-inspector")
    example = one(docs, "Deployment", "example-mcp-server")
    spec = example["spec"]["template"]["spec"]
    sidecar = container(spec, "tailscale")
    assert sidecar["image"] == container(base["spec"]["template"]["spec"], "tailscale")["image"]
    server = next(c for c in spec["containers"] if c["name"] != "tailscale")
    assert "mcp-tailnet" not in server["image"], "the example pairs someone else's image"
    assert env_value(sidecar, "TS_KUBE_SECRET") != env_value(
        container(base["spec"]["template"]["spec"], "tailscale"), "TS_KUBE_SECRET"
    )


def test_sidecar_probes_ask_its_healthz_and_readyz(renderings, tmp_path):
    """The probe commands exist in the sidecar and reach /healthz and /readyz on its health socket."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(self.path)
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    class Server(UnixStreamServer):
        def get_request(self):  # AF_UNIX peers have no address; http.server wants one
            request, _ = super().get_request()
            return request, ("local", 0)

    sock = tmp_path / "health.sock"
    server = Server(str(sock), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for how, docs in renderings.items():
            for workload, spec in pod_specs(docs):
                sidecar = container(spec, "tailscale")
                results = {}
                for probe in ("livenessProbe", "readinessProbe"):
                    argv = sidecar[probe]["exec"]["command"]
                    assert argv[0] == "mcp-tailnet-sidecar", (how, probe)
                    proc = subprocess.run(
                        [sys.executable, "-m", "mcp_tailnet_sidecar", *argv[1:], "--socket", str(sock)],
                        capture_output=True, text=True, timeout=30,
                    )
                    results[probe] = (proc.returncode, seen[-1])
                assert results == {"livenessProbe": (0, "/healthz"), "readinessProbe": (1, "/readyz")}, how
    finally:
        server.shutdown()
        server.server_close()


FORWARDER_TARGETS = {"127.0.0.1", "::1", "localhost", "0.0.0.0", "::"}  # docs/design.md facts 1, 7
GATEWAY_ALIAS = "127.0.0.2"


def test_our_inspector_listens_on_a_loopback_alias_the_forwarder_never_dials(renderings):
    """Issue 12 §1: in every rendering, the inspector is off 127.0.0.1 (userspace tailscaled
    forwards unserved tailnet ports there), the sidecar points at the same alias, and the
    probes read the address from the env rather than repeating it."""
    seen = 0
    for how, docs in renderings.items():
        for workload, spec in pod_specs(docs):
            for c in spec["containers"]:
                if "eks-inspector" not in c["image"].rsplit("/", 1)[-1]:
                    continue
                seen += 1
                host, port = env_value(c, "INSPECTOR_HOST"), env_value(c, "INSPECTOR_PORT")
                assert host and host not in FORWARDER_TARGETS | {GATEWAY_ALIAS}, (how, host)
                assert host.startswith("127."), (how, host)
                upstream = env_value(container(spec, "tailscale"), "SIDECAR_UPSTREAM_URL")
                # With the hub (manifests-variants/hub) the sidecar fronts the hub, which fronts
                # the inspector: then the hub is what must sit on an alias.
                hub = next((x for x in spec["containers"] if "mcp-hub" in x["image"].rsplit("/", 1)[-1]), None)
                front = (env_value(hub, "HUB_HOST"), env_value(hub, "HUB_PORT")) if hub else (host, port)
                assert upstream == f"http://{front[0]}:{front[1]}", (how, upstream)
                assert front[0] not in FORWARDER_TARGETS | {GATEWAY_ALIAS}, (how, front)
                for probe in ("livenessProbe", "readinessProbe"):
                    command = " ".join(c[probe]["exec"]["command"])
                    assert "os.environ['INSPECTOR_HOST']" in command and "127.0.0" not in command, (how, probe)
    assert seen >= len(renderings), "no inspector found in some rendering"


def test_third_party_servers_on_127_0_0_1_rely_on_the_sidecars_readiness(renderings):
    """An unchanged server that insists on 127.0.0.1 stays there; the sidecar is not told to
    accept the exposure, so its readiness fails until the policy opens only the served ports."""
    docs = renderings["-k manifests-variants/example-server"]
    spec = one(docs, "Deployment", "example-mcp-server")["spec"]["template"]["spec"]
    sidecar = container(spec, "tailscale")
    assert env_value(sidecar, "SIDECAR_UPSTREAM_URL") == "http://127.0.0.1:8000"
    assert env_value(sidecar, "SIDECAR_ACCEPT_UPSTREAM_EXPOSURE") is None
    assert sidecar["readinessProbe"]["exec"]["command"] == ["mcp-tailnet-sidecar", "probe", "ready"]
