"""The hub task (ecs/task-definition.hub.json): `mcp-tailnet-ecs render` writes it, `validate`
passes it, and the upstream-address rule knows the hub sits between the sidecar and the
inspector: the hub off the addresses userspace tailscaled forwards to (docs/design.md facts 1
and 7) and off the gateway's alias, the sidecar aimed at the hub and not past it, the
inspector behind it still off the forwarded addresses."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from mcp_tailnet_ecs import rules, templates
from mcp_tailnet_ecs.cli import main
from mcp_tailnet_ecs.render import HUB_IMAGE, INSPECTOR_IMAGE, render, sidecar_of
from mcp_tailnet_ecs.validate import validate

from ecs_support import render_options

Doc = dict[str, Any]
HUB = templates.HUB_TASK_DEFINITION
RENDER = ["render", "--account-id", "123456789012", "--region", "eu-west-1", "--version", "1.2.3",
          "--owner", "acme", "--eks-cluster", "prod", "--subnet", "subnet-0123456789abcdef0",
          "--security-group", "sg-0123456789abcdef0"]


def _container(td: Doc, image: str) -> Doc:
    return next(c for c in td["containerDefinitions"] if image in c["image"].rsplit("/", 1)[-1])


def _set(container: Doc, name: str, value: str | None) -> None:
    env = container.setdefault("environment", [])
    env[:] = [e for e in env if e["name"] != name] + ([{"name": name, "value": value}] if value is not None else [])


def _upstream_findings(td: Doc) -> list[rules.Finding]:
    return [f for f in rules.check_task_definition(td) if f.rule == "upstream-address"]


def _hub_task() -> Doc:
    return copy.deepcopy(templates.load_bundle()[HUB])


def test_render_writes_the_hub_task_and_validate_passes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main([*RENDER, "--out", str(out)]) == 0, capsys.readouterr().err
    assert str(out / HUB) in capsys.readouterr().out.split()
    td = json.loads((out / HUB).read_text())
    images = {c["name"]: c["image"] for c in td["containerDefinitions"]}
    assert images == {"eks-inspector": "ghcr.io/acme/eks-inspector:1.2.3", "mcp-hub": "ghcr.io/acme/mcp-hub:1.2.3",
                      "tailscale": "ghcr.io/acme/mcp-tailnet-sidecar:1.2.3"}
    assert td["taskRoleArn"] == "arn:aws:iam::123456789012:role/mcp-tailnet-eks-inspector-task"
    assert main(["validate", str(out)]) == 0, capsys.readouterr().err
    assert main(["validate"]) == 0, capsys.readouterr().err  # the templates themselves


def test_the_hub_task_renders_as_its_own_node(tmp_path: Path) -> None:
    """--hostname/--server-hostname name the other tasks and EFS state belongs to the primary one:
    a second task on the same state directory would be the same tailnet node twice."""
    bundle = render(render_options(hostname="tools", server_hostname="stock", state="efs",
                                   efs_file_system_id="fs-0123456789abcdef0", efs_access_point_id="fsap-0123456789abcdef0",
                                   login_server="https://hs.example.com", extra_env=(("SIDECAR_LOG_LEVEL", "DEBUG"),)))
    env = {e["name"]: e["value"] for e in sidecar_of(bundle[HUB])["environment"]}
    assert env["TS_HOSTNAME"] == "mcp-hub"
    assert "TS_STATE_DIR" not in env
    assert not any(v.get("efsVolumeConfiguration") for v in bundle[HUB].get("volumes", []))
    assert env["SIDECAR_LOGIN_SERVER"] == "https://hs.example.com" and env["SIDECAR_LOG_LEVEL"] == "DEBUG"
    assert validate(bundle, rendered=True) == []


def test_the_shipped_hub_task_passes_the_upstream_rule() -> None:
    """Inspector on 127.0.0.4, hub on 127.0.0.3 fronting it, sidecar -> the hub: nothing to report
    (before the rule knew the hub it said the sidecar was not where the inspector listens)."""
    assert _upstream_findings(_hub_task()) == []
    td = _hub_task()
    _set(sidecar_of(td), "SIDECAR_UPSTREAM_URL", "http://127.0.0.3:8080/")
    assert _upstream_findings(td) == []


def test_the_hub_defaults_are_its_own() -> None:
    """No HUB_HOST/HUB_PORT: the hub listens on 127.0.0.3:8080 (mcp_hub.settings), so that is where
    the sidecar must point."""
    td = _hub_task()
    hub = _container(td, HUB_IMAGE)
    _set(hub, "HUB_HOST", None)
    _set(hub, "HUB_PORT", None)
    assert _upstream_findings(td) == []
    _set(hub, "HUB_PORT", "9000")
    found = _upstream_findings(td)
    assert [f.where for f in found] == ["sidecar.environment[SIDECAR_UPSTREAM_URL]"], found
    assert "not where the hub listens (127.0.0.3:9000)" in found[0].message


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "0.0.0.0", "::", "127.0.0.2", "localhost", "10.0.0.5"])
def test_a_hub_where_the_forwarder_or_the_gateway_listens_is_reported(host: str) -> None:
    """The sidecar follows the hub there, so only HUB_HOST is wrong: userspace tailscaled forwards
    unserved tailnet ports to 127.0.0.1/::1 (the gateway's alias is the gateway's)."""
    td = _hub_task()
    _set(_container(td, HUB_IMAGE), "HUB_HOST", host)
    _set(sidecar_of(td), "SIDECAR_UPSTREAM_URL", f"http://{f'[{host}]' if ':' in host else host}:8080")
    found = [f for f in _upstream_findings(td) if "HUB_HOST" in f.where]
    assert found and "loopback alias of its own (127.0.0.3)" in found[0].message, _upstream_findings(td)
    # the whole validation (what render and register run) refuses it too
    broken = dict(templates.load_bundle(), **{HUB: td})
    assert any(f.rule == "upstream-address" and "HUB_HOST" in f.where for f in validate(broken, rendered=False))


@pytest.mark.parametrize("url", ["http://127.0.0.4:8080", "http://127.0.0.3:9090", "http://127.0.0.5:8080",
                                 "http://127.0.0.1:8080", "http://localhost:8080", "http://127.0.0.3",
                                 "https://127.0.0.3:8080", "http://127.0.0.3:8080/mcp", "http://127.0.0.3:8080/?x=1"])
def test_a_sidecar_aimed_past_the_hub_is_reported(url: str) -> None:
    """Straight at the inspector (the hub's other servers skipped), or at an address nothing of ours holds."""
    td = _hub_task()
    _set(sidecar_of(td), "SIDECAR_UPSTREAM_URL", url)
    found = _upstream_findings(td)
    assert [f.where for f in found] == ["sidecar.environment[SIDECAR_UPSTREAM_URL]"], found
    assert "is not where the hub listens (127.0.0.3:8080)" in found[0].message


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "0.0.0.0", "127.0.0.2"])
def test_the_inspector_behind_the_hub_stays_off_the_forwarded_addresses(host: str) -> None:
    td = _hub_task()
    _set(_container(td, INSPECTOR_IMAGE), "INSPECTOR_HOST", host)
    found = _upstream_findings(td)
    assert [f.where for f in found] == [f"containerDefinitions[0](eks-inspector).environment[INSPECTOR_HOST]"], found


def test_a_rendered_hub_task_moved_to_127_0_0_1_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rendered, then edited onto 127.0.0.1 (the sidecar following it) before `register`: `validate`
    (which `register` runs first) names the hub's address."""
    out = tmp_path / "out"
    assert main([*RENDER, "--out", str(out)]) == 0
    td = json.loads((out / HUB).read_text())
    _set(_container(td, HUB_IMAGE), "HUB_HOST", "127.0.0.1")
    _set(sidecar_of(td), "SIDECAR_UPSTREAM_URL", "http://127.0.0.1:8080")
    (out / HUB).write_text(json.dumps(td))
    capsys.readouterr()
    assert main(["validate", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"[upstream-address] {HUB}: containerDefinitions[1](mcp-hub).environment[HUB_HOST]: '127.0.0.1'"), err
