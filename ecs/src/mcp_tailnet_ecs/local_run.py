"""Run a (rendered) task definition's containers in the local Docker engine, as Fargate would.

Why: the task definition is the deployable artifact, so the local lab runs *it*,
not a hand-made compose file that could drift. What awsvpc does, done with Docker:
a netns-holding "pause" container stands in for the task's ENI (on a given Docker
network) and every container joins it (`network_mode=container:`), so they share
loopback and one IP. Each container gets its `environment`, `secrets` resolved to
env vars (from a local map standing in for Secrets Manager), `entryPoint`/`command`,
`user`, read-only root, task volumes (per-task Docker volumes), dropped capabilities,
init, health check; containers start in `dependsOn` order (START, HEALTHY, COMPLETE,
SUCCESS) and stop in reverse with their `stopTimeout`. awslogs is not available
locally: logs stay in Docker (`LocalTask.logs`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

LABEL = "mcp-tailnet.ecs-local"
_NS = 1_000_000_000


class LocalRunError(RuntimeError):
    """The task could not start as its definition says; the message names the container."""


def _start_order(containers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Containers so that each comes after everything it dependsOn (ECS refuses cycles too)."""
    by_name = {c["name"]: c for c in containers}
    ordered: list[dict[str, Any]] = []
    state: dict[str, int] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise LocalRunError(f"dependsOn cycle: {' -> '.join(chain + (name,))}")
        if name not in by_name:
            raise LocalRunError(f"dependsOn names no container {name!r}")
        state[name] = 1
        for dep in by_name[name].get("dependsOn") or []:
            visit(dep["containerName"], chain + (name,))
        state[name] = 2
        ordered.append(by_name[name])

    for c in containers:
        visit(c["name"], ())
    return ordered


def local_image(image: str, images: Mapping[str, str]) -> str:
    """Map `registry/path/NAME:tag` to a local tag by NAME (images built from this repo)."""
    name = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    return images.get(name, image)


def docker_healthcheck(hc: Mapping[str, Any]) -> dict[str, Any]:
    """ECS healthCheck (seconds) -> Docker's (nanoseconds); ECS defaults where absent."""
    return {
        "test": list(hc["command"]),
        "interval": int(hc.get("interval", 30)) * _NS,
        "timeout": int(hc.get("timeout", 5)) * _NS,
        "retries": int(hc.get("retries", 3)),
        "start_period": int(hc.get("startPeriod", 0)) * _NS,
    }


