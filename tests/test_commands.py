import pytest

from bot.commands import (
    COMMANDS,
    ENGINES,
    MAX_COMMANDS,
    Command,
    CommandError,
    added_commands,
    help_text,
    parse_comment,
    required_permission,
)


def only(body, **kwargs):
    results = parse_comment(body, **kwargs)
    assert len(results) == 1, results
    return results[0]


def command(body, **kwargs):
    result = only(body, **kwargs)
    assert isinstance(result, Command), result
    return result


def error(body, **kwargs):
    result = only(body, **kwargs)
    assert isinstance(result, CommandError), result
    return result


def summary(results):
    return [
        (type(item).__name__, item.name, item.line, item.index) for item in results
    ]


@pytest.mark.parametrize(
    "body, text, args",
    [
        ("/agent run fix the bug", "fix the bug", ("fix", "the", "bug")),
        ("/agent run 'fix the bug'", "fix the bug", ("fix the bug",)),
        ('/agent run "fix the bug" now', "fix the bug now", ("fix the bug", "now")),
        ('/agent run "say \\"hi\\""', 'say "hi"', ('say "hi"',)),
        ("/agent run don\\'t break it", "don't break it", ("don't", "break", "it")),
        ('/agent run "it\'s fine"', "it's fine", ("it's fine",)),
        ("/agent run 'a \"b\" c'", 'a "b" c', ('a "b" c',)),
        ("/agent run a''b", "ab", ("ab",)),
        ("/agent run fix #12", "fix #12", ("fix", "#12")),
        ("/agent run    spaced\tout  ", "spaced out", ("spaced", "out")),
        ("/agent run", "", ()),
    ],
)
def test_quoting(body, text, args):
    result = command(body)
    assert (result.name, result.text, result.args) == ("run", text, args)


@pytest.mark.parametrize(
    "body, message",
    [
        ('/agent retry "add tests', "`retry` has an unbalanced quote; close it, or escape it with a backslash"),
        ("/agent approve step\\", "`approve` ends with a backslash that escapes nothing"),
    ],
)
def test_unbalanced_quoting_is_an_error_not_an_exception(body, message):
    result = error(body)
    assert result.message == message
    assert result.usage.startswith("/agent ")


@pytest.mark.parametrize(
    "body, name, text",
    [
        ("/agent ask why doesn't it build?", "ask", "why doesn't it build?"),
        ('/agent run fix the "quoted thing', "run", 'fix the "quoted thing'),
        ("/agent run don't break --engine claude", "run", "don't break"),
        ("/agent answer db it's postgres", "answer", "it's postgres"),
        ("/agent ralph make it work, it's close", "ralph", "make it work, it's close"),
    ],
)
def test_free_text_with_apostrophes_is_prose_not_quoting(body, name, text):
    [command] = parse_comment(body)
    assert isinstance(command, Command), command
    assert (command.name, command.text) == (name, text)


@pytest.mark.parametrize(
    "body, expected",
    [
        ("<!-- /agent run -->", []),
        ("<!--\n/agent run\n-->\n/agent status", [("status", 4)]),
        ("text <!-- hidden\n/agent run\n", []),
        ("/agent plan\n<!-- template note -->\n/agent status", [("plan", 1), ("status", 3)]),
    ],
)
def test_commands_inside_html_comments_are_ignored(body, expected):
    assert [(command.name, command.line) for command in parse_comment(body)] == expected


@pytest.mark.parametrize(
    "body, expected_names",
    [
        ("```\n/agent run\n```\n/agent status", ["status"]),
        ("~~~\n/agent run\n~~~\n/agent status", ["status"]),
        ("```python\n/agent run\n```\n/agent status", ["status"]),
        ("~~~ shell title\n/agent run\n~~~\n/agent status", ["status"]),
        ("   ```\n   /agent run\n   ```\n/agent status", ["status"]),
        ("- list item:\n      ```\n      /agent run\n      ```\n/agent status", ["status"]),
        ("/agent status\n```\n/agent run\n/agent cancel", ["status"]),
        ("````\n```\n/agent run\n````\n/agent status", ["status"]),
        ("```\n/agent run\n~~~\n/agent cancel\n```\n/agent status", ["status"]),
        ("```\n/agent run\n``` not a close\n/agent cancel\n```\n/agent status", ["status"]),
        ("``` inline `code` ```\n/agent status", ["status"]),
        ("``\n/agent status\n``", ["status"]),
        ("> ```\n/agent status", ["status"]),
    ],
)
def test_fenced_code_blocks_are_ignored(body, expected_names):
    assert [item.name for item in parse_comment(body)] == expected_names


