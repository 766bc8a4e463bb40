"""The scrubber through the renderer, in-process: every pattern, every answer shape, no false alarms.

Each case goes through `Renderer.finish` (what every tool answer passes through) and the
whole result is searched, text and structuredContent alike. The end-to-end canary test
(test_inspector_canaries.py) does the same through the real server and the lab cluster.
"""

from __future__ import annotations

import base64
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eks_inspector.config import ConfigMapValues
from eks_inspector.render import Document, Objects, Renderer, Table, Text, scrub_text

CANARY = "Cnry7f3a9c2e41"
PEM_BODY = f"MIIEowIBAAKCAQEA{CANARY}x9Qm\nZ3R5b2tlbmJvZHkrbW9yZWJvZHk{CANARY}==\n"
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}-----END RSA PRIVATE KEY-----"


def wire(result) -> str:
    return json.dumps(result.model_dump(mode="json", by_alias=True))


def rendered(text: str) -> tuple[str, str]:
    """(the text a client reads, everything on the wire) for `text` as a log answer."""
    result = Renderer(64 * 1024).finish(Text(text, {"source": text}))
    return result.content[0].text, wire(result)


# (line, what must survive around the removed value)
CASES = [
    (f"DB_PASSWORD={CANARY}", "DB_PASSWORD=[REDACTED]"),
    (f"export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/{CANARY}", "AWS_SECRET_ACCESS_KEY=[REDACTED]"),
    (f'{{"SecretAccessKey": "{CANARY}/k+q", "Region": "eu-west-1"}}', '"SecretAccessKey": "[REDACTED]"'),
    (f"connecting to postgres://app:{CANARY}@db:5432/app", "postgres://app:[REDACTED]@db:5432/app"),
    (f"cache at redis://:{CANARY}@cache:6379/0", "redis://:[REDACTED]@cache:6379/0"),
    (f"loaded key\n{PEM}\nready", "[REDACTED:private-key]"),
    (f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}", "[REDACTED:private-key]"),  # cut by limit_bytes
    (f"{PEM_BODY}-----END PRIVATE KEY-----\nnext", "[REDACTED:private-key]\nnext"),  # cut by tail_lines
    (f'{{"tls": "-----BEGIN EC PRIVATE KEY-----\\n{CANARY}\\n-----END EC PRIVATE KEY-----"}}', "[REDACTED:private-key]"),
    (f"Authorization: Bearer {CANARY}.abc.def", "Authorization: Bearer [REDACTED]"),
    (f"proxy-authorization: Basic {base64.b64encode(CANARY.encode()).decode()}", "Basic [REDACTED]"),
    (f"curl -H 'X-Api-Key: {CANARY}' https://api", "X-Api-Key: [REDACTED]"),
    (f"mysqld --password {CANARY} --port 3306", "--password [REDACTED] --port 3306"),
    (f"java -Dspring.datasource.password={CANARY} -jar app.jar", "-Dspring.datasource.password=[REDACTED]"),
    (f'payload="{{\\"password\\":\\"{CANARY}\\"}}"', '\\"password\\":\\"[REDACTED]\\"'),
    (f"  password: '{CANARY} with spaces'", "password: '[REDACTED]'"),
    (f"https://login.example/token?client_secret={CANARY}&grant_type=x", "client_secret=[REDACTED]&grant_type=x"),
    (f"Server=db;User Id=app;Password={CANARY};", "Password=[REDACTED];"),
    (f"DefaultEndpointsProtocol=https;AccountName=x;AccountKey={CANARY};", "AccountKey=[REDACTED];"),
    (f"SECRET_KEY_BASE={CANARY}", "SECRET_KEY_BASE=[REDACTED]"),
    (f"TS_AUTHKEY=tskey-auth-{CANARY}", "TS_AUTHKEY=[REDACTED]"),
    (f"pushed with ghp_{CANARY}{'a' * 22}", "[REDACTED:github-token]"),
    (f"pushed with github_pat_11AB{CANARY}{'b' * 30}", "[REDACTED:github-token]"),
    (f"gitlab glpat-{CANARY}abcdefghij", "[REDACTED:gitlab-token]"),
    (f"slack xoxb-1234-{CANARY}", "[REDACTED:slack-token]"),
    (f"llm sk-proj-{CANARY}abcdefghijkl", "[REDACTED:api-key]"),
    (f"stripe sk_live_{CANARY}abcdef", "[REDACTED:stripe-key]"),
    (f"maps AIzaSy{CANARY}{'c' * 19}", "[REDACTED:google-api-key]"),
    (f"npm npm_{CANARY}{'d' * 22}", "[REDACTED:npm-token]"),
    (f"hf hf_{CANARY}{'e' * 20}", "[REDACTED:huggingface-token]"),
    (f"key AKIA{CANARY.upper()[:12]}ZZZZ used", "[REDACTED:aws-access-key-id]"),
    (f"sa token eyJhbGciOiJSUzI1NiJ9.eyJ{CANARY}.c2ln{CANARY}", "[REDACTED:jwt]"),
    (f"eks k8s-aws-v1.{CANARY}", "[REDACTED:eks-token]"),
]


