"""Tables for bot/render/: GitHub limits, check-run schemas, escaping, the status comment."""

from __future__ import annotations

import ast
import json
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest

from bot import render
from bot.render import (
    ACTION_DESCRIPTION_MAX,
    ACTION_IDENTIFIER_MAX,
    ACTION_LABEL_MAX,
    ACTIONS_MAX,
    CHECK_OUTPUT_MAX,
    CHECK_TITLE_MAX,
    COMMENT_BODY_MAX,
    PR_BODY_MAX,
    check_run_actions,
    check_run_payload,
    find_protocol_id,
    format_cost,
    format_tokens,
    pr_body,
    pr_title,
    status_comment,
    status_header,
    status_marker,
    truncate_middle,
)

FIXTURES = Path(__file__).parent / "fixtures" / "github-rest"
PROTOCOL_STATUSES = ["pending", "planning", "planned", "running", "paused", "blocked", "failed", "cancelled", "completed"]
STEP_STATUSES = ["pending", "running", "needs_qa", "completed", "failed", "cancelled", "blocked"]
ZWJ = "\u200d"


def make_protocol(**overrides):
    fields = dict(
        id=12, protocol_name="34-add-login", status="running", kind="run", branch="agent/34-add-login",
        base_branch="main", issue_number=34, pr_number=None, pr_url=None, engine="codex", model=None,
        description=None, tokens_used=0, cost_usd=None, runtime_state={}, created_by="alice",
        updated_at=datetime(2025, 1, 2, 3, 4, tzinfo=timezone.utc),
    )
    return SimpleNamespace(**{**fields, **overrides})


def make_step(index, status="pending", **overrides):
    fields = dict(
        id=index + 100, step_index=index, step_name=f"Step {index + 1}", step_type="code", status=status,
        retries=0, engine_id="codex", model=None, qa_policy="full", summary=None, tokens_used=0,
        cost_usd=None, runtime_state={},
    )
    return SimpleNamespace(**{**fields, **overrides})


def request_schema(name):
    document = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return document["requestBody"]["content"]["application/json"]["schema"]


CREATE_SCHEMA = request_schema("checks-create.json")
UPDATE_SCHEMA = request_schema("checks-update.json")


def schema_errors(schema, payload):
    return [error.message for error in jsonschema.Draft7Validator(schema).iter_errors(payload)]


def unescaped_pipes(row):
    return len(re.findall(r"(?<!\\)\|", row))


# --- check-run status and conclusion ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("status", "kind", "expected"),
    [
        ("pending", "run", ("in_progress", None)),
        ("planning", "run", ("in_progress", None)),
        ("planned", "run", ("in_progress", None)),
        ("planned", "plan", ("completed", "success")),
        ("running", "run", ("in_progress", None)),
        ("paused", "run", ("in_progress", None)),
        ("blocked", "run", ("completed", "action_required")),
        ("failed", "run", ("completed", "failure")),
        ("cancelled", "run", ("completed", "cancelled")),
        ("completed", "run", ("completed", "success")),
        ("completed", "ralph", ("completed", "success")),
        ("something-new", "run", ("in_progress", None)),
    ],
)
def test_check_run_status_and_conclusion(status, kind, expected):
    payload = check_run_payload(make_protocol(status=status, kind=kind), [])
    assert render.check_run_state(make_protocol(status=status, kind=kind)) == expected
    assert (payload["status"], payload.get("conclusion")) == expected
    assert "completed_at" not in payload


@pytest.mark.parametrize("status", PROTOCOL_STATUSES)
@pytest.mark.parametrize(
    ("schema", "head_sha"),
    [(CREATE_SCHEMA, "0123456789abcdef0123456789abcdef01234567"), (UPDATE_SCHEMA, None)],
    ids=["create", "update"],
)
def test_check_run_payload_matches_github_schema(status, schema, head_sha):
    steps = [make_step(0, "completed"), make_step(1, "failed", runtime_state={"verdict": "FAIL"}), make_step(2, "needs_qa")]
    payload = check_run_payload(make_protocol(status=status), steps, head_sha=head_sha, details_url="https://example.test/p/12")
    assert schema_errors(schema, payload) == []


