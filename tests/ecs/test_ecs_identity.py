"""ECS identity settings (issue 13): `render --impersonate caller` sets INSPECTOR_IMPERSONATE on the
inspector's own task (never behind mcp-hub, which hands no caller headers on), `--tool-grants`
sets SIDECAR_TAILNET_GRANTS=true on every sidecar; both default off, and a bad value is one line
naming the option. The stack's InspectorImpersonate / ToolGrants parameters are checked against
render in test_ecs_cloudformation.py (deployed into moto)."""

from __future__ import annotations

import json

import pytest

from mcp_tailnet_ecs import cloudformation as cfn
from mcp_tailnet_ecs import templates
from mcp_tailnet_ecs.cli import main
from mcp_tailnet_ecs.render import RenderError, RenderOptions, render, sidecar_of
from mcp_tailnet_ecs.validate import validate

from ecs_support import ACCOUNT, REGION, render_options


def env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("environment", [])}


def inspector_env(td: dict) -> dict[str, str]:
    (c,) = [c for c in td["containerDefinitions"] if c["name"] == "eks-inspector"]
    return env(c)


def test_off_by_default_in_the_templates_and_in_render() -> None:
    for bundle in (templates.load_bundle(), render(RenderOptions(account_id=ACCOUNT, region=REGION, server_image="x/y:1"))):
        assert inspector_env(bundle[templates.TASK_DEFINITION])["INSPECTOR_IMPERSONATE"] == "off"
        for name in templates.TASK_DEFINITIONS:
            if name in bundle:
                assert env(sidecar_of(bundle[name]))["SIDECAR_TAILNET_GRANTS"] == "false", name


def test_impersonate_and_tool_grants_switch_on() -> None:
    bundle = render(render_options(impersonate="caller", tool_grants="true"))
    assert inspector_env(bundle[templates.TASK_DEFINITION])["INSPECTOR_IMPERSONATE"] == "caller"
    for name in templates.TASK_DEFINITIONS:
        assert env(sidecar_of(bundle[name]))["SIDECAR_TAILNET_GRANTS"] == "true", name
        if name != templates.TASK_DEFINITION:
            for c in bundle[name]["containerDefinitions"]:
                assert env(c).get("INSPECTOR_IMPERSONATE", "off") == "off", (name, c["name"])
    assert [str(f) for f in validate(bundle, rendered=True)] == []


@pytest.mark.parametrize("field, value, option", [
    ("impersonate", "on", "--impersonate"), ("impersonate", "system:masters", "--impersonate"),
    ("tool_grants", "yes", "--tool-grants"),
])
def test_bad_values_name_the_option(field: str, value: str, option: str) -> None:
    with pytest.raises(RenderError, match=f"^{option}: "):
        render(RenderOptions(account_id=ACCOUNT, region=REGION, **{field: value}))


def test_cli_options(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["render", "--account-id", ACCOUNT, "--region", REGION, "--eks-cluster", "prod",
                 "--subnet", "subnet-0123456789abcdef0", "--security-group", "sg-0123456789abcdef0",
                 "--impersonate", "caller", "--tool-grants", "--out", str(out)]) == 0
    td = json.loads((out / templates.TASK_DEFINITION).read_text())
    assert inspector_env(td)["INSPECTOR_IMPERSONATE"] == "caller"
    assert env(sidecar_of(td))["SIDECAR_TAILNET_GRANTS"] == "true"
    with pytest.raises(SystemExit):
        main(["render", "--account-id", ACCOUNT, "--region", REGION, "--impersonate", "yes", "--out", str(out)])
    assert "--impersonate" in capsys.readouterr().err


def test_stack_parameters_allow_only_the_known_values() -> None:
    params = cfn.template()["Parameters"]
    assert params[cfn.IMPERSONATE]["AllowedValues"] == ["off", "caller"] and params[cfn.IMPERSONATE]["Default"] == "off"
    assert params[cfn.TOOL_GRANTS]["AllowedValues"] == ["false", "true"] and params[cfn.TOOL_GRANTS]["Default"] == "false"