@pytest.mark.parametrize(("line", "kept"), CASES, ids=[c[1][:40] for c in CASES])
def test_each_credential_shape_is_replaced_and_keeps_its_key(line: str, kept: str) -> None:
    text, everything = rendered(line)
    assert CANARY.lower() not in everything.lower(), text
    assert kept in text


# Values that look a little like credentials, or sit near them, and must stay readable.
ORDINARY = [
    "LOG_LEVEL=debug", "image: registry.example/api:1.0", "secretName: db-credentials", "PWD=/app",
    "password_file=/run/secrets/db", "DB_HOST=db.internal", "AWS_REGION=eu-west-1", "--v=2",
    "https://example.com:8443/path?x=1&y=2", "Back-off pulling image \"registry.example/api:1.0\"",
    "pull access denied, repository does not exist or may require authorization: server message: "
    "insufficient_scope: authorization failed",
    "Successfully assigned default/api-1 to node-1", "MountVolume.SetUp succeeded for volume \"kube-api-access-x\"",
    "Error: secret \"db\" not found", "DB_PASSWORD: <set to the key 'password' in secret 'db'>",
    "serviceAccountName: default", "task-runner-abcdefghijklmnopqrstuvwxyz", "2026-01-01T00:00:00Z 10.0.0.1:8080",
    "token expired, refreshing", "key=app.kubernetes.io/name", "compass bypass oauth", "publicKey: ssh-ed25519",
    "kube-root-ca.crt", "-----BEGIN CERTIFICATE-----", "http://user@host/path",
]


@pytest.mark.parametrize("line", ORDINARY)
def test_ordinary_values_are_shown_unchanged(line: str) -> None:
    assert scrub_text(line) == line
    assert rendered(line)[0] == line


def deployment() -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "annotations": {"example.com/db-password": CANARY,
                                                    "example.com/settings": json.dumps({"apiToken": CANARY})}},
        "spec": {"template": {"spec": {"containers": [{
            "name": "api", "image": "registry.example/api:1.0",
            "args": ["--token", CANARY, "--v", "2", f"--client-secret={CANARY}"],
            "env": [{"name": "DB_PASSWORD", "value": CANARY}, {"name": "LOG_LEVEL", "value": "debug"},
                    {"name": "DATABASE_URL", "value": f"postgres://app:{CANARY}@db/app"},
                    {"name": "PIN_CODE_SECRET", "value": 4242}],
        }]}}},
    }