@pytest.mark.parametrize(
    ("schema", "payload"),
    [
        (CREATE_SCHEMA, {"head_sha": "abc"}),
        (CREATE_SCHEMA, {"name": "x", "head_sha": "abc", "status": "completed"}),
        (UPDATE_SCHEMA, {"status": "completed"}),
        (UPDATE_SCHEMA, {"actions": [{"label": "x" * 21, "description": "d", "identifier": "i"}]}),
        (UPDATE_SCHEMA, {"output": {"summary": "x" * 65536}}),
    ],
)
def test_schemas_reject_invalid_bodies(schema, payload):
    assert schema_errors(schema, payload)


@pytest.mark.parametrize(
    ("head_sha", "has_name"),
    [("abc123", True), (None, False)],
)
def test_post_has_name_and_head_sha_patch_has_neither(head_sha, has_name):
    payload = check_run_payload(make_protocol(), [], head_sha=head_sha)
    assert ("name" in payload, "head_sha" in payload) == (has_name, has_name)
    assert payload["external_id"] == "12"
    assert set(payload["output"]) == {"title", "summary", "text"}


@pytest.mark.parametrize(
    ("protocol_name", "expected"),
    [
        ("34-add-login", "agentry: 34-add-login"),
        ("two\nlines", "agentry: two lines"),
        ("x" * 1000, None),
    ],
)
def test_check_run_name(protocol_name, expected):
    name = check_run_payload(make_protocol(protocol_name=protocol_name), [], head_sha="abc")["name"]
    assert name.startswith("agentry: ") and len(name) <= CHECK_TITLE_MAX
    assert expected is None or name == expected


# --- actions --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("protocol_status", "steps", "expected"),
    [
        ("running", [("completed", None), ("running", None)], ["cancel"]),
        ("running", [("needs_qa", None)], ["approve", "cancel"]),
        ("pending", [], ["cancel"]),
        ("paused", [("completed", None)], ["cancel"]),
        ("blocked", [("completed", "PASS"), ("failed", "FAIL")], ["retry", "approve", "cancel"]),
        ("blocked", [("blocked", None)], ["retry", "cancel"]),
        ("blocked", [], ["retry", "cancel"]),
        ("failed", [("failed", None)], ["retry"]),
        ("failed", [], ["retry"]),
        ("completed", [("completed", "PASS"), ("failed", "FAIL")], []),
        ("cancelled", [("failed", None)], []),
        ("blocked", [("failed", None), ("needs_qa", None), ("blocked", None)], ["retry", "approve", "cancel"]),
    ],
)
def test_actions_by_state(protocol_status, steps, expected):
    step_objects = [
        make_step(i, status, runtime_state={"verdict": verdict} if verdict else {})
        for i, (status, verdict) in enumerate(steps)
    ]
    actions = check_run_actions(make_protocol(status=protocol_status), step_objects)
    assert [a["identifier"] for a in actions] == expected


@pytest.mark.parametrize("protocol_status", PROTOCOL_STATUSES)
@pytest.mark.parametrize("step_status", STEP_STATUSES)
@pytest.mark.parametrize("verdict", [None, "PASS", "FAIL"])
def test_actions_respect_github_limits(protocol_status, step_status, verdict):
    steps = [make_step(99_998, step_status, runtime_state={"verdict": verdict} if verdict else {})]
    actions = check_run_actions(make_protocol(status=protocol_status), steps)
    assert len(actions) <= ACTIONS_MAX
    for action in actions:
        assert set(action) == {"label", "description", "identifier"}
        assert 0 < len(action["label"]) <= ACTION_LABEL_MAX
        assert 0 < len(action["description"]) <= ACTION_DESCRIPTION_MAX
        assert action["identifier"] in {"retry", "approve", "cancel"}
        assert len(action["identifier"]) <= ACTION_IDENTIFIER_MAX


