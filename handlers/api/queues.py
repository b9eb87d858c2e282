"""The queue as the reference shows it: counts per status, and the jobs themselves."""

from __future__ import annotations

import logging
from typing import Annotated

from aiohttp import web
from pydantic import AfterValidator, Field, WithJsonSchema
from pydantic_core import PydanticCustomError
from sqlmodel import and_, col, or_, select

from bot import store
from bot.models import QueuedJob
from bot.statuses import JOB_STATUS_WORDS, JobStatus
from handlers.api import answers, resources
from handlers.api.pages import decode_cursor, page_response
from handlers.api.requests import Paged, page_limit
from handlers.api.routing import Route, deps_of, json_response
from handlers.api.views import parse_time

log = logging.getLogger("agentry.api")

# the reference's status words -> queued_jobs.status
STATUS_FILTER: dict[str, JobStatus] = {**{word: status for status, word in JOB_STATUS_WORDS.items()},
                                       **{status.value: status for status in JobStatus}}


def _status_word(word: str) -> str:
    if word not in STATUS_FILTER:
        raise PydanticCustomError("literal_error", "is not a job state")
    return word


StatusWord = Annotated[str, AfterValidator(_status_word), WithJsonSchema({"type": "string", "enum": list(STATUS_FILTER)})]


class JobPage(Paged):
    status: StatusWord | None = Field(None, description="queued, started, failed or finished")
    limit: int = page_limit(100, 500)


async def queue_stats(request: web.Request) -> web.Response:
    deps = deps_of(request)
    async with deps.sessions() as session:
        counts = await store.job_counts(session)
    stats: dict[str, int | None] = {word: counts.get(status, 0) for status, word in JOB_STATUS_WORDS.items()}
    stats["waiting"] = await _depth(deps)
    return json_response({"default": stats})


async def _depth(deps) -> int | None:
    try:
        return await deps.queue.depth()
    except Exception:  # the broker is down: the counts from the database still stand
        log.warning("queue depth unavailable")
        return None


def _cursor_shape(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(isinstance(item, str) for item in value) \
        and parse_time(value[0]) is not None


async def queue_jobs(request: web.Request) -> web.Response:
    """Newest first; `status` takes the reference's words (queued, started, failed, finished)."""
    query = JobPage.given(request)
    after = decode_cursor(request, _cursor_shape)
    statement = select(QueuedJob)
    if query.status:
        statement = statement.where(QueuedJob.status == STATUS_FILTER[query.status])
    if after is not None:
        enqueued_at, job_id = parse_time(after[0]), after[1]
        statement = statement.where(or_(col(QueuedJob.enqueued_at) < enqueued_at,
                                        and_(col(QueuedJob.enqueued_at) == enqueued_at,
                                             col(QueuedJob.job_id) < job_id)))
    statement = statement.order_by(col(QueuedJob.enqueued_at).desc(), col(QueuedJob.job_id).desc())
    async with deps_of(request).sessions() as session:
        jobs = list((await session.exec(statement.limit(query.limit + 1))).all())
    return page_response(jobs, query.limit, resources.Job.of, lambda job: [job.enqueued_at.isoformat(), job.job_id])


ROUTES = [
    Route("GET", "/queues", queue_stats, "Queue statistics per queue", "queues", answers.ok("QueueStats")),
    Route("GET", "/queues/jobs", queue_jobs, "Jobs with their payload and status, newest first", "queues",
          answers.ok_list("Job"), query=JobPage),
]
