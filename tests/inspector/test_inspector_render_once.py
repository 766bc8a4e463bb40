"""Each answer carries its data once: a diagnosis as YAML text only, log lines only in the text.

Sending the same data as text and as structuredContent doubles what some clients put in the
model's context (those that forward both) and halves what fits under the output cap. These
run the renderer in-process; test_inspector_diagnose.py checks the same through the server.
"""

from __future__ import annotations

import json

import yaml

from eks_inspector.render import Document, Renderer, Table, Text

CAP = 64 * 1024
CANARY = "Cnry5d81e0b7"


def _wire(result) -> str:
    return json.dumps(result.model_dump(mode="json", by_alias=True, exclude_none=True))


def diagnosis_like(findings: int = 3) -> dict:
    return {"target": "deployment/web", "namespace": "prod", "rootCause": "Pod/web-1 (container app): OOMKilled",
            "findings": [{"object": f"Pod/web-{i}", "reason": "OOMKilled", "severity": "error",
                          "message": f"killed at 64Mi; env DB_PASSWORD={CANARY}", "container": "app",
                          "lastLogLines": ["starting", f"token: {CANARY}"]} for i in range(findings)]}


def test_a_read_only_document_is_text_that_parses_to_its_data() -> None:
    data = diagnosis_like()
    result = Renderer(CAP).finish(Document(data, title="Diagnosis of\ndeployment/web", notes=["one note"],
                                           structured=False))
    assert result.structured_content is None
    text = result.content[0].text
    assert text.splitlines()[0] == "# Diagnosis of deployment/web"  # one comment line, whatever the title holds
    parsed = yaml.safe_load(text)
    assert parsed["notes"] == ["one note"]
    assert parsed["findings"][0]["message"] == "killed at 64Mi; env DB_PASSWORD=[REDACTED]"
    assert parsed["findings"][0]["lastLogLines"] == ["starting", "token: [REDACTED]"]
    assert CANARY not in _wire(result)  # scrubbed at the exit like every answer


def test_the_same_document_costs_about_half_as_text_only() -> None:
    data = diagnosis_like()
    both = _wire(Renderer(CAP).finish(Document(data, title="Diagnosis of deployment/web")))
    once = _wire(Renderer(CAP).finish(Document(data, title="Diagnosis of deployment/web", structured=False)))
    assert len(once) < 0.6 * len(both), (len(once), len(both))


def test_a_read_only_document_is_capped_with_a_notice() -> None:
    result = Renderer(8 * 1024).finish(Document(diagnosis_like(200), title="Diagnosis", structured=False))
    assert result.structured_content is None
    text = result.content[0].text
    assert len(json.dumps(text)) <= 8 * 1024 and "truncated" in text.splitlines()[-1]
    assert CANARY not in _wire(result)


def test_log_lines_are_sent_once_and_get_the_whole_cap() -> None:
    lines = [f"line {i:05d} {'x' * 40}" for i in range(900)]  # ~45 KiB: over half the cap, under all of it
    result = Renderer(CAP).finish(Text("\n".join(lines), {"namespace": "prod", "sources": [{"pod": "p"}]}))
    text = result.content[0].text
    assert text == "\n".join(lines)  # nothing cut
    assert result.structured_content == {"namespace": "prod", "sources": [{"pod": "p"}]}  # no echo of the text
    assert len(_wire(result)) <= CAP


def test_lists_keep_their_structured_rows() -> None:
    """Tables (and objects) still carry rows and the continue token for programs that page."""
    result = Renderer(CAP).finish(Table(["NAME"], [["a"], ["b"]], continue_token="tok"))
    assert result.structured_content == {"columns": ["NAME"], "rows": [["a"], ["b"]], "continue": "tok"}
