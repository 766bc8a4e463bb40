"""What every built image carries: release tags, OCI labels, a non-root user."""

from __future__ import annotations

import re
import subprocess

import pytest

from mcp_tailnet_lab.paths import REPO_DIR
from mcp_tailnet_lab.release import final_base

from images_support import run_python

OCI = "org.opencontainers.image."


@pytest.fixture(params=["sidecar", "eks-inspector", "mcp-hub"])
def image_dir(request) -> str:
    return request.param


def test_release_tags_point_at_the_built_images(docker_client, release_images, rel):
    for name, built in release_images.items():
        assert built.ref == rel.ref(name)
        assert docker_client.images.get(built.ref).id == docker_client.images.get(built.local_tag).id


def test_oci_labels(docker_client, release_images, rel, image_dir):
    labels = docker_client.images.get(release_images[image_dir].ref).labels
    assert labels[OCI + "title"] == rel.names[image_dir]
    assert labels[OCI + "version"] == rel.version
    assert labels[OCI + "source"] == rel.source
    assert labels[OCI + "licenses"] == rel.licenses
    assert labels[OCI + "description"]
    revision = labels[OCI + "revision"]
    assert re.fullmatch(r"[0-9a-f]{40}", revision), revision
    known = subprocess.run(["git", "cat-file", "-e", f"{revision}^{{commit}}"], cwd=REPO_DIR)
    assert known.returncode == 0, f"revision {revision} is not a commit of this repository"
    # The base it was built FROM (final stage), and its digest only when release.env pins one.
    base = final_base(REPO_DIR / "images" / image_dir / "Dockerfile")
    assert labels[OCI + "base.name"] == base
    if rel.bases[base]:
        assert labels[OCI + "base.digest"] == rel.bases[base]
    else:
        assert OCI + "base.digest" not in labels, "no digest label for an unpinned base"


def test_runs_as_a_non_root_user_that_cannot_change_the_image(docker_client, release_images, image_dir):
    ref = release_images[image_dir].ref
    user = docker_client.images.get(ref).attrs["Config"]["User"]
    assert user and user.split(":")[0] not in ("0", "root"), f"image user is {user!r}"
    out = run_python(docker_client, ref,
                     "import os; print(os.getuid(), os.getgid(), os.access('/opt/venv/lib', os.W_OK),"
                     " os.access('/usr/local/bin', os.W_OK), os.access('/etc', os.W_OK))",
                     read_only=False)
    uid, gid, venv_w, bin_w, etc_w = out.split()
    assert uid != "0" and gid != "0", out
    assert (venv_w, bin_w, etc_w) == ("False", "False", "False"), "the runtime user can modify the image"


def test_healthcheck_is_declared_and_exec_form(docker_client, release_images, image_dir):
    """Docker's HEALTHCHECK runs without a shell (exec form): it works in shell-less bases too."""
    hc = docker_client.images.get(release_images[image_dir].ref).attrs["Config"]["Healthcheck"]
    assert hc["Test"][0] == "CMD", hc
    assert hc["Test"][1] in ("mcp-tailnet-sidecar", "python3"), hc
