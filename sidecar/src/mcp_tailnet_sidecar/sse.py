"""Cutting a relayed `text/event-stream` into whole events.

Why: the gateway may only add a keepalive comment *between* events (a comment inside an
event would corrupt it), and it must see a whole event to read or rewrite the JSON-RPC
message it carries. Events end at a blank line; lines end with CRLF, LF or CR (the SSE
spec allows all three, even mixed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mcp_tailnet_sidecar.settings import Settings

KEEPALIVE = b": keepalive\n\n"


class EventTooLarge(ValueError):
    """An upstream event grew past the configured bound without ending."""


@dataclass
class EventSplitter:
    """Feed bytes, get back complete raw events (terminating blank line included)."""

    max_event_bytes: int = Settings.max_event_bytes
    _buf: bytearray = field(default_factory=bytearray)
    _scan: int = 0  # where the next line starts in _buf
    _event_start: int = 0

    @property
    def partial(self) -> bool:
        """True while bytes of an unfinished event are held (no keepalive allowed now)."""
        return len(self._buf) > self._event_start

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        events: list[bytes] = []
        buf = self._buf
        while True:
            end = self._line_end(buf, self._scan)
            if end is None:
                break
            line_start, next_start = self._scan, end
            self._scan = next_start
            content_len = len(buf[line_start:next_start].rstrip(b"\r\n"))
            if content_len == 0:
                events.append(bytes(buf[self._event_start:next_start]))
                self._event_start = next_start
        if self._event_start:
            del buf[: self._event_start]
            self._scan -= self._event_start
            self._event_start = 0
        if len(buf) > self.max_event_bytes:
            raise EventTooLarge(f"an SSE event exceeded {self.max_event_bytes} bytes")
        return events

    def flush(self) -> bytes:
        """Whatever is left when the stream ends (an unterminated event)."""
        rest = bytes(self._buf)
        self._buf.clear()
        self._scan = self._event_start = 0
        return rest

    @staticmethod
    def _line_end(buf: bytearray, start: int) -> int | None:
        """Index just past the next line terminator at or after `start`, or None."""
        n = len(buf)
        lf = buf.find(b"\n", start)
        cr = buf.find(b"\r", start)
        if cr == -1 and lf == -1:
            return None
        if cr == -1 or (lf != -1 and lf < cr):
            return lf + 1
        # A CR: it is CRLF if an LF follows; we cannot know yet if CR is the last byte.
        if cr + 1 < n:
            return cr + 2 if buf[cr + 1] == 0x0A else cr + 1
        return None


@dataclass
class Event:
    """The fields of one event, enough to rewrite its data and keep the rest."""

    fields: list[tuple[str, str]]  # (name, value) in order, comments dropped

    @property
    def data(self) -> str | None:
        parts = [v for k, v in self.fields if k == "data"]
        return "\n".join(parts) if parts else None

    @property
    def name(self) -> str:
        for k, v in self.fields:
            if k == "event":
                return v
        return "message"

    def with_data(self, data: str) -> bytes:
        out: list[str] = []
        wrote = False
        for k, v in self.fields:
            if k == "data":
                if not wrote:
                    out.extend(f"data: {line}" for line in data.split("\n"))
                    wrote = True
                continue
            out.append(f"{k}: {v}" if v else k)
        return ("\r\n".join(out) + "\r\n\r\n").encode()


def parse_event(raw: bytes) -> Event:
    fields: list[tuple[str, str]] = []
    text = raw.decode("utf-8", errors="replace")
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line or line.startswith(":"):
            continue
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        fields.append((name, value))
    return Event(fields)


def json_event(data: str, event: str = "message") -> bytes:
    """A fresh event carrying one JSON-RPC message (used for gateway-made answers)."""
    return f"event: {event}\r\ndata: {data}\r\n\r\n".encode()
