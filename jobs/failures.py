"""What a crashed agent job leaves behind, and how people hear of it.

A plan, step, QA or pull-request job that fails with an error of agentry's own (not the agent's,
which its job records as the step's outcome) leaves its protocol where a retry picks it up and
shows the failure, with the command to type next, in the protocol's status comment. Each handler
takes the job's arguments and the error; it may run twice (a job can), so it looks before it moves.
"""

from __future__ import annotations

from bot import render, store
from bot.deps import Deps
from bot.models import ProtocolRun, StepRun
from bot.protocols import schedule_next, set_protocol_status, set_step_status
from bot.workflow import ProtocolAction, ProtocolStatus, StepAction, StepStatus
from jobs.common import transaction
from jobs.reporting import report_protocol

REASON_CHARS = 500


def because(doing: str, error: str) -> str:
    return f"agentry failed while {doing}: {render.truncate_end(error, REASON_CHARS)}"


async def plan_crashed(deps: Deps, protocol_id: int, *, error: str) -> None:
    """A protocol still planning fails with the reason (`retry` plans again); the status comment
    is brought up to date either way."""
    async with transaction(deps) as session:
        protocol = await session.get(ProtocolRun, protocol_id)
        if protocol is None:
            return
        if protocol.status == ProtocolStatus.PLANNING:  # else the plan was stored before the crash
            reason = because("planning", error)
            protocol.runtime_state = {**protocol.runtime_state, "error": reason, "plan_failed": True}
            await set_protocol_status(session, protocol, ProtocolAction.FAIL, actor=None, message=reason)
    await report_protocol(deps, protocol_id)


async def step_crashed(deps: Deps, step_id: int, *, error: str) -> None:
    """A step still marked running fails with the reason (`retry N` runs it again); one that was
    settled before the crash keeps its outcome, and the status comment is brought up to date."""
    await _settle_step(deps, step_id, StepStatus.RUNNING, StepAction.FAIL, "error", because("running the step", error))


async def quality_crashed(deps: Deps, step_id: int, *, error: str) -> None:
    """A step still waiting for its QA is blocked with the reason; `qa N` runs the QA again."""
    await _settle_step(deps, step_id, StepStatus.NEEDS_QA, StepAction.BLOCK, "qa_error", because("running QA", error))


async def _settle_step(deps: Deps, step_id: int, stuck: StepStatus, action: StepAction, key: str, reason: str) -> None:
    async with transaction(deps) as session:
        step = await session.get(StepRun, step_id)
        if step is None:
            return
        protocol_id = step.protocol_run_id
        protocol = await session.get(ProtocolRun, protocol_id)
        if protocol is None:
            return
        jobs: list = []
        if step.status == stuck and protocol.status not in (ProtocolStatus.CANCELLED, ProtocolStatus.COMPLETED):
            step.runtime_state = {**step.runtime_state, key: reason}
            await set_step_status(session, step, action, actor=None, protocol=protocol,
                                  message=f"{step.step_name}: {reason}")
            jobs = await schedule_next(session, protocol)
    await deps.submit(jobs)
    await report_protocol(deps, protocol_id)


async def pull_request_crashed(deps: Deps, protocol_id: int, *, error: str) -> None:
    """The status comment says the pull request could not be opened; `open-pr` tries again."""
    async with transaction(deps) as session:
        protocol = await session.get(ProtocolRun, protocol_id)
        if protocol is None:
            return
        reason = because("opening the pull request", error)
        protocol.runtime_state = {**protocol.runtime_state, "pr_error": reason}
        session.add(protocol)
        await store.record_event(session, "pull_request_failed", reason, project_id=protocol.project_id,
                                 protocol_run_id=protocol.id)
    await report_protocol(deps, protocol_id)


async def report_crashed(deps: Deps, protocol_id: int, *, error: str) -> None:
    """The status comment is the answer: one more try to bring it up to date."""
    await report_protocol(deps, protocol_id)
