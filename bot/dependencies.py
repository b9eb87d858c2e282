"""Protocols that wait for others: started, one is blocked until every protocol it depends on has
completed; it then starts by itself, and while one of them has failed its reason says so."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import store
from bot.deps import Deps
from bot.models import ProtocolRun
from bot.protocols import NotFound, apply_protocol_action, report, unfinished_dependencies, waiting_reason
from bot.queue import Job
from bot.workflow import ProtocolAction, ProtocolStatus

MAX_DEPENDENCIES = 20


async def checked_dependencies(session: AsyncSession, project_id: int | None, ids: Sequence[int]) -> list[int]:
    """The ids, once each, of protocols of the project; NotFound names one that is not."""
    unique = list(dict.fromkeys(ids))
    found = set((await session.exec(select(ProtocolRun.id).where(
        col(ProtocolRun.id).in_(unique), ProtocolRun.project_id == project_id))).all()) if unique else set()
    missing = [item for item in unique if item not in found]
    if missing:
        raise NotFound(f"no protocol {missing[0]} in this project")
    return unique


async def release_dependents(deps: Deps, protocol_id: int) -> None:
    """After a protocol changed: the protocols waiting for it start if nothing else holds them, or
    say what they still wait for. Safe to run twice: only a protocol still blocked is started."""
    jobs: list[Job] = []
    async with deps.transaction() as session:
        changed = await session.get(ProtocolRun, protocol_id)
        if changed is None:
            return
        for waiting in await _waiting_for(session, changed):
            jobs += await _go_on(session, waiting)
    await deps.submit(jobs)


async def _waiting_for(session: AsyncSession, changed: ProtocolRun) -> list[ProtocolRun]:
    statement = select(ProtocolRun).where(ProtocolRun.project_id == changed.project_id,
                                          ProtocolRun.status == ProtocolStatus.BLOCKED)
    return [row for row in (await session.exec(statement)).all()
            if row.state.waiting_for_protocols and changed.id in (row.depends_on or [])]


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
    waiting.state = waiting.state.changed(blocked_reason=None, waiting_for_protocols=False)
    return await apply_protocol_action(session, waiting, ProtocolAction.RETRY_LATEST, actor=None)
