"""Credential scrubbing: the one place that decides what looks like a credential.

The renderer runs every string of every answer through here (text, tables, YAML/JSON
documents, structuredContent, errors), so no tool can hand out an unscrubbed string.
Two rules, both keeping the key so a reader still knows *what* was set:

- structure: a value under a credential-shaped key (`DB_PASSWORD`, `SecretAccessKey`,
  `token`), or the `value` of a `{name, value}` pair named like one (env vars), or the
  argument after a flag like `--password`, becomes ``[REDACTED]``;
- text: `key=value`, `key: value`, `"key": "value"` with such a key, URL userinfo,
  `Authorization`/`Bearer` credentials keep their key and lose the value
  (``DB_PASSWORD=[REDACTED]``, ``postgres://app:[REDACTED]@db``); PEM private keys and
  well-known token formats have no key, so the marker names the kind
  (``[REDACTED:private-key]``, ``[REDACTED:github-token]``).

Every pattern starts only at the beginning of a run of its characters and has bounded
repetition, and PEM blocks are found with plain string search, so hostile text costs
linear time. Scrubbing is idempotent: a scrubbed string scrubs to itself.
"""

from __future__ import annotations

import bisect
import functools
import re
from typing import Any

MARKER = "[REDACTED]"
_MARKER_PREFIX = "[REDACTED"
#: What a summarised ConfigMap value reads as (render.py): a size, not the value, so not scrubbed.
HIDDEN = re.compile(r"\[hidden(?:: \d+ bytes)?\]")


def marker(kind: str) -> str:
    """The marker for a credential found without a key: it names what was found."""
    return f"[REDACTED:{kind}]"


# ---- which keys name a credential ------------------------------------------------------

# The key, with separators and case removed, ends with one of these ...
_SUFFIXES = (
    "password", "passwd", "passphrase", "secret", "secrets", "token", "tokens", "apikey", "apikeys", "secretkey",
    "accesskey", "privatekey", "signingkey", "encryptionkey", "masterkey", "accountkey", "sharedkey", "sessionkey",
    "clientkey", "authkey", "licensekey", "credential", "credentials", "cookie",
)
# ... or its last word is one of these (too short to match inside a word: bypass, compass, oauth) ...
_LAST_WORDS = frozenset({"pass", "pwd", "auth", "authorization", "pat"})
# ... after dropping one trailing word that only says how the value is spelled (SECRET_KEY_BASE).
_SPELLINGS = frozenset({"value", "data", "base", "b64", "base64", "hex", "string", "str", "plain", "plaintext",
                        "raw", "text"})
# The shell's working directory, not a password.
_NOT_CREDENTIALS = frozenset({"pwd", "oldpwd"})
# Cheap pre-check: a credential key contains one of these.
_HINTS = ("pass", "pwd", "secret", "token", "key", "auth", "cred", "cookie", "pat")
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


@functools.lru_cache(maxsize=8192)
def credential_key(key: str) -> bool:
    """Whether a key (a field name, env var name, annotation key, flag) names a credential."""
    if len(key) > 200:
        return False
    low = key.lower()
    if not any(h in low for h in _HINTS):
        return False
    words = [w.lower() for w in _WORDS.findall(key)]
    if len(words) > 1 and words[-1] in _SPELLINGS:
        words = words[:-1]
    if not words:
        return False
    joined = "".join(words)
    if joined in _NOT_CREDENTIALS:
        return False
    return joined.endswith(_SUFFIXES) or words[-1] in _LAST_WORDS


# ---- text ---------------------------------------------------------------------------------

_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY( BLOCK)?-----")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]{0,40}PRIVATE KEY( BLOCK)?-----")
# What may follow a BEGIN line whose END is missing (a cut log): base64, headers, escaped newlines.
_PEM_BODY = re.compile(r"(?:[A-Za-z0-9+/=:,\-\s]|\\[nr])*")
_PEM_LINE = re.compile(r"[ \t]*(?:\[[^\]\n]{0,200}\][ \t]*)?[A-Za-z0-9+/=]{2,}[ \t]*")
_PEM_MAX = 64 * 1024  # a 16384-bit RSA key is ~12 KiB of PEM; an END farther away is not this key's

