"""Job names, job ids, and the one way work is queued: record it durably, then wake arq.

The database row in `queued_jobs` is the truth; the arq queue is only a wake-up call. A job lost with
its queue (Redis crash, the embedded in-memory queue dying with its process) is found again by the
maintenance job and queued anew under the same id.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import fakeredis
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import default_queue_name, in_progress_key_prefix, job_key_prefix
from redis.asyncio import ConnectionPool
from redis.asyncio.client import Pipeline

log = logging.getLogger("agentry.queue")

URGENT_HEAD_START = timedelta(hours=1)
ATTEMPT_SEPARATOR = "#"  # a taken-over job is queued again as "<job id>#<attempt>"
URGENT_EXPIRY = timedelta(days=1)  # arq's default for a job queued now
EMBEDDED_INFO_KEY = "agentry:embedded-info"  # never written: the embedded server's empty INFO

PROJECT_SETUP = "project_setup_job"
PLAN_PROTOCOL = "plan_protocol_job"
EXECUTE_STEP = "execute_step_job"
RUN_QUALITY = "run_quality_job"
OPEN_PR = "open_pr_job"
CODEMACHINE_IMPORT = "codemachine_import_job"
HANDLE_COMMAND = "handle_command_job"
HANDLE_LABEL = "handle_label_job"
HANDLE_INSTALLATION = "handle_installation_job"
HANDLE_CI_RESULT = "handle_ci_result_job"
HANDLE_PULL_REQUEST = "handle_pull_request_job"
HANDLE_CHECK_ACTION = "handle_check_action_job"
REPORT_PROTOCOL = "report_protocol_job"
MAINTENANCE = "maintenance_job"


@dataclass(frozen=True)
class Job:
    function: str
    args: tuple = ()
    key: str = ""
    project_id: int | None = None
    protocol_run_id: int | None = None
    step_run_id: int | None = None
    delivery_id: str | None = field(default=None, compare=False)
    urgent: bool = field(default=False, compare=False)  # goes before every job that is not
    # Not recorded while a job of the same function for the same protocol waits to start: that one,
    # reading the state when it starts, does this one's work too.
    coalesce: bool = field(default=False, compare=False)

    @property
    def job_id(self) -> str:
        return f"{self.function}:{self.key}" if self.key else self.function


def function_of(job_id: str) -> str:
    """The job function a job id (`Job.job_id`, or a taken-over attempt of one) names."""
    return job_id.split(":", 1)[0]


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def command_job(delivery_id: str, comment_id: int, index: int, raw: str) -> Job:
    """Same comment, same position, same text: the same job, however often GitHub delivers it."""
    return Job(HANDLE_COMMAND, (delivery_id, index), f"{comment_id}:{index}:{short_hash(raw)}", delivery_id=delivery_id)


def delivery_job(function: str, delivery_id: str) -> Job:
    return Job(function, (delivery_id,), delivery_id, delivery_id=delivery_id)


def project_setup_job(project_id: int, nonce: str = "") -> Job:
    return Job(PROJECT_SETUP, (project_id,), f"{project_id}:{nonce}", project_id=project_id)


def plan_protocol_job(protocol_run_id: int, attempt: int = 1) -> Job:
    return Job(PLAN_PROTOCOL, (protocol_run_id,), f"{protocol_run_id}:{attempt}", protocol_run_id=protocol_run_id)


def execute_step_job(step_run_id: int, attempt: int) -> Job:
    return Job(EXECUTE_STEP, (step_run_id,), f"{step_run_id}:{attempt}", step_run_id=step_run_id)


def run_quality_job(step_run_id: int, attempt: int) -> Job:
    return Job(RUN_QUALITY, (step_run_id,), f"{step_run_id}:{attempt}", step_run_id=step_run_id)


def open_pr_job(protocol_run_id: int, nonce: str = "") -> Job:
    return Job(OPEN_PR, (protocol_run_id,), f"{protocol_run_id}:{nonce}", protocol_run_id=protocol_run_id)


def report_protocol_job(protocol_run_id: int, reason: str) -> Job:
    """Refreshes the status comment and check run: at most one waits per protocol (it coalesces), and
    one asked for while another runs gets an id of its own, as that one may have read older state."""
    return Job(REPORT_PROTOCOL, (protocol_run_id,), f"{protocol_run_id}:{reason}:{time.time_ns()}",
               protocol_run_id=protocol_run_id, coalesce=True)


def codemachine_import_job(protocol_run_id: int) -> Job:
    return Job(CODEMACHINE_IMPORT, (protocol_run_id,), str(protocol_run_id), protocol_run_id=protocol_run_id)


class JobQueue:
    """Wakes arq for jobs already recorded in the database."""

    elsewhere = False  # whether the queue is another process's, which alone reports its depth

    def __init__(self, redis: ArqRedis, *, queue_name: str = default_queue_name):
        self.redis = redis
        self.queue_name = queue_name

    async def wake(self, jobs: Iterable[Job]) -> int:
        woken = 0
        for job in jobs:
            try:
                await self.wake_by_id(job.function, list(job.args), job.job_id, urgent=job.urgent)
                woken += 1
            except Exception:  # recorded already; the maintenance job re-drives it
                log.exception("could not enqueue %s", job.job_id)
        return woken

    async def wake_by_id(self, function: str, args: list, job_id: str, *, urgent: bool = False) -> bool:
        """arq runs a queue in order of score (when a job is due); an urgent job is scored as if
        queued an hour earlier, so that it comes first."""
        ahead = {"_defer_until": datetime.now(timezone.utc) - URGENT_HEAD_START, "_expires": URGENT_EXPIRY} if urgent else {}
        return await self.redis.enqueue_job(function, *args, _job_id=job_id, _queue_name=self.queue_name,
                                            **ahead) is not None

    async def is_known(self, job_id: str) -> bool:
        """True while arq holds the job (queued, deferred or running)."""
        return bool(await self.redis.exists(job_key_prefix + job_id, in_progress_key_prefix + job_id))

    async def taken_by_a_worker(self, job_id: str) -> bool:
        """True while a worker has taken the job off the queue (arq's in-progress mark)."""
        return bool(await self.redis.exists(in_progress_key_prefix + job_id))

    async def depth(self) -> int:
        return await self.redis.zcard(self.queue_name)

    async def ping(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()


class RelayedQueue(JobQueue):
    """The queue of a web process that is not the main one, when the queue is the main process's
    embedded one: each wake-up goes to the main process over `channel`, one JSON line a job, and
    the main process wakes its queue. The jobs are recorded before, so a wake-up lost with the main
    process is made up by the maintenance job; how many wait is counted in the database."""

    elsewhere = True

    def __init__(self, channel: asyncio.StreamWriter, waiting: Callable[[], Awaitable[int]]) -> None:
        self._channel = channel
        self._waiting = waiting

    async def wake_by_id(self, function: str, args: list, job_id: str, *, urgent: bool = False) -> bool:
        if self._channel.is_closing():
            raise ConnectionError("the main web process is gone")
        line = {"function": function, "args": args, "job_id": job_id, "urgent": urgent}
        self._channel.write(json.dumps(line).encode() + b"\n")
        await self._channel.drain()
        return True

    async def is_known(self, job_id: str) -> bool:
        raise NotImplementedError("only the main web process sees its embedded queue")

    async def taken_by_a_worker(self, job_id: str) -> bool:
        raise NotImplementedError("only the main web process sees its embedded queue")

    async def depth(self) -> int:
        return await self._waiting()

    async def ping(self) -> None:
        if self._channel.is_closing():
            raise ConnectionError("the main web process is gone")

    async def close(self) -> None:
        self._channel.close()


async def wake_relayed(queue: JobQueue, channel: asyncio.StreamReader) -> None:
    """Wakes `queue` for each job a `RelayedQueue` sends over `channel`, until the channel closes."""
    while line := await channel.readline():
        try:
            job = json.loads(line)
            await queue.wake_by_id(job["function"], job["args"], job["job_id"], urgent=job["urgent"])
        except Exception:  # recorded already; the maintenance job re-drives it
            log.exception("could not enqueue a job relayed by a web process")


async def connect_redis(url: str) -> ArqRedis:
    return await create_pool(RedisSettings.from_dsn(url))


def embedded_redis() -> ArqRedis:
    """arq over an in-memory Redis in this process: one command runs everything on a laptop."""
    pool = ConnectionPool(connection_class=fakeredis.FakeAsyncRedisConnection, server=fakeredis.FakeServer())
    return _EmbeddedRedis(connection_pool=pool)


class _EmbeddedRedis(ArqRedis):
    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return _EmbeddedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


class _EmbeddedPipeline(Pipeline):
    """The in-memory server has no INFO, which arq's worker asks for (in a pipeline) to log at start:
    an empty hash answers instead, so the worker logs `?` for the server's version and memory."""

    def info(self, section: str | None = None, *args: str, **kwargs: Any) -> Pipeline:  # type: ignore[override]
        return self.hgetall(EMBEDDED_INFO_KEY)  # type: ignore[return-value]
