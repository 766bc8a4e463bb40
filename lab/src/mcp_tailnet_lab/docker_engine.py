"""The lab's Docker engine, as a docker-py client that has answered.

Its own module so that images.py (builds) and wheelhouse.py (serves wheels to those
builds) both reach the engine without importing each other.
"""

from __future__ import annotations

import os

from mcp_tailnet_lab.paths import MissingComponent

ENGINE_HINT = "start it with `lab/provision` (step 20-docker-engine)"


def connect(timeout: int = 120):  # noqa: ANN201 - docker.DockerClient
    """A docker-py client that has answered a ping; MissingComponent naming the engine otherwise."""
    import docker

    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # docker.errors.DockerException, requests errors, FileNotFoundError
        raise MissingComponent(f"the Docker engine is not answering at {where} ({exc}): {ENGINE_HINT}") from None
    return client