@pytest.mark.parametrize(
    ("steps", "retry", "approve"),
    [
        ([("completed", None), ("failed", None), ("blocked", None)], 2, None),
        ([("needs_qa", None), ("failed", "FAIL")], 2, 1),
        ([("completed", "FAIL"), ("running", "FAIL")], None, 2),
        ([], None, None),
    ],
)
def test_action_targets_are_one_based_step_numbers(steps, retry, approve):
    step_objects = [make_step(i, s, runtime_state={"verdict": v} if v else {}) for i, (s, v) in enumerate(steps)]
    found_retry, found_approve = render.step_to_retry(step_objects), render.step_to_approve(step_objects)
    assert (found_retry and render.step_number(found_retry)) == retry or (found_retry is None and retry is None)
    assert (found_approve and render.step_number(found_approve)) == approve or (found_approve is None and approve is None)


# --- size limits ------------------------------------------------------------------------------------------

def huge_protocol(**overrides):
    iterations = [
        {"iteration": n, "exit_code": n % 2, "promise_met": False,
         "feedback": [{"command": "pytest -q", "exit_code": 1, "output_tail": "E" * 10_000}]}
        for n in range(1, 401)
    ]
    return make_protocol(
        status="blocked", kind="ralph", description="d" * 50_000, tokens_used=123_456_789, cost_usd=1234.5,
        runtime_state={"blocked_reason": "r" * 50_000, "iterations": iterations}, **overrides,
    )


def huge_steps(count=500, summary_size=10_240):
    return [
        make_step(i, "failed" if i == 250 else "completed", step_name=f"{i} " + "n" * 200,
                  summary=("word @who /agent run | " * 1000)[:summary_size], tokens_used=10_000, cost_usd=0.5,
                  runtime_state={"verdict": "FAIL", "qa_reasons": ["x" * 5000] * 20, "error": "e" * 20_000,
                                 "log_url": "https://example.test/logs/" + "l" * 200})
        for i in range(count)
    ]


@pytest.mark.parametrize("count", [0, 1, 500, 5000])
def test_status_comment_fits_and_keeps_marker_and_header(count):
    protocol = huge_protocol()
    body = status_comment(protocol, huge_steps(count), links={"check_run": "https://example.test/c"}, next_hint="Wait.")
    assert len(body) <= COMMENT_BODY_MAX
    assert body.startswith(status_marker(12) + "\n")
    assert status_header(protocol) in body
    assert find_protocol_id(body) == 12


@pytest.mark.parametrize("count", [0, 500, 5000])
def test_check_output_fits_and_keeps_header(count):
    payload = check_run_payload(huge_protocol(), huge_steps(count), head_sha="abc")
    output = payload["output"]
    assert len(output["summary"]) <= CHECK_OUTPUT_MAX and len(output["text"]) <= CHECK_OUTPUT_MAX
    assert len(output["title"]) <= CHECK_TITLE_MAX
    assert status_header(huge_protocol()) in output["summary"]
    assert schema_errors(CREATE_SCHEMA, payload) == []


@pytest.mark.parametrize("count", [0, 500, 5000])
def test_pr_body_fits_and_closes_the_issue(count):
    body = pr_body(huge_protocol(), huge_steps(count), issue_number=34,
                   status_comment_url="https://example.test/c", summary="s" * 100_000)
    assert len(body) <= PR_BODY_MAX
    assert body.startswith("Closes #34")


def test_small_comment_keeps_full_summaries_and_says_nothing_was_trimmed():
    steps = [make_step(0, "completed", summary="All **done**.")]
    body = status_comment(make_protocol(), steps)
    assert "All **done**." in body
    assert "shortened" not in body


def test_large_comment_says_it_was_shortened():
    body = status_comment(huge_protocol(), huge_steps(500))
    assert "shortened to fit" in body


# --- markers ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (status_marker(1), 1),
        (status_marker(12) + "\n### ✅ done", 12),
        ("  \n" + status_marker(10**9), 10**9),
        ("", None),
        (None, None),
        ("Thanks! Looks good.", None),
        ("<!-- agentry:status protocol=abc -->", None),
        ("<!-- other-bot:status protocol=3 -->", None),
        ("> quoted\n" + status_marker(5), None),
        ("<!-- agentry:status -->", None),
    ],
)
def test_find_protocol_id(body, expected):
    assert find_protocol_id(body) == expected


@pytest.mark.parametrize("protocol_id", [1, 12, 987654])
def test_marker_round_trip_through_status_comment(protocol_id):
    body = status_comment(make_protocol(id=protocol_id), [make_step(0)])
    assert find_protocol_id(body) == protocol_id
    assert body.splitlines()[0] == status_marker(protocol_id)


