"""Shared values for the ECS tests (a plain module: conftest modules are not importable by name)."""

from __future__ import annotations

from mcp_tailnet_ecs.render import RenderOptions

ACCOUNT = "123456789012"
REGION = "eu-west-1"


def render_options(**overrides: object) -> RenderOptions:
    base: dict[str, object] = dict(
        account_id=ACCOUNT, region=REGION, version="0.1.0", owner="acme", eks_cluster="prod",
        subnets=("subnet-0123456789abcdef0",), security_group="sg-0123456789abcdef0",
        server_image="ghcr.io/acme/stock-mcp-server:1.0",
    )
    base.update(overrides)
    return RenderOptions(**base)  # type: ignore[arg-type]
