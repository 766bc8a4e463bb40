"""Pods in the local Docker engine: containers that share one network namespace.

A Kubernetes pod or an ECS awsvpc task gives all its containers one network
namespace, which is what makes "the MCP server binds 127.0.0.1, the sidecar is
the only way in" true. Here the first container owns the namespace, on a fresh
docker network of its own; the others join it with network_mode
"container:<first>". Everything made carries the run's and the factory's labels
so cleanup finds it, also after a failure half-way through a pod.
"""

from __future__ import annotations

import itertools
import secrets
from typing import Any

LABEL_RUN = "org.mcp-tailnet.lab.run"
LABEL_OWNER = "org.mcp-tailnet.lab.owner"
_NETWORK_KEYS = ("network", "network_mode", "networks", "hostname", "ports", "publish_all_ports", "dns")


class Pod(list):
    """The pod's containers (docker-py Container objects), first = namespace owner."""

    def __init__(self, containers: list[Any], network: Any) -> None:
        super().__init__(containers)
        self.network = network

    @property
    def ip(self) -> str:
        """The pod's address on its docker network (what another pod would dial)."""
        self[0].reload()
        return self[0].attrs["NetworkSettings"]["Networks"][self.network.name]["IPAddress"]


class PodFactory:
    """Makes pods for one owner (a test) and removes all of them in cleanup()."""

    def __init__(self, client: Any, run_id: str, prefix: str = "mtl") -> None:
        self.client = client
        self.run_id = run_id
        self.owner = f"{run_id}-{secrets.token_hex(3)}"
        self.prefix = f"{prefix}-{self.owner}"
        self._seq = itertools.count()

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL_RUN: self.run_id, LABEL_OWNER: self.owner}

    def network(self, name: str | None = None) -> Any:
        """A fresh labelled docker network (for pods, or an outsider to share with them)."""
        return self.client.networks.create(
            name or f"{self.prefix}-net{next(self._seq)}", driver="bridge", labels=self.labels
        )

    def run(self, containers: list[dict[str, Any]], network: Any = None) -> Pod:
        """Start `containers` (docker-py containers.run kwargs) in one network namespace."""
        if not containers:
            raise ValueError("a pod needs at least one container")
        for i, spec in enumerate(containers):
            if "image" not in spec:
                raise ValueError(f"container {i} of the pod has no 'image'")
            bad = [k for k in _NETWORK_KEYS if k in spec and (i > 0 or k in ("network_mode", "networks"))]
            if bad:
                raise ValueError(
                    f"container {i} sets {', '.join(bad)}: the pod owns networking "
                    "(first container on the pod network, the others join its namespace)"
                )
        net = network or self.network()
        pod_n = next(self._seq)
        started: list[Any] = []
        for i, spec in enumerate(containers):
            kw = dict(spec)
            kw["labels"] = {**kw.get("labels", {}), **self.labels}
            kw.setdefault("name", f"{self.prefix}-p{pod_n}-c{i}")
            kw["detach"] = True
            kw.pop("remove", None)  # we remove in cleanup(); auto-remove would lose logs and state
            if i == 0:
                kw["network"] = net.name
            else:
                kw["network_mode"] = f"container:{started[0].id}"
            started.append(self.client.containers.run(**kw))
        return Pod(started, net)

    def cleanup(self) -> list[str]:
        """Remove every container and network of this owner; returns what could not be removed."""
        return remove_labelled(self.client, LABEL_OWNER, self.owner)


def remove_labelled(client: Any, key: str, value: str) -> list[str]:
    """Force-remove containers (with anonymous volumes) then networks labelled key=value."""
    import docker

    failed: list[str] = []
    filters = {"label": f"{key}={value}"}
    for c in client.containers.list(all=True, filters=filters):
        try:
            c.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            failed.append(f"container {c.name}: {exc}")
    for n in client.networks.list(filters=filters):
        try:
            n.remove()
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            failed.append(f"network {n.name}: {exc}")
    return failed
