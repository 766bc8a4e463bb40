"""The hub as a process with real stdio servers: mcp-server-time (PyPI) and
@modelcontextprotocol/server-everything (npm), called with the SDK client over both
transports on its loopback alias."""

from __future__ import annotations

import base64
import contextlib
import signal
import time
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from hub_support import (
    TRANSPORTS,
    alive,
    connected,
    everything_server,
    hub_running,
    in_groups,
    kill,
    leftovers,
    text,
    time_server,
)
from mcp_tailnet_lab.gateway_process import start_stock_server, stop
from mcp_tailnet_lab.waiting import wait_for

pytestmark = pytest.mark.slow


def both() -> dict:
    return {"time": time_server(), "everything": everything_server()}


async def tool_names(c) -> set[str]:
    return {t.name for t in (await c.list_tools()).tools}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_aggregate_lists_every_server_under_its_prefix_and_routes_calls(workdir: Path, transport: str) -> None:
    with hub_running(workdir, both()) as hub:
        async def run() -> None:
            async with connected(hub.base, transport) as c:
                assert c.protocol_version in ("2025-11-25", "2025-06-18"), "the hub serves the handshake era"
                names = await tool_names(c)
                assert {"time_get_current_time", "time_convert_time", "everything_echo", "everything_get-sum"} <= names
                assert all(n.startswith(("time_", "everything_")) for n in names), names
                r = await c.call_tool("time_get_current_time", {"timezone": "Asia/Tokyo"})
                assert not r.is_error and '"timezone": "Asia/Tokyo"' in text(r)
                r = await c.call_tool("everything_get-sum", {"a": 20, "b": 22})
                assert not r.is_error and "42" in text(r)
                prompts = {p.name for p in (await c.list_prompts()).prompts}
                assert "everything_simple-prompt" in prompts
                got = await c.get_prompt("everything_simple-prompt", {})
                assert got.messages
                resources = (await c.list_resources()).resources
                assert resources and all(str(r.uri).startswith("everything+") for r in resources)
                read = await c.read_resource(resources[0].uri)
                assert str(read.contents[0].uri) == str(resources[0].uri)
                with pytest.raises(MCPError, match="unknown tool or prompt 'nope_echo'"):
                    await c.call_tool("nope_echo", {})
        anyio.run(run)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_per_server_endpoint_relays_that_server_alone_with_the_same_names(workdir: Path, transport: str) -> None:
    with hub_running(workdir, both()) as hub:
        async def run() -> None:
            async with connected(hub.base, transport, "/servers/time") as c:
                assert await tool_names(c) == {"time_get_current_time", "time_convert_time"}
                r = await c.call_tool("time_get_current_time", {"timezone": "UTC"})
                assert not r.is_error
                with pytest.raises(MCPError, match="unknown tool"):
                    await c.call_tool("everything_echo", {"message": "not here"})
        anyio.run(run)
        # a per-server session spawned only its own server's child
        assert hub.started_children("everything") == []


