"""Periodic upkeep: re-drive work whose queue was lost."""

from __future__ import annotations

import logging
import shutil
from datetime import timedelta

from sqlmodel import col, select

from bot import git, store
from bot.deps import Deps
from bot.forge.github import GitHubForge
from bot.models import ProtocolRun, QueuedJob, StepRun, WebhookDelivery, utcnow
from bot.protocols import schedule_next, steps_of
from bot.queue import ATTEMPT_SEPARATOR
from bot.recovery import RETENTION, missed_deliveries
from bot.statuses import JobStatus
from bot.steps.settle import fail_stuck_steps
from bot.workflow import TERMINAL_PROTOCOL_STATUSES, ProtocolStatus, StepStatus, next_runnable_steps

log = logging.getLogger("agentry.maintenance")

QUEUED_GRACE_MINUTES = 1.0
UNCLAIMED_GRACE = timedelta(seconds=10)  # a worker claims a job it takes within milliseconds
STALL_GRACE = timedelta(seconds=30)
REDELIVERIES_PER_RUN = 50  # a backlog after a long outage is asked for over several runs


async def redrive_lost_jobs(deps: Deps) -> int:
    """Queues again every recorded job that never started and that arq no longer holds (a crash of the
    web process or Redis); running jobs are the leases' business."""
    async with deps.sessions() as session:
        stale = await store.unstarted_jobs(session, queued_before=store.minutes_ago(QUEUED_GRACE_MINUTES),
                                           limit=500)
    redriven = 0
    for job in stale:
        if await deps.queue.is_known(job.job_id):
            continue
        if await deps.queue.wake_by_id(job.function, job.args, job.job_id):
            redriven += 1
            log.warning("re-driving lost job %s (was %s)", job.job_id, job.status)
    return redriven


async def take_over_lapsed_jobs(deps: Deps) -> int:
    """Queues again, as a new attempt, each job a dead worker held: running with a lapsed lease, or
    taken off the queue but never claimed. The first worker to claim it (compare-and-set) runs it."""
    now = utcnow()
    async with deps.sessions() as session:
        lapsed = await store.lapsed_jobs(session)
        unclaimed = await store.unstarted_jobs(session, queued_before=now - UNCLAIMED_GRACE, limit=200)
    stranded = [job for job in unclaimed if await deps.queue.taken_by_a_worker(job.job_id)]
    for job in [*lapsed, *stranded]:
        # a new arq id each window: the old one may still be marked in progress by the dead worker
        window = int(now.timestamp() // UNCLAIMED_GRACE.total_seconds())
        await deps.queue.wake_by_id(job.function, job.args, f"{job.job_id}{ATTEMPT_SEPARATOR}{job.attempts + 1}.{window}",
                                    urgent=True)
        log.warning("taking over job %s from %s (%s)", job.job_id, job.worker_id or "a worker",
                    "its lease lapsed" if job.status == JobStatus.RUNNING else "taken but never started")
    return len(lapsed) + len(stranded)


async def resume_stalled_protocols(deps: Deps) -> int:
    """Schedules again the running protocols that wait on nothing: what should follow a state
    change was lost (a worker died between committing the state and queueing the next job)."""
    async with deps.transaction() as session:
        statement = select(ProtocolRun).where(ProtocolRun.status == ProtocolStatus.RUNNING,
                                              col(ProtocolRun.updated_at) < utcnow() - STALL_GRACE).limit(100)
        jobs = []
        for protocol in (await session.exec(statement)).all():
            if await _waits_on_nothing(session, protocol):
                log.warning("protocol %s waits on nothing; scheduling its next step", protocol.id)
                jobs += await schedule_next(session, protocol)
    await deps.submit(jobs)
    return len(jobs)


async def _waits_on_nothing(session, protocol: ProtocolRun) -> bool:
    steps = await steps_of(session, protocol.id)
    if protocol.awaiting_merge or not next_runnable_steps(steps):
        return False
    if any(step.status in (StepStatus.RUNNING, StepStatus.NEEDS_QA) for step in steps):
        return False
    busy = select(QueuedJob.job_id).where(col(QueuedJob.step_run_id).in_([step.id for step in steps]),
                                          col(QueuedJob.status).in_((JobStatus.QUEUED, JobStatus.RUNNING))).limit(1)
    return (await session.exec(busy)).first() is None


async def prune_worktrees(deps: Deps) -> int:
    """Removes the worktrees of protocols that ended (or no longer exist), then tidies each mirror."""
    data_dir = deps.settings.data_dir.resolve()
    root = data_dir / "worktrees"
    if not root.is_dir():
        return 0
    removed = 0
    async with deps.sessions() as session:
        for path in sorted(root.iterdir()):
            if path.name.startswith("."):  # agentry's own notes on the worktrees
                continue
            protocol = await session.get(ProtocolRun, int(path.name)) if path.name.isdigit() else None
            if protocol is not None and (protocol.status not in TERMINAL_PROTOCOL_STATUSES
                                         or await _step_still_running(session, protocol.id)):
                continue  # a step of a cancelled protocol finishes (and commits) before its worktree goes
            if protocol is not None:
                await git.remove_worktree(git.mirror_path(data_dir, protocol.project_id), path)
            else:
                shutil.rmtree(path, ignore_errors=True)
            removed += 1
    for mirror in sorted((data_dir / "repos").glob("*.git")):
        await git.tidy_mirror(mirror)
    return removed


async def _step_still_running(session, protocol_id: int) -> bool:
    statement = select(StepRun.id).where(StepRun.protocol_run_id == protocol_id, StepRun.status == StepStatus.RUNNING)
    return (await session.exec(statement.limit(1))).first() is not None


async def recover_missed_deliveries(deps: Deps) -> int:
    """Asks GitHub again for the deliveries agentry missed (GitHub itself never retries one)."""
    forge = deps.forges.get("github")
    if not isinstance(forge, GitHubForge):
        return 0
    now = utcnow()
    attempts = await forge.app.hook_deliveries(since=now - RETENTION)
    guids = {str(attempt.get("guid")) for attempt in attempts}
    async with deps.sessions() as session:
        statement = select(WebhookDelivery.delivery_id).where(col(WebhookDelivery.delivery_id).in_(guids))
        recorded = set((await session.exec(statement)).all())
    missed = missed_deliveries(attempts, recorded, now)[:REDELIVERIES_PER_RUN]
    for attempt_id in missed:
        await forge.app.redeliver(attempt_id)
    if missed:
        log.warning("asked GitHub to redeliver %d missed webhook deliveries", len(missed))
    return len(missed)


async def look_after(deps: Deps) -> dict:
    """The minutely round: lost jobs queued again, stuck steps failed, stalled protocols resumed,
    ended protocols' worktrees removed."""
    return {"redriven": await redrive_lost_jobs(deps), "stuck_steps_failed": await fail_stuck_steps(deps),
            "stalled_resumed": await resume_stalled_protocols(deps), "worktrees_pruned": await prune_worktrees(deps)}
