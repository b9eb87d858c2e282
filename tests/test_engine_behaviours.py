"""The protocol engine's behaviours through whole flows: a signed comment in, real git, a fake GitHub,
and each agent a small program written by the test (see tests/engine_support.py).

Ralph loops (promise, iteration limit, cancel), stops, token budgets, invalid plans, `ask` sessions, CI
results on the branch, loop policies and blocking clarifications.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys

import pytest

from tests.api_support import API_TOKEN, AUTH
from tests.conftest import run_jobs
from tests.engine_support import (
    CLAUDE_SESSION_ID,
    CLAUDE_TOKENS,
    agent_calls,
    claude_agent,
    command_agent,
    signal_agent,
    wait_for_file,
)
from tests.flow_support import git

PYTHON = shlex.quote(sys.executable)


def with_command(script) -> dict:
    return {"AGENTRY_ENGINE_COMMAND": f"{PYTHON} {shlex.quote(str(script))}"}


def plan_of(*steps: dict, **extra) -> str:
    """Agent code that prints this plan as its final message."""
    return f"print({json.dumps({'summary': 'Planned by the test agent', 'steps': list(steps), **extra})!r})"


# Ralph

# Feedback: how many lines progress.txt has; passes from two lines on.
COUNT_LINES = (f"{PYTHON} -c \"import pathlib, sys; n = len(pathlib.Path(sys.argv[1]).read_text().splitlines()); "
               f"print(n); sys.exit(0 if n >= 2 else 1)\" progress.txt")
# Feedback whose output states the promise (which must not end the loop).
ECHO_PROMISE = f"{PYTHON} -c \"import sys; print(sys.argv[1])\" <promise>DONE</promise>"


def ralph_agent(tmp_path, *, promise_at: int | None, change_on=(1, 2, 3), echo_prompt=False, wait_on=None):
    return command_agent(tmp_path, f"""
if kind == "ralph":
    number = bump("ralph")
    if {echo_prompt!r}:
        sys.stderr.write(prompt)
    if number == {wait_on!r}:
        (state / "iteration-started").write_text(str(number))
        wait_for("go")
    if number in {tuple(change_on)!r}:
        with open("progress.txt", "a") as progress:
            progress.write(f"iteration {{number}}\\n")
    print(f"iteration {{number}}: appended a line to progress.txt")
    if {promise_at!r} is not None and number >= {promise_at!r}:
        print("Everything is done and the feedback passes.")
        print("<promise>DONE</promise>")
    else:
        print("More work remains.")
