"""One JSON object per log line, so log pipelines parse without regexes.

The message and any error text pass through the same scrubber as tool answers: an
exception can quote what it choked on, and logs are read by more people than answers."""

from __future__ import annotations

import json
import logging
import sys
import time

from eks_inspector.scrub import scrub_text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub_text(record.getMessage()),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = scrub_text(f"{record.exc_info[0].__name__}: {record.exc_info[1]}")
        for key in ("tool", "duration_ms", "outcome", "caller", "cluster"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        return json.dumps(entry, default=str)


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "mcp"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
