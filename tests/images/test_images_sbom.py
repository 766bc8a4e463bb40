"""SBOMs written by syft from the built images list every Python package the image carries.

What the image carries is read from the image itself (the dist-info metadata its
interpreters see, in the venv and the system site), never from our lock file;
the lock only adds the checks that the image holds what it should and no more.
"""

from __future__ import annotations

import json

import pytest

from mcp_tailnet_lab import sbom
from mcp_tailnet_lab.build_images import main as build_images_main

from images_support import canonical, image_python, installed_dists, locked_requirements

OWN_PACKAGE = {"sidecar": "mcp-tailnet-sidecar", "eks-inspector": "mcp-eks-inspector", "mcp-hub": "mcp-tailnet-hub"}


@pytest.fixture(scope="module")
def sboms(release_images) -> dict[str, dict]:
    return {name: sbom.spdx(built.ref) for name, built in release_images.items()}


@pytest.mark.parametrize("image_dir", ["sidecar", "eks-inspector", "mcp-hub"])
def test_every_installed_python_package_is_in_the_sbom_with_its_version(docker_client, release_images, sboms, image_dir):
    installed = installed_dists(docker_client, release_images[image_dir].ref)
    listed = sbom.python_packages(sboms[image_dir])
    # Not vacuous: the image's own package and every locked requirement are installed.
    names = {canonical(n) for n, _ in installed}
    assert canonical(OWN_PACKAGE[image_dir]) in names
    locked = locked_requirements(image_dir, image_python(docker_client, release_images[image_dir].ref))
    assert set(locked) <= names, sorted(set(locked) - names)
    missing = sorted(f"{n}=={v}" for n, v in installed if v not in listed.get(canonical(n), set()))
    assert not missing, f"{image_dir}: installed but not in the SBOM (name@version): {missing}"


@pytest.mark.parametrize("image_dir", ["sidecar", "eks-inspector", "mcp-hub"])
def test_venv_holds_exactly_the_locked_packages(docker_client, release_images, image_dir):
    """Each image installs only what its component needs: its lock export, itself, nothing else."""
    from images_support import VENV_PYTHON, LIST_DISTS, run_python

    venv = {canonical(n): v for n, v in json.loads(run_python(docker_client, release_images[image_dir].ref,
                                                              LIST_DISTS, VENV_PYTHON))}
    want = locked_requirements(image_dir, image_python(docker_client, release_images[image_dir].ref)) | {canonical(OWN_PACKAGE[image_dir]): venv.get(canonical(OWN_PACKAGE[image_dir]))}
    assert venv == want


def test_sidecar_has_no_kubernetes_client_and_inspector_no_tailscale(sboms):
    side, insp = sboms["sidecar"], sboms["eks-inspector"]
    assert "kubernetes" not in sbom.python_packages(side)
    assert "kubernetes" in sbom.python_packages(insp)
    assert any(p.startswith("pkg:golang/tailscale.com@") for p in sbom.purls(side)), "tailscale binaries not cataloged"
    assert not any(p.startswith("pkg:golang/tailscale.com@") for p in sbom.purls(insp))


def test_hub_carries_its_stdio_server_and_neither_kubernetes_nor_tailscale(sboms):
    """The hub image holds mcp-server-time (the `servers` extra its default config runs), nothing of the others."""
    hub = sboms["mcp-hub"]
    assert "mcp-server-time" in sbom.python_packages(hub)
    assert "kubernetes" not in sbom.python_packages(hub) and "boto3" not in sbom.python_packages(hub)
    assert not any(p.startswith("pkg:golang/tailscale.com@") for p in sbom.purls(hub))


def test_build_images_command_writes_sboms(tmp_path, release_images, capsys):
    """`lab/build-images --sbom DIR`: one SPDX file per image, naming the release ref."""
    assert build_images_main(["--sbom", str(tmp_path), "--json"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {p["ref"] for p in printed} == {b.ref for b in release_images.values()}
    for name in release_images:
        doc = json.loads((tmp_path / f"{name}.spdx.json").read_text())
        assert doc["spdxVersion"].startswith("SPDX-2")
        assert sbom.python_packages(doc)
