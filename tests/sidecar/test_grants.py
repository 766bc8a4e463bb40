"""Tool grants in the tailnet policy, through `tailscale serve` on the lab tailnet (issue 13 §1, §2, §4).

headscale 0.29.2 compiles a grant's `app` into CapGrant rules of the destination's packet
filter (hscontrol/policy/v2/compiled.go); serve hands the caller's values of the
capabilities its handler accepts to the gateway in `Tailscale-App-Capabilities`
(tailscale v1.102.3 ipn/ipnlocal/serve.go `addAppCapabilitiesHeader`), for tagged callers
too. Two users of different headscale users and a tagged node with different grants
call the same hostname over Streamable HTTP (2026-07-28 stateless and a 2025 session,
whose answers are streamed SSE) and the legacy SSE transport: each sees and may call
exactly its tools. A policy change reaches the next request without restarting the
sidecar; a malformed value denies and is logged; forged capability and caller headers
gain nothing; a caller with no grant gets nothing; the policy file narrows the grants.

Topology: `grsrv` (tag:mcp) runs the stock server (with its caller_headers tool) and
`mcp-tailnet-sidecar gateway --apply-serve` with SIDECAR_TAILNET_GRANTS=true and a policy
file that denies `sleep` to everyone; `gralice` (user gr-alice, in group:sre), `grbob`
(user gr-bob) and `grbot` (tag:bot) are the callers.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from mcp_tailnet_lab.gateway_process import SIDECAR, stop
from mcp_tailnet_lab.headscale import ALLOW_ALL_POLICY
from mcp_tailnet_lab.node_gateway import NodeGateway, start_node_gateway, start_node_stock_server
from mcp_tailnet_lab.node_mcp import TRANSPORTS, NodeMcpClient
from mcp_tailnet_lab.tailnet import TailnetNode

pytestmark = pytest.mark.slow

TOOLS = ("add", "caller_headers", "echo", "sleep")
ARGS = {"add": {"a": 2, "b": 3}, "echo": {"text": "hi"}, "sleep": {"seconds": 0}, "caller_headers": {}}
FILE_POLICY = {"rules": [{"principals": ["*"], "tools": ["add", "echo", "caller_headers"]}]}  # never sleep
CAPABILITY = "github.com/mcp-tailnet/cap/tools"  # contract-13: fixed, so written out here


def policy(alice: list[Any], bob: list[Any], bot: list[Any] | None) -> dict[str, Any]:
    """ACL: the callers reach only port 80 of tag:mcp; grants: the tools capability per caller."""
    grants = [{"src": ["group:sre"], "dst": ["tag:mcp"], "app": {CAPABILITY: alice}},
              {"src": ["gr-bob@"], "dst": ["tag:mcp"], "app": {CAPABILITY: bob}}]
    if bot is not None:
        grants.append({"src": ["tag:bot"], "dst": ["tag:mcp"], "app": {CAPABILITY: bot}})
    return {"tagOwners": {"tag:mcp": [], "tag:bot": []},
            "groups": {"group:sre": ["gr-alice@"]},
            "acls": [{"action": "accept", "src": ["gr-alice@", "gr-bob@", "tag:bot"], "dst": ["tag:mcp:80"]}],
            "grants": grants}


ALICE = [{"tools": ["add"]}]
BOB = [{"tools": ["echo", "caller_headers"], "servers": ["grsrv"]}]
BOT = [{"tools": ["sleep", "caller_headers"], "servers": ["gr*"]}, {"tools": ["*"], "servers": ["other"]}]
INITIAL = policy(ALICE, BOB, BOT)
# what each caller may see and call: its grant, narrowed by the policy file (no sleep)
EXPECTED = {"alice": ["add"], "bob": ["caller_headers", "echo"], "bot": ["caller_headers"]}


@dataclass
class Lab:
    srv: TailnetNode
    callers: dict[str, TailnetNode]
    logins: dict[str, str]
    gw: NodeGateway
    headscale: Any

    @property
    def url(self) -> str:
        return f"http://{self.srv.dns_name}"


@pytest.fixture(scope="module")
def lab(tailnet) -> Iterator[Lab]:
    workdir = Path(tempfile.mkdtemp(prefix="gr-", dir="/tmp"))
    nodes: list[TailnetNode] = []
    stock = gw = None
    try:
        nodes.append(srv := tailnet.node("grsrv", tags=("tag:mcp",)))
        nodes.append(alice := tailnet.node("gralice", user="gr-alice"))
        nodes.append(bob := tailnet.node("grbob", user="gr-bob"))
        nodes.append(bot := tailnet.node("grbot", tags=("tag:bot",)))
        stock = start_node_stock_server(srv, "--caller-headers")
        logins = {}
        for name, node in (("alice", alice), ("bob", bob)):
            status = node.status()
            logins[name] = status["User"][str(status["Self"]["UserID"])]["LoginName"]
        file_policy = workdir / "policy.json"
        file_policy.write_text(json.dumps(FILE_POLICY))
        # The lab tailnet allows all until the policy below: readiness would flag the upstream's
        # loopback port (test_isolation's subject), accepted here.
        gw = start_node_gateway(srv, workdir, SIDECAR_TAILNET_GRANTS="true", SIDECAR_POLICY_FILE=str(file_policy),
                                SIDECAR_ACCEPT_UPSTREAM_EXPOSURE="true")
        tailnet.headscale.set_policy(INITIAL)
        for node in (alice, bob, bot):
            node.wait_for_peers({srv.dns_name})
        yield Lab(srv, {"alice": alice, "bob": bob, "bot": bot}, logins, gw, tailnet.headscale)
    finally:
        tailnet.headscale.set_policy(ALLOW_ALL_POLICY)
        if gw is not None:
            gw.stop()
        if stock is not None:
            stop(stock)
        for n in nodes:
            tailnet.remove(n)
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


def allowed(answer: dict[str, Any]) -> bool:
    if "error" in answer:
        assert answer["error"]["code"] == -32001, answer  # the gateway's denial, nothing else
        return False
    assert not answer["result"].get("isError"), answer
    return True


def see_and_call(lab: Lab, who: str, transport: str, headers: dict[str, str] | None = None) -> tuple[list, list]:
    caller = NodeMcpClient(lab.callers[who], lab.url, transport, headers)
    try:
        return caller.list(), [t for t in TOOLS if allowed(caller.call(t, ARGS[t]))]
    finally:
        caller.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_each_caller_sees_and_calls_exactly_its_tools(lab, transport):
    for who, tools in EXPECTED.items():
        seen, called = see_and_call(lab, who, transport)
        assert (seen, called) == (tools, tools), (who, transport)


def test_session_and_sse_answers_are_streamed_and_filtered(lab):
    """The 2025 session's answers come as an SSE stream (the stock server's default): filtered there too."""
    for transport in ("session", "sse"):
        caller = NodeMcpClient(lab.callers["alice"], lab.url, transport)
        try:
            assert caller.list() == ["add"] and caller.streamed[-1] is True
        finally:
            caller.close()


def caller_headers(lab: Lab, who: str, forged: dict[str, str]) -> dict[str, list[str]]:
    caller = NodeMcpClient(lab.callers[who], lab.url, "modern", forged)
    try:
        answer = caller.call("caller_headers")
        assert allowed(answer), answer
        return json.loads(answer["result"]["content"][0]["text"])
    finally:
        caller.close()


FORGED = {"Tailscale-App-Capabilities": json.dumps({CAPABILITY: [{"tools": ["*"]}]}),
          "Mcp-Tailnet-Caller-Login": "root@evil.example", "Mcp-Tailnet-Caller-Tags": "tag:admin",
          "Mcp-Tailnet-Caller-Capability": json.dumps([{"tools": ["*"]}]), "Mcp-Tailnet-Other": "x",
          # what a server folding `_` into `-` (WSGI's HTTP_* keys) would take for ours or serve's
          "Mcp_Tailnet_Caller_Login": "root@evil.example", "Tailscale_App_Capabilities": "{}",
          "Tailscale_User_Login": "root@evil.example"}


def test_forged_capability_and_caller_headers_gain_nothing(lab):
    for transport in TRANSPORTS:
        assert see_and_call(lab, "bob", transport, FORGED) == (EXPECTED["bob"], EXPECTED["bob"]), transport
    seen = caller_headers(lab, "bob", FORGED)
    assert not [k for k in seen if "_" in k], seen  # no look-alike reached the server
    assert {k: [unquote(v) for v in vs] for k, vs in seen.items() if k.startswith("mcp-tailnet-")} == {
        "mcp-tailnet-caller-login": [lab.logins["bob"]],
        "mcp-tailnet-caller-node": [lab.callers["bob"].dns_name],
        "mcp-tailnet-caller-capability": [json.dumps(BOB, separators=(",", ":"))]}
    # what the upstream sees of the capability header is serve's, not the client's
    assert [json.loads(v) for v in seen["tailscale-app-capabilities"]] == [{CAPABILITY: BOB}]
    seen = caller_headers(lab, "bot", FORGED)
    assert {k: [unquote(v) for v in vs] for k, vs in seen.items() if k.startswith("mcp-tailnet-")} == {
        "mcp-tailnet-caller-node": [lab.callers["bot"].dns_name],
        "mcp-tailnet-caller-tags": ["tag:bot"],
        "mcp-tailnet-caller-capability": [json.dumps(BOT[:1], separators=(",", ":"))]}


def whoami(lab: Lab, who: str) -> dict[str, Any]:
    with httpx.Client(proxy=lab.callers[who].proxy_url, timeout=30) as c:
        r = c.get(f"{lab.url}/.well-known/mcp-tailnet/whoami")
    assert r.status_code == 200, r.text
    return r.json()


def test_whoami_and_doctor_show_the_callers_grant(lab):
    body = whoami(lab, "bot")
    assert body["identity"]["tags"] == ["tag:bot"] and body["identity"]["login"] is None
    decision = body["tools_decision"]
    assert decision["rule"] == "policy file and tailnet grants must both allow" and decision["server_name"] == "grsrv"
    assert decision["grant"]["values"] == BOT and decision["grant"]["kept_for_this_server"] == BOT[:1]
    assert decision["policy_file_tools"] == FILE_POLICY["rules"][0]["tools"]
    r = subprocess.run([SIDECAR, "doctor", "--url", f"{lab.url}/mcp", "--proxy", lab.callers["alice"].proxy_url,
                        "--timeout", "20"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"ok   whoami: you are {lab.logins['alice']} (node {lab.callers['alice'].dns_name}" in r.stdout, r.stdout
    assert f'{CAPABILITY}: [{{"tools": ["add"]}}]' in r.stdout and "1 tool(s): add" in r.stdout, r.stdout
    print("\n--- doctor output (docs/access.md) ---\n" + r.stdout)
    print("--- whoami (docs/access.md) ---\n" + json.dumps(whoami(lab, "alice")))


def answers_change(lab: Lab, who: str, want: list[str], timeout: float = 60) -> float:
    """Seconds until `who` lists `want` (new connection per try, modern transport), bounded."""
    start = time.monotonic()
    seen = None
    for _ in range(int(timeout / 0.2)):
        caller = NodeMcpClient(lab.callers[who], lab.url, "modern")
        try:
            seen = caller.list()
        finally:
            caller.close()
        if seen == want:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            break
        time.sleep(0.2)
    raise AssertionError(f"{who} still lists {seen}, not {want}, {timeout}s after the policy change")


def test_a_policy_change_takes_effect_without_a_restart(lab, record_property):
    pid = lab.gw.proc.pid
    try:
        changed = policy([{"tools": ["echo"]}], BOB, None)  # alice: add -> echo; bot: no grant at all
        waited: list[float] = []
        poller = threading.Thread(target=lambda: waited.append(answers_change(lab, "alice", ["echo"])))
        started = time.monotonic()
        poller.start()  # polls while headscale reloads and the nodes get the new netmap
        lab.headscale.set_policy(changed)
        set_policy_seconds = time.monotonic() - started
        poller.join(90)
        assert waited, "alice's answer did not change"
        record_property("set_policy_seconds", round(set_policy_seconds, 2))
        record_property("policy_change_to_answer_seconds", round(waited[0], 2))
        print(f"\nlive reload: {waited[0]:.2f} s from set_policy (policy check, file replace, SIGHUP) to alice's "
              f"changed answer; set_policy itself returned after {set_policy_seconds:.2f} s")
        for transport in TRANSPORTS:
            assert see_and_call(lab, "alice", transport) == (["echo"], ["echo"]), transport
            # no grant at all: serve sends no capability header; grants mode denies everything
            assert see_and_call(lab, "bot", transport) == ([], []), transport
        assert whoami(lab, "bot")["tools_decision"]["grant"]["header_present"] is False
        assert lab.gw.proc.pid == pid and lab.gw.proc.poll() is None  # the same sidecar process
    finally:
        lab.headscale.set_policy(INITIAL)
        answers_change(lab, "alice", ["add"])


def test_a_malformed_value_denies_and_logs_why(lab):
    try:
        lab.headscale.set_policy(policy(ALICE, [{"tools": ["echo"], "verbs": ["get"]}], BOT))
        answers_change(lab, "bob", [])
        for transport in TRANSPORTS:
            assert see_and_call(lab, "bob", transport) == ([], []), transport
        assert see_and_call(lab, "alice", "modern") == (["add"], ["add"])  # others unaffected
        grant = whoami(lab, "bob")["tools_decision"]["grant"]
        assert "unknown key(s) 'verbs'" in grant["malformed"], grant
        lines = [json.loads(line) for line in lab.gw.log.read_text().splitlines() if line.startswith("{")]
        why = [rec for rec in lines if "malformed" in str(rec.get("message", rec.get("msg", "")))]
        assert len(why) == 1 and "unknown key(s) 'verbs'" in json.dumps(why[0]), why  # once, with the reason
    finally:
        lab.headscale.set_policy(INITIAL)
        answers_change(lab, "bob", EXPECTED["bob"])
