"""The operator's list of clusters (INSPECTOR_CLUSTERS): a YAML or JSON file, validated at start.

Each entry names a cluster callers may pick (`cluster=NAME`) and says how the server reaches
it: a kubeconfig context, or an EKS cluster in a region, optionally through an IAM role the
server assumes for that account. Only the operator writes these; a caller can name an entry,
never a context, endpoint or role, so no call can widen what the server reaches.
Anything unexpected (unknown key, repeated key, wrong type, repeated name) is refused with one
line naming the entry, because a typo here would otherwise point a name at the wrong cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: The name of the cluster the single-cluster settings (INSPECTOR_KUBECONFIG, INSPECTOR_KUBE_CONTEXT,
#: INSPECTOR_EKS_CLUSTER, in-cluster) describe; a call without `cluster` goes there.
DEFAULT_CLUSTER = "default"
MAX_CLUSTERS = 100
MAX_FILE_BYTES = 256 * 1024
KEYS = ("name", "context", "kubeconfig", "eks_cluster", "region", "role_arn")

_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_EKS_NAME = re.compile(r"[0-9A-Za-z][A-Za-z0-9\-_]{0,99}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+", re.ASCII)  # ASCII: \d is any Unicode digit otherwise
_ROLE_ARN = re.compile(r"arn:aws(-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]{1,512}", re.ASCII)
_CONTEXT = re.compile(r"[^\x00-\x1f\x7f]{1,253}")


@dataclass(frozen=True)
class ClusterSpec:
    """One configured cluster: where the server reaches it, as the operator wrote it."""

    name: str
    context: str | None = None
    kubeconfig: Path | None = None
    eks_cluster: str | None = None
    region: str | None = None
    role_arn: str | None = None

    @property
    def via_kubeconfig(self) -> bool:
        """Reached through a kubeconfig (context); otherwise through EKS (DescribeCluster + token)."""
        return self.context is not None or self.kubeconfig is not None

    def source(self) -> dict[str, str]:
        """Where this cluster comes from, for the `clusters` tool (no credentials in it)."""
        out: dict[str, str] = {}
        if self.via_kubeconfig:
            out["context"] = self.context or "(current context)"
            if self.kubeconfig:
                out["kubeconfig"] = str(self.kubeconfig)
        if self.eks_cluster:
            out["eksCluster"] = self.eks_cluster
            out["region"] = self.region or ""
        if self.role_arn:
            out["roleArn"] = self.role_arn
        return out


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a repeated key (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ValueError(f"repeated key {key!r} (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _text(entry: dict[str, Any], key: str, where: str, pattern: re.Pattern[str], what: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"{where}: {key} {str(value)[:100]!r} is not {what}")
    return value


def _entry(raw: object, index: int, base: Path) -> ClusterSpec:
    where = f"clusters[{index}]"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping with name and context or eks_cluster")
    unknown = sorted(str(k) for k in raw if k not in KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
    name = _text(raw, "name", where, _NAME, "a lowercase DNS label")
    if name is None:
        raise ValueError(f"{where}: name is required")
    where = f"{where} ({name})"
    if name == DEFAULT_CLUSTER:
        raise ValueError(f"{where}: {DEFAULT_CLUSTER!r} is the cluster of the single-cluster settings; "
                         f"choose another name")
    context = _text(raw, "context", where, _CONTEXT, "a kubeconfig context name")
    kubeconfig_raw = _text(raw, "kubeconfig", where, _CONTEXT, "a file path")
    kubeconfig = None
    if kubeconfig_raw is not None:
        kubeconfig = Path(kubeconfig_raw) if Path(kubeconfig_raw).is_absolute() else base / kubeconfig_raw
        if not kubeconfig.is_file():
            raise ValueError(f"{where}: kubeconfig {kubeconfig_raw!r} is not a file")
    eks_cluster = _text(raw, "eks_cluster", where, _EKS_NAME, "an EKS cluster name")
    region = _text(raw, "region", where, _REGION, "an AWS region name")
    role_arn = _text(raw, "role_arn", where, _ROLE_ARN, "an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
    spec = ClusterSpec(name=name, context=context, kubeconfig=kubeconfig, eks_cluster=eks_cluster, region=region,
                       role_arn=role_arn)
    if not spec.via_kubeconfig and not eks_cluster:
        raise ValueError(f"{where}: give context (and optionally kubeconfig) or eks_cluster with region")
    if eks_cluster and not region:
        raise ValueError(f"{where}: eks_cluster needs region")
    if (region or role_arn) and not eks_cluster:
        raise ValueError(f"{where}: region and role_arn belong to an eks_cluster entry")
    return spec


def parse(path: Path) -> tuple[ClusterSpec, ...]:
    """The clusters of the file at `path`; ValueError with one line saying what is wrong."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ValueError(f"{path} is larger than {MAX_FILE_BYTES // 1024} KiB")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {str(path)!r}: {type(exc).__name__}") from None
    try:
        doc = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise ValueError(f"{path} is not valid YAML/JSON{at}") from None
    if not isinstance(doc, dict) or set(doc) != {"clusters"} or not isinstance(doc["clusters"], list):
        raise ValueError(f"{path}: expected a mapping with one key, clusters: a list of entries")
    entries = doc["clusters"]
    if not 1 <= len(entries) <= MAX_CLUSTERS:
        raise ValueError(f"{path}: list between 1 and {MAX_CLUSTERS} clusters")
    specs = tuple(_entry(raw, i, path.parent) for i, raw in enumerate(entries))
    names = [s.name for s in specs]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise ValueError(f"clusters[{i}]: the name {n!r} is used twice")
    return specs
