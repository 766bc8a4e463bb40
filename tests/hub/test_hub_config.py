"""Settings and config file: bad input stops the hub at start with one line naming the
key; secrets are never printed; the listen address is never one tailscaled's userspace
forwarder dials (docs/design.md facts 1 and 7)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hub_support import HUB, render_toml, time_server
from mcp_hub import config, settings
from mcp_hub.secret import Secret


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "0.0.0.0", "::", "10.0.0.5", "localhost"])
def test_the_hub_refuses_addresses_reachable_past_the_gateway(tmp_path: Path, host: str) -> None:
    cfg = write(tmp_path, render_toml({}, {"time": time_server()}))
    with pytest.raises(settings.SettingsError, match="^HUB_HOST: "):
        settings.load({"HUB_CONFIG": str(cfg), "HUB_HOST": host})


def test_the_default_listen_address_is_a_loopback_alias(tmp_path: Path) -> None:
    cfg = write(tmp_path, render_toml({}, {"time": time_server()}))
    assert settings.load({"HUB_CONFIG": str(cfg)}).host == "127.0.0.3"


@pytest.mark.parametrize("servers, message", [
    ({"a_b": time_server()}, r"servers\.a_b: a server name"),
    ({"Time": time_server()}, r"servers\.Time: a server name"),
    ({"t": {**time_server(), "comand": "x"}}, r"servers\.t: unknown key\(s\) for a stdio server: comand"),
    ({"t": {"transport": "ws", "url": "ws://x"}}, r"servers\.t\.transport: must be one of"),
    ({"t": {"transport": "streamable-http", "url": "http://u:p@127.0.0.3:1/mcp"}}, r"servers\.t\.url: .*without credentials"),
    ({"t": {**time_server(), "sharing": "pooled"}}, r"servers\.t\.sharing"),
    ({"t": {**time_server(), "call_timeout": 0}}, r"servers\.t\.call_timeout: must be between"),
    ({"t": {**time_server(), "env": {"TOKEN": {"file": "/nonexistent/secret"}}}}, r"servers\.t\.env\.TOKEN: cannot read"),
    ({"t": {**time_server(), "env": {"TOKEN": {"env": "HUB_TEST_UNSET_VARIABLE"}}}}, r"servers\.t\.env\.TOKEN: the environment"),
])
def test_bad_config_names_the_key(tmp_path: Path, servers: dict, message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.load(write(tmp_path, render_toml({}, servers)), env={})


def test_repeated_keys_and_unknown_limits_are_refused(tmp_path: Path) -> None:
    twice = render_toml({}, {"time": time_server()}) + '[servers.time]\ncommand = "/bin/sh"\n'
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(write(tmp_path, twice))
    with pytest.raises(config.ConfigError, match=r"hub: unknown key\(s\) max_childs"):
        config.load(write(tmp_path, render_toml({"max_childs": 3}, {"time": time_server()})))


def test_secrets_are_read_at_start_and_never_printed(tmp_path: Path) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("s3cr3t-from-file\n")
    cfg = config.load(write(tmp_path, render_toml({}, {"t": {**time_server(), "env": {
        "A": {"file": str(secret_file)}, "B": {"env": "HUB_TEST_SECRET"}, "C": "plain"}}})),
        env={"HUB_TEST_SECRET": "s3cr3t-from-env"})
    env = cfg.servers["t"].env
    assert isinstance(env["A"], Secret) and env["A"].value == "s3cr3t-from-file"
    assert env["B"].value == "s3cr3t-from-env" and env["C"] == "plain"
    shown = repr(cfg) + str(cfg.servers["t"]) + f"{env['A']}"
    assert "s3cr3t" not in shown and "<secret from file" in shown


def test_the_command_stops_with_one_line_naming_the_variable(tmp_path: Path) -> None:
    cfg = write(tmp_path, render_toml({}, {"time": time_server()}))
    out = subprocess.run([HUB, "--check-config"], env={"HUB_CONFIG": str(cfg), "HUB_HOST": "127.0.0.1"},
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and out.stderr.startswith("mcp-hub: HUB_HOST: 127.0.0.1 is reachable past the gateway")
    assert len(out.stderr.strip().splitlines()) == 1
    ok = subprocess.run([HUB, "--check-config"], env={"HUB_CONFIG": str(cfg)}, capture_output=True, text=True,
                        timeout=30)
    assert ok.returncode == 0 and "servers: time" in ok.stdout


@pytest.mark.parametrize("value, message", [
    (0, r"hub\.ping_interval: must be between 0\.5 and 3600"),
    (0.1, r"hub\.ping_interval: must be between 0\.5 and 3600"),
    (True, r"hub\.ping_interval: expected a number"),
    ("10", r"hub\.ping_interval: expected a number"),
])
def test_the_ping_interval_is_bounded(tmp_path: Path, value: object, message: str) -> None:
    """A zero interval would ping an upstream in a tight loop; none at all would leave a dead one listed."""
    with pytest.raises(config.ConfigError, match=message):
        config.load(write(tmp_path, render_toml({"ping_interval": value}, {"time": time_server()})))
    assert config.load(write(tmp_path, render_toml({}, {"time": time_server()}))).limits.ping_interval == 10
    assert config.load(write(tmp_path, render_toml({"ping_interval": 2.5}, {"time": time_server()}))
                       ).limits.ping_interval == 2.5
