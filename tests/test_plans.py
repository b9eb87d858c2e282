import json
import re
import string
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from bot.plans import (
    MAX_REASONS_CHARS,
    Clarification,
    PlanError,
    PlannedStep,
    extract_json_object,
    parse_plan,
    parse_verdict,
    promise_met,
    render_prompt,
    validate_plan,
)
from bot.workflow import QaPolicy

PROMPTS = Path(__file__).resolve().parent.parent / "prompts"
SCHEMA = json.loads((PROMPTS / "plan.schema.json").read_text(encoding="utf-8"))
FENCE = "```"
NO_JSON = "plan: no JSON object found: the message is not JSON and has no ```json block"


def plan_json(*steps, **extra) -> str:
    return json.dumps({"steps": list(steps), **extra})


def step(name, prompt="Do it.", **fields) -> dict:
    return {"name": name, "prompt": prompt, **fields}


def errors_of(text: str) -> list[str]:
    with pytest.raises(PlanError) as caught:
        parse_plan(text, SCHEMA)
    return caught.value.errors


# --- extract_json_object ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('  \n{"a": 1}\n\n', {"a": 1}),
        ('\ufeff{"a": 1}', {"a": 1}),
        (f'Plan:\n{FENCE}json\n{{"a": 1}}\n{FENCE}\n', {"a": 1}),
        (f'{FENCE}json\n{{"a": 1}}\n{FENCE}\nBetter:\n{FENCE}json\n{{"a": 2}}\n{FENCE}', {"a": 2}),
        (f'{FENCE}JSON\n{{"a": 1}}\n{FENCE}', {"a": 1}),
        (f'{FENCE}\n{{"a": 1}}\n{FENCE}', {"a": 1}),
        (f'{FENCE}json\n{{"a": 1}}\n{FENCE}\n{FENCE}\n{{"a": 2}}\n{FENCE}', {"a": 2}),
        (f'{FENCE}json\n{{"a": 1}}\n{FENCE}\n{FENCE}\nnpm test\n{FENCE}', {"a": 1}),
        (f'{FENCE}json\n{{"a": 1}}\n{FENCE}\n{FENCE}python\n{{"a": 2}}\n{FENCE}', {"a": 1}),
        (f'{FENCE}json\n{{"a": 1}}\n{FENCE}\n{FENCE}\n[1, 2]\n{FENCE}', {"a": 1}),
        ('~~~json\n{"a": 1}\n~~~', {"a": 1}),
        (f'````json\n{{"a": "x"}}\n{FENCE}\nstill inside\n````', None),
        (f'{FENCE}json\n{{"a": 1}}', {"a": 1}),
    ],
    ids=[
        "whole", "whole-padded", "whole-bom", "fenced", "last-json-fence-wins", "tag-case",
        "plain-fence-object", "later-plain-object-wins", "plain-non-json-ignored",
        "other-language-ignored", "plain-array-ignored", "tilde-fence", "long-fence-holds-short-one",
        "unclosed-fence",
    ],
)
def test_extract_json_object(text, expected):
    if expected is None:
        with pytest.raises(PlanError) as caught:
            extract_json_object(text)
        assert "not valid JSON" in caught.value.errors[0]
    else:
        assert extract_json_object(text) == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", NO_JSON),
        ("I could not make a plan.", NO_JSON),
        ('{"steps": [}', "plan: no JSON object found: the message is not JSON (as JSON: Expecting value: "
                         "line 1 column 12 (char 11)) and has no ```json block"),
        ("[1, 2]", "plan: expected a JSON object, got an array"),
        ('"steps"', "plan: expected a JSON object, got a string"),
        (f'{FENCE}json\n{{"a": 1}}\n{FENCE}\n{FENCE}json\n{{"a": }}\n{FENCE}',
         "plan: the last ```json block is not valid JSON: Expecting value: line 1 column 7 (char 6)"),
        (f"{FENCE}json\n[1]\n{FENCE}", "plan: the last ```json block holds an array, not an object"),
        (f"{FENCE}python\nprint(1)\n{FENCE}", NO_JSON),
    ],
    ids=["empty", "prose", "broken-whole", "array", "string", "last-json-broken", "json-array", "python-only"],
)
def test_extract_json_object_errors(text, error):
    with pytest.raises(PlanError) as caught:
        extract_json_object(text)
    assert caught.value.errors == [error]
    assert str(caught.value) == f"invalid plan:\n- {error}"


# --- parse_plan ---------------------------------------------------------------------------------


