"""The arq worker: its functions, its cron jobs, and the dependencies it builds at start-up.

`arq jobs.worker.WorkerSettings` works as arq expects: the settings are built from the environment
when arq asks for them (module `__getattr__`), not when this module is imported.
"""

from __future__ import annotations

import asyncio
import logging
import os

from arq import cron
from arq.connections import RedisSettings
from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot import db, failures
from bot.config import Settings
from bot.deps import Deps, open_deps
from bot.logs import configure_logging
from bot.queue import JobQueue, function_of
from jobs import commands, forge_events, maintenance, protocol, step
from jobs.tracking import FailureHandler, JobFunction, tracked

# The worker's jobs: each with what answers its failure (None: it answers its own, or nobody asked)
# and whether it runs an agent (those wait for one of Deps.agent_slots).
JOBS: tuple[tuple[JobFunction, FailureHandler | None, bool], ...] = (
    (protocol.project_setup_job, None, False),
    (protocol.plan_protocol_job, failures.plan_crashed, True),
    (step.execute_step_job, failures.step_crashed, True),
    (step.run_quality_job, failures.quality_crashed, True),
    (protocol.open_pr_job, failures.pull_request_crashed, False),
    (protocol.codemachine_import_job, failures.import_crashed, False),
    (commands.handle_command_job, None, False),  # commands, labels and buttons: command_service.answer
    (commands.handle_label_job, None, False),
    (commands.handle_check_action_job, None, False),
    (forge_events.handle_installation_job, None, False),
    (forge_events.handle_ci_result_job, None, False),
    (forge_events.handle_pull_request_job, None, False),
    (protocol.report_protocol_job, failures.report_crashed, False),
)
JOB_FUNCTIONS = [tracked(function, on_failure) for function, on_failure, _ in JOBS]
AGENT_JOBS = frozenset(function.__name__ for function, _, runs_an_agent in JOBS if runs_an_agent)
CRON_JOBS = [cron(maintenance.maintenance_job, minute=None, second=0, run_at_startup=True, unique=True)]
# Only in long-running workers, not in burst runs (tests, one-shot drains): the every-second takeover
# would keep a burst worker's queue from ever emptying, and the other one calls the forge.
LONG_RUNNING_CRON_JOBS = [
    cron(maintenance.takeover_job, second=None, unique=True),  # dead workers' jobs, every second
    cron(maintenance.recover_deliveries_job, minute=set(range(0, 60, 10)), second=30, run_at_startup=True,
         unique=True),
]


# Agent runs are limited by Deps.agent_slots (AGENTRY_MAX_CONCURRENT_JOBS); the quick jobs around
# them (commands, reports, CI events) get this many more slots so they never wait behind agents.
QUICK_JOB_SLOTS = 16


def worker_options(settings: Settings, *, poll_delay: float = 0.1, burst: bool = False) -> dict:
    return {
        "functions": JOB_FUNCTIONS,
        "cron_jobs": CRON_JOBS if burst else [*CRON_JOBS, *LONG_RUNNING_CRON_JOBS],
        "max_jobs": settings.max_concurrent_jobs + QUICK_JOB_SLOTS,
        "job_timeout": settings.step_timeout_seconds * 2 + 300,
        "keep_result": 0,
        "max_tries": 1,
        "poll_delay": poll_delay,
    }


def run_inline(deps: Deps):
    """Runs one job in this process (the API's `inline` requests), recorded like any other."""
    functions = {function.__name__: function for function in JOB_FUNCTIONS}

    async def run(job) -> None:
        await deps.record([job])
        await functions[job.function]({"deps": deps, "job_id": job.job_id}, *job.args)

    return run


def embedded_worker(deps: Deps, *, burst: bool = False) -> Worker:
    """A worker inside the web process, sharing its dependencies."""
    return Worker(
        redis_pool=deps.queue.redis,
        ctx={"deps": deps},
        handle_signals=False,
        burst=burst,
        **worker_options(deps.settings, poll_delay=0.02, burst=burst),
    )


async def startup(ctx: dict) -> None:
    settings = Settings.from_env(os.environ)
    configure_logging(settings.log_level)
    if db.is_sqlite(settings.database_url):
        await db.upgrade_in_thread(settings.database_url)
    ctx["deps"] = await open_deps(settings, queue=JobQueue(ctx["redis"]))


async def shutdown(ctx: dict) -> None:
    deps: Deps | None = ctx.get("deps")
    if deps is not None:
        await deps.http.close()
        await deps.engine.dispose()


log = logging.getLogger("agentry.worker")
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
BACKOFF_SECONDS = (0.5, 10.0)  # first and longest wait between attempts to reach Redis again


QUEUE_READ_LIMIT = 500  # jobs looked at per poll, so that quick jobs behind held-back agent jobs are seen


class ResilientWorker(Worker):
    """A worker that rides out Redis outages: it waits for Redis at start-up, and a poll that
    cannot reach it waits (backing off) and tries again, while the jobs already running go on.

    It takes only the agent jobs it can start now (one per free agent slot) and leaves the others
    queued for a worker that has a slot, so no job waits behind another on a busy worker."""

    backoff = BACKOFF_SECONDS[0]
    outage_since: float | None = None

    def __init__(self, *args, agent_slots: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.agent_slots = agent_slots

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        for job_id in job_ids:  # one by one: arq passes over the ids another worker is running
            if _is_agent_job(job_id.decode()) and self._agent_jobs_running() >= self.agent_slots:
                continue
            await super().start_jobs([job_id])

    def _agent_jobs_running(self) -> int:
        return sum(1 for job_id, task in self.tasks.items() if not task.done() and _is_agent_job(job_id))

    async def main(self) -> None:
        while True:
            try:
                return await super().main()
            except REDIS_DOWN as exc:
                # Redis went away while the worker was starting: start again once it is back.
                await self._wait_for_redis(exc)

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except REDIS_DOWN as exc:
            await self._wait_for_redis(exc)
            return
        if self.outage_since is not None:
            log.warning("Redis is back after %.1f s; polling again", asyncio.get_running_loop().time() - self.outage_since)
            self.outage_since, self.backoff = None, BACKOFF_SECONDS[0]

    async def _wait_for_redis(self, exc: BaseException) -> None:
        if self.outage_since is None:
            self.outage_since = asyncio.get_running_loop().time()
            log.warning("cannot reach Redis (%s: %s); retrying with backoff", type(exc).__name__, exc)
        await asyncio.sleep(self.backoff)
        self.backoff = min(self.backoff * 2, BACKOFF_SECONDS[1])


def _is_agent_job(job_id: str) -> bool:
    return function_of(job_id) in AGENT_JOBS


def run_resilient_worker(settings: Settings) -> None:
    """`python -m bot worker`: a worker process that keeps going through Redis outages."""
    ResilientWorker(**worker_settings(settings), queue_read_limit=QUEUE_READ_LIMIT,
                    agent_slots=settings.max_concurrent_jobs).run()


def worker_settings(settings: Settings) -> dict:
    return {
        **worker_options(settings),
        "redis_settings": RedisSettings.from_dsn(settings.redis_url or "redis://localhost:6379"),
        "on_startup": startup,
        "on_shutdown": shutdown,
    }


def __getattr__(name: str):
    if name == "WorkerSettings":
        return worker_settings(Settings.from_env(os.environ))
    raise AttributeError(name)
