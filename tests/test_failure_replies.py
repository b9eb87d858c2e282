"""Nothing a person asks for fails silently: whichever GitHub call a command, label or button job
makes fails, the person hears once what failed and what to type next (or the job copes and
finishes); whichever call a plan, step, QA, pull-request or report job makes fails, the protocol's
status comment says what failed and the command it names carries the work on."""

from __future__ import annotations

import copy

import pytest
from sqlmodel import select

from bot import render
from bot.models import ProtocolRun, QueuedJob, StepRun
from bot.queue import REPORT_PROTOCOL
from jobs.worker import JOB_FUNCTIONS
from tests.conftest import load_payload, post_webhook, run_jobs
from tests.flow_support import INSTALLATION, REPO, comment_payload, queued_jobs, run_queued

REQUEST_JOBS = ("handle_command_job", "handle_label_job", "handle_check_action_job")
FAILED = "could not carry this out"


async def run_request_jobs(deps) -> list[QueuedJob]:
    """Runs the queued jobs that answer a person (not the plan jobs they queue) and returns them."""
    return await run_queued(deps, REQUEST_JOBS)


def on_issue(payload: dict, number: int) -> dict:
    payload["issue"]["number"] = number
    return payload


def person(github, number: int) -> str:
    """A user of their own for each try, so that no permission is known in advance."""
    login = f"person{number}"
    github.permissions[login] = "write"
    return login


async def comment(github, remote, client, number: int, body: str) -> None:
    user = person(github, number)
    payload = on_issue(comment_payload(github, remote, body, user=user), number)
    payload["comment"]["id"] = github.add_comment(REPO, number, body, user=user)
    await post_webhook(client, "issue_comment", payload)


async def label(github, remote, client, number: int) -> None:
    payload = on_issue(copy.deepcopy(load_payload("issues", "labeled.payload.json")), number)
    payload["repository"] = comment_payload(github, remote, "")["repository"]
    payload["installation"] = {"id": INSTALLATION}
    payload["label"]["name"] = "agent:plan"
    payload["sender"]["login"] = person(github, number)
    await post_webhook(client, "issues", payload)


async def button(github, remote, client, number: int, deps) -> None:
    """A protocol planned on the issue, then its check run's cancel button pressed."""
    await comment(github, remote, client, number, "/agent plan")
    await run_request_jobs(deps)
    async with deps.sessions() as session:
        [protocol] = (await session.exec(select(ProtocolRun).where(ProtocolRun.issue_number == number))).all()
    payload = copy.deepcopy(load_payload("check_run", "requested_action.payload.json"))
    payload["repository"] = comment_payload(github, remote, "")["repository"]
    payload["installation"] = {"id": INSTALLATION}
    payload["check_run"].update(external_id=str(protocol.id), id=4242 + number)
    payload["requested_action"] = {"identifier": "cancel"}
    payload["sender"]["login"] = person(github, number + 10_000)
    await post_webhook(client, "check_run", payload)


async def ask(kind: str, github, remote, client, deps, number: int) -> None:
    if kind == "command":
        await comment(github, remote, client, number, "/agent plan")
    elif kind == "label":
        await label(github, remote, client, number)
    else:
        await button(github, remote, client, number, deps)


def replies_on(github, number: int) -> list[str]:
    return [c["body"] for c in github.comments.values() if c["_issue"] == number and c["user"]["type"] == "Bot"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["command", "label", "button"])
async def test_a_failure_at_any_forge_call_is_answered_once(flow, github, remote, kind):
    deps, client = flow
    await ask(kind, github, remote, client, deps, 100)
    before = len(github.calls)
    [job] = await run_request_jobs(deps)
    calls = len(github.calls) - before
    assert job.status == "done" and calls >= 1, (job.job_id, job.status, job.error, calls, github.lines()[-5:])
    assert not any(FAILED in body for body in replies_on(github, 100))
    for failing in range(1, calls + 1):
        number = 100 + failing
        await ask(kind, github, remote, client, deps, number)
        github.fail_call(failing)
        [job] = await run_request_jobs(deps)
        failure_replies = [body for body in replies_on(github, number) if FAILED in body]
        where = f"{kind}: call {failing} of {calls} failed; job {job.status} ({job.error})"
        if job.status == "failed":
            assert len(failure_replies) == 1, where
            assert "again to retry" in failure_replies[0] or "Press the button again" in failure_replies[0], where
        else:
            assert job.status == "done" and not failure_replies, where