def test_parse_plan_defaults_and_order():
    plan = parse_plan(plan_json(step("Model"), step("API", "  Build it.  ")), SCHEMA)
    assert plan.summary == ""
    assert plan.clarifications == ()
    assert plan.steps == (
        PlannedStep(name="Model", prompt="Do it.", type="code", qa=QaPolicy.FULL, depends_on=()),
        PlannedStep(name="API", prompt="Build it.", depends_on=("Model",)),
    )


def test_parse_plan_reads_every_field_and_keeps_extra_keys_out():
    text = f"""I looked at the code. Here is the plan.

{FENCE}json
{json.dumps({
    "summary": " Adds retries. ",
    "notes": "extra keys are allowed",
    "steps": [
        step("Retry", type="refactor", qa="light", engine="claude", model="sonnet", depends_on=[],
             estimate="1h"),
        step("Tests", qa="skip", depends_on=["Retry"],
             policy={"loop": {"back_to": "Retry"}, "trigger": {"step": "Retry", "when": "always"},
                     "custom": 1}),
    ],
    "clarifications": [
        {"key": "db", "question": "Which database?", "blocking": True, "options": ["sqlite", "postgres"],
         "recommended": "sqlite"},
        {"key": "style", "question": " Tabs? "},
    ],
}, indent=2)}
{FENCE}
"""
    plan = parse_plan(text, SCHEMA)
    assert plan.summary == "Adds retries."
    retry, tests = plan.steps
    assert retry == PlannedStep("Retry", "Do it.", "refactor", QaPolicy.LIGHT, (), "claude", "sonnet", {})
    assert tests.qa is QaPolicy.SKIP
    assert tests.depends_on == ("Retry",)
    assert tests.policy == {
        "loop": {"back_to": "Retry", "max_iterations": 3, "when": "qa_fail"},
        "trigger": {"step": "Retry", "when": "always"},
        "custom": 1,
    }
    assert plan.clarifications == (
        Clarification("db", "Which database?", True, ("sqlite", "postgres"), "sqlite"),
        Clarification("style", "Tabs?"),
    )


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([step("a"), step("b"), step("c")], [(), ("a",), ("b",)]),
        ([step("a"), step("b"), step("c", depends_on=["a"])], [(), (), ("a",)]),
        ([step("a", depends_on=[]), step("b"), step("c")], [(), (), ()]),
        ([step("a"), step("b", depends_on=["a", "a"]), step("c", depends_on=["b", "a"])],
         [(), ("a",), ("b", "a")]),
        ([step("c", depends_on=["a"]), step("a", depends_on=[])], [("a",), ()]),
    ],
    ids=["sequential-by-default", "explicit-anywhere-means-explicit", "explicit-empty",
         "duplicates-dropped", "later-step-as-dependency"],
)
def test_parse_plan_dependencies(steps, expected):
    plan = parse_plan(plan_json(*steps), SCHEMA)
    assert [s.depends_on for s in plan.steps] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"summary": "x"}', ["plan: 'steps' is a required property"]),
        ('{"steps": []}', ["steps: [] should be non-empty"]),
        ('{"steps": {}}', ["steps: {} is not of type 'array'"]),
        (plan_json(step("a"), step("b"), step("c", qa="loose")),
         ["steps[2].qa: 'loose' is not one of ['skip', 'light', 'full']"]),
        (plan_json({"name": "a"}), ["steps[0]: 'prompt' is a required property"]),
        (plan_json({"prompt": "x"}), ["steps[0]: 'name' is a required property"]),
        (plan_json(step("a", "")), ["steps[0].prompt: '' should be non-empty"]),
        (plan_json(step("a", " \n\t")), ["steps[0].prompt: must not be blank"]),
        (plan_json(step("")), ["steps[0].name: '' should be non-empty"]),
        (plan_json(step("x" * 81)), [f"steps[0].name: '{'x' * 81}' is too long"]),
        (plan_json(step("a", engine="cursor")),
         ["steps[0].engine: 'cursor' is not one of ['codex', 'claude', 'opencode', 'gemini', 'aider', 'command']"]),
        (plan_json(step("a", depends_on="b")), ["steps[0].depends_on: 'b' is not of type 'array'"]),
        (plan_json(step("a", model="")), ["steps[0].model: '' should be non-empty"]),
        (plan_json("do everything"), ["steps[0]: 'do everything' is not of type 'object'"]),
        (plan_json(step("a"), summary=3), ["summary: 3 is not of type 'string'"]),
        (plan_json(step("a", policy={"loop": {"back_to": "a", "max_iterations": 0}})),
         ["steps[0].policy.loop.max_iterations: 0 is less than the minimum of 1"]),
        (plan_json(step("a", policy={"loop": {"back_to": "a", "when": "sometimes"}})),
         ["steps[0].policy.loop.when: 'sometimes' is not one of ['qa_fail', 'always']"]),
        (plan_json(step("a", policy={"loop": {}})), ["steps[0].policy.loop: 'back_to' is a required property"]),
        (plan_json(step("a"), step("b", policy={"trigger": {"step": "a", "when": "later"}})),
         ["steps[1].policy.trigger.when: 'later' is not one of ['completed', 'failed', 'always']"]),
        (plan_json(step("a"), clarifications=[{"key": "has space", "question": "q"}]),
         ["clarifications[0].key: 'has space' does not match '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'"]),
        (plan_json(step("a"), clarifications=[{"key": "k", "question": "q", "blocking": "yes"}]),
         ["clarifications[0].blocking: 'yes' is not of type 'boolean'"]),
        (plan_json(step("a"), clarifications=[{"key": "k"}]),
         ["clarifications[0]: 'question' is a required property"]),
    ],
    ids=[
        "no-steps", "empty-steps", "steps-not-array", "qa-enum", "no-prompt", "no-name", "empty-prompt",
        "blank-prompt", "empty-name", "long-name", "engine-enum", "depends-on-string",
        "empty-model", "step-not-object", "summary-type", "loop-iterations", "loop-when", "loop-back-to",
        "trigger-when", "clarification-key", "clarification-blocking", "clarification-question",
    ],
)
def test_schema_violations_name_their_path(text, expected):
    assert errors_of(text) == expected


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([step("Build"), step("Test"), step("build")], ["steps[2].name: 'build' duplicates steps[0].name"]),
        ([step(" a")], ["steps[0].name: ' a' must be one line without leading or trailing spaces"]),
        ([step("a\nb")], ["steps[0].name: 'a\\nb' must be one line without leading or trailing spaces"]),
        ([step("   ")], ["steps[0].name: '   ' must be one line without leading or trailing spaces"]),
        ([step("a", depends_on=["ghost"])], ["steps[0].depends_on[0]: no step is named 'ghost'"]),
        ([step("a", depends_on=["a"])], ["steps.depends_on: dependency cycle a -> a"]),
        ([step("a", depends_on=["b"]), step("b", depends_on=["a"])],
         ["steps.depends_on: dependency cycle a -> b -> a"]),
        ([step("a", depends_on=[]), step("b", depends_on=["d"]), step("c", depends_on=["b"]),
          step("d", depends_on=["c", "a"])],
         ["steps.depends_on: dependency cycle b -> d -> c -> b"]),
        ([step("a", depends_on=["b"]), step("b", depends_on=["a"]), step("c", depends_on=["c"])],
         ["steps.depends_on: dependency cycle a -> b -> a", "steps.depends_on: dependency cycle c -> c"]),
        ([step("a", policy={"loop": {"back_to": "ghost"}})],
         ["steps[0].policy.loop.back_to: no step is named 'ghost'"]),
        ([step("a", policy={"loop": {"back_to": "b"}}), step("b")],
         ["steps[0].policy.loop.back_to: 'b' comes after this step; loops go back"]),
        ([step("a", policy={"trigger": {"step": "ghost"}})],
         ["steps[0].policy.trigger.step: no step is named 'ghost'"]),
        ([step("a", policy={"trigger": {"step": "a"}})],
         ["steps[0].policy.trigger.step: a step cannot trigger itself"]),
        ([step(f"s{i}") for i in range(51)], ["steps: 51 steps, at most 50 allowed"]),
    ],
    ids=[
        "duplicate-name", "padded-name", "two-line-name", "blank-name", "unknown-dependency", "self-cycle",
        "two-cycle", "long-cycle", "two-cycles", "loop-unknown", "loop-forward", "trigger-unknown",
        "trigger-self", "too-many-steps",
    ],
)
def test_cross_checks(steps, expected):
    assert errors_of(plan_json(*steps)) == expected


