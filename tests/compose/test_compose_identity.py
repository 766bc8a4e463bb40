"""docker-compose.yml's identity settings (issue 13): SIDECAR_TAILNET_GRANTS on every sidecar and
INSPECTOR_IMPERSONATE on the inspector, off by default, switched from the shell, and accepted by
the settings code each process validates them with."""

from __future__ import annotations

from eks_inspector import config as inspector_config
from eks_inspector.config import Impersonate

from .test_compose_config import BASE, compose_config

ENV = {"TS_AUTHKEY": "file:/dev/null", "INSPECTOR_KUBECONFIG_FILE": "/dev/null"}
SIDECARS = ("sidecar", "example-sidecar")


def test_off_by_default() -> None:
    services = compose_config(BASE, env=ENV)["services"]
    assert services["inspector"]["environment"]["INSPECTOR_IMPERSONATE"] == "off"
    for name in SIDECARS:
        assert services[name]["environment"]["SIDECAR_TAILNET_GRANTS"] == "false"
    assert inspector_config.load(services["inspector"]["environment"] | {"INSPECTOR_KUBECONFIG": ""}).impersonate \
        is Impersonate.OFF


def test_switched_on_from_the_shell() -> None:
    services = compose_config(BASE, env=ENV | {"INSPECTOR_IMPERSONATE": "caller", "SIDECAR_TAILNET_GRANTS": "true"})["services"]
    env = services["inspector"]["environment"]
    assert env["INSPECTOR_IMPERSONATE"] == "caller"
    assert inspector_config.load(env | {"INSPECTOR_KUBECONFIG": ""}).impersonate is Impersonate.CALLER
    for name in SIDECARS:
        assert services[name]["environment"]["SIDECAR_TAILNET_GRANTS"] == "true"
    assert "INSPECTOR_IMPERSONATE" not in services["example-server"].get("environment", {})