""")


def ralph_command(feedback: str) -> str:
    return f"/agent ralph --max-iterations 3 --promise DONE --feedback '{feedback}' keep appending to progress.txt"


async def test_ralph_ends_when_the_agent_states_the_promise(start, tmp_path):
    flow = await start(**with_command(ralph_agent(tmp_path, promise_at=2)))
    await flow.comment(ralph_command(COUNT_LINES))
    protocol = await flow.protocol()
    [step] = await flow.steps()
    iterations = step.runtime_state["iterations"]
    assert [item["iteration"] for item in iterations] == [1, 2]
    assert [[check["exit_code"] for check in item["feedback"]] for item in iterations] == [[1], [0]]
    assert [item["promise_met"] for item in iterations] == [False, True]
    assert (step.status, step.runtime_state["stopped"]) == ("completed", "promise")
    assert flow.branch_log(protocol.branch) == ["ralph: iteration 2", "ralph: iteration 1"]
    assert flow.show(protocol.branch, "progress.txt") == "iteration 1\niteration 2"
    second_prompt = agent_calls(tmp_path, "ralph")[1]["prompt"]
    assert "iteration 2 of at most 3" in second_prompt and "(exit 1)" in second_prompt
    [pull] = flow.pulls()
    assert pull["head"]["ref"] == protocol.branch and "Closes #1" in pull["body"]
    assert protocol.runtime_state["awaiting_merge"] and protocol.pr_number == pull["number"]


async def test_ralph_stops_at_the_iteration_limit_and_commits_only_changes(start, tmp_path):
    flow = await start(**with_command(ralph_agent(tmp_path, promise_at=None, change_on=(1, 3))))
    await flow.comment(ralph_command(COUNT_LINES))
    protocol = await flow.protocol()
    [step] = await flow.steps()
    iterations = step.runtime_state["iterations"]
    assert [item["iteration"] for item in iterations] == [1, 2, 3]
    assert [[check["exit_code"] for check in item["feedback"]] for item in iterations] == [[1], [1], [0]]
    assert (step.status, step.runtime_state["stopped"]) == ("completed", "max_iterations")
    assert flow.branch_log(protocol.branch) == ["ralph: iteration 3", "ralph: iteration 1"]
    assert len(flow.pulls()) == 1 and protocol.pr_number


async def test_the_promise_in_the_prompt_or_the_feedback_output_does_not_end_ralph(start, tmp_path):
    flow = await start(**with_command(ralph_agent(tmp_path, promise_at=None, echo_prompt=True)))
    await flow.comment(ralph_command(ECHO_PROMISE))
    [step] = await flow.steps()
    iterations = step.runtime_state["iterations"]
    prompts = [call["prompt"] for call in agent_calls(tmp_path, "ralph")]
    assert "<promise>DONE</promise>" in prompts[0]  # the prompt tells the agent how to finish
    assert "(exit 0)\n<promise>DONE</promise>" in prompts[1]  # the feedback output said it
    assert [item["promise_met"] for item in iterations] == [False, False, False]
    assert (step.status, step.runtime_state["stopped"]) == ("completed", "max_iterations")


async def test_cancel_kills_the_running_agent_within_seconds(start, tmp_path):
    flow = await start(**with_command(ralph_agent(tmp_path, promise_at=None, wait_on=1)))
    await flow.post_comment(ralph_command(COUNT_LINES))
    worker = asyncio.create_task(run_jobs(flow.deps))
    await wait_for_file(tmp_path / "agent-state" / "iteration-started")
    cancelled_at = asyncio.get_running_loop().time()
    await flow.post_comment("/agent cancel")  # the worker handles it while iteration 1 runs
    await asyncio.wait_for(worker, 15)  # the agent waits for a "go" that never comes: only a kill ends it
    assert asyncio.get_running_loop().time() - cancelled_at < 10
    protocol = await flow.protocol()
    [step] = await flow.steps()
    assert (step.status, step.runtime_state["stopped"]) == ("cancelled", "cancelled")
    assert step.runtime_state.get("iterations", []) == []
    [run] = [run for run in await flow.runs() if run.run_kind == "ralph"]
    assert run.status == "cancelled" and run.result["exit_code"] != 0
    assert protocol.status == "cancelled" and flow.pulls() == []


# Stop: after the running step or iteration, or now

async def test_stop_lets_the_ralph_iteration_finish_then_opens_the_pull_request(start, tmp_path):
    flow = await start(**with_command(ralph_agent(tmp_path, promise_at=None, wait_on=1)))
    await flow.post_comment(ralph_command(COUNT_LINES))
    worker = asyncio.create_task(run_jobs(flow.deps))
    await wait_for_file(tmp_path / "agent-state" / "iteration-started")
    await flow.post_comment("/agent stop")
    await _stop_recorded(flow)
    signal_agent(tmp_path, "go")  # iteration 1 ends on its own; no second one starts
    await asyncio.wait_for(worker, 30)
    protocol = await flow.protocol()
    [step] = await flow.steps()
    assert [item["iteration"] for item in step.runtime_state["iterations"]] == [1]
    assert (step.status, step.runtime_state["stopped"]) == ("completed", "manual_stop")
    assert (protocol.status, protocol.runtime_state["completion_reason"]) == ("completed", "manual_stop")
    assert flow.branch_log(protocol.branch) == ["ralph: iteration 1"]
    [pull] = flow.pulls()
    assert pull["head"]["ref"] == protocol.branch and protocol.pr_number == pull["number"]
    assert "Stopped by Codertocat" in pull["body"] and "Closes #1" not in pull["body"]
    assert "⏹️ Stopped by Codertocat: the pull request holds the work done so far." in flow.status_comment(protocol)


async def test_a_ralph_step_stopped_through_the_api_fails_and_keeps_its_iterations(start, tmp_path):
    flow = await start(AGENTRY_API_TOKEN=API_TOKEN, **with_command(ralph_agent(tmp_path, promise_at=None, wait_on=2)))
    await flow.post_comment(ralph_command(COUNT_LINES))
    worker = asyncio.create_task(run_jobs(flow.deps))
    await wait_for_file(tmp_path / "agent-state" / "iteration-started")
    [step] = await flow.steps()
    assert (await flow.client.post(f"/steps/{step.id}/actions/stop", headers=AUTH)).status == 200
    await asyncio.wait_for(worker, 30)
    protocol = await flow.protocol()
    [step] = await flow.steps()
    assert (step.status, step.runtime_state["stopped"], protocol.status) == ("failed", "manual_stop", "blocked")
    assert step.runtime_state["error"] == "the Ralph loop was stopped by api"
    assert [item["iteration"] for item in step.runtime_state["iterations"]] == [1]
    assert flow.branch_log(protocol.branch)[-1] == "ralph: iteration 1" and flow.pulls() == []


def stubborn_agent(tmp_path):
    """Plans two steps; the first leaves a file, starts a child that ignores SIGTERM, and waits."""
    return command_agent(tmp_path, f"""