@dataclass
class LocalTask:
    """One running task. Use as a context manager; everything made is labelled and removed."""

    client: docker.DockerClient
    task_definition: dict[str, Any]
    network: str
    images: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    env_overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    pause_image: str | None = None
    start_timeout: float = 180.0
    prefix: str = field(default_factory=lambda: f"ecs-local-{uuid.uuid4().hex[:8]}")
    containers: dict[str, Container] = field(default_factory=dict, init=False)
    events: list[tuple[float, str, str]] = field(default_factory=list, init=False)
    _pause: Container | None = field(default=None, init=False)
    _volumes: list[Any] = field(default_factory=list, init=False)

    # ---- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> LocalTask:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalTask:
        td = self.task_definition
        if td.get("networkMode") != "awsvpc":
            raise LocalRunError(f"networkMode {td.get('networkMode')!r}: the local runner mimics awsvpc only")
        labels = {LABEL: self.prefix}
        defs = _start_order(td["containerDefinitions"])
        pause_image = self.pause_image or local_image(defs[0]["image"], self.images)
        self._pause = self.client.containers.run(
            pause_image, name=f"{self.prefix}-eni", entrypoint=["python3", "-c", "import signal; signal.pause()"],
            command=[], network=self.network, detach=True, labels=labels, read_only=True, cap_drop=["ALL"],
        )
        volumes = {}
        for v in td.get("volumes", []):
            vol = self.client.volumes.create(name=f"{self.prefix}-{v['name']}", labels=labels)
            self._volumes.append(vol)
            volumes[v["name"]] = vol.name
        for cdef in defs:
            for dep in cdef.get("dependsOn") or []:
                self._wait_condition(dep["containerName"], dep["condition"])
            self.containers[cdef["name"]] = self._run(cdef, volumes, labels)
            self.events.append((time.time(), cdef["name"], "started"))
        return self

    def stop(self) -> None:
        """Stop dependents before what they depend on (ECS's shutdown order), then remove all."""
        defs = {c["name"]: c for c in self.task_definition.get("containerDefinitions", [])}
        for name in reversed(list(self.containers)):
            container = self.containers[name]
            try:
                container.stop(timeout=int(defs.get(name, {}).get("stopTimeout", 30)))
                self.events.append((time.time(), name, "stopped"))
            except docker.errors.NotFound:
                pass
        for container in list(self.containers.values()) + ([self._pause] if self._pause else []):
            try:
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
        for vol in self._volumes:
            try:
                vol.remove(force=True)
            except docker.errors.NotFound:
                pass
        self.containers.clear()
        self._volumes.clear()
        self._pause = None

    # ---- what a test asks --------------------------------------------------------------
    @property
    def ip(self) -> str:
        """The task's address on its network (the 'ENI' private IP)."""
        assert self._pause is not None, "task not started"
        self._pause.reload()
        return self._pause.attrs["NetworkSettings"]["Networks"][self.network]["IPAddress"]

    def status(self, name: str) -> tuple[str, str | None]:
        """(container state, health status or None)."""
        c = self.containers[name]
        c.reload()
        state = c.attrs["State"]
        return state["Status"], (state.get("Health") or {}).get("Status")

    def logs(self, name: str, tail: int = 50) -> str:
        return self.containers[name].logs(tail=tail).decode(errors="replace")

    def wait_healthy(self, name: str, timeout: float | None = None) -> None:
        self._wait_condition(name, "HEALTHY", timeout)

    def essential_exited(self) -> list[str]:
        """Essential containers that are no longer running (ECS would stop the task)."""
        defs = {c["name"]: c for c in self.task_definition["containerDefinitions"]}
        return [n for n in self.containers if defs[n].get("essential", True) and self.status(n)[0] != "running"]

    # ---- internals ---------------------------------------------------------------------
    def _env(self, cdef: Mapping[str, Any]) -> dict[str, str]:
        env = {e["name"]: str(e["value"]) for e in cdef.get("environment") or []}
        for secret in cdef.get("secrets") or []:
            if secret["valueFrom"] not in self.secrets:
                # never print the value; the ARN names which secret is missing
                raise LocalRunError(f"{cdef['name']}: no local value for secret {secret['name']} ({secret['valueFrom']})")
            env[secret["name"]] = self.secrets[secret["valueFrom"]]
        env.update(self.env_overrides.get(cdef["name"], {}))
        return env

    def _run(self, cdef: Mapping[str, Any], volumes: Mapping[str, str], labels: dict[str, str]) -> Container:
        assert self._pause is not None
        lp = cdef.get("linuxParameters") or {}
        caps = lp.get("capabilities") or {}
        kwargs: dict[str, Any] = {
            "name": f"{self.prefix}-{cdef['name']}",
            "network_mode": f"container:{self._pause.id}",
            "environment": self._env(cdef),
            "detach": True,
            "labels": labels,
            "read_only": bool(cdef.get("readonlyRootFilesystem")),
            "volumes": {
                volumes[m["sourceVolume"]]: {"bind": m["containerPath"], "mode": "ro" if m.get("readOnly") else "rw"}
                for m in cdef.get("mountPoints") or []
            },
            "cap_drop": caps.get("drop") or None,
            "cap_add": caps.get("add") or None,
            "init": bool(lp.get("initProcessEnabled")) or None,
            "privileged": bool(cdef.get("privileged")),
        }
        if cdef.get("entryPoint"):
            kwargs["entrypoint"] = cdef["entryPoint"]
        if cdef.get("command"):
            kwargs["command"] = cdef["command"]
        if cdef.get("user"):
            kwargs["user"] = cdef["user"]
        if cdef.get("workingDirectory"):
            kwargs["working_dir"] = cdef["workingDirectory"]
        if cdef.get("healthCheck"):
            kwargs["healthcheck"] = docker_healthcheck(cdef["healthCheck"])
        if cdef.get("memory"):
            kwargs["mem_limit"] = f"{int(cdef['memory'])}m"
        image = local_image(cdef["image"], self.images)
        try:
            return self.client.containers.run(image, **kwargs)
        except docker.errors.ImageNotFound:
            raise LocalRunError(f"{cdef['name']}: image {image} is not in the local Docker engine (build it first)") from None

    def _wait_condition(self, name: str, condition: str, timeout: float | None = None) -> None:
        if name not in self.containers:
            raise LocalRunError(f"{name} has not been started")
        deadline = time.monotonic() + (timeout or self.start_timeout)
        while True:
            state, health = self.status(name)
            if condition == "START" and state == "running":
                break
            if condition == "HEALTHY":
                if health == "healthy":
                    self.events.append((time.time(), name, "healthy"))
                    break
                if health is None:
                    raise LocalRunError(f"{name} has no health check, so it can never be HEALTHY")
                if health == "unhealthy" or state == "exited":
                    raise LocalRunError(f"{name} is {health or state} before HEALTHY: {self.logs(name, 20)}")
            if condition in ("COMPLETE", "SUCCESS") and state == "exited":
                code = self.containers[name].attrs["State"]["ExitCode"]
                if condition == "SUCCESS" and code != 0:
                    raise LocalRunError(f"{name} exited {code}, dependsOn wants SUCCESS")
                break
            if condition == "START" and state == "exited":
                raise LocalRunError(f"{name} exited at start: {self.logs(name, 20)}")
            if time.monotonic() > deadline:
                raise LocalRunError(f"{name} not {condition} within {timeout or self.start_timeout:g} s "
                                    f"(state {state}, health {health}): {self.logs(name, 20)}")
            time.sleep(0.5)
