"""The local runner does what awsvpc + ECS do, with the real Docker engine.

A small task definition of two stock-Python containers shows the mechanics: one
network namespace (loopback shared, one task IP), dependsOn HEALTHY order, secrets
as env, read-only root with task volumes, and stop order. The sidecar + tailnet run
of the shipped task definition lives in test_ecs_local_tailnet.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import docker
import docker.errors
import pytest

from mcp_tailnet_ecs.local_run import LABEL, LocalRunError, LocalTask
from mcp_tailnet_lab.paths import versions

SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:demo-AbC123"
PY_HEALTH = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=2)"


@pytest.fixture(scope="module")
def docker_engine() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:  # docker raises several types; the message names the engine
        pytest.fail(f"Docker engine not answering ({exc}); run lab/provision to start it")
    return client


@pytest.fixture(scope="module")
def python_image(docker_engine: docker.DockerClient) -> str:
    tag = versions()["PYTHON_BASE_IMAGE"]
    try:
        docker_engine.images.get(tag)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {tag} missing from the Docker engine; run lab/provision (80-base-images)")
    return tag


@pytest.fixture
def task_network(docker_engine: docker.DockerClient) -> Iterator[str]:
    net = docker_engine.networks.create(f"ecs-test-{uuid.uuid4().hex[:8]}", driver="bridge",
                                        labels={LABEL: "test"})
    try:
        yield net.name
    finally:
        net.remove()


def task_definition(image: str, *, server_health: str | None = None) -> dict[str, Any]:
    health = {"command": ["CMD", "python3", "-c", server_health or PY_HEALTH.format(port=8080)],
              "interval": 5, "timeout": 3, "retries": 3, "startPeriod": 0}
    return {
        "family": "local-run-demo",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256", "memory": "512",
        "volumes": [{"name": "client-data"}],
        "containerDefinitions": [
            {
                "name": "client",
                "image": f"ghcr.io/acme/{image.split(':')[0]}:{image.split(':')[1]}",
                "essential": True,
                "readonlyRootFilesystem": True,
                "dependsOn": [{"containerName": "server", "condition": "HEALTHY"}],
                "entryPoint": ["sh", "-c"],
                # A listener on every interface (9000) next to a loopback-only server (8080).
                "command": ["cd /data && exec python3 -m http.server 9000 --bind 0.0.0.0"],
                "environment": [{"name": "GREETING", "value": "hello"}],
                "secrets": [{"name": "DEMO_TOKEN", "valueFrom": SECRET_ARN}],
                "mountPoints": [{"sourceVolume": "client-data", "containerPath": "/data"}],
                "linuxParameters": {"capabilities": {"drop": ["ALL"]}, "initProcessEnabled": True},
                "stopTimeout": 5,
            },
            {
                "name": "server",
                "image": image,
                "essential": True,
                "readonlyRootFilesystem": True,
                "command": ["python3", "-m", "http.server", "8080", "--bind", "127.0.0.1", "--directory", "/etc"],
                "healthCheck": health,
                "linuxParameters": {"capabilities": {"drop": ["ALL"]}, "initProcessEnabled": True},
                "stopTimeout": 5,
            },
        ],
    }


def _exec(task: LocalTask, name: str, code: str) -> tuple[int, str]:
    result = task.containers[name].exec_run(["python3", "-c", code])
    return result.exit_code, result.output.decode(errors="replace")


def _started(task: LocalTask, name: str) -> datetime:
    return datetime.fromisoformat(task.containers[name].attrs["State"]["StartedAt"][:26])


def test_containers_share_one_netns_in_depends_on_order(docker_engine: docker.DockerClient, python_image: str,
                                                        task_network: str) -> None:
    td = task_definition(python_image)
    image_name = python_image.split(":")[0]
    with LocalTask(docker_engine, td, task_network, images={image_name: python_image},
                   secrets={SECRET_ARN: "s3cret-value"}) as task:
        # started after the server was HEALTHY, by Docker's own clock
        server = task.containers["server"]
        server.reload()
        first_healthy = min(datetime.fromisoformat(entry["End"][:26])
                            for entry in server.attrs["State"]["Health"]["Log"] if entry["ExitCode"] == 0)
        task.containers["client"].reload()
        assert _started(task, "client") > first_healthy
        assert [e[1:] for e in task.events] == [("server", "started"), ("server", "healthy"), ("client", "started")]

        # one loopback: the client reaches the server's 127.0.0.1-only port
        code, out = _exec(task, "client", "import urllib.request; print(urllib.request.urlopen("
                                          "'http://127.0.0.1:8080/hostname', timeout=5).status)")
        assert (code, out.strip()) == (0, "200")
        # env and secrets arrive as environment variables
        code, out = _exec(task, "client", "import os; print(os.environ['GREETING'], os.environ['DEMO_TOKEN'] == 's3cret-value')")
        assert out.split() == ["hello", "True"]
        # read-only root, writable task volume
        assert _exec(task, "client", "open('/root-write-test', 'w')")[0] != 0
        assert _exec(task, "client", "open('/data/ok', 'w').write('x')")[0] == 0

        # one task IP: a peer on the same network reaches the 0.0.0.0 listener, not the loopback one
        probe = ("import socket, sys\n"
                 "for port in (9000, 8080):\n"
                 "    try:\n"
                 "        socket.create_connection((sys.argv[1], port), 3).close(); print(port, 'open')\n"
                 "    except ConnectionRefusedError:\n"
                 "        print(port, 'refused')\n")
        out = docker_engine.containers.run(python_image, ["python3", "-c", probe, task.ip], network=task_network,
                                           remove=True, labels={LABEL: "test"}).decode()
        assert out.split("\n")[:2] == ["9000 open", "8080 refused"]
        assert task.essential_exited() == []
        prefix = task.prefix
    # stop order: dependents first, like ECS
    assert [e[1] for e in task.events if e[2] == "stopped"] == ["client", "server"]
    assert docker_engine.containers.list(all=True, filters={"label": f"{LABEL}={prefix}"}) == []
    assert docker_engine.volumes.list(filters={"label": f"{LABEL}={prefix}"}) == []


def test_missing_secret_is_named_never_shown(docker_engine: docker.DockerClient, python_image: str,
                                             task_network: str) -> None:
    td = task_definition(python_image)
    with pytest.raises(LocalRunError, match="DEMO_TOKEN") as err:
        with LocalTask(docker_engine, td, task_network, images={python_image.split(":")[0]: python_image},
                       secrets={"arn:other": "s3cret-value"}):
            pass
    assert "s3cret-value" not in str(err.value)


def test_unhealthy_dependency_stops_the_start(docker_engine: docker.DockerClient, python_image: str,
                                              task_network: str) -> None:
    td = task_definition(python_image, server_health=PY_HEALTH.format(port=8081))  # nothing on 8081
    task = LocalTask(docker_engine, td, task_network, images={python_image.split(":")[0]: python_image},
                     secrets={SECRET_ARN: "x"}, start_timeout=90)
    with pytest.raises(LocalRunError, match="server is unhealthy before HEALTHY"):
        with task:
            pass
    assert ("client", "started") not in [e[1:] for e in task.events]
    assert docker_engine.containers.list(all=True, filters={"label": f"{LABEL}={task.prefix}"}) == []