import signal, subprocess
if kind == "plan":
    {plan_of({"name": "Draft", "prompt": "Write DRAFT.md", "qa": "skip"},
             {"name": "Polish", "prompt": "Polish DRAFT.md", "qa": "skip"})}
elif kind == "execute" and (number := bump("execute")) == 1:
    Path("DRAFT.md").write_text("half a draft\\n")
    child = subprocess.Popen([sys.executable, "-c",
                              "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
                              str(state)])
    (state / "pids").write_text(f"{{os.getpid()}} {{child.pid}}")
    wait_for("never")
else:
    Path("DRAFT.md").write_text(f"draft, pass {{number}}\\n")
    print("worked on the draft")
""")


def _agent_processes(tmp_path) -> list[int]:
    """Processes whose command line names the test's directory: the agent and its child (the sandbox
    gives them pids of their own namespace, so they are found from outside)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline, open(f"/proc/{entry.name}/stat") as stat:
                named, state = str(tmp_path).encode() in cmdline.read(), stat.read().rsplit(") ", 1)[-1][0]
        except OSError:
            continue
        if named and state != "Z":
            found.append(int(entry.name))
    return found


async def _stop_recorded(flow) -> float:
    """When the service recorded the stop request (the moment the command took effect)."""
    deadline = asyncio.get_running_loop().time() + 15
    while not await flow.events("stop_requested") and not await flow.events("step_stop_requested"):
        assert asyncio.get_running_loop().time() < deadline, "the stop was never recorded"
        await asyncio.sleep(0.02)
    return asyncio.get_running_loop().time()


async def _gone_within(tmp_path, seconds: float) -> None:
    started = asyncio.get_running_loop().time()
    while left := _agent_processes(tmp_path):
        waited = asyncio.get_running_loop().time() - started
        assert waited < seconds, f"still running after {waited:.1f} s: {left}"
        await asyncio.sleep(0.02)


async def test_stop_now_kills_the_agent_tree_within_two_seconds_and_keeps_its_work(start, tmp_path):
    flow = await start(**with_command(stubborn_agent(tmp_path)))
    await flow.post_comment("/agent run write a draft")
    worker = asyncio.create_task(run_jobs(flow.deps))
    await wait_for_file(tmp_path / "agent-state" / "pids")
    assert len(_agent_processes(tmp_path)) >= 2
    await flow.post_comment("/agent stop --now")
    await _stop_recorded(flow)
    await _gone_within(tmp_path, 2.0)
    await asyncio.wait_for(worker, 30)
    protocol = await flow.protocol()
    first, second = await flow.steps()
    assert first.runtime_state["error"] == "command was stopped by Codertocat"
    assert (first.status, second.status) == ("cancelled", "cancelled")
    assert (protocol.status, protocol.runtime_state["completion_reason"]) == ("completed", "manual_stop")
    assert flow.show(protocol.branch, "DRAFT.md") == "half a draft"
    [pull] = flow.pulls()
    assert pull["draft"] and "Stopped by Codertocat" in pull["body"]
    assert len(agent_calls(tmp_path, "execute")) == 1


async def test_a_step_stopped_through_the_api_fails_keeping_its_work_and_runs_again(start, tmp_path):
    flow = await start(AGENTRY_API_TOKEN=API_TOKEN, **with_command(stubborn_agent(tmp_path)))
    await flow.post_comment("/agent run write a draft")
    worker = asyncio.create_task(run_jobs(flow.deps))
    await wait_for_file(tmp_path / "agent-state" / "pids")
    assert len(_agent_processes(tmp_path)) >= 2
    first, _ = await flow.steps()
    response = await flow.client.post(f"/steps/{first.id}/actions/stop", headers=AUTH)
    assert response.status == 200 and (await response.json())["status"] == "running"
    await _gone_within(tmp_path, 2.0)
    await asyncio.wait_for(worker, 30)
    protocol = await flow.protocol()
    first, second = await flow.steps()
    assert (first.status, second.status, protocol.status) == ("failed", "pending", "blocked")
    assert first.runtime_state["error"].startswith("command was stopped by ")
    assert first.runtime_state.get("stop_requested_by") is None
    assert flow.show(protocol.branch, "DRAFT.md") == "half a draft"
    await flow.comment("/agent retry")
    protocol = await flow.protocol()
    assert [step.status for step in await flow.steps()] == ["completed", "completed"]
    assert flow.show(protocol.branch, "DRAFT.md") == "draft, pass 3"
    assert protocol.runtime_state["awaiting_merge"] and "completion_reason" not in protocol.runtime_state


