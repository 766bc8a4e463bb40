"""The release workflow, checked here since GitHub Actions cannot run here.

actionlint (built from the Go module proxy, with shellcheck over every `run:`
script) must pass it and must reject a broken copy; the plan step's script,
which decides what is pushed and on which base digests, runs for real in bash
against variants of images/release.env.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mcp_tailnet_lab import release
from mcp_tailnet_lab.paths import REPO_DIR, binary

WORKFLOW = REPO_DIR / ".github" / "workflows" / "release.yml"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def actionlint(*paths: Path, cwd: Path = REPO_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary("actionlint")), "-verbose", "-no-color", *map(str, paths)],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def by_major_tag(text: str) -> str:
    """`uses: a/b@<sha> # v6.18.0` -> `uses: a/b@v6 # v6.18.0`.

    actionlint knows the inputs and outputs of popular actions by major tag, not
    by commit, so it skips input checks for SHA-pinned steps. Linting this copy as
    well checks every `with:` against the release line the SHA pins.
    """
    return re.sub(r"@[0-9a-f]{40}(\s*#\s*v(\d+)\.)", r"@v\2\1", text)


def lint_copy(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """actionlint over `text` as .github/workflows/release.yml of a project at tmp_path."""
    (tmp_path / ".github" / "workflows").mkdir(parents=True, exist_ok=True)
    path = tmp_path / ".github" / "workflows" / "release.yml"
    path.write_text(text)
    return actionlint(path, cwd=tmp_path)


def workflow() -> dict:
    # YAML 1.1 reads the key `on` as True.
    doc = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def test_actionlint_passes_with_shellcheck(tmp_path):
    assert shutil.which("shellcheck"), "shellcheck is missing: lab/provision (65-release-tools) installs it"
    proc = actionlint(WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'Rule "shellcheck" was disabled' not in proc.stderr, proc.stderr
    tagged = by_major_tag(WORKFLOW.read_text())
    assert tagged.count("@v") >= 7
    proc = lint_copy(tmp_path, tagged)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for path in sorted((REPO_DIR / ".github" / "workflows").glob("*.y*ml")):
        other = actionlint(path)
        assert other.returncode == 0, other.stdout + other.stderr


@pytest.mark.parametrize("breakage, expect", [
    # an input build-push-action does not have
    ("          sbom: true\n", "          sbom: true\n          sbom-format: spdx\n"),
    # an output the plan job does not declare
    ("${{ needs.plan.outputs.version }}\n            REVISION", "${{ needs.plan.outputs.vesion }}\n            REVISION"),
    # a shell bug shellcheck reports (unquoted expansion in a test)
    ('if [[ -z "$digest" ]]; then', 'if [ -z $digest ]; then'),
])
def test_actionlint_rejects_a_broken_copy(tmp_path, breakage, expect):
    """Not vacuous: the same linter, same project layout, one mistake in the file -> failure."""
    text = by_major_tag(WORKFLOW.read_text())
    assert breakage in text
    assert lint_copy(tmp_path, text).returncode == 0
    proc = lint_copy(tmp_path, text.replace(breakage, expect, 1))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "release.yml" in proc.stdout


def test_release_shape():
    wf = workflow()
    assert wf["on"]["push"]["tags"], "releases are pushed on tags"
    assert wf["permissions"] == {}, "top-level permissions: none; each job asks for its own"
    image = wf["jobs"]["image"]
    assert image["permissions"]["id-token"] == "write", "keyless signing needs the OIDC token"
    assert image["permissions"]["packages"] == "write"
    steps = {s.get("uses", "").split("@")[0]: s for s in image["steps"] if "uses" in s}
    for action in ("docker/setup-qemu-action", "docker/setup-buildx-action", "docker/login-action",
                   "docker/build-push-action", "sigstore/cosign-installer"):
        assert action in steps, action
    build = steps["docker/build-push-action"]["with"]
    assert set(build["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert build["sbom"] is True and build["provenance"] == "mode=max"
    assert build["push"] == "${{ needs.plan.outputs.push == 'true' }}"
    assert "build-contexts" in build and "VERSION=" in build["build-args"] and "REVISION=${{ github.sha }}" in build["build-args"]
    sign = next(s for s in image["steps"] if "cosign sign" in s.get("run", ""))
    assert '"$IMAGE@$DIGEST"' in sign["run"], "sign the pushed digest, not a tag"
    assert "cosign verify" in sign["run"]


def test_every_action_is_pinned_by_commit_sha():
    uses = re.findall(r"(?m)^\s*(?:-\s*)?uses:\s*(\S+)(.*)$", WORKFLOW.read_text())
    assert len(uses) >= 7
    for ref, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), f"{ref} is not pinned to a commit SHA"
        assert re.search(r"# v\d+\.\d+\.\d+", comment), f"{ref}: name the release in a comment"


# --- the plan step, run for real -------------------------------------------------------

def plan_script() -> str:
    step = next(s for s in workflow()["jobs"]["plan"]["steps"] if s.get("id") == "plan")
    return step["run"]


def run_plan(tmp_path: Path, env_text: str, *, event: str, ref_type: str, ref_name: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run the plan script in bash as the runner would, in a tree holding `env_text` as release.env."""
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "images" / "release.env").write_text(env_text)
    output = tmp_path / "github_output"
    output.write_text("")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GITHUB_OUTPUT": str(output),
           "EVENT": event, "REF_TYPE": ref_type, "REF_NAME": ref_name}
    proc = subprocess.run(["bash", "-e", "-c", plan_script()], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    return proc, parse_github_output(output.read_text())


def parse_github_output(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and "=" not in line.split("<<", 1)[0]:
            key, delim = line.split("<<", 1)
            body = []
            for inner in lines:
                if inner == delim:
                    break
                body.append(inner)
            out[key] = "\n".join(body)
        elif "=" in line:
            key, _, value = line.partition("=")
            out[key] = value
    return out


RELEASE_TEXT = release.RELEASE_ENV.read_text()
REL = release.load()


def pinned(text: str = RELEASE_TEXT) -> str:
    text = re.sub(r"(?m)^PYTHON_BASE_DIGEST=.*$", f"PYTHON_BASE_DIGEST={DIGEST_A}", text)
    return re.sub(r"(?m)^TAILSCALE_BASE_DIGEST=.*$", f"TAILSCALE_BASE_DIGEST={DIGEST_B}", text)


def test_plan_pull_request_builds_without_pushing(tmp_path):
    proc, out = run_plan(tmp_path, RELEASE_TEXT, event="pull_request", ref_type="branch", ref_name="1/merge")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out["push"] == "false" and out["version"] == REL.version
    matrix = json.loads(out["matrix"])
    assert {(m["dir"], m["image"]) for m in matrix["include"]} == {(d, REL.repository(d)) for d in REL.names}
    assert out["source"] == REL.source and out["licenses"] == REL.licenses
    if not all(REL.bases.values()):
        assert "::warning" in proc.stdout


def test_plan_tag_push_requires_pinned_bases(tmp_path):
    unpinned = re.sub(r"(?m)^PYTHON_BASE_DIGEST=.*$", "PYTHON_BASE_DIGEST=", RELEASE_TEXT)
    proc, out = run_plan(tmp_path, unpinned, event="push", ref_type="tag", ref_name=f"v{REL.version}")
    assert proc.returncode == 1
    assert "no digest recorded for base image python:" in proc.stdout
    assert "push" not in out


def test_plan_tag_push_with_pinned_bases_pushes_on_exactly_those_digests(tmp_path):
    proc, out = run_plan(tmp_path, pinned(), event="push", ref_type="tag", ref_name=f"v{REL.version}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out["push"] == "true"
    contexts = sorted(out["build-contexts"].splitlines())
    want = sorted(f"{tag}=docker-image://{tag}@{digest}" for tag, digest in
                  zip(REL.bases, (DIGEST_A, DIGEST_B)))
    assert contexts == want


def test_plan_refuses_a_tag_that_is_not_the_release_version(tmp_path):
    proc, out = run_plan(tmp_path, pinned(), event="push", ref_type="tag", ref_name="v999.0.0")
    assert proc.returncode == 1
    assert f"expected v{REL.version}" in proc.stdout
    assert "push" not in out


def test_plan_refuses_a_malformed_digest(tmp_path):
    bad = pinned().replace(DIGEST_A, "sha256:tooshort")
    proc, _ = run_plan(tmp_path, bad, event="push", ref_type="tag", ref_name=f"v{REL.version}")
    assert proc.returncode == 1
    assert "is not sha256:<64 hex>" in proc.stdout