@pytest.mark.parametrize(
    "steps",
    [
        [step(f"s{i}") for i in range(50)],
        [step("a"), step("b", policy={"loop": {"back_to": "b"}})],
        [step("a"), step("b", policy={"loop": {"back_to": "a", "max_iterations": 20, "when": "always"}})],
        [step("a", policy={"trigger": {"step": "b", "when": "completed"}}), step("b")],
        [step("a", depends_on=["b"]), step("b", depends_on=[])],
    ],
    ids=["fifty-steps", "loop-on-itself", "loop-back", "trigger-forward", "dependency-on-later-step"],
)
def test_valid_edge_plans(steps):
    assert len(parse_plan(plan_json(*steps), SCHEMA).steps) == len(steps)


def test_clarification_keys_are_unique():
    text = plan_json(step("a"), clarifications=[{"key": "k", "question": "1"}, {"key": "k", "question": "2"}])
    assert errors_of(text) == ["clarifications[1].key: 'k' duplicates clarifications[0].key"]


def test_every_problem_is_listed_at_once():
    text = plan_json(
        step("a", qa="loose"),
        step("A", "   ", depends_on=["ghost"]),
        step("c", engine="cursor", depends_on=["c"]),
        7,
    )
    assert sorted(errors_of(text)) == sorted([
        "steps[0].qa: 'loose' is not one of ['skip', 'light', 'full']",
        "steps[2].engine: 'cursor' is not one of ['codex', 'claude', 'opencode', 'gemini', 'aider', 'command']",
        "steps[3]: 7 is not of type 'object'",
        "steps[1].name: 'A' duplicates steps[0].name",
        "steps[1].prompt: must not be blank",
        "steps[1].depends_on[0]: no step is named 'ghost'",
        "steps.depends_on: dependency cycle c -> c",
    ])


