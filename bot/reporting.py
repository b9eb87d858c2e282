"""Shows a protocol where people look: one status comment, and a check run on the branch head."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import col

from bot import queue, render
from bot.deps import Deps
from bot.forge import upsert_status_comment
from bot.models import ProtocolRun
from bot.projects import forge_of, repo_ref
from bot.protocols import load_protocol, open_clarifications, steps_of


async def report_protocol(deps: Deps, protocol_id: int) -> None:
    async with deps.sessions() as session:
        loaded = await load_protocol(session, protocol_id)
        if loaded is None or not loaded[1].forge:
            return
        protocol, project = loaded
        steps = await steps_of(session, protocol.id)
        questions = await open_clarifications(session, protocol)
    forge, repo = forge_of(deps, project), repo_ref(project)
    prefix = deps.settings.command_prefix
    changes: dict = {}
    if protocol.issue_number is not None and protocol.kind != "ask":
        body = render.status_comment(protocol, steps, links=_links(protocol), command_prefix=prefix,
                                     next_hint=questions_hint(questions, prefix))
        comment_id = await upsert_status_comment(forge, repo, protocol.issue_number, render.status_marker(protocol.id),
                                                       body, protocol.status_comment_id,
                                                       is_merge_request=on_merge_request(protocol))
        if comment_id != protocol.status_comment_id:
            changes["status_comment_id"] = comment_id
    if protocol.head_sha and protocol.kind != "ask":
        changes.update(await _check_run(forge, repo, protocol, steps, prefix))
    if changes:
        async with deps.sessions() as session:
            await session.exec(update(ProtocolRun).where(col(ProtocolRun.id) == protocol.id).values(**changes))
            await session.commit()


async def request_report(deps: Deps, protocol_id: int, reason: str) -> None:
    """Asks the protocol's report job to bring its status comment and check run up to date; a report
    of the protocol already waiting to start does it (reports coalesce, see `queue.Job.coalesce`)."""
    await deps.submit([queue.report_protocol_job(protocol_id, reason)])


async def _check_run(forge, repo, protocol: ProtocolRun, steps, prefix: str) -> dict:
    """Updates the protocol's check run in place while its head is the same and it has not completed;
    a new head, or work resumed after a conclusion, gets a new check run (GitHub keeps conclusions)."""
    status, _ = render.check_run_state(protocol)
    reusable = (protocol.check_run_id is not None and protocol.check_run_sha == protocol.head_sha
                and not (protocol.check_run_completed and status != "completed"))
    if reusable:
        # A GitLab commit status is found by its commit, which another worker's forge cannot remember.
        head = protocol.head_sha if repo.forge == "gitlab" else None
        await forge.update_check_run(repo, protocol.check_run_id,
                                     render.check_run_payload(protocol, steps, head_sha=head, command_prefix=prefix))
        check_run_id = protocol.check_run_id
    else:
        if protocol.check_run_id is not None and not protocol.check_run_completed:
            await _retire(forge, repo, protocol)
        payload = render.check_run_payload(protocol, steps, head_sha=protocol.head_sha, command_prefix=prefix)
        check_run_id = await forge.create_check_run(repo, payload)
    return {"check_run_id": check_run_id, "check_run_sha": protocol.head_sha,
            "check_run_completed": status == "completed"}


async def _retire(forge, repo, protocol: ProtocolRun) -> None:
    """The previous head's check run stops spinning: the protocol moved to a new commit."""
    await forge.update_check_run(repo, protocol.check_run_id, {
        "status": "completed", "conclusion": "neutral", "actions": [],
        "output": {"title": "Superseded", "summary": f"Work continued on {protocol.head_sha[:12]}."},
    })


def questions_hint(questions: list, prefix: str) -> str | None:
    """The plan's open questions, and how to answer them (question text is escaped: it is the agent's)."""
    if not questions:
        return None
    asked = "; ".join(f"{render.code_span(f'{prefix} answer {item.key} …', 80)} — "
                      f"{render.inline_text(item.question, 300)}" + (" (blocking)" if item.blocking else "")
                      for item in questions)
    return f"Answer the plan's questions: {asked}"


def on_merge_request(protocol: ProtocolRun) -> bool:
    return protocol.state.on_pull_request


def _links(protocol: ProtocolRun) -> dict[str, str]:
    return {"Pull request": protocol.pr_url} if protocol.pr_url else {}