def test_a_killed_child_is_restarted_its_session_told_and_others_unaffected(workdir: Path) -> None:
    with hub_running(workdir, both(), hub={"restart_initial": 0.5}) as hub:
        async def run() -> None:
            notes: list[str] = []

            async def on_message(message) -> None:
                if isinstance(message, types.ToolListChangedNotification):
                    notes.append("tools")

            async with connected(hub.base, "streamable-http", message_handler=on_message) as a, \
                    connected(hub.base, "sse") as b:
                await tool_names(a)
                await tool_names(b)
                pids = hub.started_children("everything")
                assert len(pids) == 2, pids
                victim = pids[0]
                a_first = victim == next(r["pid"] for r in hub.records() if r.get("msg") == "child started"
                                         and r.get("server") == "everything")
                # a long call in flight on the victim's session when it dies
                mine, other = (a, b)
                async with anyio.create_task_group() as tg:
                    results: dict[str, types.CallToolResult] = {}

                    async def long_call(c, key):
                        results[key] = await c.call_tool("everything_trigger-long-running-operation",
                                                         {"duration": 10, "steps": 5})

                    tg.start_soon(long_call, a, "a")
                    tg.start_soon(long_call, b, "b")
                    await anyio.sleep(1.0)
                    kill(victim)
                killed = "a" if results["a"].is_error else "b"
                assert results[killed].is_error
                assert "process ended (killed by signal 9)" in text(results[killed]), text(results[killed])
                assert "restarts it" in text(results[killed])
                survivor = "b" if killed == "a" else "a"
                assert not results[survivor].is_error, text(results[survivor])
                victim_client = a if killed == "a" else b
                # the hub restarts it for that session, and the tools come back
                wait_for(lambda: len(hub.started_children("everything")) == 3, "the killed child to be restarted",
                         timeout=20)
                with anyio.fail_after(30):
                    while True:
                        r = await victim_client.call_tool("everything_echo", {"message": "back"})
                        if not r.is_error:
                            break
                        assert "unavailable" in text(r) or "starting" in text(r), text(r)
                        await anyio.sleep(0.3)
                assert not alive(victim)
                if killed == "a":
                    assert "tools" in notes, "the session was told its tool list changed"
                del mine, other, a_first
        anyio.run(run)


def test_a_hung_upstream_times_out_without_blocking_the_others(workdir: Path) -> None:
    servers = {"time": time_server(call_timeout=2), "everything": everything_server()}
    with hub_running(workdir, servers, hub={"list_timeout": 2}) as hub:
        async def run() -> None:
            async with connected(hub.base, "streamable-http") as c:
                await tool_names(c)
                (pid,) = hub.started_children("time")
                kill(pid, signal.SIGSTOP)  # alive, holding its pipes, answering nothing
                try:
                    async with anyio.create_task_group() as tg:
                        out: dict[str, object] = {}

                        async def hung() -> None:
                            started = time.monotonic()
                            out["hung"] = await c.call_tool("time_get_current_time", {"timezone": "UTC"})
                            out["hung_s"] = time.monotonic() - started

                        async def others() -> None:
                            started = time.monotonic()
                            out["echo"] = await c.call_tool("everything_echo", {"message": "still here"})
                            out["echo_s"] = time.monotonic() - started

                        tg.start_soon(hung)
                        await anyio.sleep(0.2)
                        tg.start_soon(others)
                    assert out["hung"].is_error and "no answer to tools/call get_current_time within 2 s" in \
                        text(out["hung"])
                    assert not out["echo"].is_error and "still here" in text(out["echo"])
                    assert out["echo_s"] * 4 < out["hung_s"], out  # ratio: the others did not wait for it
                    names = await tool_names(c)  # the cached list is still served
                    assert "everything_echo" in names
                finally:
                    kill(pid, signal.SIGCONT)
        anyio.run(run)


def test_list_changed_from_server_everything_reaches_the_client(workdir: Path) -> None:
    with hub_running(workdir, {"everything": everything_server()}) as hub:
        async def run() -> None:
            seen: list[type] = []
            arrived = anyio.Event()

            async def on_message(message) -> None:
                if isinstance(message, types.ResourceListChangedNotification):
                    seen.append(type(message))
                    arrived.set()

            async with connected(hub.base, "streamable-http", message_handler=on_message) as c:
                before = {str(r.uri) for r in (await c.list_resources()).resources}
                data = "data:text/plain;base64," + base64.b64encode(b"hub list_changed").decode()
                r = await c.call_tool("everything_gzip-file-as-resource", {"name": "hub.txt.gz", "data": data})
                assert not r.is_error, text(r)
                with anyio.fail_after(20):
                    await arrived.wait()
                after = {str(r.uri) for r in (await c.list_resources()).resources}
                new = after - before
                assert len(new) == 1 and next(iter(new)).startswith("everything+") and "hub.txt.gz" in next(iter(new))
                read = await c.read_resource(next(iter(new)))
                assert read.contents and str(read.contents[0].uri) == next(iter(new))
        anyio.run(run)