def custom_resource() -> dict:
    return {"apiVersion": "canary.example.com/v1", "kind": "DbCluster", "metadata": {"name": "db"},
            "spec": {"credentials": {"username": "app", "password": CANARY}, "tlsKey": PEM,
                     "params": [{"name": "ADMIN_TOKEN", "value": CANARY}, {"name": "pool", "value": "10"}],
                     "tags": [{"Key": "api-key", "Value": CANARY}]}}


@pytest.mark.parametrize("fmt", ["yaml", "json", "name"])
def test_objects_in_every_format_lose_credentials_but_keep_the_rest(fmt: str) -> None:
    r = Renderer(64 * 1024)
    for answer in (Objects([deployment(), custom_resource()], fmt),  # type: ignore[arg-type]
                   Objects([deployment()], fmt, single=True)):  # type: ignore[arg-type]
        result = r.finish(answer)
        assert CANARY not in wire(result)
    dep = r.finish(Objects([deployment()], "json", single=True)).structured_content
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/api:1.0"
    assert container["args"] == ["--token", "[REDACTED]", "--v", "2", "--client-secret=[REDACTED]"]
    assert container["env"] == [{"name": "DB_PASSWORD", "value": "[REDACTED]"}, {"name": "LOG_LEVEL", "value": "debug"},
                                {"name": "DATABASE_URL", "value": "postgres://app:[REDACTED]@db/app"},
                                {"name": "PIN_CODE_SECRET", "value": "[REDACTED]"}]
    cr = r.finish(Objects([custom_resource()], "json", single=True)).structured_content
    assert cr["spec"]["credentials"] == {"username": "app", "password": "[REDACTED]"}
    assert cr["spec"]["params"][1] == {"name": "pool", "value": "10"}


def test_tables_documents_texts_and_errors_too() -> None:
    r = Renderer(64 * 1024)
    table = Table(["NAME", "PASSWORD", "ENDPOINT", "CONN"],
                  [["db", CANARY, f"https://u:{CANARY}@h", "opaque-" + CANARY]],
                  notes=[f"note token={CANARY}"], extra={"password": CANARY},
                  row_objects=[{"spec": {"auth": {"apiKey": "opaque-" + CANARY}}}])
    results = [r.finish(table), r.finish(Document({"spec": custom_resource()["spec"], "env": [f"DB_PASSWORD: {CANARY}"]},
                                                  title=f"token={CANARY}", notes=[f"password={CANARY}"])),
               r.finish(Text(f"DB_PASSWORD={CANARY}", {"sources": [{"pod": f"password={CANARY}"}]},
                             notes=[f"secret={CANARY}"])),
               r.error(f"failed: client_secret={CANARY}\n{PEM}")]
    for result in results:
        assert CANARY not in wire(result)
    assert results[0].structured_content["rows"] == [["db", "[REDACTED]", "https://u:[REDACTED]@h", "[REDACTED]"]]


def configmap() -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config"},
            "data": {"DB_PASSWORD": CANARY, "LOG_LEVEL": "debug", "notes": f"plain text {CANARY}",
                     "app.properties": f"db.url=postgres://app:{CANARY}@db\nlog.level=debug\n"},
            "binaryData": {"blob": base64.b64encode(CANARY.encode()).decode()}}


def test_configmap_values_are_summarised_by_default() -> None:
    r = Renderer(64 * 1024)
    for fmt in ("yaml", "json"):
        result = r.finish(Objects([configmap()], fmt, single=True))  # type: ignore[arg-type]
        body = wire(result)
        assert CANARY not in body and base64.b64encode(CANARY.encode()).decode() not in body and "debug" not in body
        assert "INSPECTOR_CONFIGMAP_VALUES=show" in result.content[0].text
    data = r.finish(Objects([configmap()], "json", single=True)).structured_content
    assert data["data"] == {"DB_PASSWORD": f"[hidden: {len(CANARY)} bytes]", "LOG_LEVEL": "[hidden: 5 bytes]",
                            "notes": f"[hidden: {len(CANARY) + 11} bytes]",
                            "app.properties": f"[hidden: {len(configmap()['data']['app.properties'])} bytes]"}
    assert data["binaryData"] == {"blob": f"[hidden: {len(CANARY)} bytes]"}
    described = r.finish(Document({"kind": "ConfigMap", "name": "app-config", "data": configmap()["data"]}))
    assert CANARY not in wire(described) and "[hidden:" in described.content[0].text


