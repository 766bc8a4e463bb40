"""The packet-filter verdict (packetfilter.py) on the shapes tailscaled v1.102.3 really sends.

The two filters below are what `debug-packet-filter-matches` answered on a lab node
(tag:mcp, 100.64.0.1) under headscale 0.29.2's allow-all policy and under the shipped
"tag:mcp-client -> tag:mcp:80,443" policy; tests/sidecar/test_isolation.py reads them live
from tailscaled and checks the verdict against what a peer can really reach.
"""

from __future__ import annotations

import json

import pytest

from mcp_tailnet_sidecar import packetfilter
from mcp_tailnet_sidecar.packetfilter import PortRange, assess, open_tcp_ports

IPS = ["100.64.0.1", "fd7a:115c:a1e0::1"]
STATUS = {"TUN": False, "TailscaleIPs": IPS, "Self": {"Tags": ["tag:mcp"], "TailscaleIPs": IPS}}
ALL_PROTOS = [6, 17, 1, 58]
ALLOW_ALL = [{"IPProto": ALL_PROTOS, "Srcs": ["100.64.0.0/11", "fd7a:115c:a1e0::/48"], "SrcCaps": None,
              "Dsts": [{"Net": "0.0.0.0/0", "Ports": {"First": 0, "Last": 65535}},
                       {"Net": "::/0", "Ports": {"First": 0, "Last": 65535}}], "Caps": []}]
SERVED_ONLY = [{"IPProto": ALL_PROTOS, "Srcs": ["100.64.0.2/32", "fd7a:115c:a1e0::2/128"], "SrcCaps": None,
                "Dsts": [{"Net": f"{net}", "Ports": {"First": p, "Last": p}}
                         for net in ("100.64.0.1/32", "fd7a:115c:a1e0::1/128") for p in (80, 443)], "Caps": []}]
UPSTREAM = "http://127.0.0.1:8080"


def test_allow_all_opens_every_tcp_port_of_the_node():
    assert open_tcp_ports(ALLOW_ALL, IPS) == (PortRange(0, 65535),)


def test_the_served_ports_policy_opens_only_80_and_443():
    assert open_tcp_ports(SERVED_ONLY, IPS) == (PortRange(80, 80), PortRange(443, 443))


@pytest.mark.parametrize("match", [
    {**ALLOW_ALL[0], "IPProto": [17, 1, 58]},  # no TCP
    {**ALLOW_ALL[0], "Srcs": [], "SrcCaps": None},  # no peer it applies to
    {**ALLOW_ALL[0], "Dsts": [{"Net": "100.64.0.9/32", "Ports": {"First": 0, "Last": 65535}}]},  # another node
    {**ALLOW_ALL[0], "Dsts": [{"Net": "10.0.0.0/8", "Ports": {"First": 0, "Last": 65535}}]},  # a subnet route
])
def test_rules_that_do_not_let_a_peer_open_tcp_here_count_for_nothing(match):
    assert open_tcp_ports([match], IPS) == ()


def test_ranges_are_merged_and_an_ipv6_only_rule_counts():
    matches = [{"IPProto": [6], "Srcs": ["fd7a:115c:a1e0::/48"],
                "Dsts": [{"Net": "fd7a:115c:a1e0::1/128", "Ports": {"First": 8000, "Last": 8080}},
                         {"Net": "fd7a:115c:a1e0::1/128", "Ports": {"First": 8081, "Last": 9000}}]}]
    assert open_tcp_ports(matches, IPS) == (PortRange(8000, 9000),)


def test_allow_all_with_the_upstream_on_127_0_0_1_is_not_ready_and_names_the_exact_fix():
    verdict = assess(ALLOW_ALL, STATUS, served=[80], upstream_url=UPSTREAM, accept_risk=False)
    assert verdict.known and not verdict.ok and verdict.upstream_exposed
    assert "port 8080" in verdict.detail and "past serve and the gateway" in verdict.detail
    acl = {"action": "accept", "src": ["<your MCP clients>"], "dst": ["tag:mcp:80"]}
    grant = {"src": ["<your MCP clients>"], "dst": ["tag:mcp"], "ip": ["tcp:80"]}
    assert json.dumps(acl) in verdict.detail and json.dumps(grant) in verdict.detail
    assert "SIDECAR_ACCEPT_UPSTREAM_EXPOSURE=true" in verdict.detail
    assert packetfilter.describe(verdict.unserved) == "0-79,81-65535"


def test_with_https_the_fix_names_both_served_ports():
    verdict = assess(ALLOW_ALL, STATUS, served=[80, 443], upstream_url=UPSTREAM, accept_risk=False)
    assert '"dst": ["tag:mcp:80,443"]' in verdict.detail and '"ip": ["tcp:80", "tcp:443"]' in verdict.detail


def test_an_untagged_node_is_named_by_its_tailnet_ip():
    status = {**STATUS, "Self": {"TailscaleIPs": IPS}}
    verdict = assess(ALLOW_ALL, status, served=[80], upstream_url=UPSTREAM, accept_risk=False)
    assert '"dst": ["100.64.0.1:80"]' in verdict.detail


def test_the_explicit_setting_accepts_the_risk_and_still_says_it():
    verdict = assess(ALLOW_ALL, STATUS, served=[80], upstream_url=UPSTREAM, accept_risk=True)
    assert verdict.ok and verdict.upstream_exposed and "accepted by SIDECAR_ACCEPT_UPSTREAM_EXPOSURE" in verdict.detail


@pytest.mark.parametrize("upstream,status,matches", [
    ("http://127.0.0.3:8080", STATUS, ALLOW_ALL),  # our own servers: a loopback alias
    (UPSTREAM, {**STATUS, "TUN": True}, ALLOW_ALL),  # kernel mode forwards nothing to loopback
    (UPSTREAM, STATUS, SERVED_ONLY),  # the policy opens only the served ports
    ("http://127.0.0.1:80", STATUS, ALLOW_ALL),  # serve answers port 80 itself: nothing is forwarded
])
def test_ready_when_the_forwarder_cannot_reach_the_upstream(upstream, status, matches):
    verdict = assess(matches, status, served=[80, 443], upstream_url=upstream, accept_risk=False)
    assert verdict.ok and not verdict.upstream_exposed, verdict.detail


def test_open_unserved_ports_are_reported_even_when_ready():
    verdict = assess(ALLOW_ALL, STATUS, served=[80], upstream_url="http://127.0.0.3:8080", accept_risk=False)
    assert verdict.ok and packetfilter.count(verdict.unserved) == 65535
    assert "beyond the served 80: 0-79,81-65535" in verdict.detail


@pytest.mark.parametrize("upstream", [UPSTREAM, "http://localhost:8080", "http://[::1]:8080"])
def test_an_unreadable_filter_fails_closed_for_an_upstream_on_the_forwarders_target(upstream):
    verdict = assess({"unexpected": "shape"}, STATUS, served=[80], upstream_url=upstream, accept_risk=False)
    assert not verdict.known and not verdict.ok and "cannot read" in verdict.detail
    garbled = [{"IPProto": [6], "Srcs": ["*"], "Dsts": [{"Net": "100.64.0.1/32", "Ports": "all"}]}]
    assert not assess(garbled, STATUS, served=[80], upstream_url=upstream, accept_risk=False).ok


def test_an_unreadable_filter_does_not_block_an_upstream_on_a_loopback_alias():
    verdict = assess("garbage", STATUS, served=[80], upstream_url="http://127.0.0.3:8080", accept_risk=False)
    assert verdict.ok and not verdict.known