def test_fifty_concurrent_sessions_leave_no_orphan_process(workdir: Path) -> None:
    with hub_running(workdir, {"everything": everything_server()}, hub={"max_children": 60}) as hub:
        async def one(i: int) -> None:
            async with connected(hub.base, TRANSPORTS[i % 2]) as c:
                r = await c.call_tool("everything_echo", {"message": f"session {i}"})
                assert not r.is_error and f"session {i}" in text(r), text(r)

        async def run() -> None:
            with anyio.fail_after(240):
                async with anyio.create_task_group() as tg:
                    for i in range(50):
                        tg.start_soon(one, i)

        anyio.run(run)
        pids = hub.started_children("everything")
        assert len(pids) == 50, f"one child per session, got {len(pids)}"
        wait_for(lambda: leftovers(hub) == [], "every session's child to be gone after its session closed",
                 timeout=30)
        # A child is gone (reaped or a zombie) a moment before the hub counts it out: the hub
        # polls each exit (stdio.EXIT_POLL) and then releases its slot. Wait for the count too.
        def counted_out() -> dict | None:
            health = hub.health()
            return health if health["children"] == 0 else None

        health = wait_for(counted_out, "the hub to count no child once every child is gone", timeout=15)
        assert health["sessions"] == 0
        exited = {r["pid"] for r in hub.records() if r.get("msg") == "child exited"}
        assert set(pids) <= exited, f"the hub reaped every child itself: missing {set(pids) - exited}"
        assert in_groups(set(pids)) == []


def test_the_child_cap_refuses_more_children_with_a_reason_not_a_hang(workdir: Path) -> None:
    with hub_running(workdir, {"everything": everything_server(), "time": time_server()},
                     hub={"max_children": 2, "list_timeout": 3}) as hub:
        async def run() -> None:
            async with connected(hub.base, "streamable-http") as a:
                assert {"everything_echo", "time_get_current_time"} <= await tool_names(a)
                async with connected(hub.base, "streamable-http") as b:
                    names = await tool_names(b)  # no child left for b: listed without them, not hung
                    assert not any(n.startswith(("everything_", "time_")) for n in names), names
                    r = await b.call_tool("everything_echo", {"message": "x"})
                    assert r.is_error and "limit of 2 stdio children" in text(r), text(r)
                assert not (await a.call_tool("everything_echo", {"message": "a"})).is_error
        anyio.run(run)
        assert hub.started_children() and len(hub.started_children()) == 2


def test_sigterm_ends_every_session_and_child_and_exits_zero(workdir: Path) -> None:
    with hub_running(workdir, both()) as hub:
        seen: dict = {}

        async def run() -> None:
            async with connected(hub.base, "sse") as c:
                seen["tools"] = await tool_names(c)
                seen["children alive"] = [alive(p) for p in hub.started_children()]
                with anyio.fail_after(20):
                    seen["exit code"] = await anyio.to_thread.run_sync(hub.stop)
        # Only leaving the client may fail (it may or may not notice its server leave); what
        # happened before that is recorded in `seen` and checked here.
        with contextlib.suppress(Exception):
            anyio.run(run)
        assert {"time_get_current_time", "everything_echo"} <= seen["tools"]
        assert seen["children alive"] == [True, True], "both children ran while the session was open"
        assert seen["exit code"] == 0 and hub.proc.returncode == 0
        # hub_running checks the exit code and that no child outlived the hub


