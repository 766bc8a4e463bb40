"""charts/mcp-tailnet `server.clusters`: the inspector's INSPECTOR_CLUSTERS file (issue 16 §2).

- The list renders into a ConfigMap mounted read-only into the inspector only, INSPECTOR_CLUSTERS
  naming it; the inspector's own parser (clusters_config.parse) reads the rendered file back to
  the same entries. A kubeconfig entry's `kubeconfig: KEY` becomes the path of KEY in the
  operator's Secret (mounted into the inspector container only, never the sidecar).
- What the inspector would refuse at start is refused at `helm template`, with the entry named:
  the same shapes (name, EKS name, region, role ARN) checked as a differential against the
  inspector's parser, so the chart never renders a file the pod would crash on and never accepts
  an ARN the inspector refuses. What only a pod lacks is refused too: an EKS entry without AWS
  credentials, a context without a kubeconfig file.
- Against the lab's kube-apiserver: the kubeconfig form and impersonation with several clusters
  pass a server-side dry run (examples/clusters.yaml is covered by test_chart.py's per-example
  lint, dry run and Pod Security tests).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chart_support import CHART, helm, template, values_args
from eks_inspector.clusters_config import parse
from mcp_tailnet_lab.inspector_clusters import inspector_accepts
from manifests_support import Doc, container, dump, env_value, namespaces_created, one

CLUSTERS_FILE = "/etc/eks-inspector/clusters/clusters.json"
KUBECONFIGS = "/etc/eks-inspector/kubeconfigs"
IRSA = ["--set", "aws.irsaRoleArn=arn:aws:iam::111122223333:role/x", "--set", "aws.eksCluster=home",
        "--set", "aws.region=eu-west-1"]
ARN = "arn:aws:iam::444455556666:role/eks-inspector-read"


def clusters(entries: Any, *extra: str) -> list[str]:
    return ["--set-json", "server.clusters=" + json.dumps(entries), *extra]


def render(entries: Any, *extra: str) -> subprocess.CompletedProcess[str]:
    return helm("template", "x", str(CHART), *clusters(entries, *extra), check=False)


def refused(entries: Any, *extra: str) -> str:
    proc = render(entries, *extra)
    assert proc.returncode != 0 and proc.stdout == "", proc.stdout
    return proc.stderr


def inspector_spec(docs: list[Doc]) -> Doc:
    return one(docs, "Deployment", "eks-inspector")["spec"]["template"]["spec"]


def rendered_file(docs: list[Doc]) -> str:
    return one(docs, "ConfigMap", "eks-inspector-clusters")["data"]["clusters.json"]


def test_off_by_default() -> None:
    docs = template()
    assert not [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-clusters")]
    spec = inspector_spec(docs)
    assert env_value(container(spec, "eks-inspector"), "INSPECTOR_CLUSTERS") is None
    assert {v["name"] for v in spec["volumes"]}.isdisjoint({"inspector-clusters", "inspector-kubeconfigs"})


def test_example_renders_a_file_the_inspector_reads_back(tmp_path: Path) -> None:
    docs = template(*values_args("clusters"))
    spec = inspector_spec(docs)
    inspector = container(spec, "eks-inspector")
    assert env_value(inspector, "INSPECTOR_CLUSTERS") == CLUSTERS_FILE
    (mount,) = [m for m in inspector["volumeMounts"] if m["name"] == "inspector-clusters"]
    assert mount == {"name": "inspector-clusters", "mountPath": str(Path(CLUSTERS_FILE).parent), "readOnly": True}
    assert all(m["name"] != "inspector-clusters" for m in container(spec, "tailscale")["volumeMounts"])
    (volume,) = [v for v in spec["volumes"] if v["name"] == "inspector-clusters"]
    assert volume["configMap"]["name"] == "eks-inspector-clusters"
    # a changed list rolls the pod: the inspector reads the file at start only
    annotations = one(docs, "Deployment", "eks-inspector")["spec"]["template"]["metadata"]["annotations"]
    assert len(annotations["checksum/clusters"]) == 64
    other = template(*values_args("clusters"), "--set", "server.clusters[0].region=eu-central-1")
    assert (one(other, "Deployment", "eks-inspector")["spec"]["template"]["metadata"]["annotations"]
            ["checksum/clusters"] != annotations["checksum/clusters"])
    path = tmp_path / "clusters.json"
    path.write_text(rendered_file(docs))
    specs = parse(path)
    assert [(s.name, s.eks_cluster, s.region, s.role_arn) for s in specs] == [
        ("staging", "staging", "eu-west-1", None),
        ("prod-us", "prod", "us-east-1", ARN)]


def test_kubeconfig_entries_read_the_operators_secret_in_the_inspector_only(tmp_path: Path) -> None:
    entries = [{"name": "lab", "kubeconfig": "lab", "context": "lab-admin"}, {"name": "edge", "kubeconfig": "edge"}]
    docs = template(*clusters(entries, "--set", "server.clustersKubeconfigSecret=inspector-kubeconfigs"))
    spec = inspector_spec(docs)
    (volume,) = [v for v in spec["volumes"] if v["name"] == "inspector-kubeconfigs"]
    assert volume["secret"] == {"secretName": "inspector-kubeconfigs", "defaultMode": 0o440}
    inspector = container(spec, "eks-inspector")
    assert {"name": "inspector-kubeconfigs", "mountPath": KUBECONFIGS, "readOnly": True} in inspector["volumeMounts"]
    assert all(m["name"] != "inspector-kubeconfigs" for m in container(spec, "tailscale")["volumeMounts"])
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "inspector-kubeconfigs"]
    doc = json.loads(rendered_file(docs))
    assert doc == {"clusters": [
        {"name": "lab", "kubeconfig": f"{KUBECONFIGS}/lab", "context": "lab-admin"},
        {"name": "edge", "kubeconfig": f"{KUBECONFIGS}/edge"}]}
    # the inspector's parser reads it where the pod would (the kubeconfig files must exist)
    root = tmp_path / KUBECONFIGS.lstrip("/")
    root.mkdir(parents=True)
    for name in ("lab", "edge"):
        (root / name).write_text("apiVersion: v1\nkind: Config\n")
    text = rendered_file(docs).replace(KUBECONFIGS, str(root))
    (tmp_path / "clusters.json").write_text(text)
    assert [(s.name, s.context, s.kubeconfig) for s in parse(tmp_path / "clusters.json")] == [
        ("lab", "lab-admin", root / "lab"), ("edge", None, root / "edge")]


def test_impersonation_applies_to_every_cluster() -> None:
    """Allowed (the inspector impersonates the caller in every cluster); docs/eks.md says each
    other cluster's RBAC must grant the role `impersonate` there, else its calls are refused."""
    docs = template(*values_args("clusters"), "--set-json",
                    'identity.impersonation={"enabled": true, "groups": ["tailnet:tag:sre"]}')
    inspector = container(inspector_spec(docs), "eks-inspector")
    assert env_value(inspector, "INSPECTOR_IMPERSONATE") == "caller"
    assert env_value(inspector, "INSPECTOR_CLUSTERS") == CLUSTERS_FILE


