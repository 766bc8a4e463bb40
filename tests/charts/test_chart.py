"""charts/mcp-tailnet: lint, the same objects as manifests/, refusals, a real API server.

- `helm lint` of the defaults and of every documented example (charts/mcp-tailnet/examples).
- `helm template` with default values renders exactly the objects of `kubectl kustomize
  manifests/`, and each example with a kustomize variant renders that variant's objects
  (compared as objects: env order and kustomize's ConfigMap hash suffix aside).
- One version source: appVersion and the default image tags are images/release.env's.
- Values the chart cannot honour are refused with a message, never silently dropped
  (a bare identity.impersonation=true, TUN under `restricted`, the inspector on 127.0.0.1).
- Against the lab's kube-apiserver (RBAC, Pod Security admission): `kubectl apply
  --dry-run=server` of every example; each example's pod admitted by Pod Security in its own
  namespace, and the TUN pod refused in a restricted one.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from chart_support import CHART, EXAMPLES, example, helm, template, values_args
from manifests_support import (
    DEFAULT_NAMESPACE,
    MANIFESTS,
    VARIANTS,
    VARIANTS_DIR,
    Doc,
    dump,
    key,
    kustomize,
    load_docs,
    namespaces_created,
    one,
    pod_from_workload,
    pod_specs,
    variant_path,
)
from mcp_tailnet_ecs import release

#: Examples that are the chart's form of a kustomize variant (manifests-variants/NAME).
AS_VARIANT = {name: name for name in ("tun", "irsa", "pod-identity", "hub") if name in EXAMPLES}
_HASH_SUFFIX = re.compile(r"-[a-z0-9]{10}$")


def normalized(docs: list[Doc]) -> dict[tuple[str, str, str], Any]:
    """Objects by (kind, namespace, name), as the API server would treat them: env and volume lists
    (and containers) and mount lists keyed by name (their order means nothing here: no $(VAR) references), ConfigMap names
    without kustomize's content hash."""
    renamed = {d["metadata"]["name"]: _HASH_SUFFIX.sub("", d["metadata"]["name"]) if d["kind"] == "ConfigMap"
               else d["metadata"]["name"] for d in docs}
    out = {}
    for doc in docs:
        text = json.dumps(doc)
        for old, new in renamed.items():
            if old != new:
                text = text.replace(json.dumps(old), json.dumps(new))
        doc = json.loads(text)
        for _workload, spec in pod_specs([doc]):
            spec["volumes"] = sorted(spec.get("volumes", []), key=lambda v: v["name"])
            spec["containers"].sort(key=lambda c: c["name"])  # a kustomize patch may reorder them
            for c in spec["containers"]:
                if "env" in c:
                    c["env"] = sorted(c["env"], key=lambda e: e["name"])
                c["volumeMounts"] = sorted(c.get("volumeMounts", []), key=lambda m: m["mountPath"])
        out[key(doc)] = doc
    return out


def assert_same_objects(chart: list[Doc], kustomized: list[Doc]) -> None:
    got, want = normalized(chart), normalized(kustomized)
    assert sorted(got) == sorted(want), f"objects differ: only chart {set(got) - set(want)}, only kustomize {set(want) - set(got)}"
    for k in want:
        assert got[k] == want[k], f"{k} differs:\nchart:     {json.dumps(got[k], sort_keys=True)}\nkustomize: {json.dumps(want[k], sort_keys=True)}"