@pytest.mark.parametrize("upstream", ["streamable-http", "sse"])
def test_http_and_sse_upstreams_are_relayed_and_shared(workdir: Path, upstream: str) -> None:
    stock = start_stock_server()
    try:
        url = f"{stock.url}/mcp" if upstream == "streamable-http" else f"{stock.url}/sse"
        with hub_running(workdir, {"stock": {"transport": upstream, "url": url}}) as hub:
            async def run() -> None:
                async with connected(hub.base, "streamable-http") as a, connected(hub.base, "sse") as b:
                    for c in (a, b):
                        assert {"stock_add", "stock_echo"} <= await tool_names(c)
                        r = await c.call_tool("stock_add", {"a": 20, "b": 22})
                        assert not r.is_error and "42" in text(r)
            anyio.run(run)
            assert hub.health()["shared"]["stock"]["state"] == "up"
            assert hub.started_children() == []
    finally:
        stop(stock.proc)


@pytest.mark.parametrize("upstream", ["streamable-http", "sse"])
@pytest.mark.parametrize("how", ["killed", "frozen"])
def test_a_dead_shared_upstream_is_pinged_out_of_the_list_and_back_in(workdir: Path, upstream: str, how: str) -> None:
    """Nobody lists or calls: the ping timer alone takes a dead (SIGKILL) or hung (SIGSTOP) HTTP/SSE
    upstream's tools away, tells the session tools/list_changed and logs why; the stdio server stays
    listed; when the upstream answers again its tools come back with another list_changed."""
    stock = start_stock_server()
    procs = [stock.proc]
    try:
        url = f"{stock.url}/mcp" if upstream == "streamable-http" else f"{stock.url}/sse"
        limits = {"ping_interval": 0.5, "list_timeout": 2, "start_timeout": 2, "restart_initial": 0.2,
                  "restart_max": 1}
        with hub_running(workdir, {"stock": {"transport": upstream, "url": url}, "time": time_server()},
                         hub=limits) as hub:
            async def health() -> dict:
                return (await anyio.to_thread.run_sync(hub.health))["shared"]["stock"]

            async def run() -> None:
                changes: list[float] = []

                async def on_message(message) -> None:
                    if isinstance(message, types.ToolListChangedNotification):
                        changes.append(time.monotonic())

                async def next_change(seen: int) -> None:
                    with anyio.fail_after(30):
                        while len(changes) <= seen:
                            await anyio.sleep(0.05)

                async with connected(hub.base, "streamable-http", message_handler=on_message) as c:
                    assert {"stock_add", "time_get_current_time"} <= await tool_names(c)
                    await anyio.sleep(1.5)  # a few pings answered: a live upstream stays up
                    assert (await health())["state"] == "up"
                    seen = len(changes)
                    if how == "killed":
                        stock.proc.kill()
                        stock.proc.wait(10)
                    else:
                        stock.proc.send_signal(signal.SIGSTOP)
                    await next_change(seen)
                    down = await health()
                    assert down["state"] in ("down", "starting"), down
                    names = await tool_names(c)
                    assert not any(n.startswith("stock_") for n in names), sorted(names)
                    assert "time_get_current_time" in names
                    lines = [r for r in hub.records() if r.get("server") == "stock" and r.get("outcome") == "down"]
                    assert lines, "the upstream went down without a log line"
                    if how == "frozen":
                        assert "no answer to ping within 2 s" in lines[0]["msg"], lines[0]
                    else:  # whichever request notices first: the ping's POST (refused), or the open
                        # stream's read (reset: ReadError, or the chunked body cut: RemoteProtocolError)
                        reasons = ("ping failed", "ConnectError", "ReadError", "RemoteProtocolError", "connection")
                        assert any(why in lines[0]["msg"] for why in reasons), lines[0]
                        assert "Error: ;" not in lines[0]["msg"], lines[0]  # a reason, not an empty message
                    seen = len(changes)
                    if how == "killed":
                        procs.append(start_stock_server(port=stock.port).proc)  # same address, new process
                    else:
                        stock.proc.send_signal(signal.SIGCONT)
                    await next_change(seen)
                    assert {"stock_add", "time_get_current_time"} <= await tool_names(c)
                    r = await c.call_tool("stock_add", {"a": 2, "b": 3})
                    assert not r.is_error and "5" in text(r), text(r)
                    assert (await health())["state"] == "up"
            anyio.run(run)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
            stop(proc)
