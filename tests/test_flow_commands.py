"""Commands, labels and buttons through GitHub: pull requests and forks, refusals, edits and limits."""

from __future__ import annotations

import copy

import pytest
from sqlmodel import select

from bot.models import ProtocolRun, QueuedJob
from tests.conftest import load_payload, post_webhook, run_jobs
from tests.flow_support import INSTALLATION, REPO, api_calls, comment_payload, flow_deps, git


async def protocols_in(deps) -> list[ProtocolRun]:
    async with deps.sessions() as session:
        return list((await session.exec(select(ProtocolRun).order_by(ProtocolRun.id))).all())


def on_pull_request(payload: dict, number: int) -> dict:
    payload["issue"]["number"] = number
    payload["issue"]["pull_request"] = {"url": f"https://api.github.com/repos/{REPO}/pulls/{number}"}
    return payload


def push_branch(remote, branch: str, filename: str) -> str:
    """Adds a commit on `branch` in the bare remote (as a contributor would) and returns its sha."""
    work = remote.parent / f"work-{branch.replace('/', '-')}"
    git("clone", "-q", str(remote), str(work))
    git("checkout", "-q", "-b", branch, cwd=work)
    (work / filename).write_text("contributed\n")
    git("add", ".", cwd=work)
    git("-c", "user.name=c", "-c", "user.email=c@example.com", "commit", "-qm", f"add {filename}", cwd=work)
    git("push", "-q", "origin", branch, cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


async def test_run_on_a_same_repository_pull_request_works_on_its_branch(flow, github, remote):
    deps, client = flow
    sha = push_branch(remote, "feature", "feature.txt")
    number = github.add_pull(REPO, head="feature", head_sha=sha)
    await post_webhook(client, "issue_comment", on_pull_request(comment_payload(github, remote, "/agent run"), number))
    await run_jobs(deps)
    [protocol] = await protocols_in(deps)
    assert (protocol.branch, protocol.pr_number) == ("feature", number)
    log = git("--git-dir", str(remote), "log", "--format=%s", "main..feature").splitlines()
    assert log == ["Link it", "Write greeting", "add feature.txt"]
    assert len(github.pulls) == 1 and github.pulls[(REPO, number)]["title"] == "Change feature"


async def test_a_fork_pull_request_runs_only_after_approval_of_its_head(flow, github, remote):
    deps, client = flow
    sha = push_branch(remote, "fork-work", "fork.txt")
    number = github.add_pull(REPO, head="fork-work", head_sha=sha, head_repo="stranger/Hello-World")
    # GitHub keeps a fork's head as refs/pull/N/head in the base repository, not as a branch
    git("--git-dir", str(remote), "update-ref", f"refs/pull/{number}/head", sha)
    git("--git-dir", str(remote), "update-ref", "-d", "refs/heads/fork-work")
    await post_webhook(client, "issue_comment", on_pull_request(comment_payload(github, remote, "/agent run"), number))
    await run_jobs(deps)
    [protocol] = await protocols_in(deps)
    assert protocol.status == "pending"
    assert any("fork" in comment["body"] and "approve" in comment["body"] for comment in github.comments.values())
    await post_webhook(client, "issue_comment",
                       on_pull_request(comment_payload(github, remote, "/agent approve"), number))
    await run_jobs(deps)
    [protocol] = await protocols_in(deps)
    assert protocol.runtime_state["fork"]["approved_sha"] == sha
    assert protocol.runtime_state["awaiting_merge"]
    log = git("--git-dir", str(remote), "log", "--format=%s", f"main..{protocol.branch}").splitlines()
    assert log == ["Link it", "Write greeting", "add fork.txt"]


async def test_approving_a_fork_without_a_known_head_is_refused_with_a_reply(flow, github, remote):
    deps, client = flow
    sha = push_branch(remote, "fork-work", "fork.txt")
    number = github.add_pull(REPO, head="fork-work", head_sha=sha, head_repo="stranger/Hello-World")
    await post_webhook(client, "issue_comment", on_pull_request(comment_payload(github, remote, "/agent run"), number))
    await run_jobs(deps)
    [protocol] = await protocols_in(deps)
    async with deps.sessions() as session:
        stored = await session.get(ProtocolRun, protocol.id)
        stored.state = stored.state.changed(fork=stored.state.fork.changed(head_ref=None))
        session.add(stored)
        await session.commit()
    await post_webhook(client, "issue_comment",
                       on_pull_request(comment_payload(github, remote, "/agent approve"), number))
    await run_jobs(deps)
    [protocol] = await protocols_in(deps)
    assert protocol.status == "pending" and protocol.runtime_state["fork"]["approved_sha"] is None
    assert "no fork head to approve" in list(github.comments.values())[-1]["body"]


async def test_a_label_starts_a_run_with_the_labellers_permission(flow, github, remote):
    deps, client = flow
    payload = copy.deepcopy(load_payload("issues", "labeled.payload.json"))
    payload["repository"] = comment_payload(github, remote, "")["repository"]
    payload["installation"] = {"id": INSTALLATION}
    payload["label"]["name"] = "agent:plan"
    payload["sender"]["login"] = "Codertocat"
    await post_webhook(client, "issues", payload)
    await run_jobs(deps)
    [protocol] = await protocols_in(deps)
    assert (protocol.kind, protocol.status, protocol.created_by) == ("plan", "planned", "Codertocat")


async def test_a_readers_label_is_refused_with_a_reply(flow, github, remote):
    deps, client = flow
    payload = copy.deepcopy(load_payload("issues", "labeled.payload.json"))
    payload["repository"] = comment_payload(github, remote, "")["repository"]
    payload["installation"] = {"id": INSTALLATION}
    payload["label"]["name"] = "agent:run"
    payload["sender"]["login"] = "reader"
    await post_webhook(client, "issues", payload)
    await run_jobs(deps)
    assert await protocols_in(deps) == []
    assert "write" in list(github.comments.values())[-1]["body"]


async def test_the_retry_button_on_the_check_run_retries(flow, github, remote, monkeypatch):
    deps, client = flow
    await post_webhook(client, "issue_comment", comment_payload(github, remote, "/agent plan"))
    await run_jobs(deps)
    [protocol] = await protocols_in(deps)
    async with deps.sessions() as session:
        stored = await session.get(ProtocolRun, protocol.id)
        stored.status = "blocked"
        stored.head_sha = git("--git-dir", str(remote), "rev-parse", "main")
        session.add(stored)
        await session.commit()
    button = copy.deepcopy(load_payload("check_run", "requested_action.payload.json"))
    button["repository"] = comment_payload(github, remote, "")["repository"]
    button["installation"] = {"id": INSTALLATION}
    button["check_run"].update(external_id=str(protocol.id), id=4242)
    button["requested_action"] = {"identifier": "retry"}
    button["sender"]["login"] = "Codertocat"
    await post_webhook(client, "check_run", button)
    await run_jobs(deps)
    [protocol] = await protocols_in(deps)
    assert protocol.status == "running" and protocol.runtime_state.get("awaiting_merge")


async def test_an_unknown_command_gets_help_with_the_closest_command(flow, github, remote):
    deps, client = flow
    await post_webhook(client, "issue_comment", comment_payload(github, remote, "/agent rnu add a greeting"))
    await run_jobs(deps)
    reply = list(github.comments.values())[-1]["body"]
    assert "rnu" in reply and "run" in reply and "/agent" in reply
    assert await protocols_in(deps) == []


async def test_an_edit_runs_only_the_commands_it_added(flow, github, remote):
    deps, client = flow
    payload = comment_payload(github, remote, "/agent plan")
    await post_webhook(client, "issue_comment", payload)
    await run_jobs(deps)
    edited = copy.deepcopy(payload)
    edited["action"] = "edited"
    edited["changes"] = {"body": {"from": "/agent plan"}}
    edited["comment"]["body"] = "/agent plan\n/agent status"
    await post_webhook(client, "issue_comment", edited)
    await run_jobs(deps)
    async with deps.sessions() as session:
        commands = [job.job_id for job in (await session.exec(select(QueuedJob))).all()
                    if job.function == "handle_command_job"]
    assert len(commands) == 2 and len(await protocols_in(deps)) == 1


async def test_comments_by_bots_and_by_agentry_itself_are_ignored(flow, github, remote):
    deps, client = flow
    for login, kind in (("dependabot[bot]", "Bot"), (f"{github.app_slug}[bot]", "Bot")):
        payload = comment_payload(github, remote, "/agent run", user=login)
        payload["comment"]["user"]["type"] = kind
        response = await post_webhook(client, "issue_comment", payload)
        assert (await response.json())["status"] == "ignored"
    await run_jobs(deps)
    assert api_calls(github) == []


async def test_protocol_starts_are_rate_limited_per_user(flow, github, remote, settings_env, aiohttp_client, tmp_path):
    from handlers.web import make_app
    from tests.flow_support import agent_script

    await flow[0].close()
    deps = await flow_deps({**settings_env, "AGENTRY_STARTS_PER_USER_PER_HOUR": "1"}, github, agent_script(tmp_path))
    client = await aiohttp_client(make_app(deps))
    try:
        await post_webhook(client, "issue_comment", comment_payload(github, remote, "/agent plan"))
        await run_jobs(deps)
        second = comment_payload(github, remote, "/agent ralph --max-iterations 1 do it")
        await post_webhook(client, "issue_comment", second)
        await run_jobs(deps)
        assert len(await protocols_in(deps)) == 1
        assert "try again" in list(github.comments.values())[-1]["body"].lower()
    finally:
        await deps.close()


async def test_a_repository_the_app_is_not_installed_on_fails_the_job_visibly(flow, github, remote):
    deps, client = flow
    payload = comment_payload(github, remote, "/agent run")
    payload["repository"]["full_name"] = "someone/else"
    payload["installation"] = {"id": 999}
    await post_webhook(client, "issue_comment", payload)
    await run_jobs(deps)
    async with deps.sessions() as session:
        [job] = (await session.exec(select(QueuedJob))).all()
    assert job.status == "failed" and job.error
    assert await protocols_in(deps) == []


@pytest.mark.parametrize("body", ["```\n/agent run\n```", "> /agent run", "please `/agent run` this"])
async def test_commands_in_code_quotes_or_inline_code_do_nothing(flow, github, remote, body):
    deps, client = flow
    response = await post_webhook(client, "issue_comment", comment_payload(github, remote, body))
    assert (await response.json())["status"] == "ignored"


async def test_a_command_that_fails_unexpectedly_is_answered_not_silent(flow, github, remote):
    deps, client = flow
    number = github.add_pull(REPO, head="gone", head_sha="1" * 40, head_repo="stranger/Hello-World")
    await post_webhook(client, "issue_comment", on_pull_request(comment_payload(github, remote, "/agent run"), number))
    await run_jobs(deps)
    await post_webhook(client, "issue_comment", on_pull_request(comment_payload(github, remote, "/agent approve"), number))
    await run_jobs(deps)
    reply = list(github.comments.values())[-1]["body"]
    assert "could not carry this out" in reply and "GitError" in reply
    [protocol] = await protocols_in(deps)
    assert protocol.status == "pending" and not protocol.runtime_state["fork"]["approved_sha"]
