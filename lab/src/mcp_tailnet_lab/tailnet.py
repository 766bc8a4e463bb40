"""Real tailscaled nodes, each in its own network namespace, logged in to the lab headscale.

Why namespaces: a node's tailnet side (tailscale0 in TUN mode, netstack in
userspace mode) and its LAN side are then separate, so a test can show that a
service is reachable over the tailnet and not around it. Each node also runs
tailscaled's HTTP/SOCKS5 proxy on its bridge address, reachable only from the
host, so the test process (which is not on the tailnet) can make requests
"from" that node by MagicDNS name through `proxy_url`.

Every node logs in with `--login-server` = the lab headscale, never sends logs
(`--no-logs-no-support`), and talks DERP over plain HTTP
(TS_DEBUG_USE_DERP_HTTP=true) to headscale's embedded DERP.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mcp_tailnet_lab.headscale import ALLOW_ALL_POLICY, Headscale
from mcp_tailnet_lab.netns import LabNetwork, Namespace
from mcp_tailnet_lab.paths import MissingComponent, binary

PROXY_PORT = 1055
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
TUN_DEVICE = Path("/dev/net/tun")


# `python3 -c LOOPBACK_RELAY ALIAS PORT SECONDS`: relays 127.0.0.1:PORT to ALIAS:PORT for at most
# SECONDS, inside a node's or a pod's namespace. "The server, had it listened on 127.0.0.1":
# the positive control of the isolation tests (stdlib only, so it runs in any of our images).
LOOPBACK_RELAY = """
import asyncio, sys
alias, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data); await w.drain()
    finally:
        w.close()
async def handle(r, w):
    ur, uw = await asyncio.open_connection(alias, port)
    await asyncio.gather(pipe(r, uw), pipe(ur, w), return_exceptions=True)
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print("listening", flush=True)
    async with server:
        try:
            await asyncio.wait_for(server.serve_forever(), seconds)
        except asyncio.TimeoutError:
            pass
