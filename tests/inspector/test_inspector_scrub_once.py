"""Cheaper scrubbing of list pages, not weaker: the shortcuts give exactly what the full rules give.

A list page scrubs every cell and every row's object (500 rows a page), so scrub_text skips the
keyed rules for one-word values (they need `:`, `=`, a space or a tab to match anything), and
a row's replaced values are noted in the same pass that scrubs it. Both are checked here
against the full rules on generated input; the one-pass swaps also fix a miss of the old
two-pass walk (two keys that scrub to the same key shifted every value after them).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from eks_inspector.render import Renderer, Table
from eks_inspector.scrub import _scrub_text_all_rules, replaced_values, scrub_text, scrub_tree

# the characters the rules turn on, token prefixes, and ordinary identifier characters
PIECES = ["eyJhbGciOi", "k8s-aws-v1.", "AKIA", "ASIA", "tskey-", "ghp_", "github_pat_", "glpat-", "xoxb-", "sk-",
          "sk_live_", "rk_test_", "AIza", "npm_", "pypi-AgE", "hf_", "SG.", "dop_v1_", "-----BEGIN RSA PRIVATE KEY-----",
          "-----END PRIVATE KEY-----", "password", "token", "Bearer", "basic", "--password", "-p", "://", "@", ":",
          "=", " ", "\t", "\n", "\"", "'", "\\", "/", ".", "_", "-", "[REDACTED]", "PRIVATE KEY"]
TEXT = st.lists(st.one_of(st.sampled_from(PIECES), st.text("abcXYZ019+/=", min_size=1, max_size=40)),
                max_size=12).map("".join)
ONE_WORD = st.lists(st.one_of(st.sampled_from([p for p in PIECES if not set(p) & set(":= \t")]),
                              st.text("abcdefABCDEF0123456789-_./+", min_size=1, max_size=60)),
                    max_size=8).map("".join)


@settings(max_examples=600, deadline=None)
@given(TEXT)
def test_the_shortcut_gives_what_every_rule_gives(text: str) -> None:
    assert scrub_text(text) == _scrub_text_all_rules(text)


@settings(max_examples=600, deadline=None)
@given(ONE_WORD)
def test_one_word_values_take_the_shortcut_and_still_lose_tokens(text: str) -> None:
    assert scrub_text(text) == _scrub_text_all_rules(text)


def test_one_word_tokens_are_still_replaced() -> None:
    for token, marker in ((f"ghp_{'a' * 36}", "[REDACTED:github-token]"),
                          ("AKIAABCDEFGHIJKLMNOP", "[REDACTED:aws-access-key-id]"),
                          ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", "[REDACTED:jwt]"),
                          ("k8s-aws-v1.aHR0cHM6Ly9zdHM", "[REDACTED:eks-token]")):
        assert scrub_text(token) == marker


# ---- a row's replaced values, in one pass ------------------------------------------------

KEYS = st.sampled_from(["name", "value", "key", "Name", "Value", "password", "apiKey", "token", "args", "env",
                        "spec", "labels", "note", "url", "DB_PASSWORD", "mode"])
LEAF = st.one_of(st.sampled_from(["hunter2", "debug", "--password", "--v=2", "DB_PASSWORD", "x", "postgres://a:b@h",
                                  "token=abc", ""]), st.integers(-5, 5), st.booleans(), st.none())
TREE = st.recursive(LEAF, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                 st.dictionaries(KEYS, kids, max_size=4)), max_leaves=20)


def _two_pass(node: Any) -> dict[Any, Any]:
    """The old way: scrub a copy, then walk both side by side."""
    found: dict[Any, Any] = {}

    def walk(before: Any, after: Any) -> None:
        if isinstance(before, dict) and isinstance(after, dict):
            for b, a in zip(before.values(), after.values(), strict=False):
                walk(b, a)
        elif isinstance(before, (list, tuple)) and isinstance(after, list):
            for b, a in zip(before, after, strict=False):
                walk(b, a)
        elif isinstance(before, (str, int, float)) and not isinstance(before, bool) and before != after:
            found[before] = after

    walk(node, scrub_tree(node))
    return found


@settings(max_examples=400, deadline=None)
@given(TREE)
def test_one_pass_swaps_equal_the_two_pass_walk(node: Any) -> None:
    # (these keys never scrub to each other, so the old walk's pairs line up)
    assert replaced_values(node) == _two_pass(node)


def test_keys_that_scrub_alike_do_not_hide_a_credential_cell() -> None:
    """`pass=aaa` and `pass=bbb` both scrub to `pass=[REDACTED]`: the scrubbed copy has one key
    fewer, and the old side-by-side walk paired every later value with the wrong one."""
    obj = {"spec": {"pass=aaa": "v1", "pass=bbb": "v2", "password": "hunter2-4f1c"}}
    assert replaced_values(obj)["hunter2-4f1c"] == "[REDACTED]"
    result = Renderer(64 * 1024).finish(Table(["NAME", "CONN"], [["db", "hunter2-4f1c"]], row_objects=[obj]))
    assert result.structured_content["rows"] == [["db", "[REDACTED]"]]
    assert "hunter2-4f1c" not in json.dumps(result.model_dump(mode="json", by_alias=True))
