"""The inspector's own verdict on a clusters entry, for tests that check another form agrees with it
(the chart's server.clusters, ECS render --cluster): one oracle, the inspector's parser."""

from __future__ import annotations

import json
from pathlib import Path


def inspector_accepts(entry: dict[str, str], directory: Path) -> bool:
    """Whether eks_inspector's INSPECTOR_CLUSTERS parser accepts a file holding just `entry`."""
    from eks_inspector.clusters_config import parse

    path = directory / "clusters-oracle.json"
    path.write_text(json.dumps({"clusters": [entry]}))
    try:
        parse(path)
    except ValueError:
        return False
    return True