@pytest.mark.parametrize(
    "body, expected_names",
    [
        ("> /agent run\n/agent status", ["status"]),
        ("  > /agent run\n/agent status", ["status"]),
        ("> > /agent run\n/agent status", ["status"]),
        (">> /agent run\n/agent status", ["status"]),
        ("> quoted\n>\n> /agent cancel\n\n/agent status", ["status"]),
    ],
)
def test_block_quotes_are_ignored(body, expected_names):
    assert [item.name for item in parse_comment(body)] == expected_names


@pytest.mark.parametrize(
    "body",
    [
        "Try `/agent run` to start.",
        "`/agent run`",
        "please /agent run this",
        "/agentfoo run",
        "/agents run",
        "agent run",
        "",
        "   ",
        "\n\n\t\n",
        "\r\n\r\n",
        "just a normal comment\nwith two lines",
    ],
)
def test_lines_that_are_not_commands(body):
    assert parse_comment(body) == []


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            "/agent plan\n/agent run --engine claude\n/agent status",
            [("Command", "plan", 1, 0), ("Command", "run", 2, 1), ("Command", "status", 3, 2)],
        ),
        (
            "Hello!\n\n/agent rn\ntext\n  /agent status\n",
            [("CommandError", "rn", 3, 0), ("Command", "status", 5, 1)],
        ),
        (
            "/agent pause\r\n/agent resume\r\n",
            [("Command", "pause", 1, 0), ("Command", "resume", 2, 1)],
        ),
        (
            "/agent pause\r/agent resume",
            [("Command", "pause", 1, 0), ("Command", "resume", 2, 1)],
        ),
    ],
)
def test_several_commands_per_comment(body, expected):
    assert summary(parse_comment(body)) == expected


def test_crlf_does_not_leak_into_arguments():
    result = parse_comment("/agent run --engine claude fix it\r\n/agent status\r\n")[0]
    assert (result.text, result.options) == ("fix it", {"engine": "claude"})
    assert result.raw == "/agent run --engine claude fix it"
    assert parse_comment("/agent answer db 'yes please'\r\n")[0].args == ("db", "yes please")


@pytest.mark.parametrize(
    "body, prefix, app_slug, name",
    [
        ("@agentry-bot run", "/agent", "agentry-bot", "run"),
        ("@Agentry-Bot STATUS", "/agent", "agentry-bot", "status"),
        ("@agentry-bot[bot] status", "/agent", "agentry-bot", "status"),
        ("@agentry-bot", "/agent", "agentry-bot", "help"),
        ("@agentry-bot run", "/agent", "@agentry-bot", "run"),
        ("/agent status", "/agent", "agentry-bot", "status"),
        ("/AGENT Status", "/agent", None, "status"),
        ("/agent", "/agent", None, "help"),
        ("   /agent   ", "/agent", None, "help"),
        ("/bot run", "/bot", None, "run"),
        ("!ai status", "!ai", None, "status"),
    ],
)
def test_prefixes_and_mentions(body, prefix, app_slug, name):
    assert command(body, prefix=prefix, app_slug=app_slug).name == name


@pytest.mark.parametrize(
    "body, prefix, app_slug",
    [
        ("@agentry-botty run", "/agent", "agentry-bot"),
        ("@agentry-bot, run", "/agent", "agentry-bot"),
        ("@agentry-bot run", "/agent", None),
        ("@someone-else run", "/agent", "agentry-bot"),
        ("/agent run", "/bot", None),
        ("/bottle run", "/bot", None),
    ],
)
def test_near_miss_prefixes_are_not_commands(body, prefix, app_slug):
    assert parse_comment(body, prefix=prefix, app_slug=app_slug) == []


