"""`lab/build-images`: build every image of this repo and tag it as the release names it.

The build itself is mcp_tailnet_lab.images (offline, from the wheelhouse, the
Dockerfiles unchanged, OCI labels from images/release.env). This command adds
the release's own tags, `<registry>/<name>:<version>`, so `docker compose up`,
the ECS local runner and anything else that names the released images find
them in the local engine without a registry; `--sbom DIR` also writes an SPDX
SBOM of each image there with syft (not committed: the default is build/sbom/,
which .gitignore covers).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from mcp_tailnet_lab import images, release, sbom
from mcp_tailnet_lab.paths import REPO_DIR, MissingComponent


@dataclass(frozen=True)
class Built:
    image_dir: str  # images/<dir>
    local_tag: str  # the lab's build tag (mcp-tailnet-lab/<dir>:dev)
    ref: str  # the release reference, registry/name:version
    image_id: str
    size: int  # bytes, uncompressed


def check_release_covers_images(rel: release.Release) -> None:
    """Every images/<dir>/Dockerfile must have a name in release.env, and the other way round."""
    dirs = set(images.repo_image_names())
    if dirs != set(rel.names):
        raise release.ReleaseConfigError(
            f"images/release.env names images for {sorted(rel.names)} but images/ holds {sorted(dirs)}: "
            f"add the image name to release.env (and release.IMAGE_KEYS) or remove the folder"
        )


def tag_release(client, image_dir: str, local_tag: str, rel: release.Release | None = None) -> Built:  # noqa: ANN001
    """Tag a built image with its release reference (registry/name:version)."""
    rel = rel or release.load()
    image = client.images.get(local_tag)
    repository, _, tag = rel.ref(image_dir).rpartition(":")
    image.tag(repository, tag)
    image.reload()
    return Built(image_dir, local_tag, rel.ref(image_dir), image.id, int(image.attrs["Size"]))


def build_all(client=None, names: list[str] | None = None) -> list[Built]:  # noqa: ANN001 - docker.DockerClient
    """Build (cached layers make a rebuild take seconds) and tag each image with its release ref."""
    rel = release.load()
    check_release_covers_images(rel)
    client = client or images.connect()
    return [tag_release(client, name, images.build_repo_image(name, client), rel)
            for name in names or images.repo_image_names()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab/build-images", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="images/<dir> to build (default: all)")
    parser.add_argument("--sbom", nargs="?", type=Path, const=REPO_DIR / "build" / "sbom", metavar="DIR",
                        help="also write DIR/<dir>.spdx.json with syft (default DIR: build/sbom)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image")
    args = parser.parse_args(argv)
    try:
        built = build_all(names=args.names or None)
        for b in built:
            if args.sbom:
                path = sbom.write_spdx(b.ref, args.sbom / f"{b.image_dir}.spdx.json")
                print(f"{b.image_dir}: SBOM {path}", file=sys.stderr)
            if args.json:
                print(json.dumps(asdict(b)))
            else:
                print(f"{b.ref}  {b.image_id[7:19]}  {b.size / 1e6:.1f} MB  (also {b.local_tag})")
    except (MissingComponent, images.ImageBuildError, release.ReleaseConfigError, sbom.SbomError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
