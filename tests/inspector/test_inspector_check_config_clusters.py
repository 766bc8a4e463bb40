"""`eks-inspector --check-config` with INSPECTOR_CLUSTERS asks every cluster (issue 16 §2).

The real CLI against the lab's kube-apiserver: `default` and `lab` (a kubeconfig entry) answer
with the server's own /version; `gone` (a loopback port nobody listens on), `wrong-context` (a
context the file lacks) and `hung` (an EKS entry whose AWS endpoint accepts TCP and never
answers, with a call timeout far past the check's bound) each get one line with the reason,
and the exit code is non-zero. `hung` is the bound: without it the check would wait the
botocore read timeout (120 s, twice) and the subprocess timeout fails the test.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from inspector_support import base_env, placeholder_kubeconfig

FAKE_TOKEN = "check-config-fake-token-0123456789"


def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "eks_inspector", "--check-config"], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def silent_endpoint() -> Iterator[int]:
    """A loopback port whose kernel completes the TCP handshake and nobody ever reads or answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _lines(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    out = {}
    for line in proc.stdout.splitlines():
        prefix = "eks-inspector: cluster "
        if line.startswith(prefix):
            name, _, rest = line[len(prefix):].partition(": ")
            assert name not in out, proc.stdout
            out[name] = rest
    return out


def test_each_cluster_gets_one_line_and_any_failure_fails(cluster: Any, tmp_path: Path, silent_endpoint: int) -> None:
    version = json.loads(cluster.kubectl("get", "--raw", "/version").stdout)["gitVersion"]
    gone = placeholder_kubeconfig(tmp_path / "gone.kubeconfig")
    doc = json.loads(gone.read_text())
    doc["users"][0]["user"]["token"] = FAKE_TOKEN
    gone.write_text(json.dumps(doc))
    clusters = tmp_path / "clusters.yaml"
    clusters.write_text(yaml.safe_dump({"clusters": [
        {"name": "lab", "kubeconfig": str(cluster.kubeconfig)},
        {"name": "gone", "kubeconfig": str(gone)},
        {"name": "wrong-context", "kubeconfig": str(cluster.kubeconfig), "context": "no-such-context"},
        {"name": "hung", "eks_cluster": "hung", "region": "us-east-1"},
    ]}))
    env = {**base_env(cluster.kubeconfig), "INSPECTOR_CLUSTERS": str(clusters), "INSPECTOR_CALL_TIMEOUT": "120",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{silent_endpoint}", "AWS_ACCESS_KEY_ID": "AKIAFAKEFAKEFAKEFAKE",
           "AWS_SECRET_ACCESS_KEY": "fake-secret-for-a-silent-endpoint"}
    proc = check(env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = _lines(proc)
    assert list(lines) == ["default", "lab", "gone", "wrong-context", "hung"], proc.stdout
    assert lines["default"] == f"reachable, {version}" and lines["lab"] == f"reachable, {version}"
    assert lines["gone"].startswith("NOT reachable: ") and "unreachable" in lines["gone"], lines["gone"]
    assert lines["wrong-context"].startswith("NOT reachable: cluster wrong-context: cannot connect"), lines
    assert "no-such-context" in lines["wrong-context"], lines["wrong-context"]
    assert lines["hung"] == "NOT reachable: did not answer within 10s", lines["hung"]
    for secret in (FAKE_TOKEN, "fake-secret-for-a-silent-endpoint"):
        assert secret not in proc.stdout + proc.stderr


def test_all_reachable_exits_zero(cluster: Any, tmp_path: Path) -> None:
    clusters = tmp_path / "clusters.json"
    clusters.write_text(json.dumps({"clusters": [{"name": "lab", "kubeconfig": str(cluster.kubeconfig)}]}))
    proc = check({**base_env(cluster.kubeconfig), "INSPECTOR_CLUSTERS": str(clusters)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(_lines(proc)) == ["default", "lab"] and all(v.startswith("reachable, v") for v in _lines(proc).values())


def test_without_clusters_the_check_stays_offline(tmp_path: Path) -> None:
    """No INSPECTOR_CLUSTERS: unchanged (settings and kubeconfig only; images run it with no cluster)."""
    proc = check(base_env(placeholder_kubeconfig(tmp_path / "none.kubeconfig")))
    assert proc.returncode == 0 and "settings valid" in proc.stdout and "cluster default" not in proc.stdout, proc.stdout