def test_long_schema_messages_are_shortened():
    [error] = errors_of(plan_json(step("a"), summary=["x" * 1000]))
    assert error.startswith("summary: ['xxx")
    assert len(error) < 400 and error.endswith("…")


def test_validate_plan_takes_decoded_data():
    assert validate_plan({"steps": [step("a")]}, SCHEMA).steps[0].name == "a"
    with pytest.raises(PlanError):
        validate_plan(["not", "a", "plan"], SCHEMA)


def test_realistic_plan_from_disk_schema():
    Draft202012Validator.check_schema(SCHEMA)
    text = (PROMPTS / "plan.md").read_text(encoding="utf-8")
    example = extract_json_object(text)
    Draft202012Validator(SCHEMA).validate(example)
    plan = parse_plan(json.dumps(example), SCHEMA)
    assert [s.name for s in plan.steps] == ["Add retry with backoff to HttpClient", "Test the retry behaviour"]
    assert plan.steps[1].depends_on == ("Add retry with backoff to HttpClient",)
    assert plan.clarifications[0].key == "retry_post"


# --- parse_verdict ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "passed", "reasons"),
    [
        ("Looks correct and tested.\nVERDICT: PASS", True, "Looks correct and tested."),
        ("Tests are missing.\nVERDICT: FAIL", False, "Tests are missing."),
        ("fine\nverdict: pass", True, "fine"),
        ("fine\nVerdict: Pass\n", True, "fine"),
        ("fine\n**VERDICT: PASS**", True, "fine"),
        ("fine\n**VERDICT:** PASS", True, "fine"),
        ("fine\n`VERDICT: PASS`", True, "fine"),
        ("fine\n## VERDICT: PASS", True, "fine"),
        ("fine\n> VERDICT: PASS", True, "fine"),
        ("   VERDICT:PASS   ", True, ""),
        ("VERDICT: PASS.", True, ""),
        ("VERDICT: FAIL - `test_retry` never runs", False, "`test_retry` never runs"),
        ("Draft: VERDICT: PASS\nVERDICT: FAIL\nbecause the retry loop is unbounded.", False,
         "Draft: VERDICT: PASS\nbecause the retry loop is unbounded."),
        ("VERDICT: FAIL\nOn second thought:\nVERDICT: PASS\nAll good.", True,
         "VERDICT: FAIL\nOn second thought:\nAll good."),
        ("Everything looks fine.", False, "QA gave no VERDICT line\n\nEverything looks fine."),
        ("", False, "QA gave no VERDICT line"),
        ("The verdict is PASS", False, "QA gave no VERDICT line\n\nThe verdict is PASS"),
        ("ok\nVERDICT: PASSED", False, "QA verdict is neither PASS nor FAIL: 'VERDICT: PASSED'\n\nok"),
        ("VERDICT:", False, "QA verdict is neither PASS nor FAIL: 'VERDICT:'"),
        ("VERDICT: MAYBE", False, "QA verdict is neither PASS nor FAIL: 'VERDICT: MAYBE'"),
    ],
    ids=[
        "pass", "fail", "lowercase", "titlecase", "bold-line", "bold-label", "code", "heading", "quote",
        "no-space", "trailing-dot", "inline-reason", "last-line-wins-fail", "last-line-wins-pass",
        "missing", "empty", "not-at-line-start", "passed", "empty-word", "maybe",
    ],
)
def test_parse_verdict(message, passed, reasons):
    verdict = parse_verdict(message)
    assert (verdict.passed, verdict.reasons) == (passed, reasons)