def test_empty_prefix_is_a_programming_error():
    with pytest.raises(ValueError):
        parse_comment("/agent run", prefix=" ")


@pytest.mark.parametrize(
    "body, name",
    [
        ("/agent RUN", "run"),
        ("/agent Plan", "plan"),
        ("/agent open-pr", "open-pr"),
        ("/agent open_pr", "open-pr"),
        ("/agent openpr", "open-pr"),
        ("/agent Open_PR", "open-pr"),
        ("/agent STOP", "stop"),
        ("/agent rerun", "retry"),
        ("/agent ReRun 2", "retry"),
        ("/agent HELP", "help"),
    ],
)
def test_case_insensitive_names_and_aliases(body, name):
    assert command(body).name == name


@pytest.mark.parametrize(
    "body, name, text, args, options",
    [
        ("/agent run", "run", "", (), {}),
        ("/agent run --engine codex --model gpt-5 do it", "run", "do it", ("do", "it"), {"engine": "codex", "model": "gpt-5"}),
        ("/agent run --engine=Claude --model=opus", "run", "", (), {"engine": "claude", "model": "opus"}),
        ("/agent run do it --engine aider", "run", "do it", ("do", "it"), {"engine": "aider"}),
        ("/agent run --max-tokens 50000 x", "run", "x", ("x",), {"max_tokens": 50000}),
        ("/agent run --max_tokens=7 x", "run", "x", ("x",), {"max_tokens": 7}),
        ("/agent run --ENGINE gemini", "run", "", (), {"engine": "gemini"}),
        ("/agent run -- add a --verbose flag", "run", "add a --verbose flag", ("add", "a", "--verbose", "flag"), {}),
        ("/agent run fix - and -x", "run", "fix - and -x", ("fix", "-", "and", "-x"), {}),
        ("/agent plan --engine opencode split it", "plan", "split it", ("split", "it"), {"engine": "opencode"}),
        ("/agent status", "status", "", (), {}),
        ("/agent pause", "pause", "", (), {}),
        ("/agent resume", "resume", "", (), {}),
        ("/agent cancel", "cancel", "", (), {}),
        ("/agent open-pr", "open-pr", "", (), {}),
        ("/agent help", "help", "", (), {}),
        ("/agent help run", "help", "run", ("run",), {}),
        ("/agent help stop", "help", "stop", ("stop",), {}),
        ("/agent stop", "stop", "", (), {}),
        ("/agent stop --now", "stop", "", (), {"now": True}),
        ("/agent run --no-plan fix the typo", "run", "fix the typo", ("fix", "the", "typo"), {"no_plan": True}),
        ("/agent retry", "retry", "", (), {}),
        ("/agent retry 2", "retry", "2", ("2",), {}),
        ("/agent retry add tests", "retry", "add tests", ("add tests",), {}),
        ("/agent approve 'add tests'", "approve", "add tests", ("add tests",), {}),
        ("/agent approve", "approve", "", (), {}),
        ("/agent qa", "qa", "", (), {}),
        ("/agent qa 3 --engine claude --model sonnet", "qa", "3", ("3",), {"engine": "claude", "model": "sonnet"}),
        ("/agent answer db postgres", "answer", "postgres", ("db", "postgres"), {}),
        ("/agent answer db use postgres 16", "answer", "use postgres 16", ("db", "use", "postgres", "16"), {}),
        ("/agent ask why is CI red?", "ask", "why is CI red?", ("why", "is", "CI", "red?"), {}),
        ("/agent ask --engine command --model local what now", "ask", "what now", ("what", "now"), {"engine": "command", "model": "local"}),
        (
            "/agent ralph --max-iterations 5 --promise DONE --feedback 'pytest -q' --feedback=ruff make it green",
            "ralph",
            "make it green",
            ("make", "it", "green"),
            {"max_iterations": 5, "promise": "DONE", "feedback": ("pytest -q", "ruff")},
        ),
        (
            "/agent ralph --engine claude --max-tokens 9 --feedback make task",
            "ralph",
            "task",
            ("task",),
            {"engine": "claude", "max_tokens": 9, "feedback": ("make",)},
        ),
        ("/agent ralph --feedback=--check go", "ralph", "go", ("go",), {"feedback": ("--check",)}),
    ],
)
def test_commands_and_their_arguments(body, name, text, args, options):
    result = command(body)
    assert (result.name, result.text, result.args, dict(result.options)) == (name, text, args, options)


