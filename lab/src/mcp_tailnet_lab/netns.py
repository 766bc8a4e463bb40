"""A private lab network: one Linux bridge, a /24, network namespaces on veth pairs.

Why: every tailnet node of the lab needs its own network stack (its own
loopback, routes and firewall) so that "reachable over the tailnet" and
"reachable at all" are different things a test can tell apart. Names carry a
per-run prefix so two test runs never collide, and everything made here
(namespaces, veths, the bridge, iptables rules, /etc/netns files) is removed
again, also when setup fails half way.

Dockerd loads br_netfilter and sets the FORWARD policy to DROP, which would
silently drop traffic between two ports of our bridge; we insert our own
FORWARD rules for the bridge (and take them out again). Traffic from the lab
bridge to anywhere else is dropped, so a namespace can reach only the host's
bridge address and its neighbours, never the outside world.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

NETNS_ETC = Path("/etc/netns")
# One marker per live lab network: "<pid> <starttime>" of its owner, so a later
# run can remove what a killed run (SIGKILL, OOM) left behind.
MARKERS = Path("/run/mcp-tailnet-lab")
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the test process dies, even by SIGKILL."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _proc_start(pid: int) -> str | None:
    """A process's start time (field 22 of /proc/PID/stat), None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class LabNetworkError(RuntimeError):
    """The lab network could not be set up; the message says which step failed."""


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 30, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, raising LabNetworkError with its stderr when check fails."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input)
    except FileNotFoundError as exc:
        raise LabNetworkError(f"{argv[0]} is not installed (needed for the lab network): run `lab/provision`") from exc
    if check and proc.returncode != 0:
        raise LabNetworkError(f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _used_networks() -> list[ipaddress.IPv4Network]:
    """IPv4 networks already routed or assigned on the host, to avoid overlapping them."""
    nets: list[ipaddress.IPv4Network] = []
    for entry in json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]"):
        dst = entry.get("dst", "")
        if dst and dst != "default":
            try:
                nets.append(ipaddress.IPv4Network(dst, strict=False))
            except ValueError:
                pass
    for link in json.loads(run(["ip", "-j", "-4", "addr"]).stdout or "[]"):
        for info in link.get("addr_info", []):
            nets.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False))
    return nets


def pick_subnet(attempts: int = 50) -> ipaddress.IPv4Network:
    """A random private /24 in 10.200.0.0/13 that overlaps nothing on the host."""
    used = _used_networks()
    for _ in range(attempts):
        candidate = ipaddress.IPv4Network(f"10.{random.randint(200, 207)}.{random.randint(0, 255)}.0/24")
        if not any(candidate.overlaps(n) for n in used if n.prefixlen > 0):
            return candidate
    raise LabNetworkError("no free private /24 in 10.200.0.0/13 for the lab bridge")


