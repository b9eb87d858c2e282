"""Agent runner: command lines, stream parsers over real CLI output, and real subprocess runs.

The recorded output in tests/fixtures/agent-cli-output is real (see NOTICE there);
the error lines are crafted from the shapes the research report documents.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

import bot.agents as agents
from bot.agents import (
    ENGINE_MODULES,
    ENGINES,
    AgentRequest,
    EngineConfig,
    EngineNotInstalled,
    TokenUsage,
    agent_environment,
    engine_versions,
    run_agent,
)
from bot.sandbox import BwrapSandbox, NoSandbox
from tests.fakes.agents import FAKE_AGENT, install_fake

FIXTURES = Path(__file__).parent / "fixtures" / "agent-cli-output"
CLI_ENGINES = ("codex", "claude", "opencode", "gemini", "aider")
STDOUT_FIXTURE = {
    "codex": "codex.stdout.jsonl",
    "claude": "claude.stdout.jsonl",
    "opencode": "opencode.stdout.jsonl",
    "gemini": "gemini.stdout.jsonl",
    "aider": "aider.stdout.txt",
}
STDERR_FIXTURE = {"codex": "codex.stderr.txt", "gemini": "gemini.stderr.txt"}
AIDER_REPLY = (
    "I will create hello.txt.\n\nhello.txt\n```\n<<<<<<< SEARCH\n=======\n"
    "hello from fake model\n>>>>>>> REPLACE\n```"
)
DONE = "Done: wrote hello.txt"
EXPECTED = {
    "codex": (DONE, "01a209fc-7808-73f2-b392-43ac97b1b007", TokenUsage(200, 40, 20, 240), None),
    "claude": (DONE, "17010691-a1bb-40de-b696-accff7be2449", TokenUsage(200, 50, 0, 250), 0.00135),
    "opencode": (DONE, "ses_df6036939ffeyYc4xM5E3Ou2zx", TokenUsage(200, 50, 0, 250), 0.0),
    "gemini": (DONE, "6f99afe7-031e-441c-9e1c-12e4e7e5e3f6", TokenUsage(300, 60, 0, 360), None),
    "aider": (AIDER_REPLY, None, TokenUsage(2500, 25, 0, 2525), None),
}
INSTALL_HINTS = {
    "codex": "codex is not installed: `npm install -g @openai/codex`, or set `AGENTRY_CODEX_BIN`",
    "claude": "claude is not installed: `npm install -g @anthropic-ai/claude-code`, or set `AGENTRY_CLAUDE_BIN`",
    "opencode": "opencode is not installed: `npm install -g opencode-ai`, or set `AGENTRY_OPENCODE_BIN`",
    "gemini": "gemini is not installed: `npm install -g @google/gemini-cli`, or set `AGENTRY_GEMINI_BIN`",
    "aider": "aider is not installed: `pip install aider-chat`, or set `AGENTRY_AIDER_BIN`",
}
SECRETS = {
    "AGENTRY_WEBHOOK_SECRET": "whsec-do-not-leak",
    "AGENTRY_API_TOKEN": "api-token-do-not-leak",
    "AGENTRY_DATABASE_URL": "postgresql+asyncpg://agentry:db-password-do-not-leak@db/agentry",
    "AGENTRY_REDIS_URL": "redis://:redis-password-do-not-leak@redis:6379/0",
    "AGENTRY_GITHUB_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY----- do-not-leak",
    "GITHUB_TOKEN": "ghp_do_not_leak",
    "GH_TOKEN": "gho_do_not_leak",
    "GITLAB_TOKEN": "glpat-do-not-leak",
}
PROVIDER_ENV = {
    "OPENAI_API_KEY": "sk-provider-key",
    "ANTHROPIC_BASE_URL": "http://127.0.0.1:9/anthropic",
    "LANG": "C.UTF-8",
}
BASE_ENV = {"PATH": os.environ.get("PATH", os.defpath), **PROVIDER_ENV, **SECRETS}

# Crafted error lines, shaped as in the research report.
CODEX_FAILED = [
    '{"type":"thread.started","thread_id":"thread-1"}',
    '{"type":"turn.started"}',
    '{"type":"error","message":"We\'re currently experiencing high demand"}',
    '{"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized: invalid api key"}}',
]
CODEX_RECONNECTING = ['{"type":"error","message":"Reconnecting... 2/5 waiting for network"}']
CLAUDE_API_ERROR = [
    '{"type":"system","subtype":"init","session_id":"sess-9","model":"claude-sonnet-4-5"}',
    '{"type":"assistant","message":{"model":"<synthetic>","content":[{"type":"text",'
    '"text":"API Error: 401 invalid api key"}]},"error":"authentication_failed","session_id":"sess-9"}',
    '{"type":"result","subtype":"success","is_error":true,"api_error_status":401,'
    '"result":"API Error: 401 invalid api key","session_id":"sess-9","total_cost_usd":0,'
    '"usage":{"input_tokens":0,"output_tokens":0}}',
]
CLAUDE_MAX_TURNS = [
    '{"type":"result","subtype":"error_max_turns","is_error":true,'
    '"errors":["Reached maximum number of turns (1)"],"terminal_reason":"max_turns","session_id":"sess-8"}'
]
OPENCODE_ERROR = [
    '{"type":"error","timestamp":1795463883017,"sessionID":"ses_1","error":{"name":"APIError",'
    '"data":{"message":"Unauthorized: invalid api key","statusCode":401,"isRetryable":false}}}'
]
GEMINI_ERROR = [
    '{"type":"init","timestamp":"2026-11-23T19:58:09.062Z","session_id":"gem-1","model":"auto"}',
    '{"type":"result","status":"error","error":{"type":"unknown","message":"[API Error: 401 invalid api key]"},'
    '"stats":{"total_tokens":0,"input_tokens":0,"output_tokens":0}}',
]
AIDER_AUTH_ERROR = [
    "Aider v0.86.2",
    "Model: openai/fake-model with diff edit format",
    "litellm.AuthenticationError: AuthenticationError: OpenAIException - invalid api key",
    "The API provider is not able to authenticate you. Check your API key.",
]


def fixture_lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def real_stdout(engine: str) -> list[str]:
    return fixture_lines(STDOUT_FIXTURE[engine])


def real_stderr(engine: str) -> list[str]:
    return fixture_lines(STDERR_FIXTURE[engine]) if engine in STDERR_FIXTURE else []


def parse(engine: str, stdout: list[str], exit_code: int | None = 0, stderr: list[str] = (), max_chars=200_000):
    parser = ENGINE_MODULES[engine].PARSER(max_chars)
    for line in stderr:
        parser.feed_stderr(line)
    for line in stdout:
        parser.feed(line)
    return parser.finish(exit_code)


def request_for(engine: str, cwd: Path = Path("/wt"), **overrides) -> AgentRequest:
    fields = {"engine": engine, "prompt": "create hello.txt", "cwd": cwd, "kind": "execute", **overrides}
    return AgentRequest(**fields)


# ----------------------------------------------------------------------------------------------
# Parsers over the real recorded output


@pytest.mark.parametrize("engine", CLI_ENGINES)
def test_parser_reads_the_real_output(engine):
    outcome = parse(engine, real_stdout(engine), stderr=real_stderr(engine))
    final, session, usage, cost = EXPECTED[engine]
    assert outcome.ok, outcome.error
    assert outcome.error is None
    assert outcome.final_message == final
    assert outcome.session_id == session
    assert outcome.usage == usage
    assert outcome.cost_usd == cost


@pytest.mark.parametrize(
    "engine, stdout, exit_code, stderr, error",
    [
        ("codex", CODEX_FAILED, 1, [], "unexpected status 401 Unauthorized: invalid api key"),
        ("codex", CODEX_RECONNECTING * 3, None, [], "Reconnecting... 2/5 waiting for network"),
        ("codex", fixture_lines("codex.stdout.jsonl")[:-1], 0, [], "no turn.completed event"),
        ("codex", fixture_lines("codex.stdout.jsonl"), 1, ["boom"], "exit code 1"),
        ("codex", [], 1, ["Not inside a trusted directory"], "exit code 1: Not inside a trusted directory"),
        ("claude", CLAUDE_API_ERROR, 1, [], "API Error: 401 invalid api key"),
        ("claude", CLAUDE_API_ERROR, 0, [], "API Error: 401 invalid api key"),
        ("claude", CLAUDE_MAX_TURNS, 1, [], "Reached maximum number of turns (1)"),
        ("claude", [], 1, ["Error: unknown option '--bogus'"], "exit code 1: Error: unknown option '--bogus'"),
        ("claude", fixture_lines("claude.stdout.jsonl")[:-1], 0, [], "no result event"),
        ("opencode", OPENCODE_ERROR, 1, [], "APIError: Unauthorized: invalid api key"),
        ("opencode", fixture_lines("opencode.stdout.jsonl")[:3], 0, [], "tool-calls"),
        ("opencode", fixture_lines("opencode.stdout.jsonl") + OPENCODE_ERROR, 1, [], "APIError"),
        ("gemini", GEMINI_ERROR, 145, [], "[API Error: 401 invalid api key]"),
        ("gemini", GEMINI_ERROR, 0, [], "[API Error: 401 invalid api key]"),
        ("gemini", fixture_lines("gemini.stdout.jsonl")[:-1], 0, [], "no result event"),
        ("aider", AIDER_AUTH_ERROR, 0, [], "litellm.AuthenticationError"),
        ("aider", ["The API provider has rate limited you. Try again later."], 0, [], "The API provider"),
        ("aider", fixture_lines("aider.stdout.txt"), 0, ["litellm.APIConnectionError: boom"], "APIConnectionError"),
        ("aider", fixture_lines("aider.stdout.txt"), 2, ["aider: error: bad flag"], "aider: error: bad flag"),
        ("aider", fixture_lines("aider.stdout.txt")[:-3], 0, [], "no model reply"),
        ("command", ["partial"], 3, ["it broke"], "exit code 3: it broke"),
    ],
)
def test_parser_reports_failures(engine, stdout, exit_code, stderr, error):
    outcome = parse(engine, stdout, exit_code, stderr)
    assert not outcome.ok
    assert error in outcome.error


def test_codex_usage_is_summed_over_turns_and_last_message_wins():
    lines = [
        '{"type":"item.completed","item":{"id":"i0","type":"agent_message","text":"first"}}',
        '{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":1,"output_tokens":2}}',
        '{"type":"item.completed","item":{"id":"i1","type":"error","message":"Model metadata not found"}}',
        '{"type":"item.completed","item":{"id":"i2","type":"agent_message","text":"second"}}',
        '{"type":"turn.completed","usage":{"input_tokens":5,"cached_input_tokens":0,"output_tokens":3}}',
    ]
    outcome = parse("codex", lines)
    assert outcome.ok
    assert outcome.final_message == "second"
    assert outcome.usage == TokenUsage(input=15, output=5, cached=1, total=20)


def test_claude_counts_cached_prompt_tokens_as_input():
    result = (
        '{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"s",'
        '"total_cost_usd":0.5,"usage":{"input_tokens":10,"cache_creation_input_tokens":100,'
        '"cache_read_input_tokens":1000,"output_tokens":7}}'
    )
    outcome = parse("claude", [result])
    assert outcome.usage == TokenUsage(input=1110, output=7, cached=1000, total=1117)
    assert outcome.cost_usd == 0.5


def test_opencode_final_message_is_the_text_of_the_last_step():
    lines = [
        '{"type":"step_start","sessionID":"ses_1","part":{"type":"step-start"}}',
        '{"type":"text","sessionID":"ses_1","part":{"type":"text","text":"Let me write it."}}',
        '{"type":"step_finish","sessionID":"ses_1","part":{"reason":"tool-calls","tokens":{"input":1,"output":1},"cost":0.25}}',
        '{"type":"step_start","sessionID":"ses_1","part":{"type":"step-start"}}',
        '{"type":"text","sessionID":"ses_1","part":{"type":"text","text":"Part one."}}',
        '{"type":"text","sessionID":"ses_1","part":{"type":"text","text":"Part two."}}',
        '{"type":"step_finish","sessionID":"ses_1","part":{"reason":"stop","tokens":{"input":2,"output":3,'
        '"reasoning":4,"cache":{"read":5,"write":6}},"cost":0.5}}',
    ]
    outcome = parse("opencode", lines)
    assert outcome.ok
    assert outcome.final_message == "Part one.\n\nPart two."
    assert outcome.usage == TokenUsage(input=14, output=8, cached=5, total=22)
    assert outcome.cost_usd == 0.75


def test_gemini_final_message_is_the_text_after_the_last_tool_call():
    lines = [
        '{"type":"message","role":"assistant","content":"I will ","delta":true}',
        '{"type":"message","role":"assistant","content":"write it.","delta":true}',
        '{"type":"tool_use","tool_name":"write_file","tool_id":"t1","parameters":{}}',
        '{"type":"tool_result","tool_id":"t1","status":"success"}',
        '{"type":"message","role":"assistant","content":"All ","delta":true}',
        '{"type":"message","role":"assistant","content":"done.","delta":true}',
        '{"type":"result","status":"success","stats":{"input_tokens":5,"output_tokens":6,"cached":1}}',
    ]
    outcome = parse("gemini", lines)
    assert outcome.final_message == "All done."
    assert outcome.usage == TokenUsage(input=5, output=6, cached=1, total=11)


@pytest.mark.parametrize(
    "report_lines, usage, cost",
    [
        (
            ["Tokens: 12k sent, 1.2k cache write, 3.4k cache hit, 1.5k received.",
             "Cost: $0.05 message, $0.12 session."],
            TokenUsage(input=12_000, output=1_500, cached=3_400, total=13_500),
            0.12,
        ),
        (["Tokens: 950 sent, 25 received. Cost: $0.0012 message, $0.0012 session."], TokenUsage(950, 25, 0, 975), 0.0012),
        (["Tokens: 1.1M sent, 2 received."], TokenUsage(1_100_000, 2, 0, 1_100_002), None),
    ],
)
def test_aider_reads_token_and_cost_reports(report_lines, usage, cost):
    outcome = parse("aider", ["Aider v0.86.2", "", "Sure.", "", *report_lines, "Applied edit to a.py"])
    assert outcome.ok
    assert outcome.final_message == "Sure."
    assert outcome.usage == usage
    assert outcome.cost_usd == cost


def test_parsers_ignore_non_json_noise_and_cap_the_final_message():
    long_text = "y" * 500
    line = json.dumps({"type": "item.completed", "item": {"type": "agent_message", "text": long_text}})
    outcome = parse("codex", ["not json", "{broken", line, *real_stdout("codex")[-1:]], max_chars=100)
    assert outcome.ok
    assert outcome.final_message.startswith("y" * 100)
    assert len(outcome.final_message) < 130


def test_command_parser_caps_stdout():
    outcome = parse("command", ["a" * 60, "b" * 60], max_chars=100)
    assert outcome.ok
    assert outcome.final_message.startswith("a" * 60 + "\n" + "b" * 39)
    assert outcome.final_message.endswith("[... truncated]")


# ----------------------------------------------------------------------------------------------
# Command lines


def test_codex_command_line():
    config = EngineConfig(bins={"codex": "/opt/codex"})
    assert ENGINE_MODULES["codex"].build_command(request_for("codex"), config) == [
        "/opt/codex", "exec", "--json", "--skip-git-repo-check", "-s", "workspace-write", "-C", "/wt",
        "--disable", "plugins", "-c", "analytics.enabled=false", "-c", "feedback.enabled=false",
        "-c", "check_for_update_on_startup=false", "create hello.txt",
    ]


def test_codex_resume_puts_every_option_before_the_subcommand():
    request = request_for("codex", model="gpt-5.5", session_id="01a209fc-7808", read_only=True)
    argv = ENGINE_MODULES["codex"].build_command(request, EngineConfig())
    assert argv[:2] == ["codex", "exec"]
    assert argv[-5:] == ["-m", "gpt-5.5", "resume", "01a209fc-7808", "create hello.txt"]
    assert argv[argv.index("-s") + 1] == "read-only"


def test_claude_command_line():
    request = request_for("claude", model="claude-sonnet-4-5", session_id="sess-1")
    assert ENGINE_MODULES["claude"].build_command(request, EngineConfig()) == [
        "claude", "-p", "create hello.txt", "--output-format", "stream-json", "--verbose",
        "--permission-mode", "acceptEdits", "--model", "claude-sonnet-4-5", "--resume", "sess-1",
    ]


def test_opencode_command_line():
    request = request_for("opencode", model="fake/fake-model", session_id="ses_1", read_only=True)
    assert ENGINE_MODULES["opencode"].build_command(request, EngineConfig()) == [
        "opencode", "run", "--format", "json", "--print-logs", "--log-level", "ERROR", "--agent", "plan",
        "--model", "fake/fake-model", "-s", "ses_1", "create hello.txt",
    ]


def test_gemini_command_line():
    request = request_for("gemini", model="gemini-2.5-pro", session_id="6f99afe7-031e")
    assert ENGINE_MODULES["gemini"].build_command(request, EngineConfig()) == [
        "gemini", "-p", "create hello.txt", "--output-format", "stream-json", "--yolo", "--skip-trust",
        "-m", "gemini-2.5-pro", "--resume", "6f99afe7-031e",
    ]


def test_aider_command_line():
    request = request_for("aider", model="openai/fake-model", session_id="ignored")
    assert ENGINE_MODULES["aider"].build_command(request, EngineConfig()) == [
        "aider", "--message", "create hello.txt", "--yes-always", "--no-check-update", "--analytics-disable",
        "--no-show-model-warnings", "--no-show-release-notes", "--no-pretty", "--no-fancy-input",
        "--no-auto-commits", "--no-dirty-commits", "--no-gitignore", "--model", "openai/fake-model",
    ]


@pytest.mark.parametrize(
    "engine, read_only_args",
    [
        ("codex", ["-s", "read-only"]),
        ("claude", ["--permission-mode", "plan"]),
        ("opencode", ["--agent", "plan"]),
        ("gemini", ["--approval-mode", "plan"]),
        ("aider", ["--chat-mode", "ask", "--dry-run"]),
    ],
)
def test_read_only_runs_use_each_cli_s_read_only_mode(engine, read_only_args):
    argv = ENGINE_MODULES[engine].build_command(request_for(engine, read_only=True), EngineConfig())
    assert " ".join(read_only_args) in " ".join(argv)
    for write_flag in ("workspace-write", "acceptEdits", "--yolo"):
        assert write_flag not in argv


@pytest.mark.parametrize(
    "engine, position", [("codex", 2), ("claude", 1), ("opencode", 2), ("gemini", 1), ("aider", 1)]
)
def test_extra_args_follow_the_executable_and_its_subcommand(engine, position):
    config = EngineConfig(extra_args={engine: ("--extra-one", "value")})
    argv = ENGINE_MODULES[engine].build_command(request_for(engine), config)
    assert argv[position : position + 2] == ["--extra-one", "value"]


@pytest.mark.parametrize(
    "engine, operator_args, ours",
    [
        ("codex", ("--dangerously-bypass-approvals-and-sandbox",), "workspace-write"),
        ("claude", ("--permission-mode", "bypassPermissions"), "acceptEdits"),
        ("gemini", ("--approval-mode=auto_edit",), "--yolo"),
    ],
)
def test_operator_permission_args_win_except_for_read_only_runs(engine, operator_args, ours):
    config = EngineConfig(extra_args={engine: operator_args})
    module = ENGINE_MODULES[engine]
    assert ours not in module.build_command(request_for(engine), config)
    read_only = module.build_command(request_for(engine, read_only=True), config)
    assert "read-only" in read_only or "plan" in read_only


@pytest.mark.parametrize("engine", CLI_ENGINES)
def test_a_prompt_that_looks_like_an_option_stays_a_prompt(engine):
    argv = ENGINE_MODULES[engine].build_command(request_for(engine, prompt="--help me\0"), EngineConfig())
    assert " --help me" in argv
    assert "--help me" not in argv


@pytest.mark.parametrize("engine", ["codex", "claude", "opencode", "gemini"])
@pytest.mark.parametrize("field, value", [("session_id", "--evil"), ("session_id", "a b"), ("model", "-x")])
def test_option_like_session_ids_and_models_are_refused(engine, field, value):
    with pytest.raises(ValueError):
        ENGINE_MODULES[engine].build_command(request_for(engine, **{field: value}), EngineConfig())


def test_command_engine_runs_the_configured_command_line():
    config = EngineConfig(command_line=("my-agent", "--fast"), extra_args={"command": ("--x",)})
    assert ENGINE_MODULES["command"].build_command(request_for("command"), config) == ["my-agent", "--fast", "--x"]


# ----------------------------------------------------------------------------------------------
# Environment


def test_agent_environment_drops_service_secrets_and_keeps_provider_settings(tmp_path):
    base = {**BASE_ENV, "LC_ALL": "C.UTF-8", "AWS_REGION": "eu-west-1", "SOME_OTHER": "x", "HOME": "/root"}
    env = agent_environment(base, tmp_path, {"AGENTRY_STEP_KIND": "qa"})
    assert not set(SECRETS) & set(env)
    assert [name for name in env if name.startswith("AGENTRY_")] == ["AGENTRY_STEP_KIND"]
    for name in ("OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "LANG", "LC_ALL", "AWS_REGION", "PATH"):
        assert env[name] == base[name]
    assert "SOME_OTHER" not in env
    assert env["HOME"] == str(tmp_path)
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "CODEX_HOME", "CLAUDE_CONFIG_DIR"):
        assert env[name].startswith(str(tmp_path) + os.sep)
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env["CLAUDE_CODE_MAX_RETRIES"] == "0"
    assert env["OPENCODE_DISABLE_MODELS_FETCH"] == "1"
    assert env["AGENTRY_STEP_KIND"] == "qa"


# ----------------------------------------------------------------------------------------------
# Real subprocess runs with fake CLIs


@pytest.fixture
def worktree(tmp_path):
    path = tmp_path / "worktree"
    path.mkdir()
    return path


def sandbox_for(tmp_path: Path) -> BwrapSandbox | NoSandbox:
    """The runs are sandboxed where bubblewrap works (always in CI); the fakes read their scenario
    and fixtures and write their record outside the worktree, so those places are opened to them."""
    sandbox = BwrapSandbox(runs_dir=tmp_path / "sandbox-runs", protected=[], read_paths=(FIXTURES, FAKE_AGENT),
                           write_paths=(tmp_path,))
    if sandbox.problem() and not os.environ.get("CI"):
        return NoSandbox()
    return sandbox


def fake_config(tmp_path: Path, engine: str, scenario: dict, **overrides) -> EngineConfig:
    scenario = {"record": str(tmp_path / "record.json"), **scenario}
    name = "my-agent" if engine == "command" else engine
    executable = install_fake(tmp_path / "bin", name, scenario)
    settings = {
        "bins": {engine: str(executable)},
        "base_env": BASE_ENV,
        "timeout_seconds": 20,
        "idle_timeout_seconds": 10,
        "kill_grace_seconds": 0.5,
        "sandbox": sandbox_for(tmp_path),
    }
    if engine == "command":
        settings["command_line"] = (str(executable),)
    settings.update(overrides)
    return EngineConfig(**settings)


def recorded(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "record.json").read_text())


def replay_scenario(engine: str, **extra) -> dict:
    scenario = {
        "stdout_file": str(FIXTURES / STDOUT_FIXTURE[engine]),
        "files": {"hello.txt": "hello from fake model\n"},
        **extra,
    }
    if engine in STDERR_FIXTURE:
        scenario["stderr_file"] = str(FIXTURES / STDERR_FIXTURE[engine])
    return scenario


async def run(config: EngineConfig, request: AgentRequest, tmp_path: Path, on_line=None):
    return await run_agent(request, config, log_path=tmp_path / "logs" / "run.log", on_line=on_line)


def living_processes_naming(text: str) -> list[int]:
    """Host pids (zombies aside) whose command line names ``text``; a sandbox's own pids mean
    nothing out here, so the fakes put their test's directory in every command line."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if not entry.isdigit() or text.encode() not in Path(f"/proc/{entry}/cmdline").read_bytes():
                continue
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            found.append(int(entry))
    return found