# Plain tasks: one step, no plan

def task_agent(tmp_path):
    return command_agent(tmp_path, """
if kind == "plan":
    sys.exit("a plain task must not be planned")
elif kind == "execute":
    Path("TYPO.md").write_text("fixed\\n")
    print("fixed the typo")
elif kind == "qa":
    print("VERDICT: PASS")
""")


async def test_run_without_a_plan_runs_one_step_with_qa_to_a_pull_request(start, tmp_path):
    flow = await start(**with_command(task_agent(tmp_path)))
    await flow.comment("/agent run --no-plan fix the typo in TYPO.md")
    protocol = await flow.protocol()
    [step] = await flow.steps()
    assert (protocol.kind, step.step_name, step.status, step.runtime_state["verdict"]) == (
        "code", "fix the typo in TYPO.md", "completed", "PASS")
    assert [call["kind"] for call in agent_calls(tmp_path)] == ["execute", "qa"]
    [execute] = agent_calls(tmp_path, "execute")
    assert "fix the typo in TYPO.md" in execute["prompt"] and "<untrusted-input" in execute["prompt"]
    assert flow.show(protocol.branch, "TYPO.md") == "fixed"
    [pull] = flow.pulls()
    assert pull["head"]["ref"] == protocol.branch and "Closes #1" in pull["body"]


async def test_a_code_task_from_the_api_produces_a_pull_request_without_a_plan(start, tmp_path):
    flow = await start(AGENTRY_API_TOKEN=API_TOKEN, **with_command(task_agent(tmp_path)))
    await flow.comment("/agent status")  # the repository becomes a project
    [project] = await (await flow.client.get("/projects", headers=AUTH)).json()
    created = await flow.client.post(f"/projects/{project['id']}/protocols", headers=AUTH, json={
        "protocol_name": "Fix the typo", "kind": "code", "prompt": "Fix the typo in TYPO.md", "issue_number": 1})
    protocol_id = (await created.json())["id"]
    assert (await flow.client.post(f"/protocols/{protocol_id}/actions/start", headers=AUTH)).status == 200
    await run_jobs(flow.deps)
    protocol = await flow.protocol()
    assert protocol.kind == "code" and [step.status for step in await flow.steps()] == ["completed"]
    assert [call["kind"] for call in agent_calls(tmp_path)] == ["execute", "qa"]
    assert [run.run_kind for run in await flow.runs() if run.run_kind == "plan"] == []
    [pull] = flow.pulls()
    assert pull["head"]["ref"] == protocol.branch and flow.show(protocol.branch, "TYPO.md") == "fixed"


# Protocols that depend on others

def named_file_agent(tmp_path):
    """Writes the file the task names; a task that says "fail" fails."""
    return command_agent(tmp_path, """
if kind == "execute":
    name = prompt.split("write ")[1].split()[0]
    if name == "fail":
        sys.exit("failing as asked")
    Path(name).write_text(name + "\\n")
    print("wrote", name)
elif kind == "qa":
    print("VERDICT: PASS")
""")


