"""A step's outcome settled through the state machine, and what follows it queued."""

from __future__ import annotations

import dataclasses

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import store
from bot.deps import Deps
from bot.models import ProtocolRun, StepRun
from bot.protocols import existing_step, retry_step, schedule_next, set_step_status
from bot.queue import Job, run_quality_job as quality_job
from bot.reporting import request_report
from bot.state import kill_requested_by
from bot.steps.outcome import Outcome, failed
from bot.steps.policies import account, after_failure, after_success, budget_warning
from bot.steps.quality import run_quality
from bot.workflow import ProtocolStatus, QaPolicy, StepAction, StepStatus, after_execution


async def restart_taken_over_step(deps: Deps, step_id: int) -> None:
    """The worker running the step died: the step fails visibly and runs again as a new attempt
    (from the commits it pushed; its worktree is rebuilt from the branch)."""
    async with deps.transaction() as session:
        step, protocol = await existing_step(session, step_id)
        reason = "the worker running it stopped; it runs again as a new attempt"
        step.state = step.state.changed(error=reason)
        await set_step_status(session, step, StepAction.FAIL, actor=None, protocol=protocol,
                              message=f"{step.step_name}: {reason}")
        jobs = await retry_step(session, protocol, step, actor=None)
    await deps.submit([dataclasses.replace(job, urgent=True) for job in jobs])  # before work queued since


async def settle(deps: Deps, step_id: int, outcome: Outcome) -> None:
    jobs = []
    run_light_qa = False
    async with deps.transaction() as session:
        step, protocol = await existing_step(session, step_id)
        account(step, protocol, outcome)
        stopped_by = kill_requested_by(protocol.state, step.state)
        if step.state.stop_requested_by:
            step.state = step.state.changed(stop_requested_by=None)
        if protocol.status == ProtocolStatus.CANCELLED:
            await set_step_status(session, step, StepAction.CANCEL, actor=None, protocol=protocol,
                                  message=f"{step.step_name} stopped: the protocol was cancelled")
        elif outcome.stopped and not outcome.ok:
            jobs = await _stopped(session, protocol, step, outcome, stopped_by)
        elif not outcome.ok:
            step.state = step.state.changed(error=outcome.error)
            await set_step_status(session, step, StepAction.FAIL, actor=None, protocol=protocol,
                                  message=f"{step.step_name} failed: {outcome.error}")
            jobs = await after_failure(session, protocol, step)
        else:
            await set_step_status(session, step, StepAction.SUCCEED, actor=None, protocol=protocol)
            policy = QaPolicy(step.qa_policy) if step.qa_policy in set(QaPolicy) else QaPolicy.FULL
            if after_execution(policy) is StepStatus.COMPLETED or outcome.settle_as is StepStatus.COMPLETED:
                await set_step_status(session, step, StepAction.QA_PASS, actor=None, protocol=protocol,
                                      message=f"{step.step_name} completed (QA {policy.value})")
                jobs = await after_success(session, protocol, step)
            elif policy is QaPolicy.LIGHT:
                run_light_qa = True
            else:
                attempt = step.state.qa_attempts + 1
                step.state = step.state.changed(qa_attempts=attempt)
                jobs = [quality_job(step.id, attempt)]
        await budget_warning(deps, session, protocol, step, outcome)
    if run_light_qa:
        await run_quality(deps, step_id)
        return
    await deps.submit(jobs)
    await request_report(deps, protocol.id, "step_settled")


async def _stopped(session: AsyncSession, protocol: ProtocolRun, step: StepRun, outcome: Outcome,
                   by: str | None) -> list[Job]:
    """A step whose agent was killed on request fails, retryably, without its loop or trigger policies."""
    step.state = step.state.changed(error=outcome.error)
    kept = "; what it committed is on the branch" if outcome.state.get("commit_sha") else ""
    await set_step_status(session, step, StepAction.FAIL, actor=by, protocol=protocol,
                          message=f"{step.step_name} stopped by {by or 'request'}{kept}")
    return await schedule_next(session, protocol, actor=by)


async def fail_stuck_steps(deps: Deps) -> int:
    """Fails steps left `running` past the step timeout (their worker died), visibly and retryably."""
    grace_minutes = deps.settings.step_timeout_seconds / 60 + 5
    async with deps.sessions() as session:
        stuck = await store.stuck_steps(session, updated_before=store.minutes_ago(grace_minutes))
    for step in stuck:
        await settle(deps, step.id, failed(
            f"no worker finished this step within {grace_minutes:.0f} minutes (the worker may have stopped); "
            f"`{deps.settings.command_prefix} retry {step.step_index + 1}` runs it again"))
    return len(stuck)
