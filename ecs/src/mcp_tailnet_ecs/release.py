"""The release our images default to, read from images/release.env.

That file is the one source of the registry and version that docker-compose.yml,
manifests/ and these templates name (the release workflow pushes exactly that).
`render` uses it when --version / --owner / --registry are not given. A wheel
carries a copy under templates/, like the JSON templates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mcp_tailnet_ecs import templates


@dataclass(frozen=True)
class ReleaseDefaults:
    registry: str
    version: str


def release_env() -> Path:
    """templates/release.env in a wheel, images/release.env in a checkout."""
    packed = templates.template_dir() / "release.env"
    return packed if packed.is_file() else templates.template_dir().parent / "images" / "release.env"


def defaults() -> ReleaseDefaults:
    """Registry and version of this release; ValueError naming the file when it is unusable."""
    path = release_env()
    if not path.is_file():
        raise ValueError(f"--version: required (no release file at {path} to default from)")
    env = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            env[key] = value
    missing = [k for k in ("MCP_TAILNET_REGISTRY", "MCP_TAILNET_VERSION") if not env.get(k)]
    if missing:
        raise ValueError(f"{path}: {', '.join(missing)} missing")
    return ReleaseDefaults(registry=env["MCP_TAILNET_REGISTRY"], version=env["MCP_TAILNET_VERSION"])
