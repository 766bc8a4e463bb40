"""The chart's inspector container with `server.clusters`, run in Docker as a kubelet would run it.

tests/manifests/test_manifests_docker_pod.py's Kubelet translation (imported, not copied), taught
the two volume sources this value adds: the chart's ConfigMap (its rendered clusters.json) and the
operator's kubeconfig Secret (defaultMode 0440, group = the pod's fsGroup). The container runs as
the chart says (uid 65532, read-only root, no capabilities) with `--check-config`: its own cluster
(in-cluster ServiceAccount), `lab` (a token kubeconfig from the Secret) and `gone` (a port nobody
listens on) each get one line, so the file is where INSPECTOR_CLUSTERS points, the kubeconfig paths
the chart rewrote resolve, and uid 65532 can read both mounts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from chart_support import template
from manifests_support import dump, one
from mcp_tailnet_lab.images import build_repo_image
from mcp_tailnet_lab.ports import free_port
from test_manifests_docker_pod import Kubelet, module_pods, pod_cluster, pod_network  # noqa: F401  (fixtures)

SECRET = "inspector-kubeconfigs"


class ClustersKubelet(Kubelet):
    """Kubelet plus a configMap volume (from the rendered ConfigMap) and the kubeconfig Secret."""

    def __init__(self, *args: Any, kubeconfigs: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kubeconfigs = kubeconfigs

    def volume_source(self, volume: dict) -> tuple[str, Path | None]:
        if "configMap" in volume or volume.get("secret", {}).get("secretName") == SECRET:
            directory = self.files / volume["name"]
            directory.mkdir()
            directory.chmod(0o755)
            if "configMap" in volume:
                files = one(self.docs, "ConfigMap", volume["configMap"]["name"])["data"]
                mode = volume["configMap"].get("defaultMode", 0o644)
            else:
                files, mode = self.kubeconfigs, volume["secret"].get("defaultMode", 0o644)
            for key, text in files.items():
                self._write(directory, key, text, mode)
            return "bind", directory
        return super().volume_source(volume)


def test_the_charts_inspector_reads_its_clusters_in_the_pod(module_pods, pod_network, pod_cluster,  # noqa: F811
                                                            docker_client, tmp_path_factory) -> None:
    entries = [{"name": "lab", "kubeconfig": "lab"}, {"name": "gone", "kubeconfig": "gone"}]
    docs = template("--set-json", "server.clusters=" + json.dumps(entries),
                    "--set", f"server.clustersKubeconfigSecret={SECRET}")
    pod_cluster.kubectl("apply", "-f", "-", input=dump(d for d in docs if d["kind"] == "Namespace"))
    pod_cluster.kubectl("apply", "-f", "-", input=dump(docs))
    version = json.loads(pod_cluster.kubectl("get", "--raw", "/version").stdout)["gitVersion"]
    files = tmp_path_factory.mktemp("kubelet")
    files.chmod(0o755)
    lab = yaml.safe_load(pod_cluster.kubeconfig_for_token(
        pod_cluster.mint_token("mcp-tailnet", "eks-inspector"), files / "lab.kubeconfig").read_text())
    gone = json.loads(json.dumps(lab))
    gateway = pod_network.attrs["IPAM"]["Config"][0]["Gateway"]
    gone["clusters"][0]["cluster"]["server"] = f"https://{gateway}:{free_port(gateway)}"
    deployment = one(docs, "Deployment", "eks-inspector")
    kubelet = ClustersKubelet(docs, deployment, pod_cluster, files, "unused",
                              {"eks-inspector": build_repo_image("eks-inspector", docker_client)},
                              kubeconfigs={"lab": yaml.safe_dump(lab), "gone": yaml.safe_dump(gone)})
    c = next(x for x in deployment["spec"]["template"]["spec"]["containers"] if x["name"] == "eks-inspector")
    (container,) = module_pods.run([kubelet.run_kwargs(c, {}) | {"command": ["--check-config"]}], network=pod_network)
    code = container.wait(timeout=120)["StatusCode"]
    out = container.logs().decode(errors="replace")
    assert container.attrs["HostConfig"]["ReadonlyRootfs"] is True and container.attrs["Config"]["User"] == "65532:65532"
    assert code == 1, out
    assert f"cluster default: reachable, {version}" in out and f"cluster lab: reachable, {version}" in out, out
    assert "cluster gone: NOT reachable:" in out, out