@pytest.mark.parametrize(
    "body, typed, message",
    [
        ("/agent answer", "answer", "`answer` needs a key and a text"),
        ("/agent answer db", "answer", "`answer` needs a key and a text"),
        ("/agent ask", "ask", "`ask` needs a question"),
        ("/agent ask --engine claude", "ask", "`ask` needs a question"),
        ("/agent ralph", "ralph", "`ralph` needs a task"),
        ("/agent ralph --max-iterations 3", "ralph", "`ralph` needs a task"),
        ("/agent status now", "status", "`status` takes no arguments"),
        ("/agent stop please", "stop", "`stop` takes no arguments"),
        ("/agent stop --now=yes", "stop", "`--now` takes no value"),
        ("/agent stop --now --now", "stop", "`--now` is given more than once"),
        ("/agent open-pr draft", "open-pr", "`open-pr` takes no arguments"),
        ("/agent help run plan", "help", "`help` takes at most one command name"),
        ("/agent retry 0", "retry", "steps are numbered from 1"),
        ("/agent run --engine", "run", "`--engine` needs a value"),
        ("/agent run --engine --model x", "run", "`--engine` needs a value"),
        ("/agent run --model=", "run", "`--model` needs a value"),
        ("/agent ralph --promise '' task", "ralph", "`--promise` needs a value"),
        ("/agent ralph --feedback", "ralph", "`--feedback` needs a value"),
        ("/agent run --engine gpt", "run", "unknown engine `gpt`; use one of codex, claude, opencode, gemini, aider, command"),
        ("/agent run --max-tokens lots x", "run", "`--max-tokens` needs a positive whole number, not `lots`"),
        ("/agent run --max-tokens 0 x", "run", "`--max-tokens` needs a positive whole number, not `0`"),
        ("/agent run --max-tokens -5 x", "run", "`--max-tokens` needs a positive whole number, not `-5`"),
        ("/agent run --max-tokens=1.5 x", "run", "`--max-tokens` needs a positive whole number, not `1.5`"),
        ("/agent ralph --max-iterations ten go", "ralph", "`--max-iterations` needs a positive whole number, not `ten`"),
        ("/agent ralph --max-iterations 99999999999999999999 go", "ralph", "`--max-iterations` needs a positive whole number, not `99999999999999999999`"),
        ("/agent run --engine codex --engine claude", "run", "`--engine` is given more than once"),
        ("/agent run --modle x", "run", "`run` has no option `--modle`; did you mean `--model`?"),
        ("/agent run --verbose", "run", "`run` has no option `--verbose`; its options are --no-plan, --engine, --model, --max-tokens"),
        ("/agent plan --max-tokens 5", "plan", "`plan` has no option `--max-tokens`; its options are --engine, --model"),
        ("/agent ask --feedback x why", "ask", "`ask` has no option `--feedback`; its options are --engine, --model"),
        ("/agent status --engine codex", "status", "`status` takes no options (got `--engine`)"),
        ("/agent retry --engine codex", "retry", "`retry` takes no options (got `--engine`)"),
    ],
)
def test_argument_and_option_errors(body, typed, message):
    result = error(body)
    assert (result.name, result.message, result.suggestion) == (typed, message, None)
    assert result.usage == "/agent " + COMMANDS[result.usage.split()[1]].usage


@pytest.mark.parametrize(
    "body, typed, suggestion",
    [
        ("/agent rn", "rn", "run"),
        ("/agent runn", "runn", "run"),
        ("/agent stauts", "stauts", "status"),
        ("/agent aprove 2", "aprove", "approve"),
        ("/agent open-rp", "open-rp", "open-pr"),
        ("/agent Paus", "Paus", "pause"),
        ("/agent stp", "stp", "stop"),
        ("/agent ralf task", "ralf", "ralph"),
        ("/agent xyzzy", "xyzzy", None),
        ("/agent thanks!", "thanks!", None),
        ("/agent 42", "42", None),
    ],
)
def test_unknown_commands_suggest_the_closest(body, typed, suggestion):
    result = error(body)
    assert result.message == f"unknown command `{typed}`"
    assert (result.name, result.suggestion, result.usage) == (typed, suggestion, "")


