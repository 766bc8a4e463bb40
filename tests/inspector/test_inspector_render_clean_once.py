"""A list page's rows are cleaned once, though the page is sized (fit) before it is finished,
and never served from that memo once the Table's rows, objects or columns changed."""

from __future__ import annotations

import json

import pytest

from eks_inspector import render
from eks_inspector.render import Renderer, Table

SECRET = "opaque-4f1c0ffee9d2b7a1"  # only the row's object says this cell is a credential


def page(n: int) -> Table:
    return Table(["NAME", "CONN"], [[f"db-{i}", SECRET] for i in range(n)],
                 row_objects=[{"spec": {"auth": {"apiKey": SECRET}}} for _ in range(n)])


@pytest.fixture
def swaps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts how many row objects were scrubbed (the costly step)."""
    calls: list[int] = []
    original = Renderer._row_swaps

    def counted(obj):  # type: ignore[no-untyped-def]
        calls.append(1)
        return original(obj)

    monkeypatch.setattr(Renderer, "_row_swaps", staticmethod(counted))
    return calls


def test_fit_then_finish_cleans_each_row_once(swaps: list[int]) -> None:
    r, t = Renderer(64 * 1024), page(50)
    assert r.fit(t) is None
    result = r.finish(t)
    assert len(swaps) == 50
    assert SECRET not in json.dumps(result.model_dump(by_alias=True))
    assert result.structured_content["rows"][0] == ["db-0", "[REDACTED]"]


def test_rows_changed_after_fit_are_cleaned_again(swaps: list[int]) -> None:
    r, t = Renderer(64 * 1024), page(3)
    r.fit(t)
    t.rows.append(["db-new", SECRET])  # same list, longer
    t.row_objects.append({"spec": {"auth": {"apiKey": SECRET}}})
    extended = r.finish(t)
    assert extended.structured_content["rows"][-1] == ["db-new", "[REDACTED]"]
    t.rows = [["other", SECRET]]  # another list, same length as none before
    t.row_objects = [{"spec": {"token": SECRET}}]
    replaced = r.finish(t)
    assert replaced.structured_content["rows"] == [["other", "[REDACTED]"]]
    for result in (extended, replaced):
        assert SECRET not in json.dumps(result.model_dump(by_alias=True))


def test_memo_is_per_table(swaps: list[int]) -> None:
    r = Renderer(64 * 1024)
    a, b = page(2), Table(["NAME", "CONN"], [["x", "plain"]])
    r.fit(a)
    assert r.finish(b).structured_content["rows"] == [["x", "plain"]]
    assert render.Table(["A"], [["1"]]).cleaned is None


class _Unwalkable:
    """A leaf that fails when read: proves managedFields is dropped unread."""

    def __str__(self) -> str:
        raise AssertionError("managedFields was walked")


def test_managed_fields_are_dropped_unread() -> None:
    obj = {"metadata": {"name": "p", "managedFields": [{"fieldsV1": {"f:metadata": {"f:x": _Unwalkable()}}}],
                        "labels": {"app": "p"}}}
    clean = render.sanitize(obj)
    assert clean == {"metadata": {"name": "p", "labels": {"app": "p"}}}
    r = Renderer(64 * 1024)
    result = r.finish(Table(["NAME"], [["p"]], row_objects=[obj]))
    assert result.structured_content["rows"] == [["p"]]