@pytest.mark.parametrize(
    "field",
    ["step_name", "summary"],
)
def test_echoed_markers_are_stripped(field):
    step = make_step(0, "completed", **{field: "x <!-- agentry:status protocol=99 --> y"})
    body = status_comment(make_protocol(description="<!-- agentry:status protocol=98 -->"), [step])
    assert "protocol=99" not in body and "protocol=98" not in body
    assert body.count("agentry:status") == 1


# --- escaping ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("step_name", "forbidden"),
    [
        ("a | b", None),
        ("a \\| b", None),
        ("ping @octocat please", "@octocat"),
        ("ping @org/team", "@org"),
        ("/agent run now", "/agent run"),
        ("@agentry run", "@agentry"),
        ("<!-- open comment", "<!--"),
        ("</details><details>", "</details><details>"),
        ("`code` and ``more``", None),
        ("multi\nline\r\nname", "\n"),
    ],
)
def test_step_names_are_escaped_in_the_table(step_name, forbidden):
    body = status_comment(make_protocol(), [make_step(0, "running", step_name=step_name)])
    row = next(line for line in body.splitlines() if line.startswith("| 1 |"))
    assert unescaped_pipes(row) == 7
    assert forbidden is None or forbidden not in row


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hi @bob", f"hi @{ZWJ}bob"),
        ("mail bob@example.com", "mail bob@example.com"),
        ("@@bob", f"@@{ZWJ}bob"),
        ("/agent retry 2", f"/{ZWJ}agent retry 2"),
        ("see src/agent/x.py", "see src/agent/x.py"),
        ("https://example.test/a", "https://example.test/a"),
        ("a < b", "a < b"),
        ("<img src=x>", "&lt;img src=x>"),
        ("run `npm install -g @anthropic-ai/claude-code` as @bob", "run `npm install -g @anthropic-ai/claude-code` as @\u200dbob"),
        ("``a ` /agent run`` then /agent run", "``a ` /agent run`` then /\u200dagent run"),
        ("`unclosed @x", "`unclosed @\u200dx"),
        ("line\nbreak", "line break"),
        (None, ""),
        (0, "0"),
    ],
)
def test_inline_text(text, expected):
    assert render.inline_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello @bob", f"hello @{ZWJ}bob"),
        ("```\nx @bob inside code\n```", "```\nx @bob inside code\n```"),
        ("```\n@bot run\n```", f"```\n@{ZWJ}bot run\n```"),
        ("```\n/agent run\n```", f"```\n/{ZWJ}agent run\n```"),
        ("```py\nopen fence", "```py\nopen fence\n```"),
        ("~~~~\n```\nstill code\n~~~~\nafter @x", f"~~~~\n```\nstill code\n~~~~\nafter @{ZWJ}x"),
        ("<details>\nx", "&lt;details>\nx"),
        ("a\r\nb", "a\nb"),
    ],
)
def test_markdown_block(text, expected):
    assert render.markdown_block(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pytest -q", "`pytest -q`"),
        ("echo `x`", "`` echo `x` ``"),
        ("a ``` b", "````a ``` b````"),
        ("", "`  `"),
    ],
)
def test_code_span(text, expected):
    assert render.code_span(text) == expected


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("a|b", "a\\|b"),
        ("a\\|b", "a\\|b"),
        ("a\\\\|b", "a\\\\\\|b"),
        ("no pipes", "no pipes"),
    ],
)
def test_escape_pipes(cell, expected):
    assert render.escape_pipes(cell) == expected


def test_description_and_creator_do_not_ping():
    body = status_comment(make_protocol(description="@team /agent cancel", created_by="alice"), [])
    assert "@team" not in body and "/agent cancel\n" not in body and "@alice" not in body
    assert f"@{ZWJ}alice" in body


# --- status comment content ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("status", "emoji"),
    [("pending", "⏳"), ("planning", "🧠"), ("planned", "📋"), ("running", "🔄"), ("paused", "⏸️"),
     ("blocked", "🚧"), ("failed", "❌"), ("cancelled", "🚫"), ("completed", "✅")],
)
def test_header_has_emoji_name_and_state(status, emoji):
    header = status_header(make_protocol(status=status))
    assert header == f"### {emoji} 34-add-login · {status}"


