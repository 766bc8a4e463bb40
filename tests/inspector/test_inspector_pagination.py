"""Pagination across 2,000+ objects, and the cap: a capped page's continue token resumes exactly."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import kubernetes.client
import pytest

from inspector_support import TRANSPORTS, base_env, ok, running_inspector, text

COUNT = 2100


@pytest.fixture(scope="module")
def many_configmaps(cluster) -> Iterator[tuple[str, set[str]]]:
    """A namespace holding COUNT ConfigMaps, created in parallel through the API."""
    import secrets

    ns = f"inspect-pages-{secrets.token_hex(3)}"
    names = {f"cm-{i:05d}" for i in range(COUNT)}
    with cluster.api_client() as api:
        core = kubernetes.client.CoreV1Api(api)
        core.create_namespace(kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=ns)))

        def create(name: str) -> None:
            core.create_namespaced_config_map(ns, kubernetes.client.V1ConfigMap(
                metadata=kubernetes.client.V1ObjectMeta(name=name, labels={"batch": "pages"}),
                data={"payload": "x" * 64}))

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(create, sorted(names)))
        try:
            yield ns, names
        finally:
            core.delete_collection_namespaced_config_map(ns)
            core.delete_namespace(ns)


def _walk(server, transport: str, args: dict, max_pages: int = 100) -> tuple[list[str], int]:
    seen: list[str] = []
    token = None
    pages = 0
    for _ in range(max_pages):
        result = server.call("get", {**args, **({"continue_token": token} if token else {})}, transport)
        ok(result)
        pages += 1
        sc = result.structured_content
        if "rows" in sc:
            seen += [r[0] for r in sc["rows"]]
        else:
            seen += [n.split("/", 1)[1] for n in sc["names"]]
        token = sc.get("continue")
        if not token:
            return seen, pages
        assert f'continue="{token}"' in text(result)
    raise AssertionError(f"more than {max_pages} pages")


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("output", ["table", "name"])
def test_pages_cover_every_object_once(inspector, many_configmaps, transport: str, output: str) -> None:
    ns, names = many_configmaps
    seen, pages = _walk(inspector, transport, {"resource": "configmaps", "namespace": ns, "limit": 500,
                                               "output": output, "label_selector": "batch=pages"})
    assert len(seen) == len(set(seen)) == COUNT and set(seen) == names
    assert pages == (COUNT + 499) // 500


@pytest.fixture(scope="module")
def small_cap_inspector(cluster, tmp_path_factory):
    env = {**base_env(cluster.kubeconfig), "INSPECTOR_OUTPUT_CAP": "8KiB"}
    with running_inspector(env, tmp_path_factory.mktemp("smallcap")) as server:
        yield server


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_capped_page_continues_exactly(small_cap_inspector, many_configmaps, transport: str) -> None:
    ns, names = many_configmaps
    first = small_cap_inspector.call("get", {"resource": "cm", "namespace": ns, "limit": 500}, transport)
    out = ok(first)
    assert "[truncated: output capped at 8 KiB" in out and "continue" in out
    shown = len(first.structured_content["rows"])
    assert 10 < shown < 500
    wire = len(first.model_dump_json(by_alias=True))
    assert wire < 3 * 8 * 1024
    seen, _ = _walk(small_cap_inspector, transport, {"resource": "cm", "namespace": ns, "limit": 500,
                                                     "label_selector": "batch=pages"}, max_pages=400)
    assert len(seen) == len(set(seen)) == COUNT and set(seen) == names


def test_yaml_list_is_bounded(small_cap_inspector, many_configmaps) -> None:
    ns, _ = many_configmaps
    result = small_cap_inspector.call("get", {"resource": "configmaps", "namespace": ns, "output": "yaml",
                                              "limit": 200})
    out = ok(result)
    assert "truncated" in out and result.structured_content["continue"]
    assert len(result.model_dump_json(by_alias=True)) < 3 * 8 * 1024
