"""Fixtures: the real inspector process against the lab's real kube-apiserver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inspector_support import Inspector, base_env, running_inspector


@pytest.fixture(scope="session")
def inspector(cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inspector]:
    """eks-inspector as cluster admin, both transports, default settings otherwise."""
    with running_inspector(base_env(cluster.kubeconfig), tmp_path_factory.mktemp("inspector")) as server:
        yield server