EKS = {"name": "prod", "eks_cluster": "prod", "region": "us-east-1"}


@pytest.mark.parametrize("entries, extra, message", [
    ({"name": "a"}, [], "server.clusters: a list of entries"),
    ([{**EKS, "endpoint": "https://x"}], IRSA, 'server.clusters[0]: unknown key "endpoint"'),
    ([{**EKS, "name": "default"}], IRSA, 'server.clusters[0] (default): "default" is the inspector\'s own cluster'),
    ([EKS, EKS], IRSA, 'server.clusters[1] (prod): the name "prod" is used twice'),
    ([{**EKS, "name": "Prod"}], IRSA, 'server.clusters[0]: name "Prod" is not a lowercase DNS label'),
    ([{**EKS, "name": 7}], IRSA, 'server.clusters[0]: name "7" is not a lowercase DNS label'),
    ([{"eks_cluster": "prod", "region": "us-east-1"}], IRSA, "server.clusters[0]: name is required"),
    ([{"name": "prod", "eks_cluster": "prod"}], IRSA, "server.clusters[0] (prod): eks_cluster needs region"),
    ([{"name": "prod", "kubeconfig": "k", "role_arn": ARN}], IRSA + ["--set", "server.clustersKubeconfigSecret=s"],
     "server.clusters[0] (prod): region and role_arn belong to an eks_cluster entry"),
    ([{"name": "prod"}], IRSA, "server.clusters[0] (prod): give kubeconfig (and optionally context)"),
    ([{**EKS, "role_arn": "arn:aws:iam::123:role/x"}], IRSA, "server.clusters[0]: role_arn \"arn:aws:iam::123:role/x\" is not an IAM role ARN"),
    ([{**EKS, "region": "us-east-1\nx"}], IRSA, "server.clusters[0]: region"),
    ([EKS], [], "server.clusters[0] (prod): an EKS entry needs the inspector's AWS credentials"),
    ([{"name": "lab", "context": "lab-admin"}], [], "server.clusters[0] (lab): the pod has no kubeconfig of its own"),
    ([{"name": "lab", "kubeconfig": "lab"}], [], 'server.clusters[0] (lab): kubeconfig "lab" needs server.clustersKubeconfigSecret'),
    ([{"name": "lab", "kubeconfig": ".."}], ["--set", "server.clustersKubeconfigSecret=s"],
     'server.clusters[0] (lab): kubeconfig ".." is not a key of server.clustersKubeconfigSecret'),
    ([{"name": "lab", "kubeconfig": "../../var/run/secrets/x"}], ["--set", "server.clustersKubeconfigSecret=s"],
     "is not a key of server.clustersKubeconfigSecret"),
    ([EKS], IRSA + ["--set", "server.clustersKubeconfigSecret=s"],
     "server.clustersKubeconfigSecret: no server.clusters entry names one of its keys"),
    ([{**EKS, "name": f"c{i}"} for i in range(101)], IRSA, "server.clusters: at most 100 clusters"),
    ([EKS], IRSA + ["--set", "server.inspector=false", "--set", "server.image=x"],
     "server.clusters: several clusters are the inspector's"),
], ids=["not-a-list", "unknown-key", "reserved-default", "repeated-name", "upper-name", "number-name", "no-name",
        "eks-without-region", "role-without-eks", "no-target", "short-account", "region-newline", "eks-without-aws",
        "context-without-kubeconfig", "kubeconfig-without-secret", "dotdot-key", "path-key", "unused-secret",
        "too-many", "other-server"])
