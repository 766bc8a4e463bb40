"""The issue's complete example on the host: the EKS inspector over Streamable HTTP plus two
stdio servers (mcp-server-time from PyPI, server-everything from npm) behind one hub.

Real components throughout: the inspector process against the lab's kube-apiserver (as
tests/inspector starts it), the hub as its console script on 127.0.0.3, SDK clients over
both transports. No tailnet here (test_hub_tailnet.py puts the hub behind the sidecar).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from hub_support import TRANSPORTS, connected, everything_server, hub_running, text, time_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inspector"))
from inspector_support import Inspector, base_env, running_inspector  # noqa: E402

pytestmark = pytest.mark.slow

INSPECTOR_TOOLS = {"k8s_get", "k8s_describe", "k8s_logs", "k8s_events", "k8s_api_resources", "k8s_cluster_overview"}


@pytest.fixture(scope="module")
def inspector(cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inspector]:
    with running_inspector(base_env(cluster.kubeconfig), tmp_path_factory.mktemp("hub-inspector")) as server:
        yield server


def example(inspector: Inspector) -> dict:
    """docs/hub.md's example: [servers.k8s] over HTTP, [servers.time] and [servers.everything] over stdio."""
    return {"k8s": {"transport": "streamable-http", "url": f"{inspector.base}/mcp", "call_timeout": 30},
            "time": time_server(), "everything": everything_server()}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_inspector_time_and_everything_behind_one_hub(workdir: Path, inspector: Inspector, k8s_namespace: str,
                                                      transport: str) -> None:
    upstream = {t.name for t in inspector.tools()}
    with hub_running(workdir, example(inspector), hub={"list_timeout": 10}) as hub:
        async def run() -> dict[str, str]:
            async with connected(hub.base, transport) as c:
                names = {t.name for t in (await c.list_tools()).tools}
                assert INSPECTOR_TOOLS <= names, sorted(names)
                assert {"time_get_current_time", "time_convert_time", "everything_echo", "everything_get-sum"} <= names
                assert {n.split("_", 1)[0] for n in names} == {"k8s", "time", "everything"}, sorted(names)
                # The inspector's own names, unchanged after the prefix (no renaming, no collisions).
                assert {n.removeprefix("k8s_") for n in names if n.startswith("k8s_")} == upstream
                out = {}
                # A namespace this test created: only a real call to the API server can name it.
                r = await c.call_tool("k8s_get", {"resource": "namespaces", "name": k8s_namespace})
                out["k8s"] = ("error: " if r.is_error else "") + text(r)
                r = await c.call_tool("time_get_current_time", {"timezone": "Europe/Paris"})
                out["time"] = ("error: " if r.is_error else "") + text(r)
                r = await c.call_tool("everything_echo", {"message": f"hub {transport}"})
                out["everything"] = ("error: " if r.is_error else "") + text(r)
                return out

        out = anyio.run(run)
        assert k8s_namespace in out["k8s"] and "Active" in out["k8s"], out["k8s"]
        assert '"timezone": "Europe/Paris"' in out["time"], out["time"]
        assert out["everything"] == f"Echo: hub {transport}", out["everything"]
        # The inspector is one shared HTTP upstream: no child process for it, two for the stdio servers.
        assert hub.health()["shared"]["k8s"]["state"] == "up"
        assert len(hub.started_children("time")) == 1 and len(hub.started_children("everything")) == 1


def test_the_inspector_alone_on_its_per_server_endpoint(workdir: Path, inspector: Inspector, k8s_namespace: str) -> None:
    upstream = {t.name for t in inspector.tools()}
    with hub_running(workdir, example(inspector)) as hub:
        async def run() -> tuple[set[str], str]:
            async with connected(hub.base, "streamable-http", "/servers/k8s") as c:
                names = {t.name for t in (await c.list_tools()).tools}
                r = await c.call_tool("k8s_get", {"resource": "namespaces", "name": k8s_namespace, "output": "name"})
                return names, text(r)

        names, got = anyio.run(run)
        assert names == {f"k8s_{n}" for n in upstream}
        assert k8s_namespace in got, got
        assert hub.started_children() == [], "a k8s-only session spawns no stdio child"


def test_a_dead_inspector_takes_only_its_own_tools_away(workdir: Path, cluster, tmp_path_factory) -> None:
    """Stop the inspector under a running hub: a call to it gets the reason at once, the stdio
    servers keep answering in the same session, and its tools leave the list."""
    with running_inspector(base_env(cluster.kubeconfig), tmp_path_factory.mktemp("dying")) as dying:
        with hub_running(workdir, example(dying), hub={"list_timeout": 5, "restart_initial": 0.2}) as hub:
            async def listed() -> set[str]:
                async with connected(hub.base, "streamable-http") as c:
                    return {t.name for t in (await c.list_tools()).tools}

            assert INSPECTOR_TOOLS <= anyio.run(listed)
            dying.proc.terminate()
            dying.proc.wait(timeout=20)

            async def after() -> tuple[str, set[str]]:
                async with connected(hub.base, "sse") as c:
                    with anyio.fail_after(30):
                        r = await c.call_tool("k8s_get", {"resource": "namespaces"})
                    assert r.is_error
                    echo = await c.call_tool("everything_echo", {"message": "still here"})
                    assert not echo.is_error and "still here" in text(echo)
                    now = await c.call_tool("time_get_current_time", {"timezone": "UTC"})
                    assert not now.is_error, text(now)
                    return text(r), {t.name for t in (await c.list_tools()).tools}

            refused, names = anyio.run(after)
            assert "'k8s'" in refused and "restarts it" in refused, refused
            assert not any(n.startswith("k8s_") for n in names), sorted(names)
            assert {"time_get_current_time", "everything_echo"} <= names
            assert hub.health()["shared"]["k8s"]["state"] in ("down", "starting")


def test_a_dead_inspector_leaves_the_list_before_anyone_calls_it(workdir: Path, cluster, tmp_path_factory) -> None:
    """The issue: a dead upstream's tools disappear (and return when it does), so clients do not
    pick a tool that can only fail. Here nobody calls the dead upstream; only lists are asked."""
    with running_inspector(base_env(cluster.kubeconfig), tmp_path_factory.mktemp("dying")) as dying:
        with hub_running(workdir, example(dying), hub={"list_timeout": 5, "restart_initial": 0.2}) as hub:
            async def k8s_listed() -> bool:
                async with connected(hub.base, "streamable-http") as c:
                    return any(t.name.startswith("k8s_") for t in (await c.list_tools()).tools)

            assert anyio.run(k8s_listed)
            dying.proc.terminate()
            dying.proc.wait(timeout=20)
            listed = True
            for _ in range(20):  # up to ~20 s of lists, one per second
                listed = anyio.run(k8s_listed)
                if not listed:
                    break
                anyio.run(anyio.sleep, 1.0)
            assert not listed, "the dead inspector's tools are still listed 20 s after it stopped"
