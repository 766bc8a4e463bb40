"""INSPECTOR_CLUSTERS: the operator's cluster list is validated at start, one line per mistake.

A typo in this file would point a name at the wrong cluster or role, so anything unexpected
(unknown or repeated key, wrong type, repeated or reserved name, a role without a cluster)
stops the process before it listens.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from eks_inspector.clusters_config import ClusterSpec
from eks_inspector.config import ConfigError, load

from inspector_support import base_env

ROLE = "arn:aws:iam::111111111111:role/inspector-read"


def _load(tmp_path: Path, text: str, name: str = "clusters.yaml") -> tuple[ClusterSpec, ...]:
    path = tmp_path / name
    path.write_text(text)
    return load({"INSPECTOR_CLUSTERS": str(path)}).clusters


def test_yaml_and_json_give_the_same_clusters(tmp_path: Path) -> None:
    (tmp_path / "kc").write_text("apiVersion: v1\nkind: Config\n")
    yaml_text = f"""
clusters:
  - name: staging
    context: staging-admin
  - name: local
    kubeconfig: kc          # relative to this file
  - name: prod-eu
    eks_cluster: prod
    region: eu-west-1
    role_arn: {ROLE}
"""
    specs = _load(tmp_path, yaml_text)
    assert specs == _load(tmp_path, json.dumps({"clusters": [
        {"name": "staging", "context": "staging-admin"}, {"name": "local", "kubeconfig": "kc"},
        {"name": "prod-eu", "eks_cluster": "prod", "region": "eu-west-1", "role_arn": ROLE}]}), "clusters.json")
    assert [s.name for s in specs] == ["staging", "local", "prod-eu"]
    assert specs[1].kubeconfig == tmp_path / "kc" and specs[1].via_kubeconfig
    assert specs[2] == ClusterSpec(name="prod-eu", eks_cluster="prod", region="eu-west-1", role_arn=ROLE)
    assert load({}).clusters == ()  # unset: only the single-cluster settings, as before


@pytest.mark.parametrize(("text", "says"), [
    ("clusters:\n  - {name: a, context: x, rol_arn: y}\n", "unknown key 'rol_arn'"),
    ("clusters:\n  - {name: a, context: x, context: y}\n", "repeated key 'context'"),
    ('{"clusters": [{"name": "a", "context": "x", "name": "b"}]}', "repeated key 'name'"),
    ("clusters:\n  - {name: a, context: x}\nclusters: []\n", "repeated key 'clusters'"),
    ("clusters:\n  - {name: a, context: x}\n  - {name: a, context: y}\n", "the name 'a' is used twice"),
    ("clusters:\n  - {name: default, context: x}\n", "'default' is the cluster of the single-cluster settings"),
    ("clusters:\n  - {name: Prod, context: x}\n", "not a lowercase DNS label"),
    ("clusters:\n  - {name: '../a', context: x}\n", "not a lowercase DNS label"),
    ("clusters:\n  - {name: a}\n", "give context"),
    ("clusters:\n  - {context: x}\n", "name is required"),
    ("clusters:\n  - {name: a, eks_cluster: prod}\n", "eks_cluster needs region"),
    ("clusters:\n  - {name: a, context: x, role_arn: '" + ROLE + "'}\n", "belong to an eks_cluster entry"),
    ("clusters:\n  - {name: a, eks_cluster: prod, region: eu-west-1, role_arn: 'arn:aws:iam::1:role/x'}\n",
     "is not an IAM role ARN"),
    ("clusters:\n  - {name: a, eks_cluster: prod, region: moon-1}\n", "is not an AWS region name"),
    # Unicode digits are digits to an unqualified \\d: the chart and ECS (ASCII) refuse them, so must we
    ("clusters:\n  - {name: a, eks_cluster: prod, region: us-east-\u0661}\n", "is not an AWS region name"),
    ("clusters:\n  - {name: a, eks_cluster: prod, region: eu-west-1, role_arn: 'arn:aws:iam::"
     + "\u0661" * 12 + ":role/x'}\n", "is not an IAM role ARN"),
    ("clusters:\n  - {name: a, context: [x]}\n", "is not a kubeconfig context name"),
    ("clusters:\n  - {name: a, kubeconfig: /nonexistent/kc}\n", "is not a file"),
    ("clusters:\n  - a\n", "expected a mapping"),
    ("clusters: []\n", "list between 1 and 100 clusters"),
    ("- {name: a, context: x}\n", "expected a mapping with one key, clusters"),
    ("clusters:\n  - {name: a, context: x}\nextra: 1\n", "expected a mapping with one key, clusters"),
    ("clusters: [\n", "is not valid YAML/JSON"),
    ("clusters:\n" + "".join(f"  - {{name: c{i}, context: x}}\n" for i in range(101)), "between 1 and 100"),
])
def test_a_bad_file_is_one_line_naming_the_variable(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    message = str(caught.value)
    assert message.startswith("INSPECTOR_CLUSTERS: ") and says in message and "\n" not in message, message


def test_missing_or_huge_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="INSPECTOR_CLUSTERS: cannot read"):
        load({"INSPECTOR_CLUSTERS": str(tmp_path / "absent.yaml")})
    huge = tmp_path / "huge.yaml"
    huge.write_text("#" * (300 * 1024))
    with pytest.raises(ConfigError, match="larger than 256 KiB"):
        load({"INSPECTOR_CLUSTERS": str(huge)})


def test_the_process_refuses_to_start_on_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "clusters.yaml"
    path.write_text("clusters:\n  - {name: a, context: x, role_arn: '" + ROLE + "'}\n")
    proc = subprocess.run([sys.executable, "-m", "eks_inspector"], env={**base_env(None),
                          "INSPECTOR_CLUSTERS": str(path)}, capture_output=True, text=True, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "INSPECTOR_CLUSTERS" in lines[0], proc.stderr