_URL_USERINFO = re.compile(
    r"(?<![A-Za-z0-9+.\-])([A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s:/?#@\"'<>\[\]]{0,256}):([^\s/?#\"'<>]{1,1024})@")

_KEY_SEP = re.compile(
    r"(?<![A-Za-z0-9_.])([A-Za-z_][A-Za-z0-9_.\-]{0,127})((?:\\?[\"'])?[ \t]*(?::=|=>|[:=])[ \t]*)")
_FLAG = re.compile(r"(?<![A-Za-z0-9_\-])--?([A-Za-z][A-Za-z0-9_\-]{0,63})[ \t]+(?=[^\s\-])")
_SCHEME = re.compile(r"(?i:bearer|basic|digest|negotiate|token)[ \t]+")
_BARE_VALUE_END = re.compile(r"[\s\"',;&)}\]\\<>]")
_DOUBLE_QUOTED = re.compile(r'(?:[^"\\\n]|\\.)*')
_SINGLE_QUOTED = re.compile(r"[^'\n]*")
_ESCAPED_VALUE = re.compile(r"(?:[^\\\"'\n]|\\(?![\"']))*")
_BEARER = re.compile(r"(?<![A-Za-z0-9_])((?i:bearer)[ \t]+)([A-Za-z0-9._~+/=\-]{16,})")

# One flat alternation of patterns that each start with a literal: the engine then skips
# ahead by first character (a leading lookbehind or a group per kind costs ~20x). The
# kind is found again for the marker, and the word boundary checked, in _token().
_TOKEN_KINDS = (
    ("jwt", r"eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]+"),
    ("eks-token", r"k8s-aws-v1\.[A-Za-z0-9_\-]+"),
    ("aws-access-key-id", r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])"),
    ("tailscale-key", r"tskey-[A-Za-z0-9\-]{6,}"),
    ("github-token", r"gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"),
    ("gitlab-token", r"glpat-[A-Za-z0-9_\-]{20,}"),
    ("slack-token", r"xox[abposr]-[A-Za-z0-9\-]{10,}"),
    ("api-key", r"sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}"),
    ("stripe-key", r"[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"),
    ("google-api-key", r"AIza[0-9A-Za-z_\-]{35}"),
    ("npm-token", r"npm_[A-Za-z0-9]{36}"),
    ("pypi-token", r"pypi-AgE[A-Za-z0-9_\-]{50,}"),
    ("huggingface-token", r"hf_[A-Za-z0-9]{30,}"),
    ("sendgrid-key", r"SG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}"),
    ("digitalocean-token", r"do[por]_v1_[a-f0-9]{64}"),
)
_TOKENS = re.compile("|".join(pattern for _, pattern in _TOKEN_KINDS))
_KIND_OF = tuple((kind, re.compile(pattern)) for kind, pattern in _TOKEN_KINDS)
# Kinds whose prefix also ends ordinary words ("task-…", "…AKIA…" inside base64): a match
# counts only at the start of a word.
_WORD_START = {"aws-access-key-id": re.compile(r"[A-Z0-9]"), "api-key": re.compile(r"[A-Za-z0-9_\-]")}


def _token(m: re.Match[str]) -> str:
    kind = next((k for k, pattern in _KIND_OF if pattern.fullmatch(m.group(0))), "token")
    before = _WORD_START.get(kind)
    if before is not None and m.start() > 0 and before.match(m.string, m.start() - 1):
        return m.group(0)
    return marker(kind)


