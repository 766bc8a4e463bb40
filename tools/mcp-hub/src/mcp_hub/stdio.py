"""A stdio MCP server as a child process the hub owns from spawn to reaping.

Why not the SDK's `stdio_client`: the hub must know each child's pid (logs, the
no-orphans guarantee, tests), turn its stderr into log lines, bound a stdout line, and
kill the whole process group (`npx` → `node`) when the session ends or the hub stops.
Each child gets its own session/process group and, on Linux, SIGKILL when the hub dies
(PR_SET_PDEATHSIG), so not even a killed hub leaves its direct children behind.
The environment is the SDK's minimal inherited set plus the server's own `env`: the
hub's other variables (and secrets) never reach a child.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.client.stdio import get_default_environment
from mcp.shared.message import SessionMessage

from mcp_hub import config
from mcp_hub.secret import reveal

log = logging.getLogger("mcp_hub.stdio")

MAX_LINE = 16 * 1024 * 1024  # one JSON-RPC message; a longer stdout line ends the child
STDERR_LINE = 2000           # characters of one stderr line kept in the log
EXIT_GRACE = 2.0             # after stdin closes, before SIGTERM; then as long before SIGKILL
EXIT_POLL = 0.05
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Child:
    server: str
    pid: int
    exited: anyio.Event = field(default_factory=anyio.Event)
    returncode: int | None = None

    def describe_exit(self) -> str:
        code = self.returncode
        if code is None:
            return "still running"
        return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@contextlib.asynccontextmanager
async def spawn(server: config.Server) -> AsyncIterator[
        tuple[MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage], Child]]:
    """Start `server` and yield (read, write, child); on exit stop it and its whole group."""
    env = get_default_environment() | {k: reveal(v) for k, v in server.env.items()}
    proc = await asyncio.create_subprocess_exec(
        server.command, *server.args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=server.cwd, start_new_session=True,
        preexec_fn=_die_with_parent, limit=MAX_LINE,
    )
    child = Child(server.name, proc.pid)
    log.info("child started", extra={"server": server.name, "pid": proc.pid})
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](16)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](16)
    assert proc.stdin and proc.stdout and proc.stderr

    async def stdout_reader() -> None:
        async with read_writer:
            while True:
                try:
                    line = await proc.stdout.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    log.error("child wrote a stdout line over %d bytes; stopping it", MAX_LINE,
                              extra={"server": server.name, "pid": proc.pid})
                    _killpg(proc.pid, signal.SIGKILL)
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                try:
                    message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except ValueError:
                    log.warning("child wrote a non-JSON-RPC line on stdout (ignored)",
                                extra={"server": server.name, "pid": proc.pid})
                    continue
                try:
                    await read_writer.send(SessionMessage(message))
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return

    async def stdin_writer() -> None:
        async with write_reader:
            async for message in write_reader:
                data = message.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
                try:
                    proc.stdin.write(data)
                    await proc.stdin.drain()
                except (BrokenPipeError, ConnectionResetError, RuntimeError):
                    return

    async def stderr_reader() -> None:
        while True:
            try:
                line = await proc.stderr.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                log.info(text[:STDERR_LINE], extra={"server": server.name, "pid": proc.pid, "stream": "stderr"})

    async def waiter() -> None:
        await _reaped(proc, child, None)

    async with anyio.create_task_group() as tg:
        for task in (stdout_reader, stdin_writer, stderr_reader, waiter):
            tg.start_soon(task)
        try:
            yield read_stream, write_stream, child
        finally:
            with anyio.CancelScope(shield=True):
                await _stop(proc, child)
                await read_stream.aclose()
                await write_stream.aclose()
            tg.cancel_scope.cancel()


async def _reaped(proc: asyncio.subprocess.Process, child: Child, timeout: float | None) -> bool:
    """Wait (at most `timeout`) until the child is reaped; record its exit.

    Polls returncode rather than proc.wait(): on 3.11 wait() also waits for every pipe to
    close, which a grandchild holding a pipe can delay forever. Called from the shielded
    teardown too, where the waiter task may already be cancelled with its session.
    """
    with anyio.move_on_after(timeout if timeout is not None else float("inf")):
        while proc.returncode is None:
            await anyio.sleep(EXIT_POLL)
    if proc.returncode is None:
        return False
    if not child.exited.is_set():
        child.returncode = proc.returncode
        child.exited.set()
        log.info("child exited", extra={"server": child.server, "pid": proc.pid, "outcome": child.describe_exit()})
    return True


async def _stop(proc: asyncio.subprocess.Process, child: Child) -> None:
    """Close stdin, then SIGTERM, then SIGKILL the child's process group; always reap."""
    if proc.stdin is not None:
        with contextlib.suppress(Exception):
            proc.stdin.close()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if await _reaped(proc, child, EXIT_GRACE):
            break
        _killpg(proc.pid, sig)
    await _reaped(proc, child, EXIT_GRACE)
    _killpg(proc.pid, signal.SIGKILL)  # whatever the leader left behind in its group
    if not child.exited.is_set():
        log.error("child survived SIGKILL", extra={"server": child.server, "pid": proc.pid})
