"""Operations on protocol runs and steps, shared by slash commands, check-run buttons and the REST API.

Each operation moves state through the pure tables in `bot.workflow`, records an event, and
returns the jobs that should follow; the caller commits and then submits them. An action the
current state does not allow raises `Conflict` and changes nothing.
"""

from __future__ import annotations

import re
from typing import Sequence, overload

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import queue, render, store
from bot.models import WORKING_KINDS, Clarification, Message, Project, ProtocolRun, StepRun, utcnow
from bot.queue import Job
from bot.statuses import ClarificationStatus
from bot.workflow import (
    DEFAULT_STEP_STATUSES,
    TERMINAL_PROTOCOL_STATUSES,
    Fact,
    ProtocolAction,
    ProtocolStatus,
    StepAction,
    StepStatus,
    TransitionError,
    is_allowed,
    next_runnable_steps,
    protocol_facts,
    protocol_outcome,
    step_for,
    transition,
)

ACTIVE_STEP_STATUSES = (StepStatus.RUNNING, StepStatus.NEEDS_QA)
KINDS = (*WORKING_KINDS, "ask")
TASK_NAME_CHARS = 60
CODE_STEP_NAME = "Resolve the issue"
RALPH_ITERATIONS = 10


class Conflict(Exception):
    """The action is not allowed in the current state (HTTP 409, or a reply on the forge)."""


class NotFound(Exception):
    """What the action names does not exist (HTTP 404, or a reply on the forge)."""


async def load_protocol(session: AsyncSession, protocol_id: int) -> tuple[ProtocolRun, Project] | None:
    """The protocol and its project, or None when the protocol is gone."""
    protocol = await session.get(ProtocolRun, protocol_id)
    if protocol is None:
        return None
    return protocol, await store.row(session, Project, protocol.project_id)


async def load_step(session: AsyncSession, step_id: int) -> tuple[StepRun, ProtocolRun, Project] | None:
    """The step, its protocol and its project, or None when the step is gone."""
    step = await session.get(StepRun, step_id)
    if step is None:
        return None
    protocol = await store.row(session, ProtocolRun, step.protocol_run_id)
    return step, protocol, await store.row(session, Project, protocol.project_id)


async def existing_step(session: AsyncSession, step_id: int) -> tuple[StepRun, ProtocolRun]:
    """The step and its protocol; store.Missing when the step is gone."""
    step = await store.row(session, StepRun, step_id)
    return step, await store.row(session, ProtocolRun, step.protocol_run_id)


def slug(text: str, limit: int = 40) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", text.lower().encode("ascii", "ignore").decode()).strip("-")
    return words[:limit].rstrip("-") or "work"


async def create_protocol(
    session: AsyncSession,
    project: Project,
    *,
    title: str,
    kind: str = "run",
    description: str | None = None,
    issue_number: int | None = None,
    engine: str | None = None,
    model: str | None = None,
    created_by: str | None = None,
    base_branch: str | None = None,
    branch: str | None = None,
    policy: dict | None = None,
    template_config: dict | None = None,
    depends_on: Sequence[int] = (),
    external_id: str | None = None,
) -> ProtocolRun:
    if kind not in KINDS:
        raise ValueError(f"unknown protocol kind {kind!r}")
    protocol_project = project.id
    protocol = ProtocolRun(
        project_id=project.id,
        protocol_name=slug(title),
        kind=kind,
        status=ProtocolStatus.PENDING,
        base_branch=base_branch or project.base_branch,
        description=description,
        issue_number=issue_number,
        issue_title=title,
        engine=engine,
        model=model,
        created_by=created_by,
        policy=policy or {},
        template_config=template_config,
        depends_on=list(depends_on),
        external_id=external_id,
    )
    session.add(protocol)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()  # expires the caller's objects: use only the ids read before
        if external_id is not None and await by_external_id(session, protocol_project, external_id):
            raise Conflict(f"the project already has a protocol with external_id {external_id!r}") from None
        raise await _already_active(session, protocol_project, issue_number) from None
    protocol.protocol_name = f"{protocol.id}-{slug(title)}"
    protocol.branch = branch or f"agent/{protocol.protocol_name}"
    await store.record_event(session, "protocol_created", f"{kind} protocol created by {created_by or 'the API'}",
                             project_id=project.id, protocol_run_id=protocol.id,
                             meta={"kind": kind, "engine": engine, "model": model, "issue_number": issue_number})
    return protocol


