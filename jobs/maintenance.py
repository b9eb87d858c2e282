"""Periodic upkeep: re-drive work whose queue was lost."""

from __future__ import annotations

import logging
import shutil

from sqlmodel import col, select

from bot import git, store
from bot.deps import Deps
from bot.forge.github import GitHubForge
from bot.models import ProtocolRun, WebhookDelivery, utcnow
from bot.recovery import RETENTION, missed_deliveries
from bot.workflow import TERMINAL_PROTOCOL_STATUSES
from jobs.step import fail_stuck_steps

log = logging.getLogger("agentry.jobs.maintenance")

QUEUED_GRACE_MINUTES = 1.0
REDELIVERIES_PER_RUN = 50  # a backlog after a long outage is asked for over several runs


async def redrive_lost_jobs(deps: Deps) -> int:
    """Queues again every recorded job that arq no longer holds (crash of the web process, worker or Redis)."""
    running_grace = deps.settings.step_timeout_seconds / 60 + 5
    async with deps.sessions() as session:
        stale = await store.unfinished_jobs(
            session, queued_before=store.minutes_ago(QUEUED_GRACE_MINUTES), running_before=store.minutes_ago(running_grace)
        )
    redriven = 0
    for job in stale:
        if await deps.queue.is_known(job.job_id):
            continue
        if await deps.queue.wake_by_id(job.function, job.args, job.job_id):
            redriven += 1
            log.warning("re-driving lost job %s (was %s)", job.job_id, job.status)
    return redriven


async def prune_worktrees(deps: Deps) -> int:
    """Removes the worktrees of protocols that ended (or no longer exist), then prunes each mirror."""
    data_dir = deps.settings.data_dir.resolve()
    root = data_dir / "worktrees"
    if not root.is_dir():
        return 0
    removed = 0
    async with deps.sessions() as session:
        for path in sorted(root.iterdir()):
            protocol = await session.get(ProtocolRun, int(path.name)) if path.name.isdigit() else None
            if protocol is not None and protocol.status not in TERMINAL_PROTOCOL_STATUSES:
                continue
            if protocol is not None:
                await git.remove_worktree(git.mirror_path(data_dir, protocol.project_id), path)
            else:
                shutil.rmtree(path, ignore_errors=True)
            removed += 1
    for mirror in sorted((data_dir / "repos").glob("*.git")):
        await git.prune_worktrees(mirror)
    return removed


async def maintenance_job(ctx: dict) -> dict:
    deps: Deps = ctx["deps"]
    return {"redriven": await redrive_lost_jobs(deps), "stuck_steps_failed": await fail_stuck_steps(deps),
            "worktrees_pruned": await prune_worktrees(deps)}


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


async def recover_deliveries_job(ctx: dict) -> dict:
    return {"redelivered": await recover_missed_deliveries(ctx["deps"])}
