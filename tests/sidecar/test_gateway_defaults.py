"""One source for the gateway's defaults: Settings (sidecar/src/mcp_tailnet_sidecar/settings.py).

GatewayConfig, load() and the low-level bounds (a Tracker's limit, an EventSplitter's
event bound) take their defaults from Settings; the README's settings table must show the
same values, and every variable load() reads must be in it.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from mcp_tailnet_lab.paths import REPO_DIR
from mcp_tailnet_sidecar import settings as settings_module
from mcp_tailnet_sidecar.gateway import GatewayConfig
from mcp_tailnet_sidecar.jsonrpc import Tracker
from mcp_tailnet_sidecar.sessions import SessionTable
from mcp_tailnet_sidecar.settings import NUMBERS, Settings, SettingsError, load
from mcp_tailnet_sidecar.sse import EventSplitter

README = REPO_DIR / "sidecar" / "README.md"
ROW = re.compile(r"^\| `(SIDECAR_[A-Z0-9_]+)` \|([^|]*)\|", re.MULTILINE)


def readme_defaults() -> dict[str, str]:
    return {name: value.strip().strip("`") for name, value in ROW.findall(README.read_text())}


def test_gateway_config_defaults_are_the_settings_defaults():
    settings_fields = {f.name: f for f in dataclasses.fields(Settings)}
    for f in dataclasses.fields(GatewayConfig):
        assert f.name in settings_fields, f"GatewayConfig.{f.name} is not a setting"
        if f.default is not dataclasses.MISSING:
            assert f.default == settings_fields[f.name].default, f.name


def test_load_defaults_are_the_settings_defaults():
    loaded = load({}, mode="gateway")
    for n in NUMBERS:
        assert getattr(loaded, n.field) == getattr(Settings, n.field), n.variable
    assert loaded.paths == Settings.paths
    assert GatewayConfig.from_settings(loaded) == GatewayConfig(upstream_url=Settings.upstream_url)


def test_low_level_bounds_default_to_the_settings():
    assert Tracker().limit == SessionTable().max_pending == Settings.max_pending
    assert EventSplitter().max_event_bytes == Settings.max_event_bytes


def test_from_settings_carries_every_gateway_field():
    changed = {n.field: getattr(Settings, n.field) * 2 + 1 for n in NUMBERS if n.field != "drain_timeout"}
    s = dataclasses.replace(Settings(), upstream_url="http://127.0.0.3:9", paths=("/x",), **changed)
    config = GatewayConfig.from_settings(s)
    for f in dataclasses.fields(GatewayConfig):
        assert getattr(config, f.name) == getattr(s, f.name), f.name


def test_the_readme_table_shows_every_default():
    documented = readme_defaults()
    for n in NUMBERS:
        assert n.variable in documented, f"{n.variable} is not in {README.name}'s settings table"
        assert float(documented[n.variable]) == getattr(Settings, n.field), (n.variable, documented[n.variable])
    assert documented["SIDECAR_PATHS"] == ",".join(Settings.paths)
    assert documented["SIDECAR_UPSTREAM_URL"] == Settings.upstream_url
    read = set(re.findall(r'"(SIDECAR_[A-Z0-9_]+)"', open(settings_module.__file__).read()))
    assert read - set(documented) == set(), "variables load() reads that the README does not list"


@pytest.mark.parametrize("number", NUMBERS, ids=lambda n: n.variable)
def test_each_number_is_validated_against_its_minimum(number):
    with pytest.raises(SettingsError) as err:
        load({number.variable: str(number.minimum - 1)}, mode="gateway")
    assert str(err.value).startswith(number.variable + ":")
    assert getattr(load({number.variable: str(number.minimum)}, mode="gateway"), number.field) == number.minimum