async def add_step(session: AsyncSession, protocol: ProtocolRun, name: str, prompt: str, **fields) -> StepRun:
    """A step after the protocol's last (a step the caller gave, not a plan's): QA skipped unless `fields` say."""
    steps = await steps_of(session, protocol.id)
    step = StepRun(protocol_run_id=protocol.id, step_index=len(steps), step_name=name, prompt=prompt,
                   **{"qa_policy": "skip", **fields})
    session.add(step)
    await session.flush()
    return step


async def add_code_step(session: AsyncSession, protocol: ProtocolRun, instructions: str) -> StepRun:
    """A `code` task's one step, run without a plan and reviewed by QA like a plan's; its agent reads
    the issue as the protocol's summary. Named from the instructions (a writer's), never the issue."""
    name = render.truncate_end(" ".join(instructions.split()), TASK_NAME_CHARS) if instructions else CODE_STEP_NAME
    return await add_step(session, protocol, name, instructions or "Do what the issue asks.", step_type="code",
                          qa_policy="full")


def ralph_policy(max_iterations: object, promise: object, feedback: Sequence[str]) -> dict:
    return {"max_iterations": max_iterations or RALPH_ITERATIONS, "promise": promise or "", "feedback": list(feedback)}


async def by_external_id(session: AsyncSession, project_id: int | None, external_id: str) -> ProtocolRun | None:
    statement = select(ProtocolRun).where(ProtocolRun.project_id == project_id,
                                          ProtocolRun.external_id == external_id)
    return (await session.exec(statement)).first()


async def branch_owner(session: AsyncSession, project_id: int | None, branch: str) -> ProtocolRun | None:
    """The protocol of the project that works on `branch`, if any."""
    statement = select(ProtocolRun).where(ProtocolRun.project_id == project_id, ProtocolRun.branch == branch)
    return (await session.exec(statement.limit(1))).first()


async def _already_active(session: AsyncSession, project_id: int, issue_number: int | None) -> Conflict:
    """The answer to one who lost the race to start work on an issue: who won."""
    winner = await active_protocol_for_issue(session, project_id, issue_number) if issue_number else None
    if winner is None:
        return Conflict("another protocol was started on this issue at the same time")
    return Conflict(f"already running: protocol #{winner.id} is {winner.status} on this issue")


async def steps_of(session: AsyncSession, protocol_id: int) -> list[StepRun]:
    statement = select(StepRun).where(StepRun.protocol_run_id == protocol_id).order_by(col(StepRun.step_index))
    return list((await session.exec(statement)).all())


async def active_protocol_for_issue(session: AsyncSession, project_id: int, issue_number: int,
                                    kinds: Sequence[str] = WORKING_KINDS) -> ProtocolRun | None:
    """The newest protocol on the issue that has not ended (else the newest of any state)."""
    statement = (
        select(ProtocolRun)
        .where(ProtocolRun.project_id == project_id, ProtocolRun.issue_number == issue_number,
               col(ProtocolRun.kind).in_(kinds))
        .order_by(col(ProtocolRun.id).desc())
        .limit(20)
    )
    protocols = list((await session.exec(statement)).all())
    for protocol in protocols:
        if protocol.status not in TERMINAL_PROTOCOL_STATUSES:
            return protocol
    return protocols[0] if protocols else None