async def test_a_protocol_starts_when_the_one_it_depends_on_completes(start, tmp_path):
    flow = await start(AGENTRY_API_TOKEN=API_TOKEN, **with_command(named_file_agent(tmp_path)))
    await flow.comment("/agent status")  # the repository becomes a project
    [project] = await (await flow.client.get("/projects", headers=AUTH)).json()

    async def task(prompt: str, **fields) -> int:
        created = await flow.client.post(f"/projects/{project['id']}/protocols", headers=AUTH, json={
            "protocol_name": prompt, "kind": "code", "prompt": prompt, **fields})
        assert created.status == 200, await created.text()
        return (await created.json())["id"]

    first = await task("write FIRST.md")
    second = await task("write SECOND.md", depends_on=[first])
    doomed = await task("write fail")
    stuck = await task("write NEVER.md", depends_on=[first, doomed])
    for waiting in (second, stuck):
        await flow.client.post(f"/protocols/{waiting}/actions/start", headers=AUTH)
    await run_jobs(flow.deps)
    assert agent_calls(tmp_path) == []  # nothing they wait for has run
    for ready in (first, doomed):
        await flow.client.post(f"/protocols/{ready}/actions/start", headers=AUTH)
    await run_jobs(flow.deps)
    protocols = {row.id: row for row in await flow.protocols()}
    assert [protocols[key].status for key in (first, second, doomed, stuck)] == [
        "completed", "completed", "blocked", "blocked"]
    prompts = [call["prompt"] for call in agent_calls(tmp_path, "execute")]
    assert prompts.index(next(p for p in prompts if "FIRST.md" in p)) < prompts.index(
        next(p for p in prompts if "SECOND.md" in p))
    assert flow.show(protocols[second].branch, "SECOND.md") == "SECOND.md"
    assert protocols[stuck].runtime_state["blocked_reason"] == (
        f"waiting for the protocols it depends on to complete: #{doomed} blocked")
    [released] = await flow.events("dependencies_completed")
    assert released.protocol_run_id == second


async def test_a_chosen_branch_someone_else_has_is_never_worked_on(start, tmp_path):
    flow = await start(AGENTRY_API_TOKEN=API_TOKEN, **with_command(named_file_agent(tmp_path)))
    await flow.comment("/agent status")
    [project] = await (await flow.client.get("/projects", headers=AUTH)).json()
    git("--git-dir", str(flow.remote), "branch", "someone/else", "main")
    before = git("--git-dir", str(flow.remote), "rev-parse", "someone/else")
    created = await flow.client.post(f"/projects/{project['id']}/protocols", headers=AUTH, json={
        "protocol_name": "Theirs", "kind": "code", "prompt": "write THEIRS.md", "branch": "someone/else"})
    protocol_id = (await created.json())["id"]
    await flow.client.post(f"/protocols/{protocol_id}/actions/start", headers=AUTH)
    await run_jobs(flow.deps)
    [step] = await flow.steps()
    assert step.status == "failed" and "the remote already has a branch someone/else" in step.runtime_state["error"]
    assert agent_calls(tmp_path) == [] and git("--git-dir", str(flow.remote), "rev-parse", "someone/else") == before


# Token budgets (the stand-in claude reports the recorded usage: 250 tokens)

def budget_agent(tmp_path):
    return claude_agent(tmp_path, """
if kind == "plan":
    reply(json.dumps({"summary": "Say hello", "steps": [
        {"name": "Write hello", "prompt": "Create hello.txt", "qa": "skip"}]}))
elif kind == "execute":
    Path("hello.txt").write_text("hello from fake model\\n")
    reply("Done: wrote hello.txt")
else:
    sys.exit(f"unexpected {kind} call")
""")


async def test_a_strict_token_budget_fails_the_step_and_blocks_the_protocol(start, tmp_path):
    flow = await start(AGENTRY_DEFAULT_ENGINE="claude", AGENTRY_CLAUDE_BIN=str(budget_agent(tmp_path)),
                       AGENTRY_TOKEN_BUDGET_MODE="strict", AGENTRY_MAX_TOKENS_PER_STEP="10")
    await flow.comment("/agent run say hello")
    protocol = await flow.protocol()
    [step] = await flow.steps()
    message = f"token budget exceeded: the step used {CLAUDE_TOKENS} tokens of 10"
    assert (step.status, step.runtime_state["error"]) == ("failed", message)
    assert step.tokens_used == CLAUDE_TOKENS and protocol.tokens_used == 2 * CLAUDE_TOKENS  # with the plan run
    assert protocol.status == "blocked"
    assert message in flow.status_comment(protocol)
    assert flow.pulls() == []


async def test_a_warn_token_budget_records_an_event_and_completes(start, tmp_path):
    flow = await start(AGENTRY_DEFAULT_ENGINE="claude", AGENTRY_CLAUDE_BIN=str(budget_agent(tmp_path)),
                       AGENTRY_TOKEN_BUDGET_MODE="warn", AGENTRY_MAX_TOKENS_PER_STEP="10")
    await flow.comment("/agent run say hello")
    protocol = await flow.protocol()
    [step] = await flow.steps()
    assert step.status == "completed" and step.tokens_used == CLAUDE_TOKENS
    [event] = await flow.events("budget_exceeded")
    assert event.step_run_id == step.id and f"{CLAUDE_TOKENS} tokens of 10" in event.message
    assert flow.show(protocol.branch, "hello.txt") == "hello from fake model"
    assert protocol.runtime_state["awaiting_merge"] and len(flow.pulls()) == 1