@pytest.mark.parametrize("headline", ["", "QA gave no VERDICT line"])
def test_verdict_reasons_are_capped_keeping_the_end(headline):
    body = "start " + "x" * 10_000 + " end"
    message = body if headline else f"{body}\nVERDICT: FAIL"
    reasons = parse_verdict(message).reasons
    assert len(reasons) == MAX_REASONS_CHARS
    assert reasons.startswith(headline or "…")
    assert reasons.endswith("x end")


# --- promise_met --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "promise", "met"),
    [
        ("All done. ALL TESTS PASS", "ALL TESTS PASS", True),
        ("<promise>ALL TESTS PASS</promise>", "ALL TESTS PASS", True),
        ("<promise>\n  ALL TESTS PASS \n</promise>", "ALL TESTS PASS", True),
        ("Done.\n<promise>DONE</promise>", " DONE ", True),
        ("all tests pass", "ALL TESTS PASS", False),
        ("<promise>NOT YET</promise>", "DONE", False),
        ("", "DONE", False),
        ("anything", "", False),
        ("anything", "   ", False),
        ("<promise></promise>", "", False),
        (None, "DONE", False),
    ],
    ids=["substring", "tag", "tag-whitespace", "promise-padding", "case-sensitive", "other-tag", "empty-message",
         "empty-promise", "blank-promise", "empty-tag-empty-promise", "no-message"],
)
def test_promise_met(message, promise, met):
    assert promise_met(message, promise) is met


# --- render_prompt and the templates ------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "values", "expected"),
    [
        ("Hello $name", {"name": "world"}, "Hello world"),
        ("Hello ${name}!", {"name": "world"}, "Hello world!"),
        ("Hello $name", {}, "Hello $name"),
        ("Hello $name", {"name": None}, "Hello "),
        ("Step $n of $total", {"n": 2, "total": 5}, "Step 2 of 5"),
        ("Costs $$5 and $x", {"x": "$y"}, "Costs $5 and $y"),
        ("<!--\n$name is documented here\n-->\nHello $name", {"name": "world"}, "Hello world"),
        ("Hello <!-- kept --> $name", {"name": "w"}, "Hello <!-- kept --> w"),
    ],
    ids=["simple", "braced", "unknown-stays", "none-is-empty", "numbers", "dollars", "leading-comment-dropped",
         "inner-comment-kept"],
)
def test_render_prompt(template, values, expected):
    assert render_prompt(template, **values) == expected


TEMPLATES = sorted(path.name for path in PROMPTS.glob("*.md"))


def documented_placeholders(template: str) -> set[str]:
    comment = re.match(r"\s*<!--(.*?)-->", template, re.DOTALL)
    assert comment, "templates start with an HTML comment documenting their placeholders"
    return set(re.findall(r"^\s*\$([A-Za-z_][A-Za-z0-9_]*)\s", comment[1], re.MULTILINE))


def test_all_templates_present():
    assert TEMPLATES == ["ask.md", "execute.md", "plan.md", "pr.md", "qa.md", "ralph.md"]


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_renders_with_its_documented_placeholders(name):
    template = (PROMPTS / name).read_text(encoding="utf-8")
    documented = documented_placeholders(template)
    body = template[template.index("-->") + 3 :]
    assert documented and set(string.Template(body).get_identifiers()) == documented
    rendered = render_prompt(template, **{key: f"<{key}>" for key in documented})
    assert not re.search(r"\$[A-Za-z_{]", rendered), rendered
    assert "<!--" not in rendered
    for key in documented:
        assert f"<{key}>" in rendered


def test_pr_body_closes_the_issue():
    template = (PROMPTS / "pr.md").read_text(encoding="utf-8")
    body = render_prompt(template, issue_number=42, summary="S", steps_table="T", status_comment_url="https://x/1")
    assert body.startswith("Closes #42\n")
    assert "(https://x/1)" in body


def test_qa_prompt_asks_for_a_parseable_verdict():
    template = (PROMPTS / "qa.md").read_text(encoding="utf-8")
    assert parse_verdict(template).passed is False  # its last line is the FAIL option
    assert "VERDICT: PASS" in template


def test_a_json_object_after_prose_is_the_plan():
    text = "I read the code.\n\n" + json.dumps({"summary": "s", "steps": [step("A")]}, indent=2)
    assert extract_json_object(text)["summary"] == "s"


def test_a_check_only_step_is_marked():
    plan = validate_plan({"summary": "s", "steps": [step("Check", changes_files=False), step("Write")]}, SCHEMA)
    assert [planned.changes_files for planned in plan.steps] == [False, True]