async def facts_of(session: AsyncSession, protocol: ProtocolRun) -> frozenset[Fact]:
    """What the workflow's rules need to know about the protocol besides its status."""
    questions = await open_clarifications(session, protocol)
    return protocol_facts(await steps_of(session, protocol.id), open_questions=any(item.blocking for item in questions),
                          plan_failed=protocol.state.plan_failed,
                          waiting=bool(await unfinished_dependencies(session, protocol)))


async def unfinished_dependencies(session: AsyncSession, protocol: ProtocolRun) -> list[ProtocolRun]:
    """The protocols it depends on that have not completed, by id."""
    if not protocol.depends_on:
        return []
    statement = select(ProtocolRun).where(col(ProtocolRun.id).in_(protocol.depends_on),
                                          ProtocolRun.status != ProtocolStatus.COMPLETED)
    return list((await session.exec(statement.order_by(col(ProtocolRun.id)))).all())


def waiting_reason(waiting_for: Sequence[ProtocolRun]) -> str:
    """Why a protocol has not started: each protocol it waits for and what that one is doing."""
    return "waiting for the protocols it depends on to complete: " + "; ".join(
        f"#{other.id} {other.status}{_WAIT_NOTES.get(other.status, '')}" for other in waiting_for)


_WAIT_NOTES = {
    ProtocolStatus.FAILED: " (it completes only if retried)",
    ProtocolStatus.CANCELLED: " (it will never complete: cancel this one, or run it by hand)",
}


@overload
def move(current: str, action: ProtocolAction, facts: frozenset[Fact] = ...) -> ProtocolStatus: ...
@overload
def move(current: str, action: StepAction, facts: frozenset[Fact] = ...) -> StepStatus: ...
def move(current: str, action: ProtocolAction | StepAction,
         facts: frozenset[Fact] = frozenset()) -> ProtocolStatus | StepStatus:
    """The status `action` leads to; Conflict (with the reason) when `current` does not allow it."""
    enum = ProtocolStatus if isinstance(action, ProtocolAction) else StepStatus
    try:
        return transition(enum(current), action, facts)
    except TransitionError as exc:
        raise Conflict(str(exc)) from None


async def set_protocol_status(session: AsyncSession, protocol: ProtocolRun, action: ProtocolAction, *,
                              actor: str | None, message: str = "", meta: dict | None = None,
                              facts: frozenset[Fact] = frozenset()) -> None:
    before = protocol.status
    protocol.status = move(protocol.status, action, facts)
    protocol.updated_at = utcnow()
    if protocol.state.waiting_for_protocols and protocol.status != ProtocolStatus.BLOCKED:
        protocol.state = protocol.state.changed(waiting_for_protocols=False)  # it went on another way
    if protocol.status in (ProtocolStatus.PLANNING, ProtocolStatus.RUNNING) and protocol.state.plan_failed:
        protocol.state = protocol.state.changed(plan_failed=False)  # no longer what stops it
    session.add(protocol)
    await store.record_event(
        session, f"protocol_{action.value}", message or f"{before} → {protocol.status}",
        project_id=protocol.project_id, protocol_run_id=protocol.id,
        meta={"from": before, "to": protocol.status, "actor": actor, **(meta or {})},
    )


async def set_step_status(session: AsyncSession, step: StepRun, action: StepAction, *, actor: str | None,
                          protocol: ProtocolRun, message: str = "", meta: dict | None = None) -> None:
    before = step.status
    step.status = move(step.status, action)
    step.updated_at = utcnow()
    session.add(step)
    await store.record_event(
        session, f"step_{action.value}", message or f"{step.step_name}: {before} → {step.status}",
        project_id=protocol.project_id, protocol_run_id=protocol.id, step_run_id=step.id,
        meta={"from": before, "to": step.status, "actor": actor, **(meta or {})},
    )


def report(protocol: ProtocolRun, reason: str) -> Job:
    return queue.report_protocol_job(protocol.id, reason)


