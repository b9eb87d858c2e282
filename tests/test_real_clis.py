"""The five real agent CLIs, at the versions `.ci/run` pins, through whole flows in the sandbox.

Each CLI talks to the scripted model server (`tests/fakes/model_server.py`) on loopback: a signed
`/agent run` comment is planned, executed (a file written through the CLI's own tools), reviewed
by QA and ends in a pull request, and the failure cases end quickly with their cause on the status
comment. A CLI that is not installed skips its tests here, and fails them where
`AGENTRY_REQUIRE_CLIS=1` (CI). `AGENTRY_TEST_CLI_PATH` names extra directories to find them in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot.models import CodexRun
from tests.fakes.model_server import Fail, Hang, ModelServer, Say, Write
from tests.fakes.providers import scripted_provider

CLIS = ("codex", "claude", "opencode", "gemini", "aider")
PLAN_MARK, EXECUTE_MARK, QA_MARK = "You are planning work", "carrying out one step", "You are reviewing one step"
PLAN = {"summary": "Add a greeting file.",
        "steps": [{"name": "Write greeting", "prompt": "Create hello.txt with a one-line greeting."}]}
GREETING = "hello from the scripted model\n"
OUTAGE = "E7f3a"  # short enough for aider not to wrap its error line
CAUSE = {"codex": "high demand"}  # codex words a 500 itself; the others pass the provider's message on
LIMIT_SECONDS = 90


def cli_path(engine: str) -> str:
    extra = os.environ.get("AGENTRY_TEST_CLI_PATH", "")
    found = shutil.which(engine, path=os.pathsep.join(part for part in (extra, os.environ.get("PATH", "")) if part))
    if found:
        return found
    message = f"{engine} is not installed (`.ci/run` installs the pinned CLIs; AGENTRY_TEST_CLI_PATH finds them)"
    if os.environ.get("AGENTRY_REQUIRE_CLIS"):
        pytest.fail(message)
    pytest.skip(message)


def provider_settings(engine: str, url: str, tmp_path: Path, monkeypatch) -> dict[str, str]:
    """Points `engine` at the model server: the agentry settings, and the provider variables that
    agentry passes on from its own environment."""
    provider = scripted_provider(engine, url, tmp_path)
    for name, value in provider.env.items():
        monkeypatch.setenv(name, value)
    return {f"AGENTRY_{engine.upper()}_BIN": cli_path(engine), "AGENTRY_DEFAULT_ENGINE": engine, **provider.settings}


def script_the_happy_path(model: ModelServer) -> None:
    """Plan and QA try to write too: read-only runs must leave no trace."""
    model.on(PLAN_MARK, Write("written-by-plan.txt", "no\n"), Say(json.dumps(PLAN)))
    model.on(EXECUTE_MARK, Write("hello.txt", GREETING), Say("Wrote hello.txt."))
    model.on(QA_MARK, Write("written-by-qa.txt", "no\n"), Say("hello.txt holds a greeting.\nVERDICT: PASS"))


async def runs_of(flow) -> list[CodexRun]:
    async with flow.deps.sessions() as session:
        return list((await session.exec(select(CodexRun).order_by(col(CodexRun.created_at)))).all())


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
async def model():
    async with ModelServer() as server:
        yield server


@pytest.fixture
def run_with(start, model, tmp_path, monkeypatch):
    async def run_with(engine: str, url: str | None = None, **env: str):
        return await start(**provider_settings(engine, url or model.url, tmp_path, monkeypatch), **env)
    return run_with


@pytest.mark.parametrize("engine", CLIS)
async def test_a_run_is_planned_executed_reviewed_and_proposed(engine, run_with, model):
    script_the_happy_path(model)
    flow = await run_with(engine)
    await flow.comment("/agent run add a greeting")
    protocol = await flow.protocol()
    [step] = await flow.steps()
    assert (step.status, step.runtime_state.get("verdict")) == ("completed", "PASS"), flow.status_comment(protocol)
    assert flow.show(protocol.branch, "hello.txt") == GREETING.strip()
    changed = flow.branch_log(protocol.branch)
    assert len(changed) == 1
    files = set(flow.show(protocol.branch, "").split())
    assert not files & {"written-by-plan.txt", "written-by-qa.txt"}
    assert not any(name.startswith(".aider") for name in files)
    [pull] = flow.pulls()
    assert pull["head"]["ref"] == protocol.branch and not pull["draft"]
    runs = await runs_of(flow)
    assert [run.run_kind for run in runs] == ["plan", "exec", "qa"]
    assert all(run.cost_tokens > 0 and run.status == "succeeded" for run in runs), [run.result for run in runs]
    assert all(run.result["duration_seconds"] > 0 for run in runs)
    assert protocol.tokens_used == sum(run.cost_tokens for run in runs)
    assert step.tokens_used == runs[1].cost_tokens + runs[2].cost_tokens
    if engine == "claude":  # the only CLI that prices its own usage; kept to the fraction of a cent
        costs = [run.cost_usd for run in runs]
        assert all(cost and cost < 0.01 for cost in costs)
        assert step.cost_usd == pytest.approx(costs[1] + costs[2])
        assert protocol.cost_usd == pytest.approx(sum(costs))
    if engine in ("codex", "claude", "opencode", "gemini"):
        assert all(run.result["session_id"] for run in runs)


@pytest.mark.parametrize("engine", CLIS)
async def test_plan_runs_stay_read_only_without_agentrys_sandbox_too(engine, run_with, model):
    """The CLI's own read-only mode holds, whatever the operator's config allows (opencode's does)."""
    script_the_happy_path(model)
    flow = await run_with(engine, AGENTRY_SANDBOX="none")
    await flow.comment("/agent plan add a greeting")
    protocol = await flow.protocol()
    assert protocol.status == "planned", flow.status_comment(protocol)
    worktrees = flow.deps.settings.data_dir / "worktrees"
    assert not list(worktrees.rglob("written-by-plan.txt"))  # the plan came after the attempt to write it


@pytest.mark.parametrize("engine", CLIS)
async def test_a_step_whose_agent_changes_nothing_fails_and_opens_no_pull_request(engine, run_with, model):
    script_the_happy_path(model)
    model.on(EXECUTE_MARK, Say("All done, nothing needed changing."))
    flow = await run_with(engine)
    await flow.comment("/agent run add a greeting")
    protocol = await flow.protocol()
    [step] = await flow.steps()
    assert (protocol.status, step.status) == ("blocked", "failed")
    assert "the agent changed no file" in step.runtime_state["error"]
    assert "changed no file" in flow.status_comment(protocol)
    assert flow.pulls() == []


@pytest.mark.parametrize("engine", CLIS)
async def test_a_failing_provider_ends_the_step_quickly_with_its_error(engine, run_with, model):
    script_the_happy_path(model)
    model.on(EXECUTE_MARK, Fail(500, OUTAGE))
    flow = await run_with(engine)
    started = time.monotonic()
    await flow.comment("/agent run add a greeting")
    protocol = await flow.protocol()
    [step] = await flow.steps()
    execute = next(run for run in await runs_of(flow) if run.run_kind == "exec")
    assert (protocol.status, step.status) == ("blocked", "failed")
    assert execute.result["duration_seconds"] < LIMIT_SECONDS, execute.error
    assert time.monotonic() - started < LIMIT_SECONDS + 60
    assert CAUSE.get(engine, OUTAGE) in flow.status_comment(protocol), flow.status_comment(protocol)


@pytest.mark.parametrize("engine", CLIS)
async def test_an_unreachable_provider_ends_the_plan_quickly_with_the_cause(engine, run_with, closed_port):
    flow = await run_with(engine, url=f"http://127.0.0.1:{closed_port}")
    await flow.comment("/agent run add a greeting")
    protocol = await flow.protocol()
    [plan] = await runs_of(flow)
    assert (protocol.status, plan.status) == ("blocked", "failed")
    assert plan.result["duration_seconds"] < LIMIT_SECONDS, plan.error
    comment = flow.status_comment(protocol)
    assert f"127.0.0.1:{closed_port}" in comment, comment


@pytest.mark.parametrize("engine", CLIS)
async def test_a_provider_that_stops_answering_ends_at_the_idle_timeout_with_the_cause(engine, run_with, model):
    script_the_happy_path(model)
    model.on(EXECUTE_MARK, Hang())
    flow = await run_with(engine, AGENTRY_IDLE_TIMEOUT_SECONDS="20")
    await flow.comment("/agent run add a greeting")
    protocol = await flow.protocol()
    execute = next(run for run in await runs_of(flow) if run.run_kind == "exec")
    assert execute.status == "failed" and execute.result["idle_timed_out"]
    assert execute.result["duration_seconds"] < LIMIT_SECONDS
    assert "for 20 s (idle timeout)" in flow.status_comment(protocol)


async def test_a_qa_run_that_cannot_run_blocks_the_step_and_offers_qa_again(run_with, model):
    script_the_happy_path(model)
    model.on(QA_MARK, Fail(500, OUTAGE))
    flow = await run_with("claude")
    await flow.comment("/agent run add a greeting")
    protocol = await flow.protocol()
    [step] = await flow.steps()
    comment = flow.status_comment(protocol)
    assert (protocol.status, step.status, step.runtime_state.get("verdict")) == ("blocked", "blocked", None)
    assert "QA could not run" in comment and OUTAGE in comment and "FAIL" not in comment
    assert "`/agent qa 1`" in comment and "`/agent retry 1`" not in comment
    model.on(QA_MARK, Say("Looks right.\nVERDICT: PASS"))
    await flow.comment("/agent qa 1")
    [step] = await flow.steps()
    assert (step.status, step.runtime_state["verdict"]) == ("completed", "PASS")
    assert len(flow.pulls()) == 1


async def test_ralph_out_of_iterations_without_the_promise_is_neutral_with_a_draft(run_with, model):
    model.on("in repeated iterations", Write("progress.txt", "more\n"), Say("Still working on it."))
    flow = await run_with("claude")
    await flow.comment("/agent ralph --max-iterations 2 --promise DONE keep improving progress.txt")
    protocol = await flow.protocol()
    [step] = await flow.steps()
    assert step.runtime_state["stopped"] == "max_iterations"
    [pull] = flow.pulls()
    assert pull["draft"] and "without the promise `DONE`" in pull["body"]
    [check] = [run for run in flow.github.check_runs.values() if run.get("head_sha") == protocol.head_sha]
    assert (check["status"], check.get("conclusion")) == ("completed", "neutral")
    assert "without the promise `DONE`" in flow.status_comment(protocol)


async def test_a_not_installed_engine_is_named_with_a_hint_that_can_be_pasted(start, tmp_path):
    flow = await start(AGENTRY_DEFAULT_ENGINE="claude", AGENTRY_CLAUDE_BIN=str(tmp_path / "missing" / "claude"))
    await flow.comment("/agent run add a greeting")
    comment = flow.status_comment(await flow.protocol())
    assert "`npm install -g @anthropic-ai/claude-code`" in comment and "\u200d" not in comment.split("claude is")[1]


def test_the_readme_names_the_versions_ci_installs():
    pins = (Path(__file__).parent.parent / ".ci" / "agent-clis").read_text()
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    versions = re.findall(r"@(\d+\.\d+\.\d+)|==(\d+\.\d+\.\d+)", pins)
    assert len(versions) == len(CLIS)
    for engine, version in zip(CLIS, ("".join(found) for found in versions)):
        assert f"| {engine} | {version} |" in readme, (engine, version)
