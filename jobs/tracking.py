"""Every job attempt is tracked in `queued_jobs`: started, then done or failed."""

from __future__ import annotations

import functools
import logging
import time
from typing import Awaitable, Callable

from bot import store
from bot.deps import Deps
from bot.logs import log_context

log = logging.getLogger("agentry.jobs")

JobFunction = Callable[..., Awaitable[object]]


def tracked(function: JobFunction) -> JobFunction:
    """Runs a recorded job at most to completion once; a duplicate wake-up of a finished job does nothing."""

    @functools.wraps(function)
    async def run(ctx: dict, *args):
        deps: Deps = ctx["deps"]
        job_id = ctx.get("job_id", function.__name__)
        async with deps.sessions() as session:
            job = await store.start_job(session, job_id)
        if job is None:
            log.info("job %s already finished or unknown; skipped", job_id)
            return None
        started = time.perf_counter()
        with log_context(job_id=job_id, job=function.__name__, delivery_id=job.delivery_id,
                         project_id=job.project_id, protocol_id=job.protocol_run_id, step_id=job.step_run_id):
            try:
                result = await function(ctx, *args)
            except Exception as exc:
                log.exception("job failed")
                await _finish(deps, job_id, function.__name__, started, ok=False, error=f"{type(exc).__name__}: {exc}")
                return None
        await _finish(deps, job_id, function.__name__, started, ok=True)
        return result

    return run


async def _finish(deps: Deps, job_id: str, name: str, started: float, *, ok: bool, error: str | None = None) -> None:
    async with deps.sessions() as session:
        await store.finish_job(session, job_id, ok=ok, error=error)
    deps.metrics.jobs.labels(name, "ok" if ok else "failed").inc()
    deps.metrics.job_seconds.labels(name).observe(time.perf_counter() - started)
