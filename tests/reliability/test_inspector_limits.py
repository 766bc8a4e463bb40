"""The `logs` limits hold: a regex filter cannot burn the server, and timed-out work stops.

Driven as an attacker would: a pod whose log lines are made for catastrophic backtracking
(`(a+)+$` against `aaaa…!` is exponential in Python's `re`) and a caller who asks for
exactly that, through the real server, the API server's pods/log proxy and a kubelet
endpoint the test runs. What must hold after each answer: the server's own CPU goes
back to idle (a runaway regex thread would keep one core busy), no filter process is
left, no request reaches the kubelet after the caller got its answer, and the next
call is served. CPU is judged as a ratio (busy / wall time) with a wide margin.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from inspector_process import Running, running_inspector
from mcp_tailnet_lab.fake_kubelet import node_with_kubelet, running_kubelet

pytestmark = pytest.mark.slow

CALL_TIMEOUT = 4  # seconds, INSPECTOR_CALL_TIMEOUT
EVIL = ("a" * 28 + "!\n") * 40  # (a+)+$ needs ~2^28 steps per line in a backtracking engine
SLOW_PODS = 6
SLOW_SECONDS = 1.5  # each slow pod's log takes this long: six of them need 9 s, the call has 4


@dataclass
class Lab:
    server: Running
    ns: str
    arrivals: list[tuple[float, str]] = field(default_factory=list)


@pytest.fixture(scope="module")
def lab(cluster, tmp_path_factory) -> Iterator[Lab]:
    ns = f"rel-limits-{secrets.token_hex(3)}"
    arrivals: list[tuple[float, str]] = []

    def source(_ns: str, pod: str, _container: str, _query: dict) -> str:
        arrivals.append((time.monotonic(), pod))
        if pod.startswith("slow-"):
            time.sleep(SLOW_SECONDS)
            return f"{pod} says hello\n"
        return EVIL + "ordinary line\n"

    with running_kubelet(source) as kubelet, node_with_kubelet(cluster, kubelet) as node:
        cluster.kubectl("create", "namespace", ns)

        def pod(name: str, app: str) -> dict:
            return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
                    "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.example/x:1"}]}}

        docs = [pod("evil", "evil")] + [pod(f"slow-{i}", "slow") for i in range(SLOW_PODS)]
        docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "slow"},
                     "spec": {"selector": {"matchLabels": {"app": "slow"}},
                              "template": {"metadata": {"labels": {"app": "slow"}},
                                           "spec": {"containers": [{"name": "c", "image": "registry.example/x:1"}]}}}})
        cluster.kubectl("apply", "-n", ns, "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
        try:
            with running_inspector(cluster.kubeconfig, tmp_path_factory.mktemp("rel-limits"),
                                   INSPECTOR_CALL_TIMEOUT=str(CALL_TIMEOUT)) as server:
                yield Lab(server, ns, arrivals)
        finally:
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process itself (all its threads, not its reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_ratio(pid: int, seconds: float = 3.0) -> float:
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - started)


def children(pid: int) -> list[str]:
    return [c for task in Path(f"/proc/{pid}/task").iterdir()
            for c in (task / "children").read_text().split()]


def one_line_error(result: dict) -> str:
    text = result["content"][0]["text"]
    assert result.get("isError") and "\n" not in text, text[:300]
    return text


def test_catastrophic_regex_is_stopped_and_leaves_nothing_running(lab: Lab) -> None:
    pid = lab.server.proc.pid
    result = lab.server.result("logs", {"name": "evil", "namespace": lab.ns, "grep": "(a+)+$", "regex": True})
    busy = busy_ratio(pid)
    assert busy < 0.3, f"the server stayed busy ({busy:.0%} of a core) after answering: the filter kept running"
    assert children(pid) == []
    assert "did not finish within" in one_line_error(result)
    # the same log, a sane filter: still served, and the match is right
    fine = lab.server.result("logs", {"name": "evil", "namespace": lab.ns, "grep": r"^ordinary \w+$", "regex": True})
    assert not fine.get("isError") and fine["content"][0]["text"] == "ordinary line"


def test_regex_filters_at_once_are_bounded(lab: Lab) -> None:
    """Three callers at once: never more than two filter processes, each answered, then idle."""
    pid = lab.server.proc.pid
    results: list[dict] = []
    seen = 0

    def call() -> None:
        results.append(lab.server.result("logs", {"name": "evil", "namespace": lab.ns, "grep": "(a|aa)+$",
                                                  "regex": True}))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 3 * CALL_TIMEOUT
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        seen = max(seen, len(children(pid)))
        time.sleep(0.05)
    for t in threads:
        t.join(timeout=CALL_TIMEOUT)
    assert len(results) == 3 and all(one_line_error(r) for r in results)
    assert 1 <= seen <= 2
    assert busy_ratio(pid) < 0.3 and children(pid) == []


def test_a_long_pattern_is_refused_before_any_log_is_read(lab: Lab) -> None:
    before = len(lab.arrivals)
    result = lab.server.result("logs", {"name": "evil", "namespace": lab.ns, "grep": "a" * 1001, "regex": True})
    assert "longer than 1000" in one_line_error(result)
    assert len(lab.arrivals) == before


def test_timed_out_call_makes_no_more_requests(lab: Lab) -> None:
    """Six pods at 1.5 s each against a 4 s call: the caller gets an error, and the worker that
    was reading for it stops too, instead of reading the remaining pods for nobody."""
    result = lab.server.result("logs", {"name": "deployment/slow", "namespace": lab.ns, "max_pods": SLOW_PODS})
    answered_at = time.monotonic()
    one_line_error(result)
    time.sleep(SLOW_PODS * SLOW_SECONDS)  # long enough for every remaining pod to be asked for
    late = [pod for at, pod in lab.arrivals if at > answered_at]
    assert late == [], f"requested after the caller had its answer: {late}"
    assert lab.server.result("get", {"resource": "pods", "namespace": lab.ns}).get("isError") is not True
