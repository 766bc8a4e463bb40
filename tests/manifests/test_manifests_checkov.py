"""checkov, offline, over manifests/ and every rendered variant: nothing unexplained.

A finding is acceptable only when the resource carries a checkov skip annotation with a
reason AND a YAML comment beside it names the check, so a reader of the file sees why.
checkov runs from its own virtualenv (lab/provision.d/35-checkov.sh): its packaging<24
pin cannot share the workspace's environment with pytest 9.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from manifests_support import (
    MANIFESTS,
    VARIANTS,
    VARIANTS_DIR,
    docs_from_files,
    dump,
    kustomize,
    load_docs,
    variant_path,
)
from mcp_tailnet_lab.paths import PROVISION_HINT, cache_dir, versions


def checkov_binary() -> Path:
    version = versions()["CHECKOV_VERSION"]
    path = cache_dir() / "bin" / f"checkov-{version}" / "checkov"
    if not os.access(path, os.X_OK):
        pytest.fail(f"checkov {version} is missing at {path}: {PROVISION_HINT}")
    return path


def run_checkov(directory: Path) -> dict:
    proc = subprocess.run(
        [str(checkov_binary()), "-d", str(directory), "--framework", "kubernetes", "--skip-download",
         "--output", "json"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    # checkov exits 1 when a check fails; anything else (2: crash) is a broken tool.
    assert proc.returncode in (0, 1), f"checkov crashed (exit {proc.returncode}): {proc.stderr[-2000:]}"
    report = json.loads(proc.stdout)
    if isinstance(report, list):  # one entry per framework
        (report,) = [r for r in report if r.get("check_type") == "kubernetes"]
    if "results" not in report:  # checkov's answer when no resource was found at all
        raise AssertionError(f"checkov found nothing to scan in {directory}: {proc.stdout[:500]}")
    return report


def comment_lines() -> str:
    """Every YAML comment in manifests/ and manifests-variants/ (where reasons are written)."""
    files = [*MANIFESTS.rglob("*.yaml"), *VARIANTS_DIR.rglob("*.yaml")]
    return "\n".join(line for f in files for line in f.read_text().splitlines() if line.lstrip().startswith("#"))


def assert_clean(report: dict, docs: list[dict]) -> None:
    summary = report["summary"]
    assert summary["parsing_errors"] == 0, summary
    # checkov counts a workload twice (itself and the Pod its template makes).
    assert summary["resource_count"] >= len(docs), summary
    judged = {c["resource"] for c in report["results"]["passed_checks"] + report["results"]["skipped_checks"]}
    for d in docs:
        if d["kind"] in ("Deployment", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "ServiceAccount"):
            name = f"{d['kind']}.{d['metadata'].get('namespace', 'default')}.{d['metadata']['name']}"
            assert name in judged, f"checkov did not judge {name}"
    failed = [(c["check_id"], c["check_name"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert not failed, f"checkov findings without an explanation: {failed}"
    comments = comment_lines()
    for skipped in report["results"]["skipped_checks"]:
        reason = (skipped.get("check_result") or {}).get("suppress_comment", "")
        assert reason and reason != "No comment provided", f"{skipped['check_id']} skipped without a reason"
        assert re.search(rf"#.*\b{skipped['check_id']}\b", comments), (
            f"{skipped['check_id']} ({skipped['resource']}) is skipped but no comment beside it explains why"
        )


def test_checkov_finds_nothing_unexplained_in_manifests():
    report = run_checkov(MANIFESTS)
    assert_clean(report, docs_from_files())
    assert report["summary"]["passed"] > 50, "checkov ran almost no checks: is it really scanning?"


def test_checkov_finds_nothing_unexplained_in_any_variant(tmp_path):
    docs = []
    for name in VARIANTS:
        rendered = kustomize(variant_path(name))
        (tmp_path / f"{name}.yaml").write_text(rendered)
        docs.extend(load_docs(rendered))
    assert_clean(run_checkov(tmp_path), docs)


def test_checkov_is_not_vacuous_a_privileged_copy_fails(tmp_path):
    """The same Deployment made privileged and root must fail: the scan really judges it."""
    docs = [d for d in docs_from_files() if d["kind"] == "Deployment"]
    spec = docs[0]["spec"]["template"]["spec"]
    spec["hostNetwork"] = True
    for c in spec["containers"]:
        c["securityContext"] = {"privileged": True, "runAsUser": 0}
    (tmp_path / "bad.yaml").write_text(dump(docs))
    report = run_checkov(tmp_path)
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert {"CKV_K8S_16", "CKV_K8S_19"} <= failed, failed  # privileged containers, host network
