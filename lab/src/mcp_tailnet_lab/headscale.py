"""A real `headscale serve` as the lab's tailnet control server.

Why headscale: it is the self-hosted control server people actually run, so
tailscaled nodes in the lab log in, get MagicDNS names, DERP and ACL filters the
same way they would in production. Everything it needs lives in one temp dir;
it talks plain HTTP on the lab bridge address (reachable from lab namespaces and
from Docker containers) with its embedded DERP as the only relay, and nothing
leaves the machine (no DERP map download, no update check, no logtail).

The ACL policy is a file (policy.mode: file). Headscale 0.29 refuses
`headscale policy set` in file mode; it re-reads the file on SIGHUP. So
`set_policy` validates with `headscale policy check`, replaces the file,
sends SIGHUP, waits for the reload in headscale's JSON log, then lets the
waiters registered by the tailnet fixture confirm that every node got it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import yaml

from mcp_tailnet_lab.netns import die_with_parent
from mcp_tailnet_lab.paths import binary, versions
from mcp_tailnet_lab.ports import free_port

ALLOW_ALL_POLICY: dict[str, Any] = {"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}


def served_ports_policy(server_tag: str = "tag:mcp", client_tag: str = "tag:mcp-client",
                        ports: Iterable[int] = (80, 443)) -> dict[str, Any]:
    """The policy we document: clients reach only the ports serve answers on (README.md)."""
    dst = f"{server_tag}:{','.join(str(p) for p in ports)}"
    return {"tagOwners": {server_tag: [], client_tag: []},
            "acls": [{"action": "accept", "src": [client_tag], "dst": [dst]}]}


class HeadscaleError(RuntimeError):
    """headscale failed to start or a CLI call failed; the message says what and why."""


def render_config(workdir: Path, host: str, *, base_domain: str = "lab.tailnet") -> dict[str, Any]:
    """headscale's config for a local, offline tailnet served at http://host:PORT."""
    port = free_port(host)
    return {
        "server_url": f"http://{host}:{port}",
        "listen_addr": f"{host}:{port}",
        # Debug/metrics endpoints: loopback only; set_policy reads them.
        "metrics_listen_addr": f"127.0.0.1:{free_port('127.0.0.1')}",
        "grpc_listen_addr": f"127.0.0.1:{free_port('127.0.0.1')}",
        "grpc_allow_insecure": False,
        "unix_socket": str(workdir / "headscale.sock"),
        "unix_socket_permission": "0770",
        "noise": {"private_key_path": str(workdir / "noise_private.key")},
        "prefixes": {"v4": "100.64.0.0/10", "v6": "fd7a:115c:a1e0::/48", "allocation": "sequential"},
        "derp": {
            "server": {
                "enabled": True,
                "region_id": 999,
                "region_code": "lab",
                "region_name": "mcp-tailnet lab embedded DERP",
                "verify_clients": True,
                "stun_listen_addr": f"{host}:{free_port(host, socket.SOCK_DGRAM)}",
                "private_key_path": str(workdir / "derp_server_private.key"),
                "automatically_add_embedded_derp_region": True,
            },
            "urls": [],
            "paths": [],
            "auto_update_enabled": False,
        },
        "disable_check_updates": True,
        "node": {"expiry": "0", "ephemeral": {"inactivity_timeout": "120s"}},
        "database": {"type": "sqlite", "sqlite": {"path": str(workdir / "db.sqlite"), "write_ahead_log": True}},
        "log": {"level": "info", "format": "json"},
        "policy": {"mode": "file", "path": str(workdir / "policy.json")},
        "dns": {
            "magic_dns": True,
            "base_domain": base_domain,
            "override_local_dns": False,
            "nameservers": {"global": [], "split": {}},
            "search_domains": [],
            "extra_records": [],
        },
        "logtail": {"enabled": False},
        "taildrop": {"enabled": False},
    }


def _log_events(path: Path) -> list[dict[str, Any]]:
    """headscale's JSON log lines (non-JSON lines skipped)."""
    events = []
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return events
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