@pytest.mark.parametrize("name", [None, *EXAMPLES])
def test_helm_lint(name: str | None) -> None:
    proc = helm("lint", "--strict", str(CHART), *values_args(name), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout


def test_default_values_render_the_manifests() -> None:
    assert_same_objects(template(), load_docs(kustomize(MANIFESTS)))


@pytest.mark.parametrize("name", sorted(AS_VARIANT))
def test_example_renders_its_kustomize_variant(name: str) -> None:
    variant = AS_VARIANT[name]
    if not (VARIANTS_DIR / variant / "kustomization.yaml").is_file():
        pytest.fail(f"examples/{name}.yaml documents manifests-variants/{variant}, which is gone")
    extra = []
    if name == "hub":  # the variant's own hub.toml, as a user passes theirs
        extra = ["--set-file", f"hub.config={VARIANTS_DIR / 'components' / 'hub' / 'hub.toml'}"]
    chart = template(*values_args(name), *extra)
    if name == "tun":
        # By design: a Helm release cannot share an object with another release, so each one owns
        # its ClusterRole (NAMESPACE-eks-inspector-read), where the kustomize variant reuses the
        # default's. The rules are compared all the same.
        for doc in chart:
            if doc["kind"] == "ClusterRole":
                doc["metadata"]["name"] = "mcp-tailnet-eks-inspector-read"
            if doc["kind"] == "ClusterRoleBinding":
                doc["roleRef"]["name"] = "mcp-tailnet-eks-inspector-read"
    assert_same_objects(chart, load_docs(kustomize(variant_path(variant))))


def test_one_version_source() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    rel = release.defaults()
    assert chart["appVersion"] == rel.version and chart["version"] == rel.version
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["images"]["registry"] == rel.registry and values["images"]["tag"] == ""
    images = {c["image"] for _w, spec in pod_specs(template("--set", "hub.enabled=true", "--set", "hub.config=x"))
              for c in spec["containers"]}
    assert images == {f"{rel.registry}/{name}:{rel.version}" for name in ("eks-inspector", "mcp-tailnet-sidecar", "mcp-hub")}


@pytest.mark.parametrize("args, message", [
    (["--set", "identity.impersonation=true"], "identity.impersonation: a map of enabled, users and groups"),
    (["--set", "sidecar.mode=tun"], "sidecar.mode=tun needs root, NET_ADMIN and /dev/net/tun: set namespace.enforce=privileged"),
    (["--set", "sidecar.mode=kernel"], 'sidecar.mode: "kernel" is not userspace or tun'),
    (["--set", "server.host=127.0.0.1"], "server.host: the inspector listens on a loopback alias of its own (127.0.0.3), not 127.0.0.1"),
    (["--set", "server.host=0.0.0.0"], "server.host: the inspector listens on a loopback alias of its own (127.0.0.3), not 0.0.0.0"),
    (["--set", "server.inspector=false"], "server.image: required when server.inspector is false"),
    (["--set", "aws.podIdentity=true", "--set", "aws.irsaRoleArn=arn:aws:iam::1:role/r",
      "--set", "aws.eksCluster=c", "--set", "aws.region=r"], "aws: choose IRSA (aws.irsaRoleArn) or Pod Identity"),
    (["--set", "aws.podIdentity=true"], "aws.eksCluster and aws.region: required with IRSA or Pod Identity"),
    (["--set", "hub.enabled=true"], "hub.config: the hub.toml to mount"),
    (["--set", "hub.enabled=true", "--set", "hub.config=x", "--set", "hub.serverHost=127.0.0.1"],
     "hub.serverHost: 127.0.0.1 is reachable past the gateway"),
], ids=["impersonation", "tun-restricted", "bad-mode", "inspector-127.0.0.1", "inspector-wildcard", "no-image",
        "irsa-and-pod-identity", "aws-without-cluster", "hub-without-config", "hub-upstream-127.0.0.1"])
def test_values_it_cannot_honour_are_refused_by_name(args: list[str], message: str) -> None:
    proc = helm("template", "x", str(CHART), *args, check=False)
    assert proc.returncode != 0, f"rendered anyway: {proc.stdout[:300]}"
    assert message in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_any_server_example_pairs_that_image() -> None:
    docs = template(*values_args("any-server"))
    deployment = one(docs, "Deployment", "my-mcp-server")
    spec = deployment["spec"]["template"]["spec"]
    server, sidecar = spec["containers"]
    assert server["image"] == "registry.example.com/your-team/your-mcp-server:1.0.0"
    assert server["args"][-1] == "8000" and {"name": "LOG_LEVEL", "value": "info"} in server["env"]
    assert not [m for m in server["volumeMounts"] if m["mountPath"].startswith("/var/run/secrets")]
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert env["SIDECAR_UPSTREAM_URL"] == "http://127.0.0.3:8000" and env["TS_HOSTNAME"] == "my-mcp-server"
    assert env["TS_KUBE_SECRET"] == "my-mcp-server-tailscale-state" and env["SIDECAR_TAGS"] == "tag:mcp"
    role = one(docs, "Role", "my-mcp-server-sidecar-state")
    assert role["rules"][0]["resourceNames"] == ["my-mcp-server-tailscale-state"]
    assert not [d for d in docs if d["kind"] in ("Namespace", "NetworkPolicy", "ClusterRole", "ClusterRoleBinding")]
    # Nothing this release names collides with the default release in the same namespace.
    default = {key(d) for d in template()}
    assert not default & {key(d) for d in docs}


# -- against the lab's API server ---------------------------------------------------------


def _with_default_namespace(docs: list[Doc]) -> list[Doc]:
    """An example that joins the default release's namespace needs it to exist, as after that install."""
    if any(d["kind"] == "Namespace" for d in docs):
        return docs
    return [one(template(), "Namespace", DEFAULT_NAMESPACE), *docs]


@pytest.mark.parametrize("name", [None, *EXAMPLES])
def test_server_side_dry_run_of_every_example(cluster: Any, name: str | None) -> None:
    docs = template(*values_args(name))
    with namespaces_created(cluster, _with_default_namespace(docs)):
        proc = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=dump(docs), check=False)
        assert proc.returncode == 0, proc.stderr
        created = {line.split(" ")[0] for line in proc.stdout.splitlines() if line.endswith("(server dry run)")}
        assert len(created) == len(docs), proc.stdout
        if name == "tun":
            assert 'would violate PodSecurity "restricted:latest"' in proc.stderr, proc.stderr
        else:
            assert "Warning" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("name", [None, *EXAMPLES])
