"""One release everywhere: compose, manifests/ and ecs/ name what images/release.env names.

Each deployment style is read the way its own tool reads it: `docker compose
config` (the Compose v2 plugin the lab builds), `kubectl kustomize` and the
`apply -f` files, `mcp-tailnet-ecs render`. Nothing here copies a version.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from mcp_tailnet_ecs.render import RenderOptions, render
from mcp_tailnet_ecs import templates
from mcp_tailnet_lab import release
from mcp_tailnet_lab.paths import REPO_DIR, binary, versions

REL = release.load()
OURS = {REL.names[d]: d for d in REL.names}  # image name -> images/<dir>


def our_image_dir(image: str) -> str | None:
    """images/<dir> when `image` is one of ours (by repository name), else None."""
    name = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    return OURS.get(name)


def test_release_env_is_valid_and_names_every_image_folder():
    assert re.fullmatch(r"\d+\.\d+\.\d+", REL.version), REL.version
    assert set(REL.names) == {p.parent.name for p in (REPO_DIR / "images").glob("*/Dockerfile")}
    assert REL.ref("sidecar") == f"{REL.registry}/mcp-tailnet-sidecar:{REL.version}"
    assert REL.ref("eks-inspector") == f"{REL.registry}/eks-inspector:{REL.version}"


def test_release_env_rejects_bad_values_with_the_key_named():
    good = (REPO_DIR / "images" / "release.env").read_text()
    for bad, key in [
        (good.replace("MCP_TAILNET_VERSION=", "MCP_TAILNET_VERSION=v"), "MCP_TAILNET_VERSION"),
        (good.replace("PYTHON_BASE_DIGEST=", "PYTHON_BASE_DIGEST=sha256:abc"), "PYTHON_BASE_DIGEST"),
        (re.sub(r"(?m)^MCP_TAILNET_REGISTRY=.*$", "MCP_TAILNET_REGISTRY=GHCR.io/Me", good), "MCP_TAILNET_REGISTRY"),
        (re.sub(r"(?m)^MCP_TAILNET_SIDECAR_IMAGE=.*\n", "", good), "MCP_TAILNET_SIDECAR_IMAGE"),
        (good + "MCP_TAILNET_EXTRA=\"$(id)\"\n", "MCP_TAILNET_EXTRA"),
    ]:
        with pytest.raises(release.ReleaseConfigError, match=key):
            release.parse(bad)


def test_base_images_match_the_dockerfiles_and_the_lab_stand_ins():
    """The tags the release pins by digest are the tags the Dockerfiles build FROM."""
    from_tags = set()
    for dockerfile in (REPO_DIR / "images").glob("*/Dockerfile"):
        stages = set()
        for m in re.finditer(r"(?im)^\s*FROM\s+(\S+)(?:\s+AS\s+(\S+))?", dockerfile.read_text()):
            if m[1].lower() not in stages:
                from_tags.add(m[1])
            if m[2]:
                stages.add(m[2].lower())
    assert from_tags == set(REL.bases), f"Dockerfiles build FROM {from_tags}, release.env pins {set(REL.bases)}"
    lab = versions()
    assert {lab["PYTHON_BASE_IMAGE"], lab["TAILSCALE_IMAGE"]} == set(REL.bases)


# --- manifests/ ----------------------------------------------------------------------

def _images_in(docs: list[dict]) -> list[str]:
    out = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "image" and isinstance(value, str):
                    out.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(docs)
    return out


def _yaml_docs(paths: list[Path]) -> list[dict]:
    return [d for p in paths for d in yaml.safe_load_all(p.read_text()) if d]


def _kustomize(path: Path) -> list[dict]:
    proc = subprocess.run([str(binary("kubectl")), "kustomize", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize {path}: {proc.stderr.strip()}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def _assert_ours_are_the_release(images: list[str], where: str) -> int:
    ours = [i for i in images if our_image_dir(i)]
    for image in ours:
        assert image == REL.ref(our_image_dir(image)), f"{where}: {image} is not the release {REL.ref(our_image_dir(image))}"
    return len(ours)


def test_manifests_apply_f_and_apply_k_name_the_release():
    folder = REPO_DIR / "manifests"
    plain = _images_in(_yaml_docs(sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml"))))
    kustomized = _images_in(_kustomize(folder))
    assert _assert_ours_are_the_release(plain, "kubectl apply -f manifests/") == 2
    assert _assert_ours_are_the_release(kustomized, "kubectl apply -k manifests/") == 2
    assert sorted(plain) == sorted(kustomized)


def test_manifests_kustomization_images_entry_is_the_one_override():
    """`images:` in manifests/Kustomization names our repositories and the release tag."""
    k = yaml.safe_load((REPO_DIR / "manifests" / "Kustomization").read_text())
    entries = {e["name"]: e for e in k.get("images", [])}
    # Every one of our images that manifests/ deploys (the hub is a variant's: manifests-variants/hub).
    deployed = {our_image_dir(i) for i in _images_in(_yaml_docs(sorted((REPO_DIR / "manifests").glob("*.yaml"))))} - {None}
    assert deployed == {"sidecar", "eks-inspector"}
    assert set(entries) == {REL.repository(d) for d in deployed}
    for entry in entries.values():
        assert str(entry["newTag"]) == REL.version


def test_manifests_variants_name_the_release():
    variants = REPO_DIR / "manifests-variants"
    found = 0
    for kustomization in sorted(variants.glob("*/[Kk]ustomization*")):
        found += _assert_ours_are_the_release(_images_in(_kustomize(kustomization.parent)), str(kustomization.parent))
    assert found, "no variant names our images"


# --- ecs/ ------------------------------------------------------------------------------

def test_ecs_render_defaults_to_the_release():
    """Without --version/--owner/--registry the task definitions name the release."""
    bundle = render(RenderOptions(account_id="123456789012", region="eu-west-1"))
    images = [c["image"] for c in bundle[templates.TASK_DEFINITION]["containerDefinitions"]]
    assert _assert_ours_are_the_release(images, "mcp-tailnet-ecs render") == 2
    # Overridable in one place per deployment style: --version and --registry.
    other = render(RenderOptions(account_id="123456789012", region="eu-west-1", version="9.9.9",
                                 registry="123456789012.dkr.ecr.eu-west-1.amazonaws.com/mirror"))
    moved = [c["image"] for c in other[templates.TASK_DEFINITION]["containerDefinitions"]]
    assert sorted(moved) == sorted(f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/mirror/{REL.names[our_image_dir(i)]}:9.9.9"
                                   for i in images)


def test_ecs_cli_render_defaults_to_the_release(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(REPO_DIR / ".venv" / "bin" / "mcp-tailnet-ecs"), "render", "--account-id", "123456789012",
         "--region", "eu-west-1", "--eks-cluster", "prod", "--subnet", "subnet-0123456789abcdef0",
         "--security-group", "sg-0123456789abcdef0", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    td = json.loads((out / templates.TASK_DEFINITION).read_text())
    assert _assert_ours_are_the_release([c["image"] for c in td["containerDefinitions"]], "ecs CLI") == 2


# --- docker-compose.yml ----------------------------------------------------------------

def _compose(env: dict[str, str], *args: str) -> str:
    compose = REPO_DIR / "docker-compose.yml"
    assert compose.is_file(), "docker-compose.yml is missing: the release is named there too (compose helper)"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_TAILNET_", "COMPOSE_"))}
    proc = subprocess.run(["docker", "compose", "-f", str(compose), *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO_DIR, env=base_env | env)
    assert proc.returncode == 0, f"docker compose {' '.join(args)}: {proc.stderr.strip()}"
    return proc.stdout


def _compose_config(env: dict[str, str], *args: str) -> dict:
    """`docker compose config` with every profile of the file active, so no service hides."""
    profiles = _compose(env, *args, "config", "--profiles").split()
    active = [a for p in profiles for a in ("--profile", p)]
    return json.loads(_compose(env, *args, *active, "config", "--format", "json"))


# A value for any `${VAR:?}` the file requires, so config renders; never a real key.
_COMPOSE_ENV = {"TS_AUTHKEY": "file:/dev/null"}


def test_compose_names_the_release_and_builds_the_same_tags():
    config = _compose_config(_COMPOSE_ENV)
    services = config["services"]
    images = [s["image"] for s in services.values() if "image" in s]
    assert _assert_ours_are_the_release(images, "docker compose config") >= 1
    for name, service in services.items():
        if "build" in service:
            dir_ = our_image_dir(service.get("image", ""))
            assert dir_, f"service {name} builds without naming one of our images as its tag"
            assert service["image"] == REL.ref(dir_)
            dockerfile = Path(service["build"]["context"]) / service["build"].get("dockerfile", "Dockerfile")
            assert dockerfile.resolve() == (REPO_DIR / "images" / dir_ / "Dockerfile").resolve()


def test_compose_release_is_overridable_in_one_place():
    """MCP_TAILNET_VERSION / MCP_TAILNET_REGISTRY move every service at once; the env file agrees."""
    moved = _compose_config(_COMPOSE_ENV | {"MCP_TAILNET_VERSION": "9.9.9", "MCP_TAILNET_REGISTRY": "registry.example/me"})
    ours = [s["image"] for s in moved["services"].values() if our_image_dir(s.get("image", ""))]
    assert ours and all(i.startswith("registry.example/me/") and i.endswith(":9.9.9") for i in ours), ours
    same = _compose_config(_COMPOSE_ENV, "--env-file", str(release.RELEASE_ENV))
    assert _assert_ours_are_the_release([s["image"] for s in same["services"].values() if "image" in s],
                                        "docker compose --env-file images/release.env") >= 1