@pytest.mark.parametrize(
    ("step_status", "runtime_state", "qa_policy", "status_cell", "qa"),
    [
        ("pending", {}, "full", "⏳ pending", "—"),
        ("running", {}, "full", "🔄 running", "—"),
        ("needs_qa", {}, "full", "🔍 needs QA", "🔍 waiting"),
        ("completed", {"verdict": "PASS"}, "full", "✅ completed", "✅ PASS"),
        ("completed", {}, "skip", "✅ completed", "⏭️ skipped"),
        ("failed", {"verdict": "fail"}, "full", "❌ failed", "❌ FAIL"),
        ("cancelled", {}, "light", "🚫 cancelled", "—"),
        ("blocked", {}, "full", "🚧 blocked", "—"),
    ],
)
def test_step_rows(step_status, runtime_state, qa_policy, status_cell, qa):
    step = make_step(2, step_status, runtime_state=runtime_state, qa_policy=qa_policy, tokens_used=1234, cost_usd=0.5)
    body = status_comment(make_protocol(), [step])
    assert f"| 3 | Step 3 | {status_cell} | {qa} | 1.2k | $0.50 |" in body


@pytest.mark.parametrize(
    ("status", "steps", "commands"),
    [
        ("blocked", [("completed", None), ("failed", "FAIL")], ["retry 2", "approve 2", "stop", "cancel"]),
        ("blocked", [], ["retry", "stop", "cancel"]),
        ("failed", [("blocked", None)], ["retry 1"]),
        ("blocked", [("blocked", "QA_ERROR")], ["qa 1", "stop", "cancel"]),
        ("running", [("needs_qa", None)], ["approve 1", "pause", "stop", "cancel"]),
        ("paused", [], ["resume", "stop", "cancel"]),
        ("pending", [], ["cancel"]),
        ("planned", [], ["cancel"]),
        ("cancelled", [], ["run"]),
        ("completed", [("completed", "PASS")], ["open-pr"]),
    ],
)
def test_what_to_do_next(status, steps, commands):
    states = {None: {}, "QA_ERROR": {"qa_error": "claude: API Error: 500"}}
    step_objects = [make_step(i, s, runtime_state=states.get(v, {"verdict": v})) for i, (s, v) in enumerate(steps)]
    protocol = make_protocol(status=status)
    assert [command for command, _ in render.next_commands(protocol, step_objects)] == commands
    body = status_comment(protocol, step_objects)
    for command in commands:
        assert f"- `/agent {command}` — " in body


def test_blocked_comment_explains_the_reason_before_the_table():
    step = make_step(1, "failed", runtime_state={"verdict": "FAIL", "qa_reasons": ["no tests"], "error": "boom"})
    protocol = make_protocol(status="blocked", runtime_state={"blocked_reason": "QA failed on step 2"})
    body = status_comment(protocol, [make_step(0, "completed"), step])
    assert "> [!WARNING]" in body and "QA failed on step 2" in body and "> - no tests" in body
    assert body.index("`/agent retry 2`") < body.index("| # | Step |")


@pytest.mark.parametrize(
    ("command_prefix", "expected"),
    [("/agent", "`/agent resume`"), ("/bot", "`/bot resume`")],
)
def test_command_prefix(command_prefix, expected):
    body = status_comment(make_protocol(status="paused"), [], command_prefix=command_prefix)
    assert expected in body


@pytest.mark.parametrize(
    ("links", "pr_url", "expected"),
    [
        ({}, None, None),
        ({"check_run": "https://e.test/c"}, None, "🔗 [Check run](https://e.test/c)"),
        ({"logs": "https://e.test/l", "pr": "https://e.test/p"}, None,
         "🔗 [Pull request #7](https://e.test/p) · [Run logs](https://e.test/l)"),
        ({}, "https://e.test/pr", "🔗 [Pull request #7](https://e.test/pr)"),
        ({"dashboard": "https://e.test/a b"}, None, "🔗 [Dashboard](https://e.test/a%20b)"),
    ],
)
def test_links(links, pr_url, expected):
    body = status_comment(make_protocol(pr_url=pr_url, pr_number=7), [], links=links)
    link_lines = [line for line in body.splitlines() if line.startswith("🔗")]
    assert link_lines == ([expected] if expected else [])