async def all_gone(test_dir: Path, seconds: float = 2.0) -> bool:
    for _ in range(int(seconds / 0.05)):
        if not living_processes_naming(str(test_dir)):
            return True
        await asyncio.sleep(0.05)
    return False


async def wait_for_file(path: Path, seconds: float = 10.0) -> dict:
    for _ in range(int(seconds / 0.02)):
        if path.exists():
            return json.loads(path.read_text())
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path.name} never appeared")


@pytest.mark.parametrize("engine", CLI_ENGINES)
async def test_run_replays_the_real_cli_output(engine, tmp_path, worktree):
    config = fake_config(tmp_path, engine, replay_scenario(engine))
    lines = []
    result = await run(config, request_for(engine, cwd=worktree), tmp_path, on_line=lines.append)

    final, session, usage, cost = EXPECTED[engine]
    assert result.ok, result.error
    assert (result.engine, result.exit_code, result.error) == (engine, 0, None)
    assert (result.final_message, result.session_id, result.usage, result.cost_usd) == (final, session, usage, cost)
    assert not result.timed_out and not result.idle_timed_out
    assert result.duration_seconds > 0
    assert (worktree / "hello.txt").read_text() == "hello from fake model\n"

    expected_lines = real_stdout(engine) + real_stderr(engine)
    assert sorted(lines) == sorted(expected_lines)
    assert sorted((tmp_path / "logs" / "run.log").read_text().splitlines()) == sorted(expected_lines)
    assert result.output_bytes == sum(len(line.encode()) + 1 for line in expected_lines)

    record = recorded(tmp_path)
    assert record["cwd"] == str(worktree)
    assert record["stdin"] == ""
    assert record["argv"] == ENGINE_MODULES[engine].build_command(request_for(engine, cwd=worktree), config)[1:]
    assert not any(secret in " ".join(record["argv"]) for secret in SECRETS.values())
    assert not any(name.startswith("AGENTRY_") for name in record["env"])
    assert not {"GITHUB_TOKEN", "GH_TOKEN", "GITLAB_TOKEN"} & set(record["env"])
    assert record["env"]["OPENAI_API_KEY"] == "sk-provider-key"
    assert record["env"]["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9/anthropic"
    assert not Path(record["env"]["HOME"]).exists(), "the fresh home is deleted after the run"


@pytest.mark.parametrize(
    "engine, stdout, exit_code, error",
    [
        ("codex", CODEX_FAILED, 1, "unexpected status 401 Unauthorized"),
        ("claude", CLAUDE_API_ERROR, 1, "API Error: 401 invalid api key"),
        ("opencode", OPENCODE_ERROR, 1, "APIError: Unauthorized: invalid api key"),
        ("gemini", GEMINI_ERROR, 145, "[API Error: 401 invalid api key]"),
        ("aider", AIDER_AUTH_ERROR, 0, "litellm.AuthenticationError"),
    ],
)
async def test_run_fails_on_api_errors(engine, stdout, exit_code, error, tmp_path, worktree):
    config = fake_config(tmp_path, engine, {"stdout_lines": stdout, "exit_code": exit_code})
    result = await run(config, request_for(engine, cwd=worktree), tmp_path)
    assert not result.ok
    assert result.exit_code == exit_code
    assert error in result.error


@pytest.mark.parametrize("engine", CLI_ENGINES)
async def test_run_fails_on_a_non_zero_exit_even_after_a_good_stream(engine, tmp_path, worktree):
    scenario = replay_scenario(engine, exit_code=1, stderr_lines=["fatal: something broke"])
    result = await run(fake_config(tmp_path, engine, scenario), request_for(engine, cwd=worktree), tmp_path)
    assert not result.ok
    assert result.exit_code == 1
    assert "exit code 1" in result.error


async def test_command_engine_gets_the_prompt_on_stdin_and_the_step_env(tmp_path, worktree):
    config = fake_config(tmp_path, "command", {"stdout_lines": ["line one", "VERDICT: PASS"]})
    prompt = "Review the change.\nSecond line; $(not a shell) `nor this`"
    step_env = {"AGENTRY_STEP_KIND": "qa", "AGENTRY_PROTOCOL_ID": "42", "AGENTRY_STEP_ID": "7"}
    request = request_for("command", cwd=worktree, prompt=prompt, kind="qa", env=step_env)
    result = await run(config, request, tmp_path)

    assert result.ok, result.error
    assert result.final_message == "line one\nVERDICT: PASS"
    record = recorded(tmp_path)
    assert record["stdin"] == prompt
    assert record["argv"] == []
    assert {name: record["env"][name] for name in step_env} == step_env
    assert "AGENTRY_API_TOKEN" not in record["env"]
    assert record["cwd"] == str(worktree)


async def test_command_engine_fails_on_a_non_zero_exit(tmp_path, worktree):
    scenario = {"stdout_lines": ["half done"], "stderr_lines": ["tests failed"], "exit_code": 3}
    result = await run(fake_config(tmp_path, "command", scenario), request_for("command", cwd=worktree), tmp_path)
    assert not result.ok
    assert result.exit_code == 3
    assert result.final_message == "half done"
    assert result.error == "exit code 3: tests failed"


async def test_stdin_is_closed_even_when_the_service_has_an_open_stdin(tmp_path, worktree):
    """The fake reads its stdin to the end: it must see EOF at once, not the service's stdin."""
    config = fake_config(tmp_path, "codex", replay_scenario("codex"), idle_timeout_seconds=2)
    read_end, write_end = os.pipe()
    saved_stdin = os.dup(0)
    os.dup2(read_end, 0)
    try:
        result = await run(config, request_for("codex", cwd=worktree), tmp_path)
    finally:
        os.dup2(saved_stdin, 0)
        for fd in (saved_stdin, read_end, write_end):
            os.close(fd)
    assert result.ok, result.error
    assert recorded(tmp_path)["stdin"] == ""


@pytest.mark.parametrize(
    "engine, directory_variable, file_name",
    [
        ("codex", "CODEX_HOME", "config.toml"),
        ("claude", "CLAUDE_CONFIG_DIR", "settings.json"),
        ("gemini", "HOME", ".gemini/settings.json"),
        ("opencode", "XDG_CONFIG_HOME", "opencode/opencode.json"),
    ],
)
async def test_the_engine_config_file_is_copied_into_the_fresh_home(
    engine, directory_variable, file_name, tmp_path, worktree
):
    source = tmp_path / "operator-config"
    source.write_text(f"# {engine} settings of the operator\n")
    config = fake_config(tmp_path, engine, replay_scenario(engine), config_files={engine: str(source)})
    await run(config, request_for(engine, cwd=worktree), tmp_path)

    record = recorded(tmp_path)
    home = Path(record["env"]["HOME"])
    target = Path(record["env"][directory_variable]) / file_name
    assert home in target.parents
    assert record["home_files"][str(target.relative_to(home))] == f"# {engine} settings of the operator\n"
    if engine == "opencode":
        assert record["env"]["OPENCODE_CONFIG"] == str(target)
    assert not home.exists()


async def test_gemini_gets_quiet_default_settings_without_a_config_file(tmp_path, worktree):
    config = fake_config(tmp_path, "gemini", replay_scenario("gemini"))
    await run(config, request_for("gemini", cwd=worktree), tmp_path)
    settings = json.loads(recorded(tmp_path)["home_files"][".gemini/settings.json"])
    assert settings["telemetry"] == {"enabled": False}
    assert settings["privacy"] == {"usageStatisticsEnabled": False}


async def test_a_persistent_home_is_kept_for_resuming(tmp_path, worktree):
    home = tmp_path / "homes" / "protocol-1"
    source = tmp_path / "settings.json"
    source.write_text("{}")
    config = fake_config(tmp_path, "claude", replay_scenario("claude"), config_files={"claude": str(source)})
    request = request_for("claude", cwd=worktree, session_id="17010691-a1bb", home_dir=home)
    result = await run(config, request, tmp_path)
    assert result.ok
    assert recorded(tmp_path)["env"]["HOME"] == str(home)
    assert (home / ".claude" / "settings.json").read_text() == "{}"


async def test_a_missing_config_file_fails_the_run(tmp_path, worktree):
    config = fake_config(tmp_path, "codex", replay_scenario("codex"), config_files={"codex": str(tmp_path / "nope")})
    result = await run(config, request_for("codex", cwd=worktree), tmp_path)
    assert not result.ok
    assert "config file" in result.error
    assert not (tmp_path / "record.json").exists()


@pytest.mark.parametrize("sandboxed", [True, False], ids=["bwrap", "none"])
@pytest.mark.parametrize("ignore_term", [False, True])
async def test_a_hanging_agent_is_killed_by_the_idle_timeout_with_its_children(ignore_term, sandboxed, tmp_path,
                                                                              worktree):
    pid_file = tmp_path / "pids.json"
    scenario = {"mode": "hang", "pid_file": str(pid_file), "ignore_term": ignore_term}
    config = fake_config(tmp_path, "codex", scenario, idle_timeout_seconds=1, kill_grace_seconds=0.3,
                         sandbox=sandbox_for(tmp_path) if sandboxed else NoSandbox())
    result = await run(config, request_for("codex", cwd=worktree), tmp_path)

    assert result.idle_timed_out and not result.timed_out
    assert not result.ok
    assert "idle timeout" in result.error
    assert result.exit_code == (-9 if ignore_term else -15)
    assert result.duration_seconds < 5
    pids = json.loads(pid_file.read_text())
    assert await all_gone(tmp_path), pids


async def test_an_agent_that_prints_forever_is_stopped_by_the_wall_clock_and_its_log_is_bounded(tmp_path, worktree):
    config = fake_config(
        tmp_path, "codex", {"mode": "spam"}, timeout_seconds=1, idle_timeout_seconds=5, max_log_bytes=100_000
    )
    result = await run(config, request_for("codex", cwd=worktree), tmp_path)
    assert result.timed_out and not result.ok
    assert "wall-clock timeout" in result.error
    assert result.duration_seconds < 5
    log_size = (tmp_path / "logs" / "run.log").stat().st_size
    assert log_size <= 100_000 + 200
    assert result.output_bytes > log_size


async def test_a_huge_single_line_is_cut_in_the_log_and_the_run_goes_on(tmp_path, worktree):
    size = 9 * 1024 * 1024 + 123  # above the parser's 8 MB line limit too
    config = fake_config(tmp_path, "codex", replay_scenario("codex", huge_line_bytes=size))
    lines = []
    result = await run(config, request_for("codex", cwd=worktree), tmp_path, on_line=lines.append)

    assert result.ok, result.error
    assert result.final_message == DONE
    assert result.output_bytes > size
    first = lines[0]
    assert first.startswith("x" * 1000)
    assert len(first) < 1024 * 1024 + 100
    assert f"{size - 1024 * 1024} more bytes of this line not shown" in first
    log_lines = (tmp_path / "logs" / "run.log").read_text().splitlines()
    assert any(line.startswith("xxx") and len(line) < 1024 * 1024 + 100 for line in log_lines)
    assert (tmp_path / "logs" / "run.log").stat().st_size < 2 * 1024 * 1024


@pytest.mark.parametrize("sandboxed", [True, False], ids=["bwrap", "none"])
async def test_cancelling_a_run_kills_its_process_group(sandboxed, tmp_path, worktree):
    pid_file = tmp_path / "pids.json"
    config = fake_config(tmp_path, "claude", {"mode": "hang", "pid_file": str(pid_file)},
                         sandbox=sandbox_for(tmp_path) if sandboxed else NoSandbox())
    task = asyncio.create_task(run(config, request_for("claude", cwd=worktree), tmp_path))
    pids = await wait_for_file(pid_file)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await all_gone(tmp_path), pids


async def test_async_and_failing_line_listeners(tmp_path, worktree):
    seen = []

    async def listen(line: str) -> None:
        seen.append(line)
        if len(seen) == 2:
            raise RuntimeError("listener bug")

    config = fake_config(tmp_path, "gemini", replay_scenario("gemini"))
    result = await run(config, request_for("gemini", cwd=worktree), tmp_path, on_line=listen)
    assert result.ok, result.error
    assert len(seen) == len(real_stdout("gemini")) + len(real_stderr("gemini"))


@pytest.mark.parametrize("engine", CLI_ENGINES)
async def test_a_missing_cli_raises_engine_not_installed_with_the_install_hint(engine, tmp_path, worktree):
    config = EngineConfig(base_env={"PATH": str(tmp_path / "empty-bin")})
    with pytest.raises(EngineNotInstalled) as raised:
        await run(config, request_for(engine, cwd=worktree), tmp_path)
    assert str(raised.value) == INSTALL_HINTS[engine]


async def test_a_wrong_explicit_path_raises_engine_not_installed(tmp_path, worktree):
    config = EngineConfig(bins={"codex": str(tmp_path / "no" / "codex")}, base_env=BASE_ENV)
    with pytest.raises(EngineNotInstalled) as raised:
        await run(config, request_for("codex", cwd=worktree), tmp_path)
    message = str(raised.value)
    assert "npm install -g @openai/codex" in message and "AGENTRY_CODEX_BIN" in message
    assert str(tmp_path / "no" / "codex") in message


@pytest.mark.parametrize("command_line", [(), ("no-such-agent-command",)])
async def test_the_command_engine_without_a_command_raises_engine_not_installed(command_line, tmp_path, worktree):
    config = EngineConfig(command_line=command_line, base_env={"PATH": str(tmp_path)})
    with pytest.raises(EngineNotInstalled, match="AGENTRY_ENGINE_COMMAND"):
        await run(config, request_for("command", cwd=worktree), tmp_path)


async def test_an_unknown_engine_is_refused(tmp_path, worktree):
    with pytest.raises(ValueError, match="unknown engine"):
        await run(EngineConfig(), request_for("cursor", cwd=worktree), tmp_path)


def test_engine_versions(tmp_path, monkeypatch):
    monkeypatch.setattr(agents, "VERSION_TIMEOUT_SECONDS", 0.5)
    bin_dir = tmp_path / "bin"
    install_fake(bin_dir, "codex", {"version": "codex-cli 0.169.0"})
    install_fake(bin_dir, "claude", {"version": "2.1.197 (Claude Code)"})
    slow = install_fake(tmp_path / "slow", "gemini", {"version_hang": True})
    command = install_fake(bin_dir, "my-agent", {"record": str(tmp_path / "command-ran.json")})
    config = EngineConfig(
        bins={"gemini": str(slow)},
        command_line=(str(command),),
        base_env={"PATH": str(bin_dir)},
    )
    versions = {entry["engine"]: entry for entry in engine_versions(config)}

    assert list(versions) == list(ENGINES)
    assert versions["codex"] == {
        "engine": "codex", "installed": True, "path": str(bin_dir / "codex"), "version": "codex-cli 0.169.0"
    }
    assert versions["claude"]["version"] == "2.1.197 (Claude Code)"
    assert versions["gemini"] == {"engine": "gemini", "installed": True, "path": str(slow), "version": None}
    assert versions["opencode"] == {"engine": "opencode", "installed": False, "path": None, "version": None}
    assert versions["aider"]["installed"] is False
    assert versions["command"] == {"engine": "command", "installed": True, "path": str(command), "version": None}
    assert not (tmp_path / "command-ran.json").exists(), "the command engine is never run by a probe"


async def test_a_prompt_too_long_for_argv_fails_the_run_clearly(tmp_path, worktree):
    config = fake_config(tmp_path, "codex", replay_scenario("codex"))
    result = await run(config, request_for("codex", cwd=worktree, prompt="é" * 70_000), tmp_path)
    assert not result.ok
    assert "prompt too long for a command-line argument: 140000 bytes" in result.error
    assert not (tmp_path / "record.json").exists()


async def test_the_command_engine_takes_a_long_prompt_on_stdin(tmp_path, worktree):
    config = fake_config(tmp_path, "command", {"stdout_lines": ["ok"]})
    prompt = "p" * 1_000_000
    result = await run(config, request_for("command", cwd=worktree, prompt=prompt), tmp_path)
    assert result.ok, result.error
    assert recorded(tmp_path)["stdin"] == prompt


async def test_a_missing_worktree_fails_the_run(tmp_path):
    config = fake_config(tmp_path, "codex", replay_scenario("codex"))
    result = await run(config, request_for("codex", cwd=tmp_path / "gone"), tmp_path)
    assert not result.ok
    assert result.error.startswith("cannot start codex:")


# Retry loops, causes and terminal escapes

RETRY_NOTICES = {
    # (stdout lines, stderr lines) each CLI prints while it retries a failing provider
    "codex": ([json.dumps({"type": "error", "message": "Reconnecting... 2/5 (stream disconnected)"})], []),
    "claude": ([json.dumps({"type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 10,
                            "retry_delay_ms": 500, "error_status": 500, "error": "server_error"})], []),
    "opencode": ([], ['timestamp=2026-12-01T23:37:00Z level=ERROR message="stream error" providerID=p '
                      'error.error="AI_APICallError: The model is overloaded"']),
    "gemini": ([], ["Attempt 2 failed with status 500. Retrying with backoff... _ApiError: overloaded"]),
    "aider": (["litellm.InternalServerError: InternalServerError: OpenAIException - overloaded",
               "Retrying in 0.2 seconds..."], []),
}
RETRY_CAUSE = {"codex": "Reconnecting", "claude": "API retry 1/10: 500 server_error",
               "opencode": "AI_APICallError: The model is overloaded", "gemini": "Attempt 2 failed with status 500",
               "aider": "litellm.InternalServerError"}


@pytest.mark.parametrize("engine", CLI_ENGINES)
async def test_a_cli_that_keeps_retrying_is_stopped_with_its_own_error(engine, tmp_path, worktree):
    stdout, stderr = RETRY_NOTICES[engine]
    scenario = {"mode": "repeat", "repeat_stdout": stdout, "repeat_stderr": stderr, "repeat_delay": 0.05}
    config = fake_config(tmp_path, engine, scenario, max_retries=3, idle_timeout_seconds=30)
    result = await run(config, request_for(engine, cwd=worktree), tmp_path)
    assert not result.ok and result.gave_up_retrying and not result.idle_timed_out
    assert result.duration_seconds < 10
    assert result.error.startswith("3 retries without progress; the CLI's last error:")
    assert RETRY_CAUSE[engine] in result.error


async def test_retry_notices_do_not_hold_off_the_idle_timeout(tmp_path, worktree):
    stdout, _ = RETRY_NOTICES["codex"]
    scenario = {"mode": "repeat", "repeat_stdout": stdout, "repeat_delay": 0.1}
    config = fake_config(tmp_path, "codex", scenario, max_retries=0, idle_timeout_seconds=1)
    result = await run(config, request_for("codex", cwd=worktree), tmp_path)
    assert result.idle_timed_out and not result.gave_up_retrying
    assert result.error == ("killed: no progress, only retry notices, for 1 s (idle timeout); last from the CLI: "
                            "Reconnecting... 2/5 (stream disconnected)")


async def test_progress_between_retries_starts_the_count_again(tmp_path, worktree):
    notice = RETRY_NOTICES["claude"][0][0]
    working = json.dumps({"type": "assistant", "message": {"content": [{"type": "text", "text": "working"}]}})
    scenario = {"mode": "repeat", "repeat_stdout": [notice, notice, working], "repeat_delay": 0.05}
    config = fake_config(tmp_path, "claude", scenario, max_retries=3, timeout_seconds=2)
    result = await run(config, request_for("claude", cwd=worktree), tmp_path)
    assert result.timed_out and not result.gave_up_retrying
    assert "last from the CLI: API retry 1/10" in result.error


async def test_terminal_escapes_are_stripped_from_errors_and_logs(tmp_path, worktree):
    scenario = {"stderr_lines": ["\x1b[31mError:\x1b[0m the \x1b[1mmodel\x1b[0m is gone"], "exit_code": 2}
    result = await run(fake_config(tmp_path, "codex", scenario), request_for("codex", cwd=worktree), tmp_path)
    assert "Error: the model is gone" in result.error and "\x1b" not in result.error
    assert "\x1b" not in (tmp_path / "logs" / "run.log").read_text()


# Each CLI's own sandbox and permissions against agentry's

class OuterSandbox:
    name = "bwrap"


@pytest.mark.parametrize("read_only", [False, True])
def test_codex_skips_its_own_sandbox_inside_agentrys_and_drops_the_operators_choice(read_only):
    config = EngineConfig(extra_args={"codex": ("-s", "danger-full-access", "--full-auto", "--sandbox=x")},
                          sandbox=OuterSandbox())
    argv = ENGINE_MODULES["codex"].build_command(request_for("codex", read_only=read_only), config)
    assert "--dangerously-bypass-approvals-and-sandbox" in argv
    assert not {"-s", "--full-auto", "danger-full-access", "--sandbox=x"} & set(argv)


def test_codex_enforces_read_only_runs_itself_without_agentrys_sandbox():
    config = EngineConfig(extra_args={"codex": ("-s", "danger-full-access", "--color", "never")})
    argv = ENGINE_MODULES["codex"].build_command(request_for("codex", read_only=True), config)
    assert argv.count("-s") == 1 and argv[argv.index("-s") + 1] == "read-only"
    assert "danger-full-access" not in argv and argv[2:4] == ["--color", "never"]
    writing = ENGINE_MODULES["codex"].build_command(request_for("codex"), config)
    assert writing[writing.index("-s") + 1] == "danger-full-access"  # the operator's choice for writing runs


def test_opencode_read_only_runs_deny_edits_over_every_config_file(tmp_path):
    run_env = ENGINE_MODULES["opencode"].run_env
    env = run_env(request_for("opencode", read_only=True), tmp_path, tmp_path / "oc.json", EngineConfig())
    assert env["OPENCODE_CONFIG"] == str(tmp_path / "oc.json")
    assert env["OPENCODE_DISABLE_PROJECT_CONFIG"] == "1"
    everything = {"edit": "deny", "bash": "deny"}
    assert json.loads(env["OPENCODE_CONFIG_CONTENT"])["permission"] == everything
    assert json.loads(env["OPENCODE_CONFIG_CONTENT"])["agent"]["plan"]["permission"] == everything
    assert json.loads(env["OPENCODE_PERMISSION"]) == everything
    sandboxed = run_env(request_for("opencode", read_only=True), tmp_path, None, EngineConfig(sandbox=OuterSandbox()))
    assert json.loads(sandboxed["OPENCODE_PERMISSION"]) == {"edit": "deny"}  # the mount keeps it read-only
    assert "OPENCODE_CONFIG_CONTENT" not in run_env(request_for("opencode"), tmp_path, None, EngineConfig())


@pytest.mark.parametrize(
    "settings, env, expected",
    [
        ({}, {"GEMINI_API_KEY": "k"}, {"general": {"maxAttempts": 3}, "security": {"auth": {"selectedType": "gemini-api-key"}}}),
        ({}, {"GOOGLE_GENAI_USE_VERTEXAI": "true", "GEMINI_API_KEY": "k"},
         {"general": {"maxAttempts": 3}, "security": {"auth": {"selectedType": "vertex-ai"}}}),
        ({"general": {"maxAttempts": 7}, "security": {"auth": {"selectedType": "oauth-personal"}}}, {"GEMINI_API_KEY": "k"},
         {"general": {"maxAttempts": 7}, "security": {"auth": {"selectedType": "oauth-personal"}}}),
        ({"security": "odd"}, {}, {"general": {"maxAttempts": 3}, "security": "odd"}),
    ],
)
def test_gemini_settings_get_bounded_attempts_and_an_auth_type(settings, env, expected):
    assert json.loads(ENGINE_MODULES["gemini"].complete_config(json.dumps(settings), env)) == expected
    assert ENGINE_MODULES["gemini"].complete_config("not json", env) == "not json"


def test_aider_gets_a_git_identity_and_a_local_price_map(tmp_path):
    env = ENGINE_MODULES["aider"].run_env(request_for("aider", read_only=True), tmp_path, None, EngineConfig())
    pairs = {env[f"GIT_CONFIG_KEY_{n}"]: env[f"GIT_CONFIG_VALUE_{n}"] for n in range(int(env["GIT_CONFIG_COUNT"]))}
    assert pairs == {"user.name": "agentry", "user.email": "agentry@localhost"}
    assert ENGINE_MODULES["aider"].QUIET_ENV["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert json.loads(next(iter(ENGINE_MODULES["aider"].HOME_FILES.values())))
