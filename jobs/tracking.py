"""Every job attempt is tracked in `queued_jobs`: started, then done or failed."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Awaitable, Callable

from bot import store
from bot.deps import Deps
from bot.logs import log_context
from bot.queue import ATTEMPT_SEPARATOR

log = logging.getLogger("agentry.jobs")

JobFunction = Callable[..., Awaitable[object]]
FailureHandler = Callable[..., Awaitable[None]]

LEASE = timedelta(seconds=6)  # a job whose worker stops renewing is taken over this long after
RENEW_SECONDS = 1.5  # four chances to renew before the lease lapses


def base_job_id(queued_id: str) -> str:
    return queued_id.split(ATTEMPT_SEPARATOR, 1)[0]


@dataclass
class Lease:
    """The job's hold on its row in `queued_jobs`; `lost` once another worker took the job over."""

    job_id: str
    lost: bool = False


def tracked(function: JobFunction, on_failure: FailureHandler | None = None) -> JobFunction:
    """Runs a recorded job at most to completion once; a duplicate wake-up of a finished job does nothing.
    A job whose lease is taken over (its worker was too slow to renew it) is cancelled where it
    stands and leaves the rest to the new holder: it writes nothing more, not even its end.
    A job that fails is recorded failed after `on_failure(deps, *args, error=...)` had its say."""

    @functools.wraps(function)
    async def run(ctx: dict, *args):
        deps: Deps = ctx["deps"]
        job_id = base_job_id(ctx.get("job_id", function.__name__))
        async with deps.sessions() as session:
            job = await store.start_job(session, job_id, worker_id=deps.worker_id, lease=LEASE)
        if job is None:
            log.info("job %s finished, unknown or held by another worker; skipped", job_id)
            return None
        lease = Lease(job_id)
        ctx = {**ctx, "job_id": job_id, "taken_over": job.attempts > 1, "lease": lease}
        started = time.perf_counter()
        with log_context(job_id=job_id, job=function.__name__, delivery_id=job.delivery_id,
                         project_id=job.project_id, protocol_id=job.protocol_run_id, step_id=job.step_run_id):
            async with _holding_lease(deps, lease):
                try:
                    result = await function(ctx, *args)
                except asyncio.CancelledError:
                    if not lease.lost:
                        raise
                    log.warning("job %s was taken over by another worker; stopped here", job_id)
                    return None
                except Exception as exc:
                    log.exception("job failed")
                    error = f"{type(exc).__name__}: {exc}"
                    await _answer_failure(on_failure, deps, args, error)
                    await _finish(deps, job_id, function.__name__, started, ok=False, error=error)
                    return None
        await _finish(deps, job_id, function.__name__, started, ok=True)
        return result

    return run


async def _answer_failure(on_failure: FailureHandler | None, deps: Deps, args: tuple, error: str) -> None:
    if on_failure is None:
        return
    try:
        await on_failure(deps, *args, error=error)
    except Exception:  # noqa: BLE001 - the job is recorded failed all the same
        log.exception("could not record or report the failure")


@contextlib.asynccontextmanager
async def _holding_lease(deps: Deps, lease: Lease):
    """Renews the job's lease while it runs, so that only a dead worker's jobs are taken over; the
    job is cancelled when the lease was taken over all the same."""
    renewer = asyncio.create_task(_renew(deps, lease, asyncio.current_task()))
    try:
        yield
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer


async def _renew(deps: Deps, lease: Lease, job: asyncio.Task | None) -> None:
    while True:
        await asyncio.sleep(RENEW_SECONDS)
        try:
            async with deps.sessions() as session:
                if not await store.renew_lease(session, lease.job_id, worker_id=deps.worker_id, lease=LEASE):
                    log.warning("job %s: its lease was taken over", lease.job_id)
                    lease.lost = True
                    if job is not None:
                        job.cancel()
                    return
        except Exception:  # noqa: BLE001 - a database hiccup: the next renewal tries again
            log.warning("job %s: could not renew its lease", lease.job_id, exc_info=True)


async def _finish(deps: Deps, job_id: str, name: str, started: float, *, ok: bool, error: str | None = None) -> None:
    async with deps.sessions() as session:
        await store.finish_job(session, job_id, ok=ok, error=error)
    deps.metrics.jobs.labels(name, "ok" if ok else "failed").inc()
    deps.metrics.job_seconds.labels(name).observe(time.perf_counter() - started)
