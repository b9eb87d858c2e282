"""Nothing a person asks for fails silently: whichever GitHub call a command, label or button job
makes fails, the person hears once what failed and what to type next (or the job copes and
finishes)."""

from __future__ import annotations

import copy

import pytest
from sqlmodel import col, select

from bot.models import ProtocolRun, QueuedJob
from jobs.worker import JOB_FUNCTIONS
from tests.conftest import load_payload, post_webhook
from tests.flow_support import INSTALLATION, REPO, comment_payload

REQUEST_JOBS = ("handle_command_job", "handle_label_job", "handle_check_action_job")
FAILED = "could not carry this out"


async def run_request_jobs(deps) -> list[QueuedJob]:
    """Runs the queued jobs that answer a person (not the plan jobs they queue) and returns them."""
    functions = {function.__name__: function for function in JOB_FUNCTIONS}
    async with deps.sessions() as session:
        queued = (await session.exec(select(QueuedJob).where(
            QueuedJob.status == "queued", col(QueuedJob.function).in_(REQUEST_JOBS)))).all()
    for job in queued:
        await functions[job.function]({"deps": deps, "job_id": job.job_id}, *job.args)
    async with deps.sessions() as session:
        return [await session.get(QueuedJob, job.job_id, populate_existing=True) for job in queued]


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