def test_pod_security_admits_each_examples_pod_in_its_namespace(cluster: Any, name: str | None) -> None:
    docs = template(*values_args(name))
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    namespace = deployment["metadata"]["namespace"]
    with namespaces_created(cluster, _with_default_namespace(docs)):
        pod = pod_from_workload(deployment, namespace, f"pss-{name or 'default'}")
        proc = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=dump([pod]), check=False)
        assert proc.returncode == 0, proc.stderr
        if name == "tun":  # admitted at `privileged`, still warned at `restricted`
            assert 'would violate PodSecurity "restricted:latest"' in proc.stderr, proc.stderr
        else:
            assert "Warning" not in proc.stderr, proc.stderr


def test_pod_security_refuses_the_tun_pod_in_the_default_namespace(cluster: Any) -> None:
    docs = template()
    (tun,) = [d for d in template(*values_args("tun")) if d["kind"] == "Deployment"]
    with namespaces_created(cluster, docs):
        pod = pod_from_workload(tun, DEFAULT_NAMESPACE, "tun-in-restricted")
        proc = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=dump([pod]), check=False)
        assert proc.returncode != 0 and 'violates PodSecurity "restricted:latest"' in proc.stderr, proc.stderr
        for reason in ("NET_ADMIN", "hostPath", "runAsNonRoot"):
            assert reason in proc.stderr, proc.stderr


def test_every_example_is_documented() -> None:
    """docs/eks.md's Helm section names each example (what the dry runs above cover)."""
    text = (CHART.parents[1] / "docs" / "eks.md").read_text()
    assert [n for n in EXAMPLES if f"examples/{n}.yaml" not in text] == []
    assert VARIANTS  # manifests_support found the variants the examples mirror


def _package_step() -> str:
    doc = yaml.safe_load((CHART.parents[1] / ".github" / "workflows" / "release.yml").read_text())
    return next(s["run"] for s in doc["jobs"]["chart"]["steps"] if "helm package" in s.get("run", ""))


@pytest.mark.parametrize("version_ok", [True, False], ids=["release-version", "other-version"])
def test_release_workflow_packages_the_chart_at_the_release_version(tmp_path, version_ok: bool) -> None:
    """The workflow's package step, run for real in bash with the lab's helm, on a copy of the chart."""
    import os
    import shutil
    import subprocess

    from mcp_tailnet_lab.paths import binary

    shutil.copytree(CHART, tmp_path / "charts" / "mcp-tailnet")
    version = release.defaults().version if version_ok else "9.9.9"
    env = {"PATH": f"{binary('helm').parent}:{os.environ['PATH']}", "HOME": str(tmp_path), "VERSION": version,
           **{f"HELM_{k}_HOME": str(tmp_path / k.lower()) for k in ("CACHE", "CONFIG", "DATA")}}
    proc = subprocess.run(["bash", "-e", "-c", _package_step()], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    if not version_ok:
        assert proc.returncode != 0, proc.stdout
        assert f"appVersion {release.defaults().version} is not MCP_TAILNET_VERSION=9.9.9" in proc.stdout, proc.stdout
        assert not (tmp_path / "dist").exists()
        return
    assert proc.returncode == 0, proc.stdout + proc.stderr
    packaged = tmp_path / "dist" / f"mcp-tailnet-{version}.tgz"
    shown = yaml.safe_load(helm("show", "chart", str(packaged)).stdout)
    assert (shown["version"], shown["appVersion"]) == (version, version)
