"""The GitLab flow end to end: a note "/agent run …" to a merge request and a final commit status,
with gidgetlab talking to a fake GitLab on 127.0.0.1 and agents running on a real git remote."""

from __future__ import annotations

import copy
import json
import sys
import uuid

import pytest
from sqlmodel import select

from bot.config import Settings
from bot.deps import open_deps
from bot.models import ProtocolRun, StepRun
from tests.conftest import FIXTURES, run_jobs
from tests.fakes.gitlab_server import FakeGitLab
from tests.flow_support import agent_script, git, run_queued

PROJECT = "gitlab-org/gitlab-test"
PROJECT_ID = 5
HOOK_TOKEN = "gitlab-hook-secret"


@pytest.fixture
async def gitlab():
    async with FakeGitLab(projects={PROJECT: PROJECT_ID}, members={"user1": 30, "guest": 10}) as fake:
        yield fake


@pytest.fixture
async def flow(aiohttp_client, settings_env, gitlab, tmp_path):
    from handlers.web import make_app

    settings = Settings.from_env({
        **settings_env,
        "AGENTRY_GITLAB_BOT_USERNAME": gitlab.bot_username,
        "AGENTRY_GITLAB_URL": gitlab.url,
        "AGENTRY_GITLAB_TOKEN": gitlab.token,
        "AGENTRY_GITLAB_WEBHOOK_TOKEN": HOOK_TOKEN,
        "AGENTRY_DEFAULT_ENGINE": "command",
        "AGENTRY_ENGINE_COMMAND": f"{sys.executable} {agent_script(tmp_path)}",
    })
    deps = await open_deps(settings)
    client = await aiohttp_client(make_app(deps))
    yield deps, client
    await deps.close()


def note_payload(gitlab: FakeGitLab, remote, body: str, *, user: str = "user1") -> dict:
    payload = copy.deepcopy(json.loads((FIXTURES / "gitlab-webhooks/note_issue.json").read_text()))
    payload["project"].update(git_http_url=str(remote), default_branch="main")
    payload["object_attributes"]["note"] = body
    payload["object_attributes"]["id"] = gitlab.add_note(PROJECT, payload["issue"]["iid"], body, user=user)
    payload["user"]["username"] = user
    return payload


async def post_note(client, payload: dict):
    headers = {"X-Gitlab-Event": "Note Hook", "X-Gitlab-Token": HOOK_TOKEN, "Idempotency-Key": str(uuid.uuid4()),
               "Content-Type": "application/json"}
    return await client.post("/webhooks/gitlab", data=json.dumps(payload), headers=headers)


async def test_a_note_runs_a_protocol_to_a_merge_request_and_a_final_commit_status(flow, gitlab, remote):
    deps, client = flow
    payload = note_payload(gitlab, remote, "/agent run add a greeting")
    response = await post_note(client, payload)
    assert response.status == 202
    await run_jobs(deps)
    async with deps.sessions() as session:
        protocol = (await session.exec(select(ProtocolRun))).one()
        steps = (await session.exec(select(StepRun).order_by(StepRun.step_index))).all()
    assert [step.status for step in steps] == ["completed", "completed"]
    assert gitlab.awards[0]["name"] == "eyes"
    issue_notes = [note for note in gitlab.notes.values() if "agentry:status" in note["body"]]
    assert len(issue_notes) == 1 and "Write greeting" in issue_notes[0]["body"]
    [merge_request] = gitlab.merge_requests.values()
    assert merge_request["source_branch"] == protocol.branch
    assert f"Closes #{payload['issue']['iid']}" in merge_request["description"]
    status = gitlab.status_of(protocol.head_sha, f"agentry/{protocol.id}")
    assert status["status"] == "success"
    assert git("--git-dir", str(remote), "show", f"{protocol.branch}:GREETING.md") == "Hello from the agent!"


async def test_a_guest_is_refused_with_a_note_and_nothing_runs(flow, gitlab, remote):
    deps, client = flow
    await post_note(client, note_payload(gitlab, remote, "/agent run add a greeting", user="guest"))
    await run_jobs(deps)
    async with deps.sessions() as session:
        assert (await session.exec(select(ProtocolRun))).all() == []
    assert gitlab.awards == []
    assert any("write" in note["body"] for note in gitlab.notes.values() if note["author"]["username"] != "guest")


async def test_a_mention_of_agentrys_account_works_like_the_prefix(flow, gitlab, remote):
    deps, client = flow
    await post_note(client, note_payload(gitlab, remote, f"@{gitlab.bot_username} plan"))
    await run_jobs(deps)
    async with deps.sessions() as session:
        protocol = (await session.exec(select(ProtocolRun))).one()
    assert (protocol.kind, protocol.status) == ("plan", "planned")


async def test_stop_on_a_planned_protocol_cancels_it_and_says_so(flow, gitlab, remote):
    deps, client = flow
    await post_note(client, note_payload(gitlab, remote, "/agent plan"))
    await run_jobs(deps)
    await post_note(client, note_payload(gitlab, remote, "/agent stop"))
    await run_jobs(deps)
    async with deps.sessions() as session:
        protocol = (await session.exec(select(ProtocolRun))).one()
        steps = (await session.exec(select(StepRun))).all()
    assert protocol.status == "cancelled" and {step.status for step in steps} == {"cancelled"}
    [status_note] = [note for note in gitlab.notes.values() if "agentry:status" in note["body"]]
    assert "⏹️ Stopped by user1 before any work was done." in status_note["body"]
    assert gitlab.merge_requests == {}


@pytest.mark.timeout(300)
async def test_a_failure_at_any_gitlab_call_of_a_command_is_answered_once(flow, gitlab, remote):
    """GitLab's side of test_failure_replies: whichever call the command job makes fails (the
    member lookup included), the person gets one note saying so and what to type."""
    deps, client = flow

    async def ask(iid: int):
        user = f"person{iid}"  # a user of their own for each try: no permission known in advance
        gitlab.members[user] = 30
        payload = copy.deepcopy(json.loads((FIXTURES / "gitlab-webhooks/note_issue.json").read_text()))
        payload["project"].update(git_http_url=str(remote), default_branch="main")
        payload["issue"]["iid"] = iid
        payload["object_attributes"]["note"] = "/agent plan"
        payload["object_attributes"]["id"] = gitlab.add_note(PROJECT, iid, "/agent plan", user=user)
        payload["user"]["username"] = user
        assert (await post_note(client, payload)).status == 202

    def failure_notes(iid: int) -> list[str]:
        return [note["body"] for note in gitlab.notes.values()
                if note["noteable_iid"] == iid and "could not carry this out" in note["body"]]

    await ask(300)
    before = len(gitlab.calls)
    [job] = await run_queued(deps, ["handle_command_job"])
    calls = len(gitlab.calls) - before
    assert job.status == "done" and calls >= 2 and not failure_notes(300), (job.error, gitlab.lines()[-5:])
    for failing in range(1, calls + 1):
        iid = 300 + failing
        await ask(iid)
        gitlab.fail_call(failing)
        [job] = await run_queued(deps, ["handle_command_job"])
        where = f"call {failing} of {calls} failed; job {job.status} ({job.error})"
        if job.status == "failed":
            [note] = failure_notes(iid)
            assert "`/agent plan` again to retry" in note, where
        else:
            assert job.status == "done" and not failure_notes(iid), where