asyncio.run(main())
"""


class TailnetError(RuntimeError):
    """A tailnet node failed to start or join; the message says which step and why."""


def redact(text: str, *secrets_: str) -> str:
    """`text` with every secret replaced, so an auth key never reaches an error or log."""
    for s in secrets_:
        if s:
            text = text.replace(s, "[REDACTED]")
    return text


def require_tun() -> None:
    """Fail clearly when TUN mode cannot work here."""
    try:
        mode = TUN_DEVICE.stat().st_mode
    except FileNotFoundError:
        raise TailnetError(f"TUN mode needs {TUN_DEVICE}, which does not exist on this host (load the tun module or use mode='userspace')") from None
    if not stat.S_ISCHR(mode):
        raise TailnetError(f"TUN mode needs {TUN_DEVICE} to be a character device")


class TailnetNode:
    """tailscaled in its own namespace, `up` against the lab headscale."""

    def __init__(self, name: str, netns: Namespace, headscale: Headscale, workdir: Path, mode: str) -> None:
        self.name = name
        self.netns = netns
        self.mode = mode
        self.headscale = headscale
        self.workdir = workdir
        self.socket = workdir / "tailscaled.sock"
        self.lan_ip = netns.lan_ip
        self.proxy_url = f"http://{self.lan_ip}:{PROXY_PORT}"
        self.ip = ""
        self.dns_name = ""
        self.log_path = workdir / "tailscaled.log"
        self._proc: subprocess.Popen | None = None
        self._tailscale = binary("tailscale")

    # -- commands --------------------------------------------------------------
    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The `tailscale` CLI against this node's LocalAPI socket, run inside its namespace
        (so a name the CLI resolves itself goes to the namespace's resolver, never the host's)."""
        proc = subprocess.run(self.netns.argv([str(self._tailscale), f"--socket={self.socket}", *args]), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc

    def exec(self, argv: Sequence[str], check: bool = True, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the node's namespace."""
        return self.netns.exec(argv, check=check, timeout=timeout, input=input)

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen:
        """Start a long-running command inside the node's namespace."""
        return self.netns.popen(argv, **kw)

    def status(self) -> dict[str, Any]:
        """`tailscale status --json`."""
        return json.loads(self.cli("status", "--json", timeout=20).stdout)

    def netmap_signature(self) -> str:
        """What ACLs decide for this node: its packet filter and visible peers."""
        proc = self.cli("debug", "netmap", check=False, timeout=20)
        if proc.returncode != 0:
            return f"error:{proc.stderr.strip()}"
        nm = json.loads(proc.stdout)
        peers = sorted(str(p.get("StableID") or p.get("ID")) for p in nm.get("Peers") or [])
        return json.dumps([nm.get("PacketFilterRules"), peers], sort_keys=True)

    def http_get(self, host: str, port: int, path: str = "/not-mcp", timeout: float = 25) -> bytes | None:
        """One new TCP connection from this node into the tailnet (its SOCKS5 proxy: no pooled
        connection carries over a policy change, tailscale's filter judges new flows), then
        `GET path`. None when no TCP connection could be made, else the raw answer."""
        with socket.create_connection((self.lan_ip, PROXY_PORT), timeout=10) as c:
            c.settimeout(timeout)
            c.sendall(b"\x05\x01\x00")
            if c.recv(2) != b"\x05\x00":
                raise TailnetError(f"node {self.name}: its SOCKS5 proxy refused the greeting")
            name = host.encode()
            c.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
            try:
                reply = c.recv(10)
            except TimeoutError:
                return None
            if len(reply) < 2 or reply[1] != 0:
                return None
            c.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := c.recv(4096):
                data += chunk
        return data

    # -- lifecycle -------------------------------------------------------------
    def start(self, authkey: str, *, hostname: str, extra_up_args: Sequence[str] = (), timeout: float = 90) -> TailnetNode:
        """Start tailscaled, run `tailscale up`, wait for Running with a tailnet IP."""
        tailscaled = binary("tailscaled")
        if self.mode == "tun":
            require_tun()
            tun_arg = "--tun=tailscale0"
            # The node resolves names through MagicDNS (100.100.100.100) only.
            self.netns.set_resolv_conf(f"nameserver 100.100.100.100\nsearch {self.headscale.base_domain}\noptions attempts:2 timeout:2\n")
        elif self.mode == "userspace":
            tun_arg = "--tun=userspace-networking"
        else:
            raise ValueError(f"mode must be 'userspace' or 'tun', not {self.mode!r}")
        # The proxy is for the host test process only, not for the LAN.
        self.exec(["iptables", "-w", "5", "-A", "INPUT", "-p", "tcp", "--dport", str(PROXY_PORT), "!", "-s", self.netns.network.host_ip, "-j", "REJECT"])
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.workdir),
            "TS_DEBUG_USE_DERP_HTTP": "true",
            "TS_NO_LOGS_NO_SUPPORT": "true",
            "TS_DISABLE_PORTMAPPER": "1",
        }
        argv = [
            str(tailscaled),
            f"--state={self.workdir / 'tailscaled.state'}",
            f"--statedir={self.workdir}",
            f"--socket={self.socket}",
            tun_arg,
            "--no-logs-no-support",
            f"--socks5-server={self.lan_ip}:{PROXY_PORT}",
            f"--outbound-http-proxy-listen={self.lan_ip}:{PROXY_PORT}",
        ]
        with self.log_path.open("ab") as log:
            self._proc = self.popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        self._wait(lambda: self.socket.exists() and self.cli("status", "--json", check=False, timeout=10).returncode == 0, deadline, "tailscaled's LocalAPI socket to answer")

        keyfile = self.workdir / "authkey"
        keyfile.write_text(authkey)
        keyfile.chmod(0o600)
        up = [
            "up",
            f"--login-server={self.headscale.url}",
            f"--auth-key=file:{keyfile}",
            f"--hostname={hostname}",
            "--accept-dns=false",
            f"--timeout={max(10, int(deadline - time.monotonic()))}s",
            *extra_up_args,
        ]
        try:
            proc = self.cli(*up, check=False, timeout=max(15, deadline - time.monotonic() + 5))
        except subprocess.TimeoutExpired:
            raise TailnetError(f"node {self.name}: `tailscale up` hung; tailscaled log: {self._tail(authkey)}") from None
        finally:
            keyfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise TailnetError(f"node {self.name}: `tailscale up` failed ({proc.returncode}): {redact(proc.stderr or proc.stdout, authkey).strip()[-600:]}; tailscaled log: {self._tail(authkey)}")

        def running() -> bool:
            st = self.status()
            self_ = st.get("Self") or {}
            ips = [ip for ip in self_.get("TailscaleIPs") or [] if ":" not in ip]
            if st.get("BackendState") == "Running" and ips and self_.get("DNSName"):
                self.ip, self.dns_name = ips[0], self_["DNSName"].rstrip(".")
                return True
            return False

        self._wait(running, deadline, "BackendState Running with a tailnet IP")
        return self

    def _wait(self, cond: Callable[[], bool], deadline: float, what: str) -> None:
        last: object = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise TailnetError(f"node {self.name}: tailscaled exited ({self._proc.returncode}) while waiting for {what}: {self._tail()}")
            try:
                if cond():
                    return
            except (subprocess.SubprocessError, ValueError, OSError) as exc:
                last = exc
            time.sleep(0.3)
        raise TailnetError(f"node {self.name}: timed out waiting for {what} (last error: {last!r}); tailscaled log: {self._tail()}")

    def peer_names(self) -> set[str]:
        """DNS names (no trailing dot) of the peers this node currently sees."""
        peers = (self.status().get("Peer") or {}).values()
        return {p.get("DNSName", "").rstrip(".") for p in peers}

    def wait_for_peers(self, dns_names: set[str], timeout: float = 60) -> None:
        """Bounded wait until every name in `dns_names` is among this node's peers."""
        self._wait(lambda: dns_names <= self.peer_names(), time.monotonic() + timeout, f"peers {sorted(dns_names)}")

    def _tail(self, *secrets_: str, lines: int = 12) -> str:
        try:
            text = " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"
        return redact(text, *secrets_)

    def stop(self, timeout: float = 10) -> None:
        """Log out (an ephemeral node then leaves headscale at once), stop tailscaled."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            try:
                self.cli("logout", check=False, timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None


class Tailnet:
    """Factory of tailnet nodes and outsider namespaces; `close()` removes all of them."""

    def __init__(self, headscale: Headscale, network: LabNetwork, workdir: Path | None = None) -> None:
        self.headscale = headscale
        self.network = network
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="lab-tailnet-"))
        self.nodes: list[TailnetNode] = []
        self._outsiders: list[Namespace] = []
        self._count = 0
        headscale.policy_waiters.append(self._policy_waiter)

    def _ns(self, name: str) -> Namespace:
        if not _NAME_RE.match(name):
            raise ValueError(f"node name {name!r} must be a lowercase DNS label (a-z, 0-9, -)")
        self._count += 1
        return self.network.add_namespace(f"{self._count}-{name}")

    def node(self, name: str, *, mode: str = "userspace", user: str = "lab", tags: Sequence[str] = (), authkey: str | None = None, extra_up_args: Sequence[str] = ()) -> TailnetNode:
        """A new node `name` in its own namespace, already Running on the tailnet."""
        if mode not in ("userspace", "tun"):
            raise ValueError(f"mode must be 'userspace' or 'tun', not {mode!r}")
        if mode == "tun":
            require_tun()
        for name_ in ("tailscaled", "tailscale"):
            binary(name_)  # fail early with MissingComponent naming the binary
        if authkey is None:
            authkey = self.headscale.preauth_key(user, tags=tags)
        ns = self._ns(name)
        workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))
        node = TailnetNode(name, ns, self.headscale, workdir, mode)
        self.nodes.append(node)
        try:
            node.start(authkey, hostname=name, extra_up_args=extra_up_args)
            if self.headscale.policy == ALLOW_ALL_POLICY:
                others = [n for n in self.nodes if n is not node and n._proc is not None]
                node.wait_for_peers({n.dns_name for n in others})
                for other in others:
                    other.wait_for_peers({node.dns_name})
        except BaseException:
            self.remove(node)
            raise
        return node

    def outsider(self, name: str) -> Namespace:
        """A namespace on the lab bridge that is NOT on the tailnet."""
        ns = self._ns(name)
        self._outsiders.append(ns)
        return ns

    def remove(self, node: TailnetNode) -> None:
        """Stop `node` and delete its namespace (before session end)."""
        try:
            node.stop()
        finally:
            self.network.remove_namespace(node.netns)
            if node in self.nodes:
                self.nodes.remove(node)

    def _policy_waiter(self, apply: Callable[[], None], timeout: float = 30, settle: float = 3) -> None:
        """Run `apply` (the headscale reload) and wait until every live node saw it.

        A node "saw it" when its packet filter or peer list changed; a node whose
        view does not change has nothing to wait for, so after `settle` seconds
        without change it counts as done. Changed nodes must read the same twice.
        """
        live = [n for n in self.nodes if n._proc is not None and n._proc.poll() is None]
        before = {n: n.netmap_signature() for n in live}
        apply()
        start = time.monotonic()
        pending = set(live)
        last: dict[TailnetNode, str] = {}
        while pending and time.monotonic() - start < timeout:
            for node in list(pending):
                sig = node.netmap_signature()
                if sig != before[node]:
                    if last.get(node) == sig:
                        pending.discard(node)
                    last[node] = sig
            if pending and all(n not in last for n in pending) and time.monotonic() - start > settle:
                return
            time.sleep(0.3)
        if pending and any(n in last for n in pending):
            raise TailnetError(f"nodes {[n.name for n in pending]} did not settle on the new policy within {timeout}s")

    def close(self) -> None:
        """Stop every node, remove every namespace this tailnet made."""
        if self._policy_waiter in self.headscale.policy_waiters:
            self.headscale.policy_waiters.remove(self._policy_waiter)
        errors = []
        for node in list(self.nodes):
            try:
                self.remove(node)
            except Exception as exc:  # keep cleaning up the rest
                errors.append(exc)
        for ns in self._outsiders:
            self.network.remove_namespace(ns)
        self._outsiders.clear()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise errors[0]


__all__ = ["LOOPBACK_RELAY", "MissingComponent", "Tailnet", "TailnetError", "TailnetNode", "require_tun"]
