"""Async data functions. Each takes the session it works in; callers own the transaction."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence, TypeVar

from sqlalchemy import Table, and_, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.models import Event, Project, QueuedJob, WebhookDelivery, utcnow
from bot.queue import Job
from bot.statuses import JobStatus
from bot.workflow import StepStatus

Row = TypeVar("Row")


class Missing(LookupError):
    """A row a job was given the id of is gone (deleted through the API, say)."""


async def row(session: AsyncSession, model: type[Row], key: int) -> Row:
    found = await session.get(model, key)
    if found is None:
        raise Missing(f"{model.__name__} {key} does not exist")
    return found




def _on_postgresql(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def table_of(model: type) -> Table:
    table: Table = getattr(model, "__table__")
    return table


def _insert_ignoring(session: AsyncSession, model: type) -> Any:
    return (postgresql if _on_postgresql(session) else sqlite).insert(table_of(model))


async def insert_ignore(session: AsyncSession, model: type, rows: Sequence[dict], key: str | list[str]) -> int:
    """INSERT … ON CONFLICT DO NOTHING; returns how many rows were new."""
    if not rows:
        return 0
    keys = [key] if isinstance(key, str) else key
    # The rows go as parameters, not .values(): the statement then compiles once per process.
    statement = _insert_ignoring(session, model).on_conflict_do_nothing(index_elements=keys)
    connection = await session.connection()
    inserted = 0
    for row in rows:
        inserted += (await connection.execute(statement, row)).rowcount or 0
    return inserted


async def insert_new(session: AsyncSession, model: type, rows: Sequence[dict], key: str) -> set[Any]:
    """INSERT … ON CONFLICT DO NOTHING of many rows in one statement; the keys of the rows that were new."""
    if not rows:
        return set()
    statement = (_insert_ignoring(session, model).on_conflict_do_nothing(index_elements=[key])
                 .returning(table_of(model).c[key]))
    connection = await session.connection()
    return set((await connection.execute(statement, list(rows))).scalars())


def job_row(job: Job) -> dict:
    return {
        "job_id": job.job_id,
        "function": job.function,
        "args": list(job.args),
        "status": JobStatus.QUEUED,
        "attempts": 0,
        "delivery_id": job.delivery_id,
        "project_id": job.project_id,
        "protocol_run_id": job.protocol_run_id,
        "step_run_id": job.step_run_id,
        "enqueued_at": utcnow(),
    }


async def record_jobs(session: AsyncSession, jobs: Iterable[Job]) -> list[Job]:
    """Records jobs not seen before and returns them in order; a job id already known, or given
    twice, is a duplicate. A coalescing job waiting to start already stands for a new one."""
    jobs = list(jobs)
    new = await insert_new(session, QueuedJob, [job_row(job) for job in jobs if not job.coalesce], "job_id")
    fresh = []
    for job in jobs:
        if job.coalesce:
            if not await _waiting(session, job) and await insert_ignore(session, QueuedJob, [job_row(job)], "job_id"):
                fresh.append(job)
        elif job.job_id in new:
            fresh.append(job)
            new.discard(job.job_id)
    return fresh


async def _waiting(session: AsyncSession, job: Job) -> bool:
    """Whether a job of the same function for the same protocol is recorded and not started yet."""
    statement = select(QueuedJob.job_id).where(
        col(QueuedJob.function) == job.function, col(QueuedJob.protocol_run_id) == job.protocol_run_id,
        col(QueuedJob.status) == JobStatus.QUEUED).limit(1)
    return (await session.exec(statement)).first() is not None


async def get_delivery(session: AsyncSession, delivery_id: str) -> WebhookDelivery | None:
    result = await session.exec(select(WebhookDelivery).where(WebhookDelivery.delivery_id == delivery_id))
    return result.first()


async def start_job(session: AsyncSession, job_id: str, *, worker_id: str, lease: timedelta) -> QueuedJob | None:
    """Claims a recorded job with a lease (compare-and-set): a queued job, or a running one whose
    lease lapsed (its worker died). None when it finished, is unknown, or another worker holds it."""
    now = utcnow()
    claimable = or_(col(QueuedJob.status) == JobStatus.QUEUED,
                    and_(col(QueuedJob.status) == JobStatus.RUNNING,
                         or_(col(QueuedJob.lease_until).is_(None), col(QueuedJob.lease_until) < now)))
    result = await session.exec(
        update(QueuedJob).where(col(QueuedJob.job_id) == job_id, claimable)
        .values(status=JobStatus.RUNNING, attempts=QueuedJob.attempts + 1, started_at=now, lease_until=now + lease,
                worker_id=worker_id)
    )
    await session.commit()
    if result.rowcount != 1:
        return None
    return await session.get(QueuedJob, job_id, populate_existing=True)


async def renew_lease(session: AsyncSession, job_id: str, *, worker_id: str, lease: timedelta) -> bool:
    """Extends the lease of a job this worker holds; False when it no longer holds it."""
    result = await session.exec(
        update(QueuedJob)
        .where(col(QueuedJob.job_id) == job_id, col(QueuedJob.worker_id) == worker_id,
               col(QueuedJob.status) == JobStatus.RUNNING)
        .values(lease_until=utcnow() + lease)
    )
    await session.commit()
    return result.rowcount == 1


async def finish_job(session: AsyncSession, job_id: str, *, ok: bool, error: str | None = None) -> None:
    await session.exec(
        update(QueuedJob)
        .where(col(QueuedJob.job_id) == job_id)
        .values(status=JobStatus.DONE if ok else JobStatus.FAILED, error=error, finished_at=utcnow(), lease_until=None)
    )
    await session.commit()


async def unstarted_jobs(session: AsyncSession, *, queued_before: datetime, limit: int) -> list[QueuedJob]:
    """Jobs recorded before `queued_before` and never started."""
    statement = select(QueuedJob).where(col(QueuedJob.status) == JobStatus.QUEUED,
                                        col(QueuedJob.enqueued_at) < queued_before).limit(limit)
    return list((await session.exec(statement)).all())


async def lapsed_jobs(session: AsyncSession) -> list[QueuedJob]:
    """Running jobs whose worker stopped renewing their lease."""
    statement = select(QueuedJob).where(col(QueuedJob.status) == JobStatus.RUNNING,
                                        or_(col(QueuedJob.lease_until).is_(None),
                                            col(QueuedJob.lease_until) < utcnow())).limit(200)
    return list((await session.exec(statement)).all())


async def job_counts(session: AsyncSession) -> dict[str, int]:
    from sqlalchemy import func

    rows = await session.exec(select(QueuedJob.status, func.count()).group_by(QueuedJob.status))
    return {status: count for status, count in rows.all()}


async def record_event(
    session: AsyncSession,
    event_type: str,
    message: str = "",
    *,
    project_id: int | None = None,
    protocol_run_id: int | None = None,
    step_run_id: int | None = None,
    meta: dict | None = None,
) -> Event:
    event = Event(
        event_type=event_type,
        message=message,
        project_id=project_id,
        protocol_run_id=protocol_run_id,
        step_run_id=step_run_id,
        meta=meta or {},
    )
    session.add(event)
    await session.flush()
    return event


async def project_for_repo(session: AsyncSession, forge: str, repo: str) -> Project | None:
    statement = select(Project).where(Project.forge == forge, Project.forge_repo == repo)
    return (await session.exec(statement)).first()


async def register_repo(
    session: AsyncSession,
    *,
    forge: str,
    repo: str,
    repo_id: int | None,
    installation_id: int | None,
    clone_url: str | None,
    default_branch: str | None,
) -> tuple[Project, bool]:
    """Creates or reactivates the project for a repository; returns (project, created).

    Safe under concurrent jobs: the row is inserted-or-ignored, then read."""
    project = await project_for_repo(session, forge, repo)
    created = False
    if project is None:
        row = Project(name=repo, forge=forge, forge_repo=repo, ci_provider=forge).model_dump(exclude={"id"})
        created = bool(await insert_ignore(session, Project, [row], ["forge", "forge_repo"]))
        project = await project_for_repo(session, forge, repo)
    project.forge_repo_id = repo_id or project.forge_repo_id
    project.installation_id = installation_id or project.installation_id
    project.git_url = clone_url or project.git_url
    project.base_branch = default_branch or project.base_branch
    project.active = True
    project.updated_at = utcnow()
    session.add(project)
    await session.flush()
    return project, created


async def deactivate_repos(session: AsyncSession, forge: str, repos: Iterable[str]) -> list[Project]:
    projects = []
    for repo in repos:
        project = await project_for_repo(session, forge, repo)
        if project and project.active:
            project.active = False
            project.updated_at = utcnow()
            session.add(project)
            projects.append(project)
    await session.flush()
    return projects


def minutes_ago(minutes: float) -> datetime:
    return utcnow() - timedelta(minutes=minutes)


async def claim_step(session: AsyncSession, step_id: int) -> bool:
    """Compare-and-set pending → running: of two workers racing for a step, exactly one wins."""
    from bot.models import StepRun

    result = await session.exec(
        update(StepRun)
        .where(col(StepRun.id) == step_id, col(StepRun.status) == StepStatus.PENDING)
        .values(status=StepStatus.RUNNING, updated_at=utcnow())
    )
    await session.commit()
    return result.rowcount == 1


async def stuck_steps(session: AsyncSession, *, updated_before: datetime) -> list:
    from bot.models import StepRun

    statement = select(StepRun).where(col(StepRun.status) == StepStatus.RUNNING, col(StepRun.updated_at) < updated_before)
    return list((await session.exec(statement.limit(100))).all())
