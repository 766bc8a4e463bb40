"""The release as images/release.env names it: registry, image names, version, bases.

That one file is the source; this module only reads and validates it, for
lab/build-images (local tags, OCI labels) and for the tests that hold
docker-compose.yml, manifests/ and ecs/ to it. The release workflow reads the
same file with `source`, so the format stays plain KEY=VALUE with no quoting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from mcp_tailnet_lab.paths import REPO_DIR

RELEASE_ENV = REPO_DIR / "images" / "release.env"

#: images/<dir> -> the release.env key that names its image
IMAGE_KEYS = {
    "sidecar": "MCP_TAILNET_SIDECAR_IMAGE",
    "eks-inspector": "MCP_TAILNET_INSPECTOR_IMAGE",
    "mcp-hub": "MCP_TAILNET_HUB_IMAGE",
}
#: the release.env keys of each base image tag and its digest
BASE_KEYS = {
    "PYTHON_BASE_IMAGE": "PYTHON_BASE_DIGEST",
    "TAILSCALE_BASE_IMAGE": "TAILSCALE_BASE_DIGEST",
}
_REQUIRED = ("MCP_TAILNET_REGISTRY", "MCP_TAILNET_VERSION", "MCP_TAILNET_SOURCE", "MCP_TAILNET_LICENSES",
             *IMAGE_KEYS.values(), *BASE_KEYS, *BASE_KEYS.values())
_CHECKS = {
    # SemVer without a leading v: the git tag is v<this>.
    "MCP_TAILNET_VERSION": (re.compile(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?"), "a version like 1.2.3"),
    "MCP_TAILNET_REGISTRY": (re.compile(r"[a-z0-9.-]+(:\d+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+"),
                             "a lower-case registry/namespace like ghcr.io/owner"),
    "MCP_TAILNET_SOURCE": (re.compile(r"https://\S+"), "an https URL"),
    "MCP_TAILNET_LICENSES": (re.compile(r"\S+( (AND|OR|WITH) \S+)*"), "an SPDX expression"),
}
_NAME = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class ReleaseConfigError(ValueError):
    """images/release.env is malformed; str() is one line naming the key."""


@dataclass(frozen=True)
class Release:
    registry: str
    version: str
    names: dict[str, str]  # images/<dir> -> image name
    source: str
    licenses: str
    bases: dict[str, str]  # base image tag -> digest ("" = not pinned)

    def repository(self, image_dir: str) -> str:
        """registry/name of one of our images (no tag)."""
        return f"{self.registry}/{self.names[image_dir]}"

    def ref(self, image_dir: str) -> str:
        """The released reference, registry/name:version."""
        return f"{self.repository(image_dir)}:{self.version}"

    def build_args(self, revision: str) -> dict[str, str]:
        """The Dockerfiles' build args that become the org.opencontainers.image.* labels."""
        return {"VERSION": self.version, "REVISION": revision, "SOURCE": self.source, "LICENSES": self.licenses}

    def base_labels(self, base: str) -> dict[str, str]:
        """OCI base-image labels: the tag always, the digest only when release.env pins one."""
        labels = {"org.opencontainers.image.base.name": base}
        if self.bases.get(base):
            labels["org.opencontainers.image.base.digest"] = self.bases[base]
        return labels


def final_base(dockerfile: Path) -> str | None:
    """The external image the last stage of a Dockerfile builds FROM (None if it is a stage)."""
    stages: set[str] = set()
    last = None
    for m in re.finditer(r"(?im)^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", dockerfile.read_text()):
        last = None if m[1].lower() in stages else m[1]
        if m[2]:
            stages.add(m[2].lower())
    return last


def parse_env(text: str, where: str = "release.env") -> dict[str, str]:
    """KEY=VALUE lines; comments and blank lines skipped; anything else is an error."""
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            raise ReleaseConfigError(f"{where}:{n}: expected KEY=VALUE, got {line!r}")
        if any(c in value for c in "\"'$`\\ "):
            raise ReleaseConfigError(f"{where}:{n}: {key}: no quotes, spaces or expansions (the workflow sources this file)")
        out[key] = value
    return out


def parse(text: str, where: str = "release.env") -> Release:
    env = parse_env(text, where)
    for key in _REQUIRED:
        if key not in env:
            raise ReleaseConfigError(f"{where}: {key} is missing")
    for key, (pattern, what) in _CHECKS.items():
        if not pattern.fullmatch(env[key]):
            raise ReleaseConfigError(f"{where}: {key}={env[key]!r} is not {what}")
    for key in IMAGE_KEYS.values():
        if not _NAME.fullmatch(env[key]):
            raise ReleaseConfigError(f"{where}: {key}={env[key]!r} is not a lower-case image name")
    bases = {}
    for image_key, digest_key in BASE_KEYS.items():
        if env[digest_key] and not _DIGEST.fullmatch(env[digest_key]):
            raise ReleaseConfigError(f"{where}: {digest_key}={env[digest_key]!r} is not sha256:<64 hex> (or empty)")
        bases[env[image_key]] = env[digest_key]
    return Release(
        registry=env["MCP_TAILNET_REGISTRY"], version=env["MCP_TAILNET_VERSION"],
        names={d: env[k] for d, k in IMAGE_KEYS.items()},
        source=env["MCP_TAILNET_SOURCE"], licenses=env["MCP_TAILNET_LICENSES"], bases=bases,
    )


@cache
def load(path: Path = RELEASE_ENV) -> Release:
    """The release of this checkout."""
    if not path.is_file():
        raise ReleaseConfigError(f"{path}: missing (it names the release version and images)")
    return parse(path.read_text(), str(path.relative_to(REPO_DIR) if path.is_relative_to(REPO_DIR) else path))