async def apply_protocol_action(session: AsyncSession, protocol: ProtocolRun, action: ProtocolAction, *,
                                actor: str | None) -> list[Job]:
    """Start, plan, pause, resume, cancel, run the next step, retry the latest, or open the PR."""
    if action is ProtocolAction.OPEN_PR:
        move(protocol.status, action)
        await store.record_event(session, "open_pr_requested", f"requested by {actor or 'the API'}",
                                 project_id=protocol.project_id, protocol_run_id=protocol.id, meta={"actor": actor})
        return [queue.open_pr_job(protocol.id, nonce=str(utcnow().timestamp()))]
    facts = await facts_of(session, protocol)
    if action is ProtocolAction.RETRY_LATEST:
        return await retry_latest(session, protocol, actor=actor, facts=facts)
    await set_protocol_status(session, protocol, action, actor=actor, facts=facts)
    if Fact.WAITING_FOR_PROTOCOLS in facts and protocol.status == ProtocolStatus.BLOCKED:
        reason = waiting_reason(await unfinished_dependencies(session, protocol))
        protocol.state = protocol.state.changed(blocked_reason=reason, waiting_for_protocols=True)
        return [report(protocol, action.value)]
    if action is ProtocolAction.RESUME:
        protocol.awaiting_answers = False
    if action is ProtocolAction.START and protocol.status == ProtocolStatus.PAUSED:
        protocol.awaiting_answers = True
        await store.record_event(session, "awaiting_answers", "waiting for answers to the plan's blocking questions",
                                 project_id=protocol.project_id, protocol_run_id=protocol.id)
    if action is ProtocolAction.CANCEL:
        await cancel_open_steps(session, protocol, actor=actor)
        return [report(protocol, "cancel")]
    return [*await _follow_up(session, protocol, actor=actor), report(protocol, action.value)]


async def _follow_up(session: AsyncSession, protocol: ProtocolRun, *, actor: str | None) -> list[Job]:
    """The job a protocol's new status calls for: its plan, or its next step."""
    if protocol.status == ProtocolStatus.PLANNING:
        attempt = protocol.state.plan_attempts + 1
        protocol.state = protocol.state.changed(plan_attempts=attempt)
        return [queue.plan_protocol_job(protocol.id, attempt)]
    if protocol.status == ProtocolStatus.RUNNING:
        return await schedule_next(session, protocol, actor=actor)
    return []


async def cancel_open_steps(session: AsyncSession, protocol: ProtocolRun, *, actor: str | None) -> None:
    for step in await steps_of(session, protocol.id):
        if step.status in (StepStatus.PENDING, StepStatus.NEEDS_QA, StepStatus.BLOCKED, StepStatus.FAILED):
            await set_step_status(session, step, StepAction.CANCEL, actor=actor, protocol=protocol)


async def stop_protocol(session: AsyncSession, protocol: ProtocolRun, *, now: bool, actor: str | None) -> list[Job]:
    """No step starts after the one running, which finishes (`now`: its agent is killed and it fails
    keeping what it committed); then the protocol completes and its pull request gets the work done
    so far, or, with no work done, it is cancelled."""
    move(protocol.status, ProtocolAction.STOP)
    by = actor or "the API"
    protocol.state = protocol.state.changed(stop_requested_by=by, stop_now=now or protocol.state.stop_now)
    session.add(protocol)
    await store.record_event(session, "stop_requested", f"{'stop now' if now else 'stop'} requested by {by}",
                             project_id=protocol.project_id, protocol_run_id=protocol.id,
                             meta={"actor": actor, "now": now})
    return [*await schedule_next(session, protocol, actor=actor), report(protocol, "stop")]


