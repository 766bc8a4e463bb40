"""Check documents against botocore's own ECS service model.

This is the same check the AWS SDKs and CLI run before sending a request: it
catches unknown keys and wrong types offline (not enums or maxima; rules.py
covers what matters of those).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import botocore.session
from botocore.model import ServiceModel
from botocore.validate import ParamValidator

REGISTER_TASK_DEFINITION = "RegisterTaskDefinition"
CREATE_SERVICE = "CreateService"


@cache
def ecs_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("ecs")


def model_errors(operation: str, params: dict[str, Any]) -> list[str]:
    """botocore's validation errors for `params` as the input of `operation`, one per line."""
    shape = ecs_model().operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    if not report.has_errors():
        return []
    lines = report.generate_report().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("Parameter validation failed")]
