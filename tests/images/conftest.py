"""The released images, as `lab/build-images` makes them: the lab's build of every
images/<dir>/Dockerfile (the docker fixture `repo_images`), tagged with the
release references of images/release.env."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_tailnet_lab import release
from mcp_tailnet_lab.build_images import Built, check_release_covers_images, tag_release


@pytest.fixture(scope="session")
def rel() -> release.Release:
    return release.load()


@pytest.fixture(scope="session")
def release_images(docker_client: Any, repo_images: dict[str, str], rel: release.Release) -> dict[str, Built]:
    """images/<dir> -> Built (release ref, id, size) for every image of this repo."""
    check_release_covers_images(rel)
    assert set(repo_images) == set(rel.names), f"built {sorted(repo_images)}, release names {sorted(rel.names)}"
    return {name: tag_release(docker_client, name, tag, rel) for name, tag in repo_images.items()}