async def stop_step(session: AsyncSession, protocol: ProtocolRun, step: StepRun, *, actor: str | None) -> list[Job]:
    """Kills the step's running agent (its job sees the request within a second); the step then
    fails, keeping what it committed, and can be retried."""
    if protocol.status in TERMINAL_PROTOCOL_STATUSES:
        raise Conflict(f"cannot stop the step: the protocol is {protocol.status}")
    move(step.status, StepAction.STOP)
    by = actor or "the API"
    step.state = step.state.changed(stop_requested_by=by)
    session.add(step)
    await store.record_event(session, "step_stop_requested", f"{step.step_name}: stop requested by {by}",
                             project_id=protocol.project_id, protocol_run_id=protocol.id, step_run_id=step.id,
                             meta={"actor": actor})
    return [report(protocol, "stop_step")]


async def _wind_down(session: AsyncSession, protocol: ProtocolRun, *, actor: str | None) -> list[Job]:
    """A stopped protocol once nothing of it runs: what is left is cancelled, and it completes with
    the work done so far (its pull request opened) or, with none, it is cancelled."""
    steps = await steps_of(session, protocol.id)
    waits_for = (StepStatus.RUNNING,) if protocol.state.stop_now else ACTIVE_STEP_STATUSES
    if any(step.status in waits_for for step in steps):
        return []
    worked = any(step.status == StepStatus.COMPLETED or step.state.commit_sha for step in steps)
    by = protocol.state.stop_requested_by
    # A plan under way is not waited for: its agent is stopped, and the plan it was making dropped.
    protocol.state = protocol.state.changed(completion_reason="manual_stop", stop_now=True)
    await cancel_open_steps(session, protocol, actor=actor)
    if not worked:
        await set_protocol_status(session, protocol, ProtocolAction.CANCEL, actor=actor,
                                  message=f"stopped by {by} before any work was done")
        return []
    protocol.awaiting_merge = False
    await set_protocol_status(session, protocol, ProtocolAction.COMPLETE, actor=actor,
                              message=f"stopped by {by}; the pull request holds the work done so far",
                              meta={"completion_reason": "manual_stop"})
    project = await session.get(Project, protocol.project_id)
    if project is None or not project.forge or protocol.issue_number is None or protocol.kind == "ask":
        return []
    return [queue.open_pr_job(protocol.id, nonce="manual-stop")]


async def retry_latest(session: AsyncSession, protocol: ProtocolRun, *, actor: str | None,
                       facts: frozenset[Fact]) -> list[Job]:
    """Plans again when planning is what failed (or there are no steps), else runs the latest
    failed or blocked step again, else the next step."""
    steps = await steps_of(session, protocol.id)
    failed = step_for(StepAction.RETRY, steps)
    replans = move(protocol.status, ProtocolAction.RETRY_LATEST, facts) == ProtocolStatus.PLANNING
    await set_protocol_status(session, protocol, ProtocolAction.RETRY_LATEST, actor=actor, facts=facts,
                              message="planning again" if replans else "")
    if failed is not None and not replans:
        return await retry_step(session, protocol, failed, actor=actor)
    return [*await _follow_up(session, protocol, actor=actor), report(protocol, "retry")]


async def retry_step(session: AsyncSession, protocol: ProtocolRun, step: StepRun, *, actor: str | None) -> list[Job]:
    """Runs the step again; a step blocked because its QA could not run gets its QA again."""
    if step.status == StepStatus.BLOCKED and step.state.qa_error:
        return await apply_step_action(session, protocol, step, StepAction.RUN_QA, actor=actor)
    await set_step_status(session, step, StepAction.RETRY, actor=actor, protocol=protocol)
    step.retries += 1
    if protocol.status in (ProtocolStatus.BLOCKED, ProtocolStatus.FAILED):
        await set_protocol_status(session, protocol, ProtocolAction.RETRY_STEP, actor=actor)
    return [*await schedule_next(session, protocol, actor=actor), report(protocol, "retry")]