@pytest.mark.parametrize(
    "body, name, message, suggestion",
    [
        ("/agent --engine codex", None, "missing command name before `--engine`", None),
        ("/agent help rnu", "help", "unknown command `rnu`", "run"),
        ("/agent `run`", "`run`", "unknown command `'run'`", "run"),
        ("/agent " + "x" * 500, "x" * 500, "unknown command `" + "x" * 39 + "…`", None),
    ],
)
def test_other_name_errors(body, name, message, suggestion):
    result = error(body)
    assert (result.name, result.message, result.suggestion) == (name, message, suggestion)


def test_error_fields_locate_the_command():
    results = parse_comment("intro\n  /agent answer   \n/agent status")
    assert results[0] == CommandError(
        message="`answer` needs a key and a text",
        name="answer",
        suggestion=None,
        usage="/agent answer <key> <text...>",
        line=2,
        index=0,
        raw="/agent answer",
    )
    assert (results[1].line, results[1].index) == (3, 1)


def test_usage_uses_the_trigger_that_was_typed():
    result = error("@agentry-bot ask", app_slug="agentry-bot")
    assert result.usage == "@agentry-bot ask [--engine E] [--model M] <question...>"


def test_command_is_frozen_and_hashable():
    result = command("/agent run --engine codex x")
    with pytest.raises(AttributeError):
        result.name = "plan"
    assert hash(result) == hash(command("/agent run --engine codex x"))


@pytest.mark.parametrize(
    "body, expected",
    [
        ("x" * 1_000_000 + "\n/agent status", ("status", 2)),
        ("lorem ipsum\n" * 90_000 + "/agent run go", ("run", 90_001)),
        ("```\n" + "/agent run\n" * 100_000 + "```\n/agent status", ("status", 100_003)),
        ("> /agent run\n" * 80_000 + "/agentx\n" * 10_000 + "/agent status", ("status", 90_001)),
    ],
)
def test_huge_comment_with_one_command_at_the_end(body, expected):
    results = parse_comment(body)
    assert len(results) == 1
    assert (results[0].name, results[0].line) == expected


def test_a_very_long_command_line_is_an_error():
    result = error("/agent run " + "x" * 1_000_000)
    assert result.message == "`run` is too long (more than 10000 characters)"


@pytest.mark.parametrize("count", [MAX_COMMANDS + 1, MAX_COMMANDS + 5, 50_000])
def test_too_many_commands(count):
    results = parse_comment("\n".join(f"/agent retry {n}" for n in range(1, count + 1)))
    assert len(results) == MAX_COMMANDS + 1
    assert all(isinstance(item, Command) for item in results[:MAX_COMMANDS])
    overflow = results[-1]
    assert isinstance(overflow, CommandError)
    assert overflow.message.startswith("too many commands")
    assert (overflow.line, overflow.index) == (MAX_COMMANDS + 1, MAX_COMMANDS)


def test_exactly_the_maximum_is_fine():
    results = parse_comment("/agent status\n" * MAX_COMMANDS)
    assert [item.name for item in results] == ["status"] * MAX_COMMANDS


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("/agent run", "/agent run", []),
        ("/agent run", "/agent run\n/agent status", [("status", 2, 1)]),
        ("/agent run", "  /agent run  \n\nthanks", []),
        ("/agent run", "/agent run\r\n", []),
        ("/agent status\n/agent run", "/agent run\n/agent status", []),
        ("/agent run", "/agent run --engine claude", [("run", 1, 0)]),
        ("/agent rn", "/agent run", [("run", 1, 0)]),
        ("/agent rn", "/agent rn\n/agent status", [("status", 2, 1)]),
        ("/agent retry", "/agent retry\n/agent retry", [("retry", 2, 1)]),
        ("", "/agent plan", [("plan", 1, 0)]),
        ("```\n/agent run\n```", "/agent run", [("run", 1, 0)]),
        ("/agent run", "```\n/agent run\n```", []),
        ("> /agent run", "/agent run", [("run", 1, 0)]),
        ("/agent run", "", []),
    ],
)
def test_added_commands_on_edit(old, new, expected):
    assert [(item.name, item.line, item.index) for item in added_commands(old, new)] == expected


