"""The `logs` filter: a substring, or a regular expression bounded in time without threads.

Python's `re` backtracks: `(a+)+$` against a line of `a`s takes exponential time, and a
thread running it can be neither interrupted nor killed, so it would burn a core long
after the call timed out. A substring filter runs here (linear). A regular expression
runs in a short-lived child process (`python -I -S`, stdlib `re`, same syntax as before)
that is killed at the deadline; its CPU time is capped by the kernel too, so it ends
even if this process dies first. Only one process is added per regex call (~20 ms).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from eks_inspector.deadline import remaining
from eks_inspector.errors import InspectorError

MAX_PATTERN = 1000
#: Longest a regex filter may run, whatever the call timeout.
MAX_SECONDS = 5.0
#: Regex children at once; more callers wait for a slot (within their own deadline).
MAX_CHILDREN = 2
_slots = threading.BoundedSemaphore(MAX_CHILDREN)

# Reads {"pattern", "lines", "cpu"} on stdin, writes the indices of matching lines.
_CHILD = """
import json, re, resource, sys
req = json.load(sys.stdin)
resource.setrlimit(resource.RLIMIT_CPU, (req["cpu"], req["cpu"] + 1))
search = re.compile(req["pattern"]).search
json.dump([i for i, line in enumerate(req["lines"]) if search(line)], sys.stdout)
"""


@dataclass(frozen=True)
class LineFilter:
    pattern: str
    regex: bool

    def matches(self, lines: Sequence[str]) -> list[int]:
        """Indices of the lines that match, in order."""
        if not self.regex:
            return [i for i, ln in enumerate(lines) if self.pattern in ln]
        return _regex_matches(self.pattern, lines) if lines else []


def compile_filter(grep: str | None, regex: bool) -> LineFilter | None:
    """Validate the filter before any log is read: a bad pattern is the caller's error."""
    if not grep:
        return None
    if len(grep) > MAX_PATTERN:
        raise InspectorError(f"grep is longer than {MAX_PATTERN} characters")
    if regex:
        try:
            re.compile(grep)
        except (re.error, RecursionError, OverflowError) as exc:
            raise InspectorError(f"grep is not a valid regular expression: {exc}") from None
    return LineFilter(grep, regex)


def _regex_matches(pattern: str, lines: Sequence[str]) -> list[int]:
    budget = remaining(MAX_SECONDS, "grep")
    if not _slots.acquire(timeout=budget):
        raise InspectorError("grep: too many regular-expression filters are running; retry shortly")
    try:
        budget = remaining(budget, "grep")
        payload = json.dumps({"pattern": pattern, "lines": list(lines), "cpu": int(budget) + 1}).encode()
        try:
            done = subprocess.run([sys.executable, "-I", "-S", "-c", _CHILD], input=payload, capture_output=True,
                                  timeout=budget, env={}, check=False)
        except subprocess.TimeoutExpired:  # run() has killed and reaped the child
            raise InspectorError(
                f"grep: the regular expression did not finish within {budget:.1f}s over {len(lines)} lines "
                f"(nested repetition such as (a+)+ backtracks); simplify it, use a plain substring, or narrow "
                f"the logs with tail_lines / since_seconds") from None
    finally:
        _slots.release()
    if done.returncode != 0:
        raise InspectorError("grep: the regular expression could not be evaluated (it ran out of CPU or memory); "
                             "simplify it or narrow the logs")
    try:
        found = json.loads(done.stdout)
    except ValueError:
        raise InspectorError("grep: the filter process gave no answer") from None
    if not isinstance(found, list) or not all(isinstance(i, int) and 0 <= i < len(lines) for i in found):
        raise InspectorError("grep: the filter process gave an unexpected answer")
    return found


