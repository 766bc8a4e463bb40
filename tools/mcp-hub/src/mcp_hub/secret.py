"""Values that must never reach a log line: resolved once at start, masked in every repr.

A config value may be a literal string or `{file = "/path"}` / `{env = "NAME"}`; the
latter two are secrets. A missing file or variable stops the hub at start (naming the
config key, never the value), so a broken mount fails the pod, not the first call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class SecretError(ValueError):
    """A secret source is missing or unreadable; the message names the key, not the value."""


@dataclass(frozen=True)
class Secret:
    """A string that prints as its source, never as itself."""

    source: str
    value: str = field(repr=False)

    def __str__(self) -> str:
        return f"<secret from {self.source}>"

    __repr__ = __str__


Value = str | Secret


def resolve(raw: object, where: str, env: Mapping[str, str] | None = None) -> Value:
    """A literal string as-is; `{file = ...}` or `{env = ...}` read now, as a Secret."""
    env = os.environ if env is None else env
    if isinstance(raw, str):
        return raw
    if isinstance(raw, Mapping) and len(raw) == 1:
        (kind, ref), = raw.items()
        if kind == "file" and isinstance(ref, str) and ref:
            try:
                text = Path(ref).read_text()
            except OSError as exc:
                raise SecretError(f"{where}: cannot read the secret file {ref!r} ({exc.strerror})") from None
            return Secret(f"file {ref}", text.rstrip("\r\n"))
        if kind == "env" and isinstance(ref, str) and ref:
            if ref not in env:
                raise SecretError(f"{where}: the environment variable {ref!r} is not set")
            return Secret(f"env {ref}", env[ref])
    raise SecretError(f"{where}: expected a string, {{file = \"/path\"}} or {{env = \"NAME\"}}")


def reveal(value: Value) -> str:
    """The plain value, only where it is handed to a child or an upstream."""
    return value.value if isinstance(value, Secret) else value
