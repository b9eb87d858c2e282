"""Whole flows through GitHub: a signed comment in, agents run as real subprocesses on a real git
remote, and every GitHub call checked by the fake server against GitHub's schemas."""

from __future__ import annotations

import copy
import json

import pytest
from sqlmodel import select

from bot.models import ProtocolRun, StepRun
from tests.conftest import load_payload, post_webhook, run_jobs
from tests.flow_support import INSTALLATION, REPO, api_calls, comment_payload, git

async def protocols_in(deps) -> list[ProtocolRun]:
    async with deps.sessions() as session:
        return list((await session.exec(select(ProtocolRun))).all())


async def steps_in(deps) -> list[StepRun]:
    async with deps.sessions() as session:
        return list((await session.exec(select(StepRun).order_by(StepRun.step_index))).all())


async def test_a_writer_gets_eyes_then_a_status_comment_and_a_protocol(flow, github, remote):
    deps, client = flow
    payload = comment_payload(github, remote, "/agent run add a greeting")
    response = await post_webhook(client, "issue_comment", payload)
    assert response.status == 202
    await run_jobs(deps)
    calls = api_calls(github)
    reaction = calls.index(f"POST /repos/{REPO}/issues/comments/{payload['comment']['id']}/reactions")
    status_comment = calls.index(f"POST /repos/{REPO}/issues/1/comments")
    assert calls[0] == f"GET /repos/{REPO}/collaborators/Codertocat/permission"
    assert reaction < status_comment
    assert github.reactions[0]["content"] == "eyes"
    assert [protocol.created_by for protocol in await protocols_in(deps)] == ["Codertocat"]


async def test_a_read_only_user_gets_only_a_denial(flow, github, remote):
    deps, client = flow
    await post_webhook(client, "issue_comment", comment_payload(github, remote, "/agent run add a greeting", user="reader"))
    await run_jobs(deps)
    assert api_calls(github) == [
        f"GET /repos/{REPO}/collaborators/reader/permission",
        f"POST /repos/{REPO}/issues/1/comments",
    ]
    denial = list(github.comments.values())[-1]
    assert "write" in denial["body"] and REPO in denial["body"]
    assert await protocols_in(deps) == []


async def test_run_ends_with_a_pushed_branch_qa_a_pr_and_a_completed_check_run(flow, github, remote):
    deps, client = flow
    await post_webhook(client, "issue_comment", comment_payload(github, remote, "/agent run add a greeting"))
    await run_jobs(deps)
    [protocol] = await protocols_in(deps)
    steps = await steps_in(deps)
    assert [(step.step_name, step.status) for step in steps] == [("Write greeting", "completed"),
                                                                 ("Link it", "completed")]
    assert all(step.runtime_state["verdict"] == "PASS" for step in steps)
    assert git("--git-dir", str(remote), "show", f"{protocol.branch}:GREETING.md") == "Hello from the agent!"
    assert "See GREETING.md." in git("--git-dir", str(remote), "show", f"{protocol.branch}:README.md")
    log = git("--git-dir", str(remote), "log", "--format=%an|%s", f"main..{protocol.branch}").splitlines()
    assert log == ["agentry[bot]|Link it", "agentry[bot]|Write greeting"]
    [pull] = github.pulls.values()
    assert pull["head"]["ref"] == protocol.branch and "Closes #1" in pull["body"] and not pull["draft"]
    check_run = github.check_runs[protocol.check_run_id]
    assert (check_run["status"], check_run["conclusion"]) == ("completed", "success")
    status_comment = github.comments[protocol.status_comment_id]["body"]
    assert "Write greeting" in status_comment and "Link it" in status_comment
    assert protocol.status == "running" and protocol.runtime_state["awaiting_merge"]


@pytest.mark.parametrize("flow", [True], indirect=True)
async def test_an_engine_killed_mid_step_is_retried_to_completion(flow, github, remote):
    deps, client = flow
    await post_webhook(client, "issue_comment", comment_payload(github, remote, "/agent run add a greeting"))
    await run_jobs(deps)
    [protocol] = await protocols_in(deps)
    assert protocol.status == "blocked"
    assert [step.status for step in await steps_in(deps)] == ["completed", "failed"]
    assert "code -9" in (await steps_in(deps))[1].runtime_state["error"]
    await post_webhook(client, "issue_comment", comment_payload(github, remote, "/agent retry"))
    await run_jobs(deps)
    [protocol] = await protocols_in(deps)
    assert [step.status for step in await steps_in(deps)] == ["completed", "completed"]
    assert protocol.runtime_state["awaiting_merge"] and protocol.pr_number
    assert "See GREETING.md." in git("--git-dir", str(remote), "show", f"{protocol.branch}:README.md")


async def test_a_merged_pull_request_completes_the_protocol(flow, github, remote):
    deps, client = flow
    await post_webhook(client, "issue_comment", comment_payload(github, remote, "/agent run add a greeting"))
    await run_jobs(deps)
    [protocol] = await protocols_in(deps)
    merged = copy.deepcopy(load_payload("pull_request", "closed.payload.json"))
    merged["repository"] = comment_payload(github, remote, "")["repository"]
    merged["installation"] = {"id": INSTALLATION}
    merged["pull_request"].update(merged=True, number=protocol.pr_number)
    merged["pull_request"]["head"]["ref"] = protocol.branch
    await post_webhook(client, "pull_request", merged)
    await run_jobs(deps)
    [protocol] = await protocols_in(deps)
    assert protocol.status == "completed"
    assert json.loads(json.dumps(github.check_runs[protocol.check_run_id]))["conclusion"] == "success"


async def test_maintenance_prunes_the_worktrees_of_ended_protocols(flow, github, remote):
    from bot.maintenance import prune_worktrees

    deps, client = flow
    await post_webhook(client, "issue_comment", comment_payload(github, remote, "/agent run add a greeting"))
    await run_jobs(deps)
    [protocol] = await protocols_in(deps)
    worktree = deps.settings.data_dir.resolve() / "worktrees" / str(protocol.id)
    assert worktree.is_dir()
    assert await prune_worktrees(deps) == 0
    await post_webhook(client, "issue_comment", comment_payload(github, remote, "/agent cancel"))
    await run_jobs(deps)
    assert await prune_worktrees(deps) == 1
    assert not worktree.exists()