async def schedule_next(session: AsyncSession, protocol: ProtocolRun, *, actor: str | None = None) -> list[Job]:
    """What the protocol does next: run its next step (one at a time, they share a worktree),
    open the PR when every step is done, or block when nothing can run. A protocol blocked by its
    steps runs again once they can go on (a late QA pass, for one). A stopped one winds down."""
    if protocol.state.stop_requested_by and protocol.status not in TERMINAL_PROTOCOL_STATUSES:
        return await _wind_down(session, protocol, actor=actor)
    if protocol.status == ProtocolStatus.BLOCKED:
        facts = await facts_of(session, protocol)
        if not is_allowed(protocol.status, ProtocolAction.UNBLOCK, facts):
            return []
        await set_protocol_status(session, protocol, ProtocolAction.UNBLOCK, actor=actor, facts=facts,
                                  message="its steps can go on")
    if protocol.status != ProtocolStatus.RUNNING:
        return []
    steps = await steps_of(session, protocol.id)
    if any(step.status in ACTIVE_STEP_STATUSES for step in steps):
        return []
    outcome = protocol_outcome(steps)
    if outcome is ProtocolStatus.COMPLETED:
        return await steps_finished(session, protocol, actor=actor)
    if outcome is ProtocolStatus.BLOCKED:
        await set_protocol_status(session, protocol, ProtocolAction.BLOCK, actor=actor,
                                  message="no step can run: a step failed or is blocked")
        return []
    runnable = next_runnable_steps(steps)
    if not runnable:
        return []
    if protocol.awaiting_merge:
        protocol.awaiting_merge = False
        session.add(protocol)
    step = runnable[0]
    return [queue.execute_step_job(step.id, step.retries + 1)]


async def steps_finished(session: AsyncSession, protocol: ProtocolRun, *, actor: str | None) -> list[Job]:
    """Every step is done: a protocol on a forge waits for its PR to merge; one without completes."""
    project = await session.get(Project, protocol.project_id)
    if protocol.kind == "ask":
        return []
    if project is not None and project.forge and protocol.issue_number is not None:
        if protocol.awaiting_merge:
            return []
        protocol.awaiting_merge = True
        rounds = protocol.state.finished_rounds + 1
        protocol.state = protocol.state.changed(finished_rounds=rounds)
        session.add(protocol)
        await store.record_event(session, "steps_completed", "every step is done; opening the pull request",
                                 project_id=protocol.project_id, protocol_run_id=protocol.id)
        return [queue.open_pr_job(protocol.id, nonce=f"done-{rounds}")]
    await set_protocol_status(session, protocol, ProtocolAction.COMPLETE, actor=actor, message="every step is done")
    return []


def find_step(steps: Sequence[StepRun], reference: str | None, action: StepAction) -> StepRun:
    """A step by 1-based number or name (case-insensitive); without one, the step `action` picks
    (workflow.step_for)."""
    if reference:
        if reference.isdigit():
            index = int(reference) - 1
            for step in steps:
                if step.step_index == index:
                    return step
        for step in steps:
            if step.step_name.lower() == reference.lower():
                return step
        raise NotFound(f"no step {reference!r}; steps are " + ", ".join(
            f"{step.step_index + 1} `{step.step_name}`" for step in steps) if steps else "the protocol has no steps yet")
    picked = step_for(action, steps)
    if picked is None:
        raise Conflict("no step is " + " or ".join(status.replace("_", " ") for status in DEFAULT_STEP_STATUSES[action]))
    return picked