def test_totals_prefer_protocol_counters_and_fall_back_to_steps():
    steps = [make_step(0, "completed", tokens_used=1500, cost_usd=0.25), make_step(1, tokens_used=500)]
    assert "**Total:** 1/2 steps completed · 2k tokens · $0.25" in status_comment(make_protocol(), steps)
    protocol = make_protocol(tokens_used=9000, cost_usd=1.0)
    assert "**Total:** 1/2 steps completed · 9k tokens · $1.00" in status_comment(protocol, steps)


def test_next_hint_comes_first():
    body = status_comment(make_protocol(), [], next_hint="Waiting for CI on `abc123`.")
    assert "**What to do next**\n- Waiting for CI on `abc123`.\n- `/agent pause`" in body


def test_status_enum_values_are_accepted():
    class Status:
        value = "completed"

    assert status_header(make_protocol(status=Status())) == "### ✅ 34-add-login · completed"


# --- Ralph -----------------------------------------------------------------------------------------------------

RALPH_ITERATIONS = [
    {"iteration": 1, "exit_code": 0, "promise_met": False,
     "feedback": [{"command": "pytest -q", "exit_code": 1, "output_tail": "FAILED test_x"},
                  {"command": "ruff check | tee", "exit_code": 0, "output_tail": ""}]},
    {"iteration": 2, "exit_code": 3, "promise_met": False, "feedback": []},
    {"iteration": 3, "exit_code": 0, "promise_met": True,
     "feedback": [{"command": "pytest -q", "exit_code": 0, "output_tail": "3 passed @bob"}]},
]


@pytest.mark.parametrize(
    ("expected_line"),
    [
        "#### 🔁 Ralph loop · 3 iterations · promise met ✅",
        "| 1 | ✅ exit 0 | ❌ `pytest -q` · ✅ `ruff check \\| tee` | — |",
        "| 2 | ❌ exit 3 | — | — |",
        "| 3 | ✅ exit 0 | ✅ `pytest -q` | ✅ met |",
        "<details><summary>Feedback output · iteration 3</summary>",
        "3 passed @bob",
    ],
)
def test_ralph_history(expected_line):
    protocol = make_protocol(kind="ralph", runtime_state={"iterations": RALPH_ITERATIONS})
    assert expected_line in status_comment(protocol, []).splitlines()


@pytest.mark.parametrize(
    ("kind", "iterations", "present"),
    [("ralph", RALPH_ITERATIONS, True), ("run", RALPH_ITERATIONS, False), ("ralph", [], False)],
)
def test_ralph_section_only_for_ralph_with_history(kind, iterations, present):
    body = status_comment(make_protocol(kind=kind, runtime_state={"iterations": iterations}), [])
    assert ("Ralph loop" in body) == present


def test_long_ralph_history_keeps_the_latest_iterations():
    body = status_comment(huge_protocol(), [])
    assert "| 400 |" in body
    assert "earlier iterations" in body or "| 1 |" in body


# --- PR --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("issue_number", "closes"),
    [(34, "Closes #34"), (None, None)],
)
def test_pr_body(issue_number, closes):
    body = pr_body(make_protocol(), [make_step(0, "completed", runtime_state={"verdict": "PASS"})],
                   issue_number=issue_number, status_comment_url="https://e.test/c#1", summary="Adds @bob's login.")
    assert (closes in body) if closes else ("Closes" not in body)
    assert "| 1 | Step 1 | ✅ completed | ✅ PASS |" in body
    assert "[status and commands](https://e.test/c#1)" in body
    assert f"@{ZWJ}bob" in body


@pytest.mark.parametrize(
    ("issue_title", "description", "name", "expected"),
    [
        ("Add login", None, "34-add-login", "Add login"),
        (None, "Make it faster\nmore words", "34-x", "Make it faster"),
        (None, None, "34-add-login", "34 add login"),
        ("  spaced\n title ", None, "x", "spaced title"),
        ("t" * 500, None, "x", None),
    ],
)
def test_pr_title(issue_title, description, name, expected):
    title = pr_title(make_protocol(description=description, protocol_name=name), issue_title)
    assert len(title) <= render.PR_TITLE_MAX and "\n" not in title
    assert expected is None or title == expected