@pytest.mark.parametrize(("env", "option", "message"), [
    ({"AGENTRY_MAX_TOKENS_PER_STEP": "300"}, "", f"the step used {2 * CLAUDE_TOKENS} tokens of 300"),
    ({}, "--max-tokens 400 ", f"the protocol used {2 * CLAUDE_TOKENS} tokens of 400"),
])
async def test_a_strict_token_budget_stops_a_ralph_loop(start, tmp_path, env, option, message):
    script = claude_agent(tmp_path, """
if kind != "ralph":
    sys.exit(f"unexpected {kind} call")
with open("progress.txt", "a") as progress:
    progress.write(f"iteration {bump('ralph')}\\n")
reply("Appended a line; more remains.")
""")
    flow = await start(AGENTRY_DEFAULT_ENGINE="claude", AGENTRY_CLAUDE_BIN=str(script),
                       AGENTRY_TOKEN_BUDGET_MODE="strict", **env)
    await flow.comment(f"/agent ralph --max-iterations 5 --promise DONE {option}keep appending", user="maintainer")
    protocol = await flow.protocol()
    [step] = await flow.steps()
    assert [item["iteration"] for item in step.runtime_state["iterations"]] == [1, 2]
    assert (step.status, step.runtime_state["stopped"]) == ("failed", "budget")
    assert step.runtime_state["error"] == f"token budget exceeded: {message}"
    assert step.tokens_used == 2 * CLAUDE_TOKENS and protocol.status == "blocked"
    assert flow.branch_log(protocol.branch) == ["ralph: iteration 2", "ralph: iteration 1"]  # the work is kept
    assert message in flow.status_comment(protocol)


# Plans that fail validation

async def test_an_invalid_plan_blocks_with_its_reasons_and_retry_plans_again(start, tmp_path):
    invalid = {"steps": [{"name": "Write notes", "prompt": "Write NOTES.md", "qa": "loose",
                          "depends_on": ["Gather facts"]}]}
    script = command_agent(tmp_path, f"""
if kind == "plan":
    if bump("plan") == 1:
        print({json.dumps(invalid)!r})
    else:
        {plan_of({"name": "Write notes", "prompt": "Write NOTES.md", "qa": "skip"})}
elif kind == "execute":
    Path("NOTES.md").write_text("notes\\n")
    print("wrote NOTES.md")
""")
    flow = await start(**with_command(script))
    await flow.comment("/agent run write notes")
    protocol = await flow.protocol()
    reason = protocol.runtime_state["blocked_reason"]
    assert protocol.status == "blocked" and await flow.steps() == []
    assert "steps[0].qa: 'loose' is not one of ['skip', 'light', 'full']" in reason
    assert "steps[0].depends_on[0]: no step is named 'Gather facts'" in reason
    comment = flow.status_comment(protocol)
    assert "steps[0].qa" in comment and "steps[0].depends_on[0]" in comment

    await flow.comment("/agent retry")
    protocol = await flow.protocol()
    [step] = await flow.steps()
    assert (step.step_name, step.status) == ("Write notes", "completed")
    assert protocol.runtime_state["blocked_reason"] is None and protocol.runtime_state["awaiting_merge"]
    assert "steps[0].depends_on[0]" in agent_calls(tmp_path, "plan")[1]["prompt"]  # told why the last was rejected
    assert flow.show(protocol.branch, "NOTES.md") == "notes"
    assert "steps[0].qa" not in flow.status_comment(protocol)


# Ask

async def test_ask_answers_in_a_comment_and_a_follow_up_resumes_the_session(start, tmp_path):
    script = claude_agent(tmp_path, """
if kind != "ask":
    sys.exit(f"unexpected {kind} call")
number = bump("ask")
reply(f"Answer {number}: X is defined in x.py, line 3.")
""")
    flow = await start(AGENTRY_DEFAULT_ENGINE="claude", AGENTRY_CLAUDE_BIN=str(script))
    await flow.comment("/agent ask where is X?")
    await flow.comment("/agent ask and who calls it?")
    calls = agent_calls(tmp_path, "ask")
    assert "--resume" not in calls[0]["argv"]
    assert calls[1]["argv"][calls[1]["argv"].index("--resume") + 1] == CLAUDE_SESSION_ID
    assert "where is X?" in calls[1]["prompt"] and "Answer 1" in calls[1]["prompt"]  # the conversation so far
    replies = [comment["body"] for comment in flow.github.comments.values()
               if comment["user"]["login"] == flow.github.bot_login]
    assert any("where is X?" in body and "Answer 1: X is defined in x.py" in body for body in replies)
    assert any("who calls it?" in body and "Answer 2" in body and "earlier session" in body for body in replies)
    protocol = await flow.protocol()
    assert protocol.kind == "ask" and protocol.runtime_state["session_id"] == CLAUDE_SESSION_ID
    assert [step.status for step in await flow.steps()] == ["completed", "completed"]
    assert flow.pulls() == []


