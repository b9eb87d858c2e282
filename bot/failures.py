"""What a crashed agent job leaves behind, and how people hear of it.

A plan, step, QA or pull-request job that fails with an error of agentry's own (not the agent's,
which its job records as the step's outcome) leaves its protocol where a retry picks it up and
shows the failure, with the command to type next, in the protocol's status comment. Each handler
takes the job's arguments and the error; it may run twice (a job can), so it looks before it moves.
"""

from __future__ import annotations

from bot import store
from bot.deps import Deps
from bot.models import ProtocolRun, StepRun
from bot.protocols import set_protocol_status
from bot.reporting import report_protocol, request_report
from bot.steps.outcome import Review, because, failed
from bot.steps.quality import settle_quality
from bot.steps.settle import settle
from bot.workflow import ProtocolAction, ProtocolStatus, StepStatus


async def plan_crashed(deps: Deps, protocol_id: int, *, error: str) -> None:
    """A protocol still planning fails with the reason (`retry` plans again); the status comment
    is brought up to date either way."""
    await _planning_failed(deps, protocol_id, because("planning", error))


async def import_crashed(deps: Deps, protocol_id: int, *, error: str) -> None:
    """As a crashed plan, for a CodeMachine workspace that could not be read into steps."""
    await _planning_failed(deps, protocol_id, because("importing the CodeMachine workspace", error))


async def _planning_failed(deps: Deps, protocol_id: int, reason: str) -> None:
    async with deps.transaction() as session:
        protocol = await session.get(ProtocolRun, protocol_id)
        if protocol is None:
            return
        if protocol.status == ProtocolStatus.PLANNING:  # else the plan was stored before the crash
            protocol.state = protocol.state.changed(error=reason, plan_failed=True)
            await set_protocol_status(session, protocol, ProtocolAction.FAIL, actor=None, message=reason)
    await request_report(deps, protocol_id, "planning_failed")


async def step_crashed(deps: Deps, step_id: int, *, error: str) -> None:
    """A step still marked running fails with the reason, as any failed step does (its policies
    apply; `retry N` runs it again); one settled before the crash keeps its outcome."""
    if await _still(deps, step_id, StepStatus.RUNNING):
        await settle(deps, step_id, failed(because("running the step", error)))


async def quality_crashed(deps: Deps, step_id: int, *, error: str) -> None:
    """A step still waiting for its QA is blocked with the reason; `qa N` runs the QA again."""
    if await _still(deps, step_id, StepStatus.NEEDS_QA):
        await settle_quality(deps, step_id, Review(None, because("running QA", error)))


async def _still(deps: Deps, step_id: int, status: StepStatus) -> bool:
    """Whether the step is still where its crashed job left it; if not, its outcome stands and the
    status comment is brought up to date."""
    async with deps.sessions() as session:
        step = await session.get(StepRun, step_id)
    if step is not None and step.status != status:
        await request_report(deps, step.protocol_run_id, "step_settled")
    return step is not None and step.status == status


async def pull_request_crashed(deps: Deps, protocol_id: int, *, error: str) -> None:
    """The status comment says the pull request could not be opened; `open-pr` tries again."""
    async with deps.transaction() as session:
        protocol = await session.get(ProtocolRun, protocol_id)
        if protocol is None:
            return
        reason = because("opening the pull request", error)
        protocol.state = protocol.state.changed(pr_error=reason)
        session.add(protocol)
        await store.record_event(session, "pull_request_failed", reason, project_id=protocol.project_id,
                                 protocol_run_id=protocol.id)
    await request_report(deps, protocol_id, "pull_request_failed")


async def report_crashed(deps: Deps, protocol_id: int, *, error: str) -> None:
    """The status comment is the answer: one more try to bring it up to date."""
    await report_protocol(deps, protocol_id)