def _pem(text: str) -> str:
    """Private keys: BEGIN..END; BEGIN without END (a cut log); END without BEGIN (a tail)."""
    if "PRIVATE KEY" not in text:
        return text
    ends = [m for m in _PEM_END.finditer(text)]
    end_starts = [m.start() for m in ends]
    out: list[str] = []
    pos = 0
    for begin in _PEM_BEGIN.finditer(text):
        if begin.start() < pos:
            continue
        i = bisect.bisect_left(end_starts, begin.end())
        if i < len(ends) and ends[i].start() - begin.end() <= _PEM_MAX:
            stop = ends[i].end()
        else:
            stop = _PEM_BODY.match(text, begin.end()).end()  # type: ignore[union-attr]
            if stop > begin.end() and text[stop - 1] == "\n":
                stop -= 1  # keep the line break after the key
        out.append(text[pos:begin.start()])
        out.append(marker("private-key"))
        pos = stop
    out.append(text[pos:])
    text = "".join(out)
    # An END whose BEGIN was cut off: drop the base64 lines right above it.
    if _PEM_END.search(text) is None:
        return text
    lines = text.split("\n")
    for n, line in enumerate(lines):
        if _PEM_END.search(line) is None:
            continue
        lines[n] = _PEM_END.sub(marker("private-key"), line)
        k = n - 1
        while k >= 0 and _PEM_LINE.fullmatch(lines[k]):
            lines[k] = marker("private-key")
            k -= 1
    return "\n".join(lines)


def _value_span(text: str, start: int) -> tuple[int, int]:
    """The value starting at `start`, without its quotes: quoted (also `\\"`-escaped, JSON inside a
    string) up to its closing quote or the line's end; bare up to the first delimiter."""
    if text.startswith(("\\\"", "\\'"), start):
        inner = start + 2
        return inner, _ESCAPED_VALUE.match(text, inner).end()  # type: ignore[union-attr]
    if text.startswith("\"", start):
        return start + 1, _DOUBLE_QUOTED.match(text, start + 1).end()  # type: ignore[union-attr]
    if text.startswith("'", start):
        return start + 1, _SINGLE_QUOTED.match(text, start + 1).end()  # type: ignore[union-attr]
    m = _BARE_VALUE_END.search(text, start)
    return start, m.start() if m else len(text)


def _header_word(key: str) -> bool:
    return key.lower().replace("-", "").replace("_", "").endswith(("authorization", "auth"))


def _credential_like(value: str) -> bool:
    """A header value without a scheme word: a credential has digits or symbols, prose has neither."""
    return len(value) >= 8 and not value.isalpha()


def _redact_values(text: str, pattern: re.Pattern[str]) -> str:
    """Replace the value after each credential-shaped key matched by `pattern` (group 1 is the key)."""
    out: list[str] = []
    pos = 0
    for m in pattern.finditer(text):
        if m.start() < pos or not credential_key(m.group(1)):
            continue
        start = m.end()
        scheme = _SCHEME.match(text, start)
        if scheme:
            start = scheme.end()
        inner, end = _value_span(text, start)
        value = text[inner:end]
        if not value.strip() or value.startswith(_MARKER_PREFIX):
            continue
        if not scheme and _header_word(m.group(1)) and not _credential_like(value):
            continue  # "may require authorization: server message ..." is prose, not a header
        out.append(text[pos:inner])
        out.append(MARKER)
        pos = end
    out.append(text[pos:])
    return "".join(out)


#: Every rule but the token formats needs one of these: a key's separator (`:` `=` `:=` `=>`,
#: also `scheme://user:pw@`) or a space or tab (`--flag value`, `Bearer x`, `PRIVATE KEY`).
_NEEDED_BY_KEYED_RULES = frozenset(":= \t")


def scrub_text(text: str) -> str:
    """Free text (log lines, messages, any string value) with credential-shaped parts replaced."""
    if not text:
        return text
    if _NEEDED_BY_KEYED_RULES.isdisjoint(text):
        # most values of a list (names, uids, IPs, ages, "1/1") are one word: only a token
        # format can be in them, so the other passes would find nothing (same result, less CPU)
        return _TOKENS.sub(_token, text)
    return _scrub_text_all_rules(text)