def test_what_the_pod_could_not_use_is_refused_by_name(entries: Any, extra: list[str], message: str) -> None:
    stderr = refused(entries, *extra)
    assert message in stderr, stderr


# Parser differential: the chart's shapes against the inspector's own (clusters_config.parse).
ROLE_ARNS = [
    ARN, "arn:aws-us-gov:iam::444455556666:role/path/to/r", "arn:aws-cn:iam::444455556666:role/a+b=c,d.e@f_g-h",
    "arn:aws:iam::44445555666:role/x", "arn:aws:iam::4444555566667:role/x", "arn:aws:iam::444455556666:user/x",
    "arn:aws:sts::444455556666:assumed-role/x/y", "arn:aws:iam::444455556666:role/", "arn:aws:iam::444455556666:role/a b",
    "arn:aws:iam::444455556666:role/x\n", " " + ARN, ARN + "*", "arn:AWS:iam::444455556666:role/x",
    "arn:aws:iam::444455556666:role/" + "r" * 512, "arn:aws:iam::444455556666:role/" + "r" * 513,
]
REGIONS = ["us-east-1", "us-gov-west-1", "eu-central-2", "US-east-1", "us-east", "useast-1", "us-east-1 ", "ap-southeast-10"]
NAMES = ["prod", "p-1", "a" * 63, "a" * 64, "-p", "p-", "p_1", "p.1", "Prod", " p", "default"]


@pytest.mark.parametrize("field, values", [("role_arn", ROLE_ARNS), ("region", REGIONS), ("name", NAMES)])
def test_the_chart_accepts_exactly_what_theinspector_accepts(field: str, values: list[str], tmp_path: Path) -> None:
    for value in values:
        entry = {**EKS, "role_arn": ARN, field: value}
        chart = render([entry], *IRSA).returncode == 0
        assert chart == inspector_accepts(entry, tmp_path), (field, value, chart)
    assert any(inspector_accepts({**EKS, field: v}, tmp_path) for v in values)
    assert not all(inspector_accepts({**EKS, field: v}, tmp_path) for v in values)


def test_unicode_digits_in_an_account_are_refused() -> None:
    """Python's \\d matches any Unicode digit, Go's only ASCII: the chart refuses an account of
    Arabic-Indic digits (no such account exists) whatever the inspector would do."""
    stderr = refused([{**EKS, "role_arn": "arn:aws:iam::" + "\u0664" * 12 + ":role/x"}], *IRSA)
    assert "is not an IAM role ARN" in stderr, stderr


# -- against the lab's API server ---------------------------------------------------------


@pytest.mark.parametrize("args", [
    clusters([{"name": "lab", "kubeconfig": "lab", "context": "lab-admin"}],
             "--set", "server.clustersKubeconfigSecret=inspector-kubeconfigs"),
    [*values_args("clusters"), "--set-json", 'identity.impersonation={"enabled": true, "groups": ["tailnet:tag:sre"]}'],
], ids=["kubeconfig-secret", "eks-with-impersonation"])
def test_server_side_dry_run(cluster: Any, args: list[str]) -> None:
    docs = template(*args)
    with namespaces_created(cluster, docs):
        proc = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=dump(docs), check=False)
        assert proc.returncode == 0, proc.stderr
        created = {line.split(" ")[0] for line in proc.stdout.splitlines() if line.endswith("(server dry run)")}
        assert len(created) == len(docs), proc.stdout
        assert "configmap/eks-inspector-clusters" in created, proc.stdout
        assert "Warning" not in proc.stderr, proc.stderr
