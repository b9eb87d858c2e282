"""Periodic upkeep: re-drive work whose queue was lost."""

from __future__ import annotations

import logging

from bot import store
from bot.deps import Deps
from jobs.step import fail_stuck_steps

log = logging.getLogger("agentry.jobs.maintenance")

QUEUED_GRACE_MINUTES = 1.0


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


async def maintenance_job(ctx: dict) -> dict:
    deps: Deps = ctx["deps"]
    return {"redriven": await redrive_lost_jobs(deps), "stuck_steps_failed": await fail_stuck_steps(deps)}