@dataclass
class Namespace:
    """A network namespace on the lab bridge (lo up, default route via the host)."""

    name: str
    lan_ip: str
    network: LabNetwork = field(repr=False)

    def argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` wrapped to run inside this namespace (with its /etc/netns files bound)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def exec(self, argv: Sequence[str], check: bool = True, timeout: float = 60, input: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and wait for it."""
        proc = subprocess.run(self.argv(argv), capture_output=True, text=True, timeout=timeout, input=input, env=env)
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc

    def popen(self, argv: Sequence[str], **kw) -> subprocess.Popen:
        """Start a long-running command inside the namespace (it dies with the test process)."""
        kw.setdefault("preexec_fn", die_with_parent)
        return subprocess.Popen(self.argv(argv), **kw)

    def set_resolv_conf(self, text: str) -> None:
        """Give commands run in this namespace their own resolv.conf (never the host's)."""
        d = NETNS_ETC / self.name
        d.mkdir(parents=True, exist_ok=True)
        (d / "resolv.conf").write_text(text)


class LabNetwork:
    """The lab bridge with its /24; the host holds .1, namespaces get .2 upwards."""

    def __init__(self, prefix: str | None = None) -> None:
        self.run_id = prefix or secrets.token_hex(3)
        self.bridge = f"tlb{self.run_id}"
        self.subnet = pick_subnet()
        hosts = self.subnet.hosts()
        self.host_ip = str(next(hosts))
        self._free_ips = list(hosts)
        self.namespaces: dict[str, Namespace] = {}
        self._veths: list[str] = []
        self._fw_rules: list[list[str]] = []
        self._comment = f"mcp-tailnet-lab-{self.run_id}"
        self._made = 0
        self._up = False

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> LabNetwork:
        """Create the bridge, give the host its address, open FORWARD for the bridge."""
        if os.geteuid() != 0:
            raise LabNetworkError("the lab network needs root (network namespaces, bridge, iptables)")
        sweep_stale()
        MARKERS.mkdir(parents=True, exist_ok=True)
        (MARKERS / self.run_id).write_text(f"{os.getpid()} {_proc_start(os.getpid())}\n")
        self._up = True
        try:
            run(["ip", "link", "add", self.bridge, "type", "bridge"])
            run(["ip", "addr", "add", f"{self.host_ip}/{self.subnet.prefixlen}", "dev", self.bridge])
            run(["ip", "link", "set", self.bridge, "up"])
            # Inserted at the top in reverse, so the final order is: within the
            # bridge accept; replies to flows started elsewhere accept; the rest
            # from the bridge (e.g. towards the internet) drop.
            self._fw_insert(["-i", self.bridge, "-j", "DROP"])
            self._fw_insert(["-i", self.bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"])
            self._fw_insert(["-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"])
        except BaseException:
            self.close()
            raise
        return self

    def _fw_insert(self, spec: list[str]) -> None:
        rule = [*spec, "-m", "comment", "--comment", self._comment]
        run(["iptables", "-w", "5", "-I", "FORWARD", "1", *rule])
        self._fw_rules.append(rule)

    def add_namespace(self, name: str) -> Namespace:
        """A fresh namespace `<run>-<name>` with a veth on the bridge."""
        if not self._up:
            raise LabNetworkError("lab network is not started")
        if not self._free_ips:
            raise LabNetworkError(f"lab subnet {self.subnet} is full")
        self._made += 1
        index = self._made
        ns_name = f"tl{self.run_id}-{name}"
        host_if, peer_if = f"tv{self.run_id}h{index}", f"tv{self.run_id}p{index}"
        ip = str(self._free_ips.pop(0))
        ns = Namespace(ns_name, ip, self)
        self.namespaces[ns_name] = ns
        run(["ip", "netns", "add", ns_name])
        run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if])
        self._veths.append(host_if)
        run(["ip", "link", "set", host_if, "master", self.bridge, "up"])
        run(["ip", "link", "set", peer_if, "netns", ns_name])
        nsx = ["ip", "-n", ns_name]
        run([*nsx, "link", "set", peer_if, "name", "eth0"])
        run([*nsx, "addr", "add", f"{ip}/{self.subnet.prefixlen}", "dev", "eth0"])
        run([*nsx, "link", "set", "eth0", "up"])
        run([*nsx, "link", "set", "lo", "up"])
        run([*nsx, "route", "add", "default", "via", self.host_ip])
        # Commands in the namespace never read the host's resolver config.
        ns.set_resolv_conf("# lab namespace: no outside resolver\noptions attempts:1 timeout:1\n")
        return ns

    def remove_namespace(self, ns: Namespace) -> None:
        """Delete one namespace (its veth goes with it) and its /etc/netns dir."""
        run(["ip", "netns", "delete", ns.name], check=False)
        shutil.rmtree(NETNS_ETC / ns.name, ignore_errors=True)
        self.namespaces.pop(ns.name, None)

    def close(self) -> None:
        """Remove everything this network made; safe to call twice and after a failed start."""
        for ns in list(self.namespaces.values()):
            self.remove_namespace(ns)
        for veth in self._veths:
            run(["ip", "link", "delete", veth], check=False)
        self._veths.clear()
        for rule in reversed(self._fw_rules):
            run(["iptables", "-w", "5", "-D", "FORWARD", *rule], check=False)
        self._fw_rules.clear()
        if self._up:
            run(["ip", "link", "delete", self.bridge], check=False)
        (MARKERS / self.run_id).unlink(missing_ok=True)
        self._up = False

    def __enter__(self) -> LabNetwork:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def sweep_stale() -> None:
    """Remove namespaces, bridge, iptables rules and /etc/netns dirs of dead lab runs."""
    if not MARKERS.is_dir():
        return
    for marker in MARKERS.iterdir():
        try:
            pid, start = marker.read_text().split()
            if _proc_start(int(pid)) == start:
                continue  # its owner still runs
        except (OSError, ValueError):
            pass
        rid = marker.name
        for name in run(["ip", "netns", "list"], check=False).stdout.split():
            if name.startswith(f"tl{rid}-"):
                for p in run(["ip", "netns", "pids", name], check=False).stdout.split():
                    try:
                        os.kill(int(p), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                run(["ip", "netns", "delete", name], check=False)
                shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
        run(["ip", "link", "delete", f"tlb{rid}"], check=False)
        for line in run(["iptables", "-w", "5", "-S", "FORWARD"], check=False).stdout.splitlines():
            if f"mcp-tailnet-lab-{rid}" in line and line.startswith("-A FORWARD "):
                run(["iptables", "-w", "5", "-D", "FORWARD", *line.split()[2:]], check=False)
        marker.unlink(missing_ok=True)
