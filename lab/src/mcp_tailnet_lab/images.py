"""Build this repo's images (images/<name>/Dockerfile) in the local Docker engine, offline.

The Dockerfiles are the ones users build: the lab only adds build args (the
wheelhouse, see wheelhouse.py) and labels, and relies on the stand-in base
images that lab/provision.d/80-base-images.sh tags with the upstream names.
Each image installs its component's locked requirements from
images/<name>/requirements.txt, exported from uv.lock; a stale export fails
the build with the command that refreshes it.

Built images are kept (tag `mcp-tailnet-lab/<name>:dev`) so the classic
builder's layer cache makes the next session's build take seconds; the
dangling predecessors of a rebuilt tag are pruned.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from mcp_tailnet_lab.paths import PROVISION_HINT, REPO_DIR, MissingComponent, cache_dir
from mcp_tailnet_lab import release, wheelhouse
from mcp_tailnet_lab.docker_engine import connect  # noqa: F401 - images.connect() for callers

IMAGES_DIR = REPO_DIR / "images"
TAG_PREFIX = "mcp-tailnet-lab/"
TAG_SUFFIX = "dev"
LABEL_IMAGE = "org.mcp-tailnet.lab.repo-image"
LABEL_STAGE = "org.mcp-tailnet.lab.repo-image-stage"


class ImageBuildError(RuntimeError):
    """`docker build` of a repo image failed; the message carries the build's last lines."""


def repo_image_names() -> list[str]:
    """Every image this repo builds: the folders of images/ with a Dockerfile."""
    return sorted(p.parent.name for p in IMAGES_DIR.glob("*/Dockerfile"))


def image_tag(name: str) -> str:
    return f"{TAG_PREFIX}{name}:{TAG_SUFFIX}"


