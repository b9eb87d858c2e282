"""The arq worker: its functions, its cron jobs, and the dependencies it builds at start-up.

`arq jobs.worker.WorkerSettings` works as arq expects: the settings are built from the environment
when arq asks for them (module `__getattr__`), not when this module is imported.
"""

from __future__ import annotations

import os

from arq import cron
from arq.connections import RedisSettings
from arq.worker import Worker

from bot import db
from bot.config import Settings
from bot.deps import Deps, open_deps
from bot.logs import configure_logging
from bot.queue import JobQueue
from jobs import commands, forge_events, installs, maintenance, protocol, reporting, step
from jobs.tracking import tracked

JOB_FUNCTIONS = [
    tracked(function)
    for function in (
        protocol.project_setup_job,
        protocol.plan_protocol_job,
        step.execute_step_job,
        step.run_quality_job,
        protocol.open_pr_job,
        protocol.codemachine_import_job,
        commands.handle_command_job,
        commands.handle_label_job,
        commands.handle_check_action_job,
        installs.handle_installation_job,
        forge_events.handle_ci_result_job,
        forge_events.handle_pull_request_job,
        reporting.report_protocol_job,
    )
]
CRON_JOBS = [cron(maintenance.maintenance_job, minute=None, second=0, run_at_startup=True, unique=True)]


# Agent runs are limited by Deps.agent_slots (AGENTRY_MAX_CONCURRENT_JOBS); the quick jobs around
# them (commands, reports, CI events) get this many more slots so they never wait behind agents.
QUICK_JOB_SLOTS = 16


def worker_options(settings: Settings, *, poll_delay: float = 0.1) -> dict:
    return {
        "functions": JOB_FUNCTIONS,
        "cron_jobs": CRON_JOBS,
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
        **worker_options(deps.settings, poll_delay=0.02),
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