# --- replies ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("reply", "must_contain", "must_not_contain"),
    [
        (render.reply_denied("bob", "/agent run @all", "write", "read", "octo/repo"),
         ["@bob", "people with write access to octo/repo", "**read**", "`/agent run @all`"], ["\n/agent"]),
        (render.reply_denied("evil <x>", "/agent run", "write", "none", "o/r"), ["&lt;x>"], ["@evil"]),
        (render.reply_unknown("rety", "retry", "| cmd | what |"),
         ["`/agent rety`", "Did you mean `/agent retry`?", "<details><summary>Available commands</summary>"], []),
        (render.reply_unknown("zzz", None, ""), ["`/agent zzz`"], ["Did you mean"]),
        (render.reply_error("/agent ralph", "missing task for @bob", "/agent ralph <task>"),
         ["`/agent ralph`", f"@{ZWJ}bob", "```text\n/agent ralph <task>\n```"], ["@bob"]),
        (render.reply_conflict("/agent resume", "the protocol is running, not paused"),
         ["`/agent resume`", "running, not paused", "Nothing was changed", "`/agent status`"], []),
        (render.reply_rate_limited("bob", 30), ["@bob", "30 s"], []),
        (render.reply_rate_limited("bob", 125), ["3 min"], []),
        (render.reply_rate_limited("bob", 3600), ["1 h"], []),
        (render.reply_answer("What does @bob do?\n/agent run", "It parses **flags**.", engine="claude",
                             session_note="Ask again to continue."),
         ["> What does @" + ZWJ + "bob do?", "It parses **flags**.", "`claude`", "Ask again to continue."],
         ["\n/agent run", "@bob"]),
    ],
)
def test_replies(reply, must_contain, must_not_contain):
    assert len(reply) <= COMMENT_BODY_MAX
    for text in must_contain:
        assert text in reply
    for text in must_not_contain:
        assert text not in reply


@pytest.mark.parametrize(
    "reply",
    [
        lambda: render.reply_answer("q" * 100_000, "a" * 200_000, engine="codex", session_note=None),
        lambda: render.reply_error("/agent x", "m" * 100_000, "u" * 100_000),
        lambda: render.reply_unknown("x", None, "h" * 100_000),
    ],
)
def test_long_replies_fit(reply):
    assert len(reply()) <= COMMENT_BODY_MAX


# --- small helpers -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("abcdefghij", 10, "abcdefghij"),
        ("abcdefghijklmnopqrstuvwxyz", 20, "abc\n…(truncated)…\nyz"),
        ("abcdefghijklmnopqrstuvwxyz", 5, "abcde"),
        ("abcdefghijklmnopqrstuvwxyz", 0, ""),
    ],
)
def test_truncate_middle(text, limit, expected):
    result = truncate_middle(text, limit)
    assert result == expected and len(result) <= limit


@pytest.mark.parametrize("limit", [17, 18, 50, 99, 100])
def test_truncate_middle_keeps_head_and_tail(limit):
    text = "H" + "x" * 200 + "T"
    result = truncate_middle(text, limit)
    assert len(result) <= limit and result.startswith("H") and result.endswith("T")


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, "0"), (None, "0"), (999, "999"), (1000, "1k"), (1234, "1.2k"), (12_345, "12.3k"),
     (999_949, "999.9k"), (999_950, "1M"), (2_500_000, "2.5M"), (3_000_000_000, "3B")],
)
def test_format_tokens(n, expected):
    assert format_tokens(n) == expected


@pytest.mark.parametrize(
    ("usd", "expected"),
    [(None, "—"), (0, "$0.00"), (0.004, "<$0.01"), (0.01, "$0.01"), (1.5, "$1.50"), (1234.567, "$1,234.57")],
)
def test_format_cost(usd, expected):
    assert format_cost(usd) == expected


