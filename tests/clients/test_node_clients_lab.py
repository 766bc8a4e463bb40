"""The lab's Node.js clients are the pinned ones, or the tests say which step installs them.

Fast, no tailnet: the lockfile agrees with lab/versions.env; a bumped pin, a stale install
or an empty cache is refused with a message naming the provisioning step.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mcp_tailnet_lab import node_clients as nc
from mcp_tailnet_lab.paths import MissingComponent


def test_the_lockfile_pins_what_versions_env_says() -> None:
    nc.check_lock()
    lock = json.loads((nc.SOURCE_DIR / "package-lock.json").read_text())
    # exact versions with integrity hashes, and no registry host written into the repo
    for pkg, want in nc.pinned().items():
        entry = lock["packages"][f"node_modules/{pkg}"]
        assert entry["version"] == want and entry["integrity"].startswith("sha512-")
    assert all("resolved" not in entry for entry in lock["packages"].values())


def test_a_pin_bumped_on_one_side_only_is_refused(tmp_path: Path) -> None:
    shutil.copy(nc.SOURCE_DIR / "package-lock.json", tmp_path)
    manifest = json.loads((nc.SOURCE_DIR / "package.json").read_text())
    manifest["dependencies"]["mcp-remote"] = "0.15.0"
    (tmp_path / "package.json").write_text(json.dumps(manifest))
    with pytest.raises(nc.PinMismatch, match="mcp-remote: lab/versions.env pins 0.15.1, package.json says 0.15.0"):
        nc.check_lock(tmp_path)


def test_the_install_dir_follows_the_lockfile(tmp_path: Path) -> None:
    shutil.copy(nc.SOURCE_DIR / "package-lock.json", tmp_path)
    assert nc.install_dir(tmp_path) == nc.install_dir()
    (tmp_path / "package-lock.json").write_text((tmp_path / "package-lock.json").read_text() + "\n")
    assert nc.install_dir(tmp_path) != nc.install_dir()


def test_missing_or_stale_installs_name_the_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_TAILNET_CACHE", str(tmp_path))
    with pytest.raises(MissingComponent, match=r"PROVISION_ONLY=75-node-clients lab/provision"):
        nc.node_clients()
    # an install whose mcp-remote is not the pinned one (stamp present, content wrong)
    root = nc.install_dir()
    for pkg, want in nc.pinned().items():
        (root / "node_modules" / pkg).mkdir(parents=True)
        (root / "node_modules" / pkg / "package.json").write_text(json.dumps({"version": want}))
    for rel in (nc.MCP_REMOTE_BIN, nc.SERVER_EVERYTHING_BIN):
        (root / "node_modules" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "node_modules" / rel).write_text("")
    (root / nc.VERIFIED_STAMP).touch()
    assert nc.node_clients().root == root
    (root / "node_modules" / "mcp-remote" / "package.json").write_text(json.dumps({"version": "0.0.1"}))
    with pytest.raises(MissingComponent, match=r"mcp-remote 0\.0\.1 \(pinned 0\.15\.1\).*75-node-clients"):
        nc.node_clients()
