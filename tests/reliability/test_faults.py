"""Faults with real processes: the image entrypoint (`mcp-tailnet-sidecar run`: real
containerboot, tailscaled, serve and gateway) in a lab namespace on the lab headscale,
a stock MCP server beside it, and a client node reaching it by MagicDNS name.

Readiness is polled in a bounded loop and every state change is recorded, so a stale
"ready" in the middle of a fault shows up in the assertion message, not just a final state.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.from_thread import start_blocking_portal
from mcp.shared.exceptions import MCPError

from reliability_support import (
    SidecarRun,
    bad_log_lines,
    proxied_mcp_client,
    sidecar_env,
    start_stock_in,
    stop,
    tailnet_roundtrip,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cli(tailnet):
    """A user-owned client node; the test reaches the tailnet through its HTTP proxy."""
    return tailnet.node("relcli")


class Pods:
    """Sidecar + stock server pairs in their own namespaces; all stopped afterwards."""

    def __init__(self, tailnet, headscale, rel_tmp: Path) -> None:
        self.tailnet, self.headscale, self.rel_tmp = tailnet, headscale, rel_tmp
        self.runs: list[SidecarRun] = []
        self.stocks: list = []
        self.keys: list[str] = []

    def make(self, label: str, *, ephemeral: bool = True, authkey: str | None = "mint", **extra: str) -> SidecarRun:
        ns = self.tailnet.outsider(label)
        d = self.rel_tmp / f"{label}-{uuid.uuid4().hex[:6]}"
        d.mkdir()
        if authkey == "mint":
            authkey = self.headscale.preauth_key("lab", ephemeral=ephemeral)
        if authkey:
            self.keys.append(authkey)
        hostname = f"{label}-{uuid.uuid4().hex[:6]}"
        self.stocks.append(start_stock_in(ns, d / "stock.log"))
        run = SidecarRun(ns, d, sidecar_env(d, self.headscale, hostname, authkey, **extra))
        self.runs.append(run)
        return run

    def again(self, run: SidecarRun, **env_changes: str | None) -> SidecarRun:
        """The restart policy: the same namespace, state dir and settings, a new process."""
        env = {**run.env}
        for k, v in env_changes.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        fresh = SidecarRun(run.ns, run.dir, env, states=run.states)
        self.runs.append(fresh)
        return fresh.start()

    def close(self) -> None:
        for run in self.runs:
            run.stop()
        for proc in self.stocks:
            stop(proc)


@pytest.fixture
def pods(tailnet, headscale, rel_tmp):
    p = Pods(tailnet, headscale, rel_tmp)
    try:
        yield p
    finally:
        p.close()


def assert_clean_logs(run: SidecarRun, keys: list[str]) -> None:
    bad = bad_log_lines(run.log.read_text(errors="replace"), keys)
    assert not bad, "\n".join(bad[:5])


async def bounded_call(client, tool: str, args: dict, timeout: float = 30):
    with anyio.fail_after(timeout):
        return await client.call_tool(tool, args)


def audit(run: SidecarRun) -> list[dict]:
    return [r for r in map(json.loads, run.log.read_text().splitlines()) if r.get("event") == "tool_call"]


# -- the MCP server crashes and comes back ----------------------------------------------------------

def test_mcp_server_crash_and_restart(pods, cli):
    run = pods.make("relcrash").start()
    run.wait_ready()
    url = f"http://{run.dns_name()}"
    cli.wait_for_peers({run.dns_name()})
    stock = pods.stocks[-1]
    with start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(proxied_mcp_client(cli.proxy_url, "http", url)) as old:
            assert portal.call(old.call_tool, "add", {"a": 1, "b": 1}).structured_content["result"] == 2
            stock.kill()
            stock.wait(10)
            run.wait_state(lambda s: s.startswith("not-ready"), "not-ready after the crash", timeout=30)
            with pytest.raises(MCPError):  # a call while the server is down fails, with an answer
                portal.call(bounded_call, old, "add", {"a": 1, "b": 1})
    pods.stocks.append(start_stock_in(run.ns, run.dir / "stock.log"))  # what the restart policy does
    run.wait_ready(timeout=60)
    # clients reconnect (a new session) and continue, over both transports
    assert tailnet_roundtrip(cli.proxy_url, url, "http") == 42
    assert tailnet_roundtrip(cli.proxy_url, url, "sse") == 42
    states = [s for _, s in run.states]
    print(f"MCP server crash: readiness states {states}")
    first_ready = states.index("ready")
    after = states[first_ready:]
    assert after[0] == "ready" and after[-1] == "ready"
    assert any(s == "not-ready:upstream" for s in after), states
    assert all(s in ("ready", "not-ready:upstream") for s in after), f"unexpected states: {states}"
    outcomes = [a["outcome"] for a in audit(run)]
    assert outcomes[0] == "ok" and outcomes[-2:] == ["ok", "ok"]
    assert set(outcomes[1:-2]) <= {"upstream_unavailable", "aborted", "upstream_error"}, outcomes
    assert_clean_logs(run, pods.keys)


# -- tailscaled is killed -------------------------------------------------------------------------------

def test_tailscaled_killed_never_leaves_a_stale_ready(pods, cli):
    run = pods.make("relts").start()
    run.wait_ready()
    name = run.dns_name()
    cli.wait_for_peers({name})
    assert tailnet_roundtrip(cli.proxy_url, f"http://{name}") == 42
    os.kill(run.tailscaled_pid(), signal.SIGKILL)
    killed_at = time.monotonic()
    # bounded: either the sidecar exits (for the restart policy) or tailscaled comes back
    deadline = killed_at + 90
    while time.monotonic() < deadline and run.proc.poll() is None:
        run.readiness()
        time.sleep(0.1)
    code = run.proc.poll()
    after_kill = [s for t, s in run.states if t >= killed_at]
    print(f"tailscaled killed: sidecar exit code {code}; readiness after the kill: {after_kill}")
    if code is None:  # it stayed up: then tailscaled must have come back
        run.wait_ready(timeout=60)
        assert "ready" not in after_kill[:-1] or any(s.startswith("not-ready") for s in after_kill), run.states
    else:
        assert code != 0, f"the sidecar exited 0 after tailscaled died; states {run.states}"
        assert "ready" not in after_kill, f"stale ready after tailscaled was killed: {run.states}"
        # the restart policy starts the container again, same state: same name, ready, serving
        again = pods.again(run)
        again.wait_ready()
        assert again.dns_name() == name
        cli.wait_for_peers({name})
        assert tailnet_roundtrip(cli.proxy_url, f"http://{name}") == 42
    assert_clean_logs(run, pods.keys)


# -- SIGTERM with a call in flight and streams open ----------------------------------------------------------

def test_sigterm_drains_the_call_closes_streams_and_exits_zero(pods, cli):
    run = pods.make("relterm").start()  # reliability_support.sidecar_env sets SIDECAR_DRAIN_TIMEOUT=20
    run.wait_ready()
    url = f"http://{run.dns_name()}"
    cli.wait_for_peers({run.dns_name()})
    results: dict = {}

    async def scenario() -> None:
        async def slow_call() -> None:
            async with proxied_mcp_client(cli.proxy_url, "http", url) as client:
                # the tool list first, as clients do: the SDK validates results against it, and a
                # request sent after SIGTERM is refused (the gateway no longer accepts)
                await client.list_tools()
                results["call_started"] = time.monotonic()
                res = await client.call_tool("sleep", {"seconds": 6})
                results["call"] = res.content[0].text

        async def idle_stream(i: int) -> None:
            async with httpx.AsyncClient(proxy=cli.proxy_url, timeout=httpx.Timeout(30, read=90)) as c:
                async with c.stream("GET", f"{url}/sse") as r:
                    assert r.status_code == 200
                    results.setdefault("streams_open", 0)
                    results["streams_open"] += 1
                    try:
                        async for _ in r.aiter_raw():
                            pass
                        results[f"stream{i}"] = "closed cleanly"
                    except httpx.HTTPError as exc:
                        results[f"stream{i}"] = f"broken: {exc!r}"

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow_call)
            for i in range(3):
                tg.start_soon(idle_stream, i)
            with anyio.fail_after(60):
                while "call_started" not in results or results.get("streams_open", 0) < 3:
                    await anyio.sleep(0.1)
            await anyio.sleep(1.0)
            results["sigterm_at"] = time.monotonic()
            run.proc.send_signal(signal.SIGTERM)

    def runner() -> None:
        try:
            anyio.run(scenario)
        except BaseException as exc:  # noqa: BLE001 - reported in the assertion below
            results["error"] = repr(exc)

    t = threading.Thread(target=runner)
    t.start()
    t.join(120)
    assert not t.is_alive(), (results, run.proc.poll(), run.log_tail(40))
    code = run.proc.wait(90)
    drained = time.monotonic() - results["sigterm_at"]
    assert results.get("call") == "slept 6.0", json.dumps(results) + run.log_tail(30)
    assert [results.get(f"stream{i}") for i in range(3)] == ["closed cleanly"] * 3, results
    assert code == 0, run.log_tail()
    assert drained < 20 + 30 + 10, f"took {drained:.1f} s (drain bound 20 s + containerboot stop 30 s)"
    print(f"SIGTERM: drained and exited {code} in {drained:.1f} s; {results}")
    assert [(a["tool"], a["outcome"]) for a in audit(run)] == [("sleep", "ok")]
    assert_clean_logs(run, pods.keys)


# -- the control server is down -------------------------------------------------------------------------------

def test_control_server_down_established_sessions_work_new_logins_wait(pods, cli, headscale):
    a = pods.make("relcta").start()
    a.wait_ready()
    url_a = f"http://{a.dns_name()}"
    cli.wait_for_peers({a.dns_name()})
    b = pods.make("relctb")  # its key is minted now, while headscale still answers
    with start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(proxied_mcp_client(cli.proxy_url, "http", url_a)) as session:
            assert portal.call(session.call_tool, "add", {"a": 1, "b": 2}).structured_content["result"] == 3
            headscale.stop()
            try:
                down_at = time.monotonic()
                # established: the open MCP session and new sessions to a known peer keep working
                for i in range(3):
                    r = portal.call(session.call_tool, "add", {"a": i, "b": 1})
                    assert r.structured_content["result"] == i + 1
                assert tailnet_roundtrip(cli.proxy_url, url_a) == 42
                # a new login waits: b never turns ready while the control server is away
                b.start()
                while time.monotonic() - down_at < 25:
                    assert b.readiness() != "ready", b.states
                    assert b.proc.poll() is None, f"the new node gave up while control was down: {b.log_tail()}"
                    time.sleep(0.5)
            finally:
                headscale.start()
            b.wait_ready(timeout=120)
            cli.wait_for_peers({b.dns_name()}, timeout=90)
            assert tailnet_roundtrip(cli.proxy_url, f"http://{b.dns_name()}") == 42
            assert portal.call(session.call_tool, "add", {"a": 2, "b": 2}).structured_content["result"] == 4
    print(f"control down: new node states {[s for _, s in b.states]}")
    assert all(s != "ready" for t, s in b.states if t < down_at + 25)
    assert_clean_logs(a, pods.keys)
    assert_clean_logs(b, pods.keys)


# -- restarts with persisted state keep the name -----------------------------------------------------------------

def test_restart_with_persisted_state_keeps_the_hostname(pods, cli, headscale):
    run = pods.make("relname", ephemeral=False).start()
    run.wait_ready()
    name = run.dns_name()
    hostname = run.env["TS_HOSTNAME"]
    assert name.split(".")[0] == hostname
    for _ in range(2):
        assert run.stop() == 0
        run = pods.again(run, TS_AUTHKEY=None)  # state exists: no key needed
        run.wait_ready()
        assert run.dns_name() == name, f"restart renamed the node: {name} -> {run.dns_name()}"
    cli.wait_for_peers({name})
    assert tailnet_roundtrip(cli.proxy_url, f"http://{name}") == 42
    # control: the same hostname WITHOUT the state gets another name, so the check above can fail
    lost = pods.make("relname2", ephemeral=True, TS_HOSTNAME=hostname).start()
    lost.wait_ready()
    print(f"hostname: kept {name} over 2 restarts; stateless twin got {lost.dns_name()}")
    assert lost.dns_name() != name, "a stateless node took the same name: this test could not tell"
    lost.stop()
    for node in headscale.nodes():
        if str(node.get("name", "")).startswith(hostname) or str(node.get("given_name", "")).startswith(hostname):
            headscale.delete_node(node["id"])