def test_configmap_values_opt_in_still_scrubs_credentials() -> None:
    r = Renderer(64 * 1024, ConfigMapValues.SHOW)
    data = r.finish(Objects([configmap()], "json", single=True)).structured_content["data"]
    assert data["LOG_LEVEL"] == "debug" and data["notes"] == f"plain text {CANARY}"  # not a credential: shown
    assert data["DB_PASSWORD"] == "[REDACTED]"
    assert data["app.properties"] == "db.url=postgres://app:[REDACTED]@db\nlog.level=debug\n"


keys = st.sampled_from(["password", "DB_PASSWORD", "token", "SecretAccessKey", "Authorization", "name", "x"])
pieces = st.one_of(st.text(max_size=30), keys, st.sampled_from(
    ["=", ": ", "\"", "'", "\\\"", "://", ":", "@", "\n", " ", "-----BEGIN PRIVATE KEY-----", "[REDACTED]",
     "-----END PRIVATE KEY-----", "Bearer ", "--", "ghp_" + "a" * 36, "AKIAABCDEFGHIJKLMNOP"]))


@settings(max_examples=400, deadline=None, database=None)
@given(st.lists(pieces, max_size=25).map("".join))
def test_scrubbing_is_idempotent(text: str) -> None:
    """The renderer scrubs at every stage and again at the exit: a second pass must change nothing."""
    once = scrub_text(text)
    assert scrub_text(once) == once


HOSTILE = {
    "identifier run": lambda n: "a" * n,
    "hyphenated run": lambda n: "a-" * (n // 2),
    "candidate keys": lambda n: "password_x=" * (n // 11),
    "unclosed quotes": lambda n: 'password: "' * (n // 11),
    "escaped quotes": lambda n: 'password:\\"' * (n // 11),
    "schemes": lambda n: "a://b:c" * (n // 7),
    "begin without end": lambda n: "-----BEGIN PRIVATE KEY-----!" * (n // 28),
    "ends without begin": lambda n: ("QUJD\n" * 50 + "-----END PRIVATE KEY-----\n") * (n // 276),
    "token prefixes": lambda n: "ghp_" * (n // 4),
    "flags": lambda n: "--password " * (n // 11),
}


@pytest.mark.parametrize("shape", list(HOSTILE))
def test_hostile_text_costs_linear_time(shape: str) -> None:
    """8x the input may cost about 8x the time; quadratic backtracking would cost 64x."""
    make = HOSTILE[shape]

    def cost(n: int) -> float:
        text = make(n)
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            scrub_text(text)
            best = min(best, time.perf_counter() - started)
        return best

    small, large = cost(20_000), cost(160_000)
    assert large / max(small, 1e-4) < 24, f"{shape}: {small:.4f}s -> {large:.4f}s"


def test_server_log_lines_are_scrubbed_too() -> None:
    """An exception can quote what it choked on: the JSON log line gets the same scrubber."""
    import logging

    from eks_inspector.jsonlog import JsonFormatter

    try:
        raise ValueError(f"cannot parse DATABASE_URL=postgres://app:{CANARY}@db")
    except ValueError:
        import sys

        record = logging.LogRecord("eks_inspector", logging.ERROR, __file__, 1, "tool failed with token=%s",
                                   (CANARY,), sys.exc_info())
    line = JsonFormatter().format(record)
    assert CANARY not in line
    entry = json.loads(line)
    assert entry["msg"] == "tool failed with token=[REDACTED]"
    assert entry["error"] == "ValueError: cannot parse DATABASE_URL=postgres://app:[REDACTED]@db"
