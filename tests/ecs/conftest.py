"""Fixtures for the ECS tests: a real moto server on a free loopback port, and rendered documents."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_tailnet_ecs import templates
from mcp_tailnet_ecs.render import render
from mcp_tailnet_lab.moto_server import running_moto

from ecs_support import REGION, render_options


@pytest.fixture(scope="session")
def aws_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for the AWS CLI / boto3: fake credentials, no user config, our region."""
    empty = tmp_path_factory.mktemp("aws") / "empty"
    empty.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
    })
    return env


@pytest.fixture(scope="session")
def moto_endpoint(aws_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`moto_server` (server mode) on 127.0.0.1:<free port>; stopped afterwards."""
    with running_moto(aws_env, tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture
def bundle() -> templates.Bundle:
    """A fully rendered, valid bundle (all six documents)."""
    return render(render_options())


@pytest.fixture
def rendered_dir(tmp_path: Path, bundle: templates.Bundle) -> Path:
    templates.write_bundle(bundle, tmp_path / "rendered")
    return tmp_path / "rendered"
