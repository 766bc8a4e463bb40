"""The current tool call's deadline, so work abandoned by a timeout stops by itself.

The server gives up on a call after INSPECTOR_CALL_TIMEOUT, but a worker thread cannot be
killed: without a deadline it would go on making API requests (or filtering logs) for a
caller that is gone. Everything slow asks `remaining()` first and is bounded by it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

from eks_inspector.errors import InspectorError

_deadline: ContextVar[float | None] = ContextVar("eks_inspector_deadline", default=None)

#: Our own timeouts fire this long before the server's, so the caller gets the precise error.
MARGIN = 0.25


@contextlib.contextmanager
def call_deadline(at: float) -> Iterator[None]:
    """Run the body under the deadline `at` (time.monotonic()), in this thread's context."""
    token = _deadline.set(at)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining(limit: float, what: str) -> float:
    """Seconds `what` may take: at most `limit`, never past the call's deadline (minus a margin).

    Raises InspectorError when the call has no time left, so abandoned work ends here."""
    at = _deadline.get()
    if at is None:
        return limit
    left = at - MARGIN - time.monotonic()
    if left <= 0:
        raise InspectorError(f"{what}: the call ran out of time (INSPECTOR_CALL_TIMEOUT); narrow the query")
    return min(limit, left)