# CI on the protocol branch

def ci_agent(tmp_path):
    return command_agent(tmp_path, f"""
if kind == "plan":
    {plan_of({"name": "Write greeting", "prompt": "Create GREETING.md", "qa": "skip"})}
elif kind == "execute":
    if "CI failed" in prompt:
        Path("FIX.md").write_text("fixed\\n")
        print("fixed what CI reported")
    else:
        Path("GREETING.md").write_text("hello\\n")
        print("wrote GREETING.md")
""")


async def test_ci_failure_on_the_branch_head_fails_the_step_and_blocks(start, tmp_path):
    flow = await start(**with_command(ci_agent(tmp_path)))
    await flow.comment("/agent run add a greeting")
    protocol = await flow.protocol()
    assert protocol.runtime_state["awaiting_merge"]
    await flow.check_suite(protocol, "failure")
    protocol = await flow.protocol()
    [step] = await flow.steps()
    assert step.status == "failed" and "failure" in step.runtime_state["ci_output"]
    assert protocol.status == "blocked" and protocol.runtime_state["blocked_reason"].startswith("CI failed")
    assert "CI failed" in flow.status_comment(protocol)
    assert len(agent_calls(tmp_path, "execute")) == 1


async def test_ci_failure_with_a_fix_attempt_reruns_the_step_with_the_ci_output(start, tmp_path):
    flow = await start(**with_command(ci_agent(tmp_path)), AGENTRY_CI_FIX_ATTEMPTS="1")
    await flow.comment("/agent run add a greeting")
    first = await flow.protocol()
    before_ci = len(flow.github.calls)
    await flow.check_suite(first, "failure")
    protocol = await flow.protocol()
    [step] = await flow.steps()
    prompts = [call["prompt"] for call in agent_calls(tmp_path, "execute")]
    assert len(prompts) == 2 and "CI failed" not in prompts[0]
    assert "CI failed on the branch after this step" in prompts[1] and "octocoders-linter" in prompts[1]
    assert (step.status, step.runtime_state["ci_fix_attempts"]) == ("completed", 1)
    assert protocol.status == "running" and protocol.head_sha != first.head_sha
    assert flow.show(protocol.branch, "FIX.md") == "fixed"
    check_runs = [call.json for call in flow.github.calls[before_ci:] if "/check-runs" in call.path and call.method != "GET"]
    fixed_head = next(index for index, body in enumerate(check_runs) if body.get("head_sha") == protocol.head_sha)
    assert all(body.get("conclusion") != "success" for body in check_runs[:fixed_head])  # not done while fixing
    assert check_runs[fixed_head]["conclusion"] == "success"
    assert len(flow.pulls()) == 1
    await flow.check_suite(protocol, "failure")  # the one fix attempt is used up
    assert (await flow.protocol()).status == "blocked"
    assert len(agent_calls(tmp_path, "execute")) == 2


# Loop policy

async def test_a_loop_policy_goes_back_once_when_qa_fails(start, tmp_path):
    loop = {"back_to": "Write code", "max_iterations": 1, "when": "qa_fail"}
    script = command_agent(tmp_path, f"""
if kind == "plan":
    {plan_of({"name": "Write code", "prompt": "Append to code.txt", "qa": "skip"},
             {"name": "Check code", "prompt": "Append to checks.txt", "qa": "full", "policy": {"loop": loop}})}
elif kind == "execute":
    name = "code" if "Append to code.txt" in prompt else "checks"
    with open(f"{{name}}.txt", "a") as out:
        out.write(f"run {{bump(name)}}\\n")
    print(f"appended to {{name}}.txt")
elif kind == "qa":
    if bump("qa") == 1:
        print("checks.txt has only one run")
        print("VERDICT: FAIL")
    else:
        print("VERDICT: PASS")
""")
    flow = await start(**with_command(script))
    await flow.comment("/agent run write and check code")
    protocol = await flow.protocol()
    steps = await flow.steps()
    assert [(step.step_name, step.status) for step in steps] == [("Write code", "completed"),
                                                                 ("Check code", "completed")]
    assert steps[1].runtime_state["loops"] == 1 and steps[1].runtime_state["verdict"] == "PASS"
    executed = ["code" if "Append to code.txt" in call["prompt"] else "checks"
                for call in agent_calls(tmp_path, "execute")]
    assert executed == ["code", "checks", "code", "checks"] and len(agent_calls(tmp_path, "qa")) == 2
    assert "checks.txt has only one run" in agent_calls(tmp_path, "execute")[3]["prompt"]
    assert "checks.txt has only one run" in agent_calls(tmp_path, "execute")[2]["prompt"]
    assert flow.show(protocol.branch, "code.txt") == "run 1\nrun 2"
    assert protocol.runtime_state["awaiting_merge"] and len(flow.pulls()) == 1


