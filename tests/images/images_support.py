"""Helpers for tests/images: run Python inside an image, read what manifests/ declares."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from mcp_tailnet_lab.paths import REPO_DIR

VENV_PYTHON = "/opt/venv/bin/python"
SYSTEM_PYTHON = "/usr/bin/python3"

# Every installed distribution an interpreter sees, from the dist-info/egg-info
# metadata (what `pip list --format json` reads; pip itself is not in the images).
LIST_DISTS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps(sorted({(d.metadata['Name'], d.version) for d in m.distributions()})))"
)


def run_python(client: Any, image: str, code: str, python: str = VENV_PYTHON, **kw: Any) -> str:
    """Run `python -c code` in a throwaway container of `image` (no network, read-only root)."""
    kw.setdefault("read_only", True)
    out = client.containers.run(image, entrypoint=[python], command=["-c", code], remove=True,
                                network_disabled=True, stderr=True, **kw)
    return out.decode()


def installed_dists(client: Any, image: str) -> set[tuple[str, str]]:
    """(name, version) of every Python distribution installed in the image, venv and system."""
    found: set[tuple[str, str]] = set()
    for python in (VENV_PYTHON, SYSTEM_PYTHON):
        found |= {tuple(d) for d in json.loads(run_python(client, image, LIST_DISTS, python))}
    return found


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_requirements(image_dir: str, environment: dict[str, str] | None = None) -> dict[str, str]:
    """canonical name -> version pinned in images/<dir>/requirements.txt (exported from uv.lock)
    whose environment marker holds for `environment` (PEP 508 names; default: the images' Linux CPython)."""
    from packaging.markers import Marker

    env = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython",
           "python_version": "3.11", "python_full_version": "3.11.2", "platform_machine": "x86_64"}
    env |= environment or {}
    text = (REPO_DIR / "images" / image_dir / "requirements.txt").read_text()
    out = {}
    for m in re.finditer(r"(?m)^([A-Za-z0-9_.-]+)==([^\s;\\]+)[ \t]*(?:;([^\\\n]*))?", text):
        if m[3] and not Marker(m[3].strip()).evaluate(env):
            continue
        out[canonical(m[1])] = m[2]
    return out


def image_python(client: Any, image: str) -> dict[str, str]:
    """The PEP 508 environment of the image's interpreter, for locked_requirements."""
    code = ("import json, platform, sys; print(json.dumps({'python_version': '%d.%d' % sys.version_info[:2], "
            "'python_full_version': platform.python_version(), 'platform_machine': platform.machine()}))")
    return json.loads(run_python(client, image, code))


def deployment_containers() -> dict[str, dict[str, Any]]:
    """The containers of manifests/50-deployment.yaml by name, with the pod's volumes and securityContext."""
    docs = [d for d in yaml.safe_load_all((REPO_DIR / "manifests" / "50-deployment.yaml").read_text()) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    return {c["name"]: {**c, "_volumes": volumes, "_pod_security": spec.get("securityContext", {})}
            for c in spec["containers"]}


def declared_writable_paths(container: dict[str, Any]) -> list[str]:
    """Mount paths of the emptyDir volumes a manifest container declares: its only writable places."""
    return [m["mountPath"] for m in container.get("volumeMounts", [])
            if "emptyDir" in container["_volumes"][m["name"]] and not m.get("readOnly")]


def health(container: Any) -> dict[str, Any]:
    container.reload()
    return container.attrs["State"].get("Health") or {}


def write_file(path: Path, text: str, mode: int = 0o444) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path