# The jobs that do the work a person asked for: the command that leads to each, and what the
# status comment tells them to type when it failed.
AGENT_JOBS = {
    "plan_protocol_job": ("/agent run", "/agent retry"),
    "execute_step_job": ("/agent run", "/agent retry 1"),
    "run_quality_job": ("/agent run", "/agent qa 1"),
    "open_pr_job": ("/agent run", "/agent open-pr"),
    "report_protocol_job": ("/agent plan", None),
}
ALL_JOBS = [function.__name__ for function in JOB_FUNCTIONS]
CRASHED = "agentry failed while"


async def advance_to(deps, target: str) -> None:
    """Runs every queued job but `target`'s until only those are left."""
    others = [name for name in ALL_JOBS if name != target]
    for _ in range(60):
        if not await queued_jobs(deps, others):
            assert await queued_jobs(deps, [target]), f"no {target} was queued"
            return
        await run_queued(deps, others)
    left = [(job.function, job.job_id) for job in await queued_jobs(deps, others)]
    raise AssertionError(f"jobs kept coming before {target}: {left}")


def status_comments(github, number: int) -> list[str]:
    return [body for body in replies_on(github, number) if "<!-- agentry:status" in body]


async def protocol_on(deps, number: int) -> ProtocolRun:
    async with deps.sessions() as session:
        return (await session.exec(select(ProtocolRun).where(ProtocolRun.issue_number == number))).one()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("token_ttl", [3600, 60], ids=["tokens-cached", "tokens-renewed"])
@pytest.mark.parametrize("target", list(AGENT_JOBS))
async def test_a_failure_at_any_forge_call_of_an_agent_job_shows_in_the_status_comment(flow, github, remote, target,
                                                                                      token_ttl):
    """With tokens that live less than agentry's refresh margin, every job asks for new ones: the
    token requests are then calls that fail in the middle of the job's work."""
    deps, client = flow
    github.token_ttl = token_ttl
    command, hint = AGENT_JOBS[target]
    await comment(github, remote, client, 200, command)
    await advance_to(deps, target)
    before = len(github.calls)
    [job] = await run_queued(deps, [target], first_only=True)
    await run_queued(deps, [REPORT_PROTOCOL])  # the job's report is part of its work
    calls = len(github.calls) - before
    assert job.status == "done" and calls >= 1, (job.status, job.error, calls)
    carried_on = False
    for failing in range(1, calls + 1):
        number = 200 + failing
        await comment(github, remote, client, number, command)
        await advance_to(deps, target)
        github.fail_call(failing)
        [job] = await run_queued(deps, [target], first_only=True)
        await run_queued(deps, [REPORT_PROTOCOL])  # the status comment, as the job asked for it
        where = f"{target}: call {failing} of {calls} failed; job {job.status} ({job.error})"
        [status] = status_comments(github, number)
        shown = sum(body.count(CRASHED) for body in replies_on(github, number))
        protocol = await protocol_on(deps, number)
        if job.status == "done" or not shown:  # it coped, or the crash came after its work was done
            assert shown == 0 and render.status_header(protocol) in status, (where, status)
            assert not await stuck(deps, protocol), where
            continue
        assert shown == 1 and hint is not None and hint in status, (where, status)
        if not carried_on:  # the command the comment names carries the work on, once per job kind
            await comment(github, remote, client, number, hint)
            await run_jobs(deps)
            protocol = await protocol_on(deps, number)
            assert protocol.pr_number and protocol.runtime_state.get("awaiting_merge"), (where, protocol.status)
            carried_on = True


async def stuck(deps, protocol: ProtocolRun) -> str | None:
    """What the protocol claims is under way with no job queued to do it, if anything."""
    async with deps.sessions() as session:
        steps = (await session.exec(select(StepRun).where(StepRun.protocol_run_id == protocol.id))).all()
    step_ids = {step.id for step in steps}
    queued = {job.function for job in await queued_jobs(deps, ALL_JOBS)
              if job.protocol_run_id == protocol.id or job.step_run_id in step_ids}
    if protocol.status == "planning" and "plan_protocol_job" not in queued:
        return "planning with no plan job"
    if any(step.status == "running" for step in steps) and "execute_step_job" not in queued:
        return "a step running with no job"
    if any(step.status == "needs_qa" for step in steps) and "run_quality_job" not in queued:
        return "a step waiting for a QA that no job runs"
    if (protocol.runtime_state.get("awaiting_merge") and not protocol.pr_number and "open_pr_job" not in queued
            and not protocol.runtime_state.get("pr_error")):
        return "waiting for a pull request that no job opens"
    return None
