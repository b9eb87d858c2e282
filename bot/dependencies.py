"""Protocols that wait for others: started, one is blocked until every protocol it depends on has
completed; it then starts by itself, and while one of them has failed its reason says so."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import store
from bot.deps import Deps
from bot.models import ProtocolRun
from bot.protocols import (
    NotFound,
    apply_protocol_action,
    facts_of,
    report,
    set_protocol_status,
    unfinished_dependencies,
    waiting_reason,
)
from bot.queue import Job
from bot.workflow import Fact, ProtocolAction, ProtocolStatus

MAX_DEPENDENCIES = 20


class CannotWait(Exception):
    """A protocol named to wait for can never complete."""


async def checked_dependencies(session: AsyncSession, project_id: int | None, ids: Sequence[int]) -> list[int]:
    """The ids, once each, of protocols of the project that can still complete: NotFound names one
    that is not the project's, CannotWait one that is cancelled or only answers questions."""
    unique = list(dict.fromkeys(ids))
    rows = (await session.exec(select(ProtocolRun).where(
        col(ProtocolRun.id).in_(unique), ProtocolRun.project_id == project_id))).all() if unique else []
    found = {row.id: row for row in rows}
    if missing := [item for item in unique if item not in found]:
        raise NotFound(f"no protocol {missing[0]} in this project")
    for row in rows:
        if row.status == ProtocolStatus.CANCELLED or row.kind == "ask":
            raise CannotWait(f"protocol {row.id} will never complete ({row.kind}, {row.status})")
    return unique


async def release_dependents(deps: Deps, protocol_id: int) -> None:
    """After a protocol changed: the protocols waiting for it start if nothing else holds them, or
    say what they still wait for. Safe to run twice: only a protocol still blocked is started."""
    jobs: list[Job] = []
    async with deps.transaction() as session:
        changed = await session.get(ProtocolRun, protocol_id)
        if changed is None:
            return
        # Itself too: what it waits for may have completed while it was being started.
        for waiting in [*_still_waiting([changed]), *await _waiting_for(session, changed)]:
            jobs += await _go_on(session, waiting)
    await deps.submit(jobs)


async def _waiting_for(session: AsyncSession, changed: ProtocolRun) -> list[ProtocolRun]:
    statement = select(ProtocolRun).where(ProtocolRun.project_id == changed.project_id,
                                          ProtocolRun.status == ProtocolStatus.BLOCKED)
    return [row for row in _still_waiting((await session.exec(statement)).all())
            if changed.id in (row.depends_on or [])]


def _still_waiting(protocols: Sequence[ProtocolRun]) -> list[ProtocolRun]:
    return [row for row in protocols if row.status == ProtocolStatus.BLOCKED and row.state.waiting_for_protocols]


async def _go_on(session: AsyncSession, waiting: ProtocolRun) -> list[Job]:
    if unfinished := await unfinished_dependencies(session, waiting):
        reason = waiting_reason(unfinished)
        if reason == waiting.state.blocked_reason:
            return []
        waiting.state = waiting.state.changed(blocked_reason=reason)
        session.add(waiting)
        return [report(waiting, "dependencies")]
    await store.record_event(session, "dependencies_completed", "every protocol it depends on completed; starting",
                             project_id=waiting.project_id, protocol_run_id=waiting.id,
                             meta={"depends_on": waiting.depends_on})
    waiting.state = waiting.state.changed(blocked_reason=None)
    facts = await facts_of(session, waiting)
    if Fact.OPEN_QUESTIONS in facts:  # planned with a blocking question: it waits for the answers now
        await set_protocol_status(session, waiting, ProtocolAction.RETRY_LATEST, actor=None, facts=facts)
        await set_protocol_status(session, waiting, ProtocolAction.PAUSE, actor=None,
                                  message="waiting for answers to the plan's blocking questions")
        waiting.awaiting_answers = True
        return [report(waiting, "dependencies")]
    return await apply_protocol_action(session, waiting, ProtocolAction.RETRY_LATEST, actor=None)