async def apply_step_action(session: AsyncSession, protocol: ProtocolRun, step: StepRun, action: StepAction, *,
                            actor: str | None) -> list[Job]:
    """Run (or re-run), run QA, approve, retry or cancel one step."""
    if protocol.status in TERMINAL_PROTOCOL_STATUSES:
        raise Conflict(f"cannot {action.value} step: the protocol is {protocol.status}")
    if action in (StepAction.RUN, StepAction.RETRY):
        if step.status == StepStatus.PENDING:
            move(step.status, StepAction.RUN)
            if protocol.status in (ProtocolStatus.BLOCKED, ProtocolStatus.FAILED):
                await set_protocol_status(session, protocol, ProtocolAction.RUN_NEXT_STEP, actor=actor)
            elif protocol.status != ProtocolStatus.RUNNING:
                raise Conflict(f"cannot run the step: the protocol is {protocol.status}; start or resume it first")
            return [queue.execute_step_job(step.id, step.retries + 1)]
        return await retry_step(session, protocol, step, actor=actor)
    if action is StepAction.RUN_QA:
        await set_step_status(session, step, StepAction.RUN_QA, actor=actor, protocol=protocol)
        if protocol.status in (ProtocolStatus.BLOCKED, ProtocolStatus.FAILED):
            await set_protocol_status(session, protocol, ProtocolAction.RUN_NEXT_STEP, actor=actor)
        attempt = step.state.qa_attempts + 1
        step.state = step.state.changed(qa_attempts=attempt)
        return [queue.run_quality_job(step.id, attempt), report(protocol, "qa")]
    if action is StepAction.APPROVE:
        await set_step_status(session, step, StepAction.APPROVE, actor=actor, protocol=protocol,
                              message=f"{step.step_name} approved by {actor or 'the API'}")
        if protocol.status in (ProtocolStatus.BLOCKED, ProtocolStatus.FAILED):
            await set_protocol_status(session, protocol, ProtocolAction.RUN_NEXT_STEP, actor=actor)
        return [*await schedule_next(session, protocol, actor=actor), report(protocol, "approve")]
    if action is StepAction.CANCEL:
        await set_step_status(session, step, StepAction.CANCEL, actor=actor, protocol=protocol)
        return [report(protocol, "cancel_step")]
    raise Conflict(f"{action.value} is not an action people can take on a step")


async def open_clarifications(session: AsyncSession, protocol: ProtocolRun) -> list[Clarification]:
    statement = select(Clarification).where(Clarification.protocol_run_id == protocol.id,
                                            Clarification.status == ClarificationStatus.OPEN)
    return list((await session.exec(statement)).all())


async def answer_clarification(session: AsyncSession, protocol: ProtocolRun | None, clarification: Clarification,
                               answer: object, *, actor: str | None) -> list[Job]:
    clarification.answer = answer
    clarification.status = ClarificationStatus.ANSWERED
    clarification.answered_at = utcnow()
    clarification.answered_by = actor
    clarification.updated_at = utcnow()
    session.add(clarification)
    await store.record_event(session, "clarification_answered", f"{clarification.key} answered by {actor or 'the API'}",
                             project_id=clarification.project_id, protocol_run_id=clarification.protocol_run_id,
                             meta={"key": clarification.key})
    if protocol is None:
        return []
    await session.flush()
    still_blocking = [item for item in await open_clarifications(session, protocol) if item.blocking]
    if still_blocking or protocol.status != ProtocolStatus.PAUSED or not protocol.awaiting_answers:
        return [report(protocol, "answer")]
    protocol.awaiting_answers = False
    await set_protocol_status(session, protocol, ProtocolAction.RESUME, actor=actor,
                              message="every blocking question is answered")
    return [*await schedule_next(session, protocol, actor=actor), report(protocol, "answer")]


MESSAGES_IN_PROMPT = 50


async def messages_text(session: AsyncSession, protocol: ProtocolRun) -> str:
    statement = (select(Message).where(Message.protocol_run_id == protocol.id)
                 .order_by(col(Message.id).desc()).limit(MESSAGES_IN_PROMPT))
    rows = list(reversed((await session.exec(statement)).all()))
    answered = (await session.exec(select(Clarification).where(
        Clarification.protocol_run_id == protocol.id, Clarification.status == ClarificationStatus.ANSWERED))).all()
    lines = [f"- [{row.type}] {row.author or 'someone'}: {row.body}" for row in rows]
    lines += [f"- answer to {item.key} ({item.question}): {item.answer}" for item in answered]
    return "\n".join(lines)