async def test_a_trigger_policy_fires_when_its_step_completes(start, tmp_path):
    trigger = {"step": "Build", "when": "completed", "max_iterations": 1}
    script = command_agent(tmp_path, f"""
if kind == "plan":
    {plan_of({"name": "Build", "prompt": "Append to build.txt", "qa": "skip"},
             {"name": "Docs", "prompt": "Append to docs.txt", "qa": "skip", "policy": {"trigger": trigger}})}
elif kind == "execute":
    name = "build" if "build.txt" in prompt else "docs"
    with open(f"{{name}}.txt", "a") as out:
        out.write(f"run {{bump(name)}}\\n")
    print(f"appended to {{name}}.txt")
""")
    flow = await start(**with_command(script))
    await flow.comment("/agent run build then document")
    executed = ["build" if "build.txt" in call["prompt"] else "docs" for call in agent_calls(tmp_path, "execute")]
    assert executed == ["build", "docs", "build"]
    assert [step.status for step in await flow.steps()] == ["completed", "completed"]
    assert (await flow.protocol()).runtime_state["awaiting_merge"]


async def test_a_ralph_loop_stops_when_its_agent_fails(start, tmp_path):
    script = command_agent(tmp_path, """
if kind == "ralph":
    print("the model provider refused the request")
    sys.exit(3)
""")
    flow = await start(**with_command(script))
    await flow.comment("/agent ralph --max-iterations 3 --promise DONE make the tests pass")
    [step] = await flow.steps()
    assert step.status == "failed" and "iteration 1" in step.runtime_state["error"]
    assert len(step.runtime_state["iterations"]) == 1
    assert (await flow.protocol()).status == "blocked" and flow.pulls() == []


# Clarifications

async def test_a_blocking_clarification_pauses_until_answered(start, tmp_path):
    script = command_agent(tmp_path, f"""
if kind == "plan":
    {plan_of({"name": "Add storage", "prompt": "Add the storage layer", "qa": "skip"},
             clarifications=[{"key": "db", "question": "Which database?", "blocking": True}])}
elif kind == "execute":
    Path("STORAGE.md").write_text("storage\\n")
    print("added the storage layer")
""")
    flow = await start(**with_command(script))
    await flow.comment("/agent run add storage")
    protocol = await flow.protocol()
    assert protocol.status == "paused" and protocol.runtime_state["awaiting_answers"]
    assert [step.status for step in await flow.steps()] == ["pending"]
    assert agent_calls(tmp_path, "execute") == []
    [question] = await flow.clarifications()
    assert (question.key, question.status, question.blocking) == ("db", "open", True)

    await flow.comment("/agent answer db postgres")
    protocol = await flow.protocol()
    [step] = await flow.steps()
    [question] = await flow.clarifications()
    assert (question.status, question.answer, question.answered_by) == ("answered", "postgres", "Codertocat")
    assert step.status == "completed" and protocol.runtime_state["awaiting_merge"]
    [call] = agent_calls(tmp_path, "execute")
    assert "answer to db (Which database?): postgres" in call["prompt"]


async def test_the_status_comment_shows_the_open_question_and_how_to_answer_it(start, tmp_path):
    script = command_agent(tmp_path, f"""
if kind == "plan":
    {plan_of({"name": "Add storage", "prompt": "Add the storage layer", "qa": "skip"},
             clarifications=[{"key": "db", "question": "Which database?", "blocking": True}])}
""")
    flow = await start(**with_command(script))
    await flow.comment("/agent run add storage")
    comment = flow.status_comment(await flow.protocol())
    assert "Which database?" in comment and "/agent answer db" in comment
