"""Settings from env: a bad value stops the real process with one line naming the variable, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from eks_inspector import __version__
from eks_inspector.config import ConfigError, ConfigMapValues, Impersonate, load

from inspector_support import base_env


@pytest.mark.parametrize(("var", "value"), [
    ("INSPECTOR_PORT", "99999"),
    ("INSPECTOR_PORT", "http"),
    ("INSPECTOR_HOST", "my host"),
    ("INSPECTOR_TRANSPORTS", "sse,websocket"),
    ("INSPECTOR_OUTPUT_CAP", "2MiB"),
    ("INSPECTOR_OUTPUT_CAP", "lots"),
    ("INSPECTOR_NAMESPACES", "default,Bad_NS"),
    ("INSPECTOR_CALL_TIMEOUT", "0"),
    ("INSPECTOR_AUTH", "password"),
    ("INSPECTOR_KUBECONFIG", "/nonexistent/kubeconfig"),
    ("INSPECTOR_ALLOWED_HOSTS", "evil host"),
    ("INSPECTOR_LOG_LEVEL", "chatty"),
    ("INSPECTOR_CONFIGMAP_VALUES", "all"),
    ("INSPECTOR_IMPERSONATE", "yes"),
    ("INSPECTOR_IMPERSONATE", "system:masters"),
])
def test_bad_value_exits_2_naming_the_variable(var: str, value: str) -> None:
    env = {**base_env(None), var: value}
    proc = subprocess.run([sys.executable, "-m", "eks_inspector"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and var in lines[0], proc.stderr


def test_eks_mode_needs_region() -> None:
    with pytest.raises(ConfigError, match="INSPECTOR_AWS_REGION"):
        load({"INSPECTOR_AUTH": "eks", "INSPECTOR_EKS_CLUSTER": "prod"})


def test_defaults() -> None:
    s = load({})
    assert (s.host, s.port, s.output_cap, s.transports) == ("127.0.0.1", 8080, 64 * 1024, ("sse", "streamable-http"))
    assert load({"INSPECTOR_OUTPUT_CAP": "32KiB"}).output_cap == 32 * 1024
    assert s.configmap_values is ConfigMapValues.SUMMARY
    assert load({"INSPECTOR_CONFIGMAP_VALUES": "Show"}).configmap_values is ConfigMapValues.SHOW
    assert s.impersonate is Impersonate.OFF
    assert load({"INSPECTOR_IMPERSONATE": "Caller"}).impersonate is Impersonate.CALLER


def test_version() -> None:
    script = Path(sys.executable).parent / "eks-inspector"  # the console script the image runs
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60, env=base_env(None))
    assert proc.returncode == 0 and proc.stdout.strip() == f"eks-inspector {__version__}"
