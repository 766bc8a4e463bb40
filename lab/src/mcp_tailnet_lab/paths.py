"""Where the lab's pinned components live, read from lab/versions.env.

Tests never guess a path: they ask here, and a missing component fails with a
message that names it and the command that provisions it.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[3]
LAB_DIR = REPO_DIR / "lab"
PROVISION_HINT = "run `lab/provision` (idempotent) to build it"


class MissingComponent(RuntimeError):
    """A lab component is not provisioned; the message names it."""


@cache
def versions() -> dict[str, str]:
    """The pinned versions from lab/versions.env."""
    out: dict[str, str] = {}
    for line in (LAB_DIR / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def cache_dir() -> Path:
    return Path(os.environ.get("MCP_TAILNET_CACHE", "/var/cache/mcp-tailnet"))


# binary name -> (component, version key) as lab/provision.d builds them
_BINARIES = {
    "tailscaled": ("tailscale", "TAILSCALE_VERSION"),
    "tailscale": ("tailscale", "TAILSCALE_VERSION"),
    "containerboot": ("tailscale", "TAILSCALE_VERSION"),
    "headscale": ("headscale", "HEADSCALE_VERSION"),
    "kube-apiserver": ("kubernetes", "KUBERNETES_VERSION"),
    "kubectl": ("kubernetes", "KUBERNETES_VERSION"),
    "etcd": ("etcd", "ETCD_VERSION"),
    "docker-compose": ("compose", "COMPOSE_VERSION"),
    "actionlint": ("actionlint", "ACTIONLINT_VERSION"),
    "syft": ("syft", "SYFT_VERSION"),
    "helm": ("helm", "HELM_VERSION"),
    # the peer MCP servers of bench/inspector_bench.py (76-peer-mcp-servers)
    "kubernetes-mcp-server": ("kubernetes-mcp-server", "KUBERNETES_MCP_SERVER_VERSION"),
    "awslabs.eks-mcp-server": ("eks-mcp-server", "AWSLABS_EKS_MCP_SERVER_VERSION"),
}


def binary(name: str) -> Path:
    """Path of a lab-built binary; raises MissingComponent naming it if absent."""
    component, key = _BINARIES[name]
    version = versions()[key]
    path = cache_dir() / "bin" / f"{component}-{version}" / name
    if not os.access(path, os.X_OK):
        raise MissingComponent(f"{name} {version} is missing at {path}: {PROVISION_HINT}")
    return path
