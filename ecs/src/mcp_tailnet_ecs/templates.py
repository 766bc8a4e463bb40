"""Where the JSON templates live and how they are read.

The files a person reads and edits (ecs/task-definition.json, ecs/service.json,
ecs/iam/*.json) are the templates themselves: one source, no copy inside the
package that could drift. A built wheel carries them under `templates/`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TASK_DEFINITION = "task-definition.json"
STOCK_SERVER_TASK_DEFINITION = "task-definition.stock-server.json"
#: The inspector behind mcp-hub, with the hub's other servers (docs/hub.md): its own tailnet node.
HUB_TASK_DEFINITION = "task-definition.hub.json"
SERVICE = "service.json"
EXECUTION_POLICY = "iam/execution-role-policy.json"
TASK_POLICY = "iam/task-role-policy.json"
TRUST_POLICY = "iam/trust-policy.json"

ALL = (TASK_DEFINITION, STOCK_SERVER_TASK_DEFINITION, HUB_TASK_DEFINITION, SERVICE, EXECUTION_POLICY, TASK_POLICY,
       TRUST_POLICY)
TASK_DEFINITIONS = (TASK_DEFINITION, STOCK_SERVER_TASK_DEFINITION, HUB_TASK_DEFINITION)

#: A rendered set of documents: relative file name -> parsed JSON.
Bundle = dict[str, Any]


def template_dir() -> Path:
    """ecs/ in a checkout (editable install), or the copy packed into a wheel."""
    packed = Path(__file__).resolve().parent / "templates"
    if (packed / TASK_DEFINITION).is_file():
        return packed
    return Path(__file__).resolve().parents[2]


def load_bundle(directory: Path | None = None) -> Bundle:
    """Read every known document present in `directory` (default: the templates)."""
    directory = directory or template_dir()
    bundle: Bundle = {}
    for name in ALL:
        path = directory / name
        if path.is_file():
            try:
                bundle[name] = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not any(name in bundle for name in TASK_DEFINITIONS):
        raise ValueError(f"{directory}: no {TASK_DEFINITION} here")
    return bundle


def write_bundle(bundle: Bundle, directory: Path) -> list[Path]:
    """Write each document as indented JSON; returns the paths written."""
    written = []
    for name, doc in bundle.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n")
        written.append(path)
    return written
