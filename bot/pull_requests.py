"""The protocol's pull request: a draft until every step passed its QA, then ready for review."""

from __future__ import annotations

from bot import prompts, queue, render, store
from bot.deps import Deps
from bot.forge import NewPullRequest
from bot.models import ProtocolRun, StepRun
from bot.plans import render_prompt
from bot.projects import forge_of, repo_ref
from bot.protocols import load_protocol, steps_of
from bot.workflow import StepStatus


async def open_pull_request(deps: Deps, protocol_id: int) -> None:
    """Opens the protocol's PR (a draft until every QA passed), or updates the one that exists."""
    async with deps.sessions() as session:
        loaded = await load_protocol(session, protocol_id)
        if loaded is None or not loaded[1].forge or not loaded[0].head_sha:
            return
        protocol, project = loaded
        if protocol.state.existing_pull:
            return  # the pull request the protocol works on belongs to its author
        steps = await steps_of(session, protocol.id)
    forge, repo = forge_of(deps, project), repo_ref(project)
    ready = (bool(steps) and all(step.status == StepStatus.COMPLETED for step in steps)
             and render.unmet_promise(steps) is None and not _stopped_early(protocol, steps))
    title = render.pr_title(protocol, protocol.issue_title)
    body = _pr_body(protocol, steps)
    existing = await forge.find_pull_request(repo, protocol.branch)
    if existing is None:
        pull = await forge.open_pull_request(repo, NewPullRequest(head=protocol.branch, base=protocol.base_branch,
                                                                  title=title, body=body, draft=not ready))
    else:
        pull = existing
        await forge.update_pull_request(repo, existing["number"], title=title, body=body)
    if ready and pull.get("draft"):
        await forge.mark_ready_for_review(repo, pull["number"])
    async with deps.transaction() as session:
        stored = await store.row(session, ProtocolRun, protocol_id)
        stored.pr_number, stored.pr_url = pull["number"], pull.get("url")
        stored.state = stored.state.changed(pr_error=None)
        session.add(stored)
        await store.record_event(session, "pull_request_opened" if existing is None else "pull_request_updated",
                                 f"#{pull['number']} {'ready for review' if ready else 'draft'}",
                                 project_id=project.id, protocol_run_id=protocol_id,
                                 meta={"number": pull["number"], "url": pull.get("url"), "draft": not ready})
    # Reported by a job of its own: a failure of this one is then always the pull request's.
    await deps.submit([queue.report_protocol_job(protocol_id, "pull_request")])


def _pr_body(protocol: ProtocolRun, steps: list[StepRun]) -> str:
    body = render_prompt(
        prompts.template("pr.md"), issue_number=protocol.issue_number or "",
        summary=protocol.state.plan_summary or protocol.description or "",
        steps_table=render.step_table(steps, None), status_comment_url=status_comment_url(protocol),
    )
    stopped = _stopped_early(protocol, steps)
    unwanted = (([] if protocol.issue_number and not stopped else ["Closes #"])
                + ([] if status_comment_url(protocol) else ["Progress, QA"]))
    body = "\n".join(line for line in body.splitlines() if not any(line.startswith(text) for text in unwanted))
    if stopped:
        body = (f"⏹️ Stopped by {protocol.state.stop_requested_by} before every step was done: this is the work "
                f"so far, and it does not close the issue.\n\n{body}")
    if (unmet := render.unmet_promise(steps)) is not None:
        body = f"{render.unmet_promise_note(unmet)}\n\n{body}"
    return render.truncate_middle(body, render.PR_BODY_MAX)


def _stopped_early(protocol: ProtocolRun, steps: list[StepRun]) -> bool:
    """Someone stopped it before its work was done: a step never completed, or a loop was cut short."""
    return protocol.state.completion_reason == "manual_stop" and any(
        step.status != StepStatus.COMPLETED or step.state.stopped == "manual_stop" for step in steps)


def status_comment_url(protocol: ProtocolRun) -> str:
    issue_url = protocol.state.issue_url
    if not issue_url or not protocol.status_comment_id:
        return ""
    anchor = "note_" if "/-/" in issue_url else "issuecomment-"
    return f"{issue_url}#{anchor}{protocol.status_comment_id}"
