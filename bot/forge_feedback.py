"""Pull request and CI events on protocol branches move protocols and steps (PRODUCT §1.7)."""

from __future__ import annotations

import logging

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import store, workspace
from bot.deliveries import load_delivery, read_event
from bot.deps import Deps
from bot.forge.events import CiEvent, PullRequestEvent
from bot.models import Project, ProtocolRun
from bot.protocols import retry_step, schedule_next, set_protocol_status, set_step_status, steps_of
from bot.queue import run_quality_job
from bot.reporting import request_report
from bot.workflow import TERMINAL_PROTOCOL_STATUSES, ProtocolAction, ProtocolStatus, StepAction, StepStatus, is_allowed

log = logging.getLogger("agentry.forge_feedback")


async def protocol_on_branch(session: AsyncSession, forge: str, repo: str, branch: str | None,
                             sha: str | None = None) -> tuple[ProtocolRun | None, Project | None]:
    project = await store.project_for_repo(session, forge, repo)
    if project is None:
        return None, None
    statement = select(ProtocolRun).where(ProtocolRun.project_id == project.id)
    if branch:
        statement = statement.where(ProtocolRun.branch == branch)
    elif sha:
        statement = statement.where(ProtocolRun.head_sha == sha)
    else:
        return None, project
    protocol = (await session.exec(statement.order_by(col(ProtocolRun.id).desc()))).first()
    return protocol, project


async def pull_request_changed(deps: Deps, delivery_id: str) -> None:
    """A protocol's pull request merged, closed or pushed to."""
    delivery = await load_delivery(deps, delivery_id)
    event: PullRequestEvent = read_event(delivery, "pull_request")
    async with deps.transaction() as session:
        protocol, project = await protocol_on_branch(session, event.repo.ref.forge, event.repo.ref.full_name,
                                                     event.head_branch)
        if protocol is None:
            return
        if event.action == "merged" and is_allowed(protocol.status, ProtocolAction.COMPLETE):
            await set_protocol_status(session, protocol, ProtocolAction.COMPLETE, actor=None,
                                      message=f"pull request #{event.number} merged")
        elif event.action == "closed" and is_allowed(protocol.status, ProtocolAction.CANCEL):
            await set_protocol_status(session, protocol, ProtocolAction.CANCEL, actor=None,
                                      message=f"pull request #{event.number} closed without merging")
        elif event.action == "synchronize" and event.head_sha != protocol.head_sha:
            await store.record_event(session, "branch_updated", f"new head {event.head_sha[:12]} pushed to the branch",
                                     project_id=project.id, protocol_run_id=protocol.id, meta={"sha": event.head_sha})
            protocol.head_sha = event.head_sha
        protocol.pr_number = protocol.pr_number or event.number
        protocol.pr_url = protocol.pr_url or event.url
        ended = protocol.status in TERMINAL_PROTOCOL_STATUSES
    if ended:
        await workspace.remove(deps, project, protocol)
    await request_report(deps, protocol.id, "pull_request")


async def ci_finished(deps: Deps, delivery_id: str) -> None:
    """CI finished on a protocol's branch: the step it checked passes or goes back to work."""
    delivery = await load_delivery(deps, delivery_id)
    event: CiEvent = read_event(delivery, "ci")
    if event.conclusion not in ("success", "failure"):
        return
    jobs = []
    async with deps.transaction() as session:
        protocol, project = await protocol_on_branch(session, event.repo.ref.forge, event.repo.ref.full_name,
                                                     event.branch, event.sha)
        if protocol is None or protocol.status in TERMINAL_PROTOCOL_STATUSES or event.sha != protocol.head_sha:
            return
        step = _step_for_ci(await steps_of(session, protocol.id))
        if step is None:
            return
        step.state = step.state.changed(ci_output=f"{event.name}: {event.conclusion}\n{event.summary}"
                                        f"\n{event.details_url or ''}".strip())
        if event.conclusion == "success":
            jobs = await _ci_passed(deps, session, protocol, step, event)
        else:
            jobs = await _ci_failed(deps, session, protocol, step, event)
    await deps.submit(jobs)
    await request_report(deps, protocol.id, "ci")


def _step_for_ci(steps: list):
    """The step whose work CI judged: the latest one that finished executing."""
    done = [step for step in steps if step.status in (StepStatus.NEEDS_QA, StepStatus.COMPLETED)]
    return done[-1] if done else None


async def _ci_passed(deps: Deps, session, protocol, step, event: CiEvent) -> list:
    if step.status == StepStatus.NEEDS_QA and deps.settings.auto_qa_on_ci:
        attempt = step.state.qa_attempts + 1
        step.state = step.state.changed(qa_attempts=attempt)
        return [run_quality_job(step.id, attempt)]
    await set_step_status(session, step, StepAction.CI_SUCCESS, actor=None, protocol=protocol,
                          message=f"{step.step_name}: CI passed ({event.name})")
    return await schedule_next(session, protocol)


async def _ci_failed(deps: Deps, session, protocol, step, event: CiEvent) -> list:
    await set_step_status(session, step, StepAction.CI_FAILURE, actor=None, protocol=protocol,
                          message=f"{step.step_name}: CI failed ({event.name})")
    fixes = step.state.ci_fix_attempts
    if fixes < deps.settings.ci_fix_attempts:
        step.state = step.state.changed(ci_fix_attempts=fixes + 1,
                                        feedback=f"CI failed on the branch after this step:\n{step.state.ci_output}")
        if protocol.status == ProtocolStatus.COMPLETED and is_allowed(protocol.status, ProtocolAction.BLOCK):
            await set_protocol_status(session, protocol, ProtocolAction.BLOCK, actor=None, message="CI failed")
        return [job for job in await retry_step(session, protocol, step, actor=None) if job.function != "report_protocol_job"]
    if is_allowed(protocol.status, ProtocolAction.BLOCK):
        protocol.state = protocol.state.changed(blocked_reason=f"CI failed: {event.name}")
        await set_protocol_status(session, protocol, ProtocolAction.BLOCK, actor=None, message=f"CI failed: {event.name}")
    return []
