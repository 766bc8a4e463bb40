"""botocore's own ECS service model accepts what we render (and refuses what it should)."""

from __future__ import annotations

import copy

import pytest

from mcp_tailnet_ecs import model, templates
from mcp_tailnet_ecs.render import RenderOptions, render
from mcp_tailnet_ecs.validate import validate

from ecs_support import render_options


@pytest.mark.parametrize("name", templates.TASK_DEFINITIONS)
def test_rendered_task_definition_is_a_valid_register_input(bundle: templates.Bundle, name: str) -> None:
    assert model.model_errors(model.REGISTER_TASK_DEFINITION, bundle[name]) == []


def test_rendered_service_is_a_valid_create_service_input(bundle: templates.Bundle) -> None:
    assert model.model_errors(model.CREATE_SERVICE, bundle[templates.SERVICE]) == []


def test_templates_themselves_validate_with_placeholders() -> None:
    assert validate(templates.load_bundle(), rendered=False) == []


@pytest.mark.parametrize("opts", [
    render_options(state="efs", efs_file_system_id="fs-0123456789abcdef0", efs_access_point_id="fsap-0123456789abcdef0"),
    render_options(owner=None, registry="123456789012.dkr.ecr.eu-west-1.amazonaws.com/mcp"),
    render_options(login_server="http://headscale.internal:8080", hostname="inspector-prod",
                   kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/0123abcd-0123-0123-0123-0123456789ab",
                   secret_arn="arn:aws:secretsmanager:eu-west-1:123456789012:secret:ts/key-AbC123"),
], ids=["efs-state", "ecr-registry", "headscale-kms-full-arn"])
def test_every_render_variant_is_fully_valid(opts: RenderOptions) -> None:
    assert validate(render(opts), rendered=True) == []


def test_model_catches_wrong_type_and_unknown_key(bundle: templates.Bundle) -> None:
    td = copy.deepcopy(bundle[templates.TASK_DEFINITION])
    td["cpu"] = 512
    td["containerDefinitions"][0]["portMapping"] = []
    errors = model.model_errors(model.REGISTER_TASK_DEFINITION, td)
    assert any("cpu" in e and "type" in e for e in errors), errors
    assert any('Unknown parameter' in e and "portMapping" in e for e in errors), errors