def base_images(dockerfile: Path) -> list[str]:
    """The external images a Dockerfile starts FROM (stage names excluded)."""
    stages: set[str] = set()
    out: list[str] = []
    for line in dockerfile.read_text().splitlines():
        m = re.match(r"\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            if m[1].lower() not in stages and m[1] not in out:
                out.append(m[1])
            if m[2]:
                stages.add(m[2].lower())
    return out


def built_stages(dockerfile: Path) -> list[str]:
    """Named stages, except the last, that run instructions of their own (e.g. `build`).

    The classic builder leaves such a stage's result untagged; the lab tags it
    (`<tag>-<stage>`) so its predecessors can be pruned while it stays the cache.
    """
    stages: list[tuple[str | None, int]] = []
    for line in dockerfile.read_text().splitlines():
        m = re.match(r"\s*FROM\s+(?:--platform=\S+\s+)?\S+(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            stages.append((m[1], 0))
        elif stages and re.match(r"\s*(RUN|COPY|ADD)\s", line, re.I):
            stages[-1] = (stages[-1][0], stages[-1][1] + 1)
    return [name for name, n in stages[:-1] if name and n]


# --- locked requirements ------------------------------------------------------

def requirements_file(name: str) -> Path:
    return IMAGES_DIR / name / "requirements.txt"


def _export_command(req: Path) -> list[str]:
    """The `uv export` command recorded in a requirements file's header."""
    for line in req.read_text().splitlines()[:5]:
        if line.lstrip("# ").startswith("uv export"):
            return shlex.split(line.lstrip("# "))
    raise ImageBuildError(f"{req} has no `uv export` header; regenerate it with uv export -o {req}")


def export_requirements(name: str, *, write: bool) -> bool:
    """Re-run the header's `uv export`; True when the file was already current (writes it if asked)."""
    req = requirements_file(name)
    cmd = _export_command(req)
    if write:
        subprocess.run(cmd, cwd=REPO_DIR, check=True, capture_output=True, text=True)
        return True
    if "-o" in cmd:
        i = cmd.index("-o")
        cmd = cmd[:i] + cmd[i + 2:]
    fresh = subprocess.run(cmd + ["--no-header"], cwd=REPO_DIR, check=True, capture_output=True, text=True).stdout
    body = "\n".join(line for line in req.read_text().splitlines() if not line.startswith("#"))
    fresh_body = "\n".join(line for line in fresh.splitlines() if not line.startswith("#"))
    return body.strip() == fresh_body.strip()


def check_requirements(name: str) -> None:
    if requirements_file(name).is_file() and not export_requirements(name, write=False):
        raise ImageBuildError(
            f"images/{name}/requirements.txt no longer matches uv.lock: run "
            f"`.venv/bin/python -m mcp_tailnet_lab.images export-requirements {name}` and commit it"
        )


# --- build ------------------------------------------------------------------------

def _revision() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def build_repo_image(name: str, client=None, *, labels: dict[str, str] | None = None) -> str:  # noqa: ANN001
    """Build images/<name>/Dockerfile (context: the repo root) from the wheelhouse; returns the tag."""
    import docker

    dockerfile = IMAGES_DIR / name / "Dockerfile"
    if not dockerfile.is_file():
        raise ImageBuildError(f"no Dockerfile at {dockerfile}")
    client = client or connect()
    for base in base_images(dockerfile):
        try:
            client.images.get(base)
        except docker.errors.ImageNotFound:
            raise MissingComponent(
                f"base image {base} (named by images/{name}/Dockerfile) is missing from the Docker engine: "
                f"{PROVISION_HINT} (step 80-base-images)"
            ) from None
    check_requirements(name)
    tag = image_tag(name)
    # VERSION/SOURCE/LICENSES (the OCI labels) come from images/release.env, as in the release workflow.
    rel = release.load()
    args = wheelhouse.build_args(client) | rel.build_args(_revision())
    log_path = cache_dir() / "logs" / f"image-{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        for stage in built_stages(dockerfile):
            _build(client, name, dockerfile, f"{tag}-{stage}", args, {LABEL_STAGE: f"{name}-{stage}"}, log, stage)
        base = release.final_base(dockerfile)
        final_labels = {LABEL_IMAGE: name} | (rel.base_labels(base) if base else {}) | (labels or {})
        _build(client, name, dockerfile, tag, args, final_labels, log, None)
    for stage in built_stages(dockerfile):
        client.images.prune(filters={"dangling": True, "label": f"{LABEL_STAGE}={name}-{stage}"})
    client.images.prune(filters={"dangling": True, "label": f"{LABEL_IMAGE}={name}"})
    return tag


def _build(client, name: str, dockerfile: Path, tag: str, args: dict[str, str],  # noqa: ANN001
           labels: dict[str, str], log, target: str | None) -> None:  # noqa: ANN001
    lines: list[str] = []
    error = None
    stream = client.api.build(
        path=str(REPO_DIR), dockerfile=str(dockerfile.relative_to(REPO_DIR)), tag=tag, target=target,
        buildargs=args, labels=labels, rm=True, forcerm=True, network_mode="bridge", decode=True,
    )
    for chunk in stream:
        text = chunk.get("stream") or chunk.get("status") or ""
        if "error" in chunk:
            error = chunk.get("error") or json.dumps(chunk.get("errorDetail"))
            text = error + "\n"
        log.write(text)
        lines.extend(text.splitlines())
    if error:
        tail = "\n".join(lines[-25:])
        raise ImageBuildError(f"docker build of images/{name}/Dockerfile failed: {error}\n(log {log.name})\n{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcp_tailnet_lab.images", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build repo images offline (default: all)")
    b.add_argument("names", nargs="*")
    e = sub.add_parser("export-requirements", help="refresh images/<name>/requirements.txt from uv.lock")
    e.add_argument("names", nargs="*")
    c = sub.add_parser("check-requirements", help="exit 1 if a requirements export is stale")
    c.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    names = args.names or repo_image_names()
    try:
        if args.command == "build":
            client = connect()
            for name in names:
                print(f"{name}: {build_repo_image(name, client)}")
        elif args.command == "export-requirements":
            for name in names:
                if requirements_file(name).is_file():
                    export_requirements(name, write=True)
                    print(f"{name}: {requirements_file(name).relative_to(REPO_DIR)}")
        else:
            stale = [n for n in names if requirements_file(n).is_file() and not export_requirements(n, write=False)]
            for n in stale:
                print(f"{n}: images/{n}/requirements.txt is stale", file=sys.stderr)
            return 1 if stale else 0
    except (MissingComponent, ImageBuildError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