def _scrub_text_all_rules(text: str) -> str:
    """scrub_text without its shortcut: every rule, in order."""
    text = _pem(text)
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}:{MARKER}@" if not m.group(2).startswith(_MARKER_PREFIX)
                             else m.group(0), text)
    text = _redact_values(text, _KEY_SEP)
    text = _redact_values(text, _FLAG)
    text = _BEARER.sub(lambda m: m.group(1) + MARKER, text)
    return _TOKENS.sub(_token, text)


# ---- structure ----------------------------------------------------------------------------

_PAIRS = (("name", "value"), ("Name", "Value"), ("key", "value"), ("Key", "Value"))
_FLAG_ONLY = re.compile(r"--?([A-Za-z][A-Za-z0-9_\-]{0,63})")


def _hidden(value: Any) -> Any:
    """A credential's value: strings and numbers are replaced; empty and already-hidden values stay."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return value if not value.strip() or value.startswith(_MARKER_PREFIX) or HIDDEN.fullmatch(value) else MARKER
    if isinstance(value, (int, float)):
        return MARKER
    return None


def _credential_flag(item: Any) -> bool:
    if not isinstance(item, str):
        return False
    m = _FLAG_ONLY.fullmatch(item)
    return bool(m) and credential_key(m.group(1))


def scrub_tree(node: Any, key: str | None = None) -> Any:
    """A scrubbed copy of a JSON-like value; `key` is the field it sits under (if any)."""
    return _scrub(node, key, None)


def _leaf(before: Any, after: Any, found: dict[Any, Any] | None) -> Any:
    """`after`, noted in `found` (when kept) if scrubbing changed the string or number `before`."""
    if found is not None and isinstance(before, (str, int, float)) and not isinstance(before, bool) \
            and before != after:
        found[before] = after
    return after


def _scrub(node: Any, key: str | None, found: dict[Any, Any] | None) -> Any:
    if isinstance(node, str):
        return _leaf(node, _hidden(node) if key is not None and credential_key(key) else scrub_text(node), found)
    if isinstance(node, (bool, type(None))):
        return node
    if isinstance(node, (int, float)):
        return _leaf(node, _hidden(node) if key is not None and credential_key(key) else node, found)
    if isinstance(node, (list, tuple)):
        out: list[Any] = []
        after_flag = False
        for item in node:
            if after_flag and isinstance(item, str) and not item.startswith("-"):
                out.append(_leaf(item, _hidden(item), found))
            else:
                out.append(_scrub(item, key, found))  # `passwords: [a, b]`: the items inherit the key
            after_flag = _credential_flag(item)
        return out
    if isinstance(node, dict):
        hide: str | None = None
        for name_key, value_key in _PAIRS:
            name = node.get(name_key)
            if isinstance(name, str) and value_key in node and credential_key(name):
                hide = value_key
                break
        result: dict[Any, Any] = {}
        for k, v in node.items():
            new_key = scrub_text(k) if isinstance(k, str) else k
            if k == hide and _hidden(v) is not None:
                result[new_key] = _leaf(v, _hidden(v), found)
            else:
                result[new_key] = _scrub(v, k if isinstance(k, str) else None, found)
        return result
    return scrub_text(str(node))


def replaced_values(node: Any) -> dict[Any, Any]:
    """Each string or number that scrubbing `node` changed, mapped to what it became.

    A Table cell is a bare value without its field name; a CRD's printer column may point
    at a credential (`.spec.password`). The row's object has the field names, so a cell
    equal to a value scrubbed there is scrubbed the same way. Noted while scrubbing, in
    one pass (this runs for every row of a list page)."""
    found: dict[Any, Any] = {}
    _scrub(node, None, found)
    return found
