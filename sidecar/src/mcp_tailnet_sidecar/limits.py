"""How much one tailnet source may hold open at once.

Why: every request and every event stream costs the gateway and the MCP server a
connection, memory and a task; one peer (a runaway agent, a compromised node) must not
take them all from the others. The source is the tailnet address serve puts in
X-Forwarded-For (identity.source_ip): serve replaces any value the client sent, so a
forged header cannot charge someone else's quota. Callers without it come from inside the
pod (the trust unit), not from the tailnet, and are not limited here.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SourceLimiter:
    limit: int  # concurrent requests + streams per source; 0 = no limit
    _active: dict[str, int] = field(default_factory=dict)

    def acquire(self, source: str | None) -> bool:
        """Count one more request of `source`; False (and nothing counted) if it holds the limit."""
        if source is None or self.limit <= 0:
            return True
        held = self._active.get(source, 0)
        if held >= self.limit:
            return False
        self._active[source] = held + 1
        return True

    def release(self, source: str | None) -> None:
        if source is None or self.limit <= 0 or source not in self._active:
            return
        left = self._active[source] - 1
        if left:
            self._active[source] = left
        else:
            del self._active[source]

    def active(self, source: str) -> int:
        return self._active.get(source, 0)