def test_added_commands_passes_prefix_and_mention():
    added = added_commands("@bot run", "@bot run\n!x status", prefix="!x", app_slug="bot")
    assert [(item.name, item.index) for item in added] == [("status", 1)]


@pytest.mark.parametrize(
    "old_count, new_body_extra, expected_names",
    [
        (MAX_COMMANDS + 1, "", []),
        (MAX_COMMANDS, "/agent pause", [None]),
        (MAX_COMMANDS + 1, "/agent pause", []),
    ],
)
def test_added_commands_and_the_command_limit(old_count, new_body_extra, expected_names):
    old = "\n".join(f"/agent retry {n}" for n in range(1, old_count + 1))
    new = old + "\n" + new_body_extra
    assert [item.name for item in added_commands(old, new)] == expected_names


def test_added_commands_runs_a_line_that_moved_under_the_limit():
    lines = [f"/agent retry {n}" for n in range(1, MAX_COMMANDS + 2)]
    added = added_commands("\n".join(lines), "\n".join(lines[1:]))
    assert [(item.args, item.index) for item in added] == [((str(MAX_COMMANDS + 1),), MAX_COMMANDS - 1)]


@pytest.mark.parametrize(
    "body, permission",
    [
        ("/agent help", "read"),
        ("/agent help run", "read"),
        ("/agent", "read"),
        ("/agent status", "read"),
        ("/agent run", "write"),
        ("/agent run --engine claude", "write"),
        ("/agent plan", "write"),
        ("/agent pause", "write"),
        ("/agent resume", "write"),
        ("/agent stop", "write"),
        ("/agent retry", "write"),
        ("/agent approve 1", "write"),
        ("/agent qa", "write"),
        ("/agent open-pr", "write"),
        ("/agent answer k v", "write"),
        ("/agent ask why", "write"),
        ("/agent ralph --max-iterations 3 go", "write"),
        ("/agent run --max-tokens 10", "admin"),
        ("/agent ralph --max-tokens 10 go", "admin"),
    ],
)
def test_required_permission(body, permission):
    assert required_permission(command(body)) == permission


def test_every_command_has_a_known_permission():
    assert {spec.permission for spec in COMMANDS.values()} <= {"read", "write", "admin"}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_text_lists_every_command(name):
    text = help_text()
    assert f"| `/agent {COMMANDS[name].usage}` | {COMMANDS[name].summary} |" in text


@pytest.mark.parametrize(
    "prefix, topic, expected_start",
    [
        ("/agent", "run", "`/agent run [--no-plan] [--engine E]"),
        ("/bot", "ralph", "`/bot ralph [--max-iterations N]"),
        ("/agent", "stop", "`/agent stop [--now]`"),
        ("/agent", "OPEN_PR", "`/agent open-pr`"),
    ],
)
def test_help_text_for_one_command(prefix, topic, expected_start):
    text = help_text(prefix, topic)
    assert text.startswith(expected_start)
    assert "|" not in text


@pytest.mark.parametrize("topic", [None, "", "nonsense"])
def test_help_text_falls_back_to_the_table(topic):
    text = help_text("/bot", topic)
    assert text.startswith("| Command | What it does |")
    assert all(engine in text for engine in ENGINES)
    assert "/agent" not in text


def test_help_command_round_trips_into_help_text():
    result = command("/agent help rerun")
    assert help_text("/agent", result.args[0]).startswith("`/agent retry [step]`")


def test_every_declared_command_is_carried_out_by_its_action_or_its_own_handler():
    from bot.command_service import HANDLERS, handler_of

    assert all(callable(handler_of(name)) for name in COMMANDS)
    assert set(HANDLERS) == {name for name, spec in COMMANDS.items() if spec.action is None}