class Headscale:
    """A running `headscale serve` plus thin wrappers around its CLI (`-o json`)."""

    def __init__(self, host: str, *, workdir: Path | None = None, base_domain: str = "lab.tailnet", start_timeout: float = 60) -> None:
        self.binary = binary("headscale")
        self.version = versions()["HEADSCALE_VERSION"]
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="lab-headscale-"))
        self.config = render_config(self.workdir, host, base_domain=base_domain)
        self.config_path = self.workdir / "config.yaml"
        self.policy_path = Path(self.config["policy"]["path"])
        self.log_path = self.workdir / "headscale.log"
        self.url: str = self.config["server_url"]
        self.base_domain = base_domain
        self.policy: dict[str, Any] = ALLOW_ALL_POLICY
        self._debug_url = f"http://{self.config['metrics_listen_addr']}"
        self._proc: subprocess.Popen | None = None
        self._start_timeout = start_timeout
        # Called with a zero-arg "apply" function by set_policy, so the tailnet
        # fixture can confirm each node saw the new policy (see Tailnet).
        self.policy_waiters: list[Callable[[Callable[[], None]], None]] = []

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> Headscale:
        """Write config + policy, start `headscale serve`, wait until /health passes."""
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.policy_path.write_text(json.dumps(self.policy, indent=2))
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [str(self.binary), "-c", str(self.config_path), "serve"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir, preexec_fn=die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + self._start_timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise HeadscaleError(f"headscale {self.version} exited with {self._proc.returncode} at start: {self._tail()}")
            try:
                r = httpx.get(f"{self.url}/health", timeout=2)
                if r.status_code == 200 and r.json().get("status") == "pass":
                    return self
                last = f"HTTP {r.status_code} {r.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.3)
        self.stop()
        raise HeadscaleError(f"headscale {self.version} not healthy at {self.url}/health within {self._start_timeout}s ({last}): {self._tail()}")

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, bounded wait, then SIGKILL."""
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)

    def close(self) -> None:
        """Stop the server and remove its temp dir (if we made it)."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Headscale:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tail(self, lines: int = 15) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    # -- CLI -------------------------------------------------------------------
    def cli(self, *args: str, json_output: bool = True, timeout: float = 30) -> Any:
        """Run `headscale -c CONFIG ARGS [-o json]`; parsed JSON or text. Keys never appear in errors."""
        argv = [str(self.binary), "-c", str(self.config_path), *args]
        if json_output:
            argv += ["-o", "json"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.workdir)
        if proc.returncode != 0:
            raise HeadscaleError(f"`headscale {' '.join(args[:2])}` failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-800:]}")
        if not json_output:
            return proc.stdout
        try:
            return json.loads(proc.stdout)
        except ValueError as exc:
            raise HeadscaleError(f"`headscale {' '.join(args[:2])}` printed no JSON: {proc.stdout[:200]!r}") from exc

    def users(self) -> list[dict[str, Any]]:
        return self.cli("users", "list") or []

    def create_user(self, name: str) -> str:
        """Create user `name` (or find it); returns its numeric id, as preauth_key accepts."""
        for user in self.users():
            if user.get("name") == name:
                return str(user["id"])
        return str(self.cli("users", "create", name)["id"])

    def _user_id(self, user: str) -> str:
        if user.isdigit():
            return user
        return self.create_user(user)

    def preauth_key(self, user: str, *, tags: Iterable[str] = (), reusable: bool = True, ephemeral: bool = True, expiration: str = "1h") -> str:
        """A pre-auth key for `user` (name or id); tags like "tag:mcp" make tagged nodes."""
        args = ["preauthkeys", "create", "--user", self._user_id(user), "--expiration", expiration]
        if reusable:
            args.append("--reusable")
        if ephemeral:
            args.append("--ephemeral")
        tags = list(tags)
        for tag in tags:
            if not tag.startswith("tag:"):
                raise ValueError(f"tag {tag!r} must start with 'tag:'")
        if tags:
            args += ["--tags", ",".join(tags)]
        return self.cli(*args)["key"]

    def nodes(self) -> list[dict[str, Any]]:
        return self.cli("nodes", "list") or []

    def delete_node(self, node_id: int | str) -> None:
        self.cli("nodes", "delete", "--identifier", str(node_id), "--force", json_output=False)

    # -- policy ----------------------------------------------------------------
    def set_policy(self, policy: dict[str, Any], timeout: float = 30) -> None:
        """Apply an ACL policy and return once headscale and every lab node run it."""
        text = json.dumps(policy, indent=2)
        candidate = self.workdir / "policy.candidate.json"
        candidate.write_text(text)
        self.cli("policy", "check", "--file", str(candidate), json_output=False)

        def apply() -> None:
            before = len(_log_events(self.log_path))
            os.replace(candidate, self.policy_path)
            assert self._proc is not None
            self._proc.send_signal(signal.SIGHUP)
            self._wait_reloaded(before, timeout)

        waiters = list(self.policy_waiters)
        if waiters:
            # Each waiter snapshots its nodes, calls the next step, then waits.
            def chain(i: int) -> None:
                if i == len(waiters):
                    apply()
                else:
                    waiters[i](lambda: chain(i + 1))

            chain(0)
        else:
            apply()
        self.policy = policy

    def _wait_reloaded(self, log_offset: int, timeout: float) -> None:
        """Wait for headscale's log to show the SIGHUP reload finished (or failed)."""
        deadline = time.monotonic() + timeout
        got_signal_at: float | None = None
        while time.monotonic() < deadline:
            for event in _log_events(self.log_path)[log_offset:]:
                msg = str(event.get("message", ""))
                if event.get("level") in ("error", "fatal") and "polic" in (msg + str(event.get("error", ""))).lower():
                    raise HeadscaleError(f"headscale rejected the policy on reload: {msg}: {event.get('error', '')}")
                if msg.startswith("Policy reload completed"):
                    return
                if msg.startswith("Received SIGHUP") and got_signal_at is None:
                    got_signal_at = time.monotonic()
            # A reload that changes nothing logs no completion line.
            if got_signal_at is not None and time.monotonic() - got_signal_at > 3:
                return
            time.sleep(0.1)
        raise HeadscaleError(f"headscale did not reload the policy within {timeout}s: {self._tail()}")

    def debug(self, path: str) -> str:
        """GET one of headscale's /debug pages (loopback listener)."""
        return httpx.get(f"{self._debug_url}/debug/{path}", timeout=10).text
