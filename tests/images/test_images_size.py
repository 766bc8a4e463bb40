"""Size budgets (docs/benchmarks.md, "Image size budget"), against the built images."""

from __future__ import annotations

import pytest

from mcp_tailnet_lab import size_budget
from mcp_tailnet_lab.size_budget import MB


@pytest.fixture(scope="module")
def measured(docker_client, release_images, rel) -> size_budget.Measurement:
    return size_budget.measure(docker_client, {d: b.ref for d, b in release_images.items()}, rel)


def test_measurements_are_real(measured):
    """Not vacuous: the parts add up the way the images are built."""
    assert measured.tailscale_binaries > 10 * MB and measured.sidecar_venv > 1 * MB
    # The sidecar is the python base plus the binaries plus its venv, give or take a few files.
    added = measured.sidecar.size - measured.python_size
    assert measured.tailscale_binaries + measured.sidecar_venv <= added + 1 * MB


def test_sidecar_adds_at_most_what_the_gateway_needs(measured):
    row = measured.sidecar
    assert row.ok, (f"{row.image} is {row.size / MB:.1f} MB, budget {row.budget / MB:.1f} MB ({row.rule}); "
                    f"venv {measured.sidecar_venv / MB:.1f} MB\n{size_budget.markdown(measured)}")


def test_inspector_stays_under_one_and_a_half_times_its_base(measured):
    row = measured.inspector
    assert row.ok, (f"{row.image} is {row.size / MB:.1f} MB, budget {row.budget / MB:.1f} MB ({row.rule}); "
                    f"venv {measured.inspector_venv / MB:.1f} MB\n{size_budget.markdown(measured)}")


def test_hub_adds_at_most_its_allowance_over_the_base(measured):
    row = measured.hub
    assert measured.hub_venv > 1 * MB, "not vacuous: the hub's venv was measured"
    assert row.ok, (f"{row.image} is {row.size / MB:.1f} MB, budget {row.budget / MB:.1f} MB ({row.rule}); "
                    f"venv {measured.hub_venv / MB:.1f} MB\n{size_budget.markdown(measured)}")