def test_limits_match_the_github_schema():
    actions = CREATE_SCHEMA["properties"]["actions"]
    output = CREATE_SCHEMA["properties"]["output"]["properties"]
    assert actions["maxItems"] == ACTIONS_MAX
    assert actions["items"]["properties"]["label"]["maxLength"] == ACTION_LABEL_MAX
    assert actions["items"]["properties"]["description"]["maxLength"] == ACTION_DESCRIPTION_MAX
    assert actions["items"]["properties"]["identifier"]["maxLength"] == ACTION_IDENTIFIER_MAX
    assert output["summary"]["maxLength"] == output["text"]["maxLength"] == CHECK_OUTPUT_MAX
    assert output["annotations"]["maxItems"] == render.ANNOTATIONS_PER_REQUEST


@pytest.mark.parametrize("module", sorted(Path(render.__file__).parent.glob("*.py")), ids=lambda path: path.name)
def test_render_is_pure_standard_library(module):
    tree = ast.parse(module.read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= set(sys.stdlib_module_names) | {"__future__", "bot"}
    assert {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and (node.module or "").startswith("bot") and not node.module.startswith("bot.render.")} <= {"bot.workflow"}
    assert not imported & {"os", "io", "pathlib", "socket", "subprocess", "time", "random"}


def test_a_ralph_loop_out_of_iterations_without_its_promise_concludes_neutral():
    step = make_step(0, "completed", step_type="ralph", policy={"promise": "DONE"},
                     runtime_state={"stopped": "max_iterations", "iterations": [{}, {}]})
    for protocol in (make_protocol(status="completed", kind="ralph"),
                     make_protocol(status="running", kind="ralph", runtime_state={"awaiting_merge": True})):
        assert render.check_run_state(protocol, [step]) == ("completed", "neutral")
        assert check_run_payload(protocol, [step])["conclusion"] == "neutral"
    assert "2 iterations without the promise `DONE`" in status_comment(make_protocol(status="completed"), [step])
    met = make_step(0, "completed", runtime_state={"stopped": "promise"})
    assert render.check_run_state(make_protocol(status="completed", kind="ralph"), [met]) == ("completed", "success")


def test_a_step_whose_qa_could_not_run_says_so_and_offers_qa_again():
    step = make_step(0, "blocked", runtime_state={"qa_error": "claude: API Error: 500 overloaded"})
    body = status_comment(make_protocol(status="blocked"), [step])
    assert "QA could not run (no verdict): `claude: API Error: 500 overloaded`" in body or \
        "QA could not run (no verdict): claude: API Error: 500 overloaded" in body
    assert "FAIL" not in body and "`/agent qa 1`" in body
    [retry, *_] = render.check_run_actions(make_protocol(status="blocked"), [step])
    assert retry["description"] == "Run QA on step 1 again"


def test_every_status_has_its_emoji_check_state_and_commands():
    from bot.workflow import ProtocolStatus, StepStatus

    assert set(render.PROTOCOL_EMOJI) == set(ProtocolStatus) == set(render.CHECK_STATE)
    assert set(render.STEP_EMOJI) == set(StepStatus)
    assert set(render.STATE_COMMANDS) <= set(ProtocolStatus)


@pytest.mark.parametrize(
    ("status", "state", "note"),
    [
        ("running", {}, None),
        ("running", {"stop_requested_by": "alice"},
         "⏹️ Stopping, as alice asked: the running step finishes, then the pull request gets the work done so far."),
        ("blocked", {"stop_requested_by": "alice", "stop_now": True},
         "⏹️ Stopping, as alice asked: its running agent is being stopped, then the pull request gets the work done "
         "so far."),
        ("completed", {"stop_requested_by": "alice", "completion_reason": "manual_stop"},
         "⏹️ Stopped by alice: the pull request holds the work done so far."),
        ("cancelled", {"stop_requested_by": "bob\n<img src=x>", "completion_reason": "manual_stop"},
         "⏹️ Stopped by bob &lt;img src=x> before any work was done."),
        ("cancelled", {"stop_requested_by": "alice"}, None),
        ("completed", {"stop_requested_by": "alice"}, None),
    ],
)
def test_the_stop_note(status, state, note):
    body = status_comment(make_protocol(status=status, runtime_state=state), [make_step(0, "completed")])
    assert (note in body) if note else "⏹️" not in body
