"""What a process needs, made once at start-up and passed explicitly."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import db, store
from bot.audit import AuditLog
from bot.config import Settings
from bot.delivery_tables import delivery_tables
from bot.delivery_writer import IN_FLIGHT, DeliveryWriter
from bot.forge import Forge, RecordingForge
from bot.forge.github import GitHubAppAuth, GitHubForge
from bot.forge.gitlab import GitLabForge
from bot.metrics import Metrics
from bot.queue import Job, JobQueue, RelayedQueue, connect_redis, embedded_redis
from bot.redact import Redactor
from bot.sandbox import NoSandbox, Sandbox, make_sandbox
from bot.secretbox import SecretBox
from bot.statuses import JobStatus


@dataclass
class Deps:
    settings: Settings
    engine: AsyncEngine
    sessions: db.Sessions
    http: aiohttp.ClientSession
    queue: JobQueue
    metrics: Metrics
    worker_id: str
    secret_box: SecretBox
    deliveries: DeliveryWriter
    agent_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))
    forges: dict[str, Forge] = field(default_factory=dict)
    audit: AuditLog | None = None
    sandbox: Sandbox = field(default_factory=NoSandbox)
    redactor: Redactor = field(default_factory=Redactor)

    def forge(self, name: str) -> Forge:
        return self.forges[name]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session committed when the block ends without an error."""
        async with self.sessions() as session:
            yield session
            await session.commit()

    async def record(self, jobs: list[Job]) -> list[Job]:
        """Records jobs; returns those not seen before (a known job id is a duplicate)."""
        async with self.sessions() as session:
            fresh = await store.record_jobs(session, jobs)
            await session.commit()
        return fresh

    async def submit(self, jobs: list[Job]) -> list[Job]:
        """Records jobs and wakes the queue for the new ones."""
        fresh = await self.record(jobs)
        await self.queue.wake(fresh)
        return fresh

    async def close(self) -> None:
        await self.deliveries.close()
        await self.http.close()
        await self.queue.close()
        await self.engine.dispose()


async def open_deps(settings: Settings, *, queue: JobQueue | None = None, relay: asyncio.StreamWriter | None = None,
                    shared_metrics: Path | None = None) -> Deps:
    """With `relay`, this is a web process beside the main one, whose embedded queue it wakes
    through it; with `shared_metrics`, one of several web processes keeping their metrics there."""
    secret_box = SecretBox.load(settings)
    engine = db.make_engine(settings.database_url)
    sessions = db.make_sessions(engine)
    if queue is None and relay is not None and settings.embedded_queue:
        queue = RelayedQueue(relay, waiting=lambda: _waiting_jobs(sessions))
    elif queue is None:
        redis = await connect_redis(settings.redis_url) if settings.redis_url else embedded_redis()
        queue = JobQueue(redis)
    deps = Deps(
        settings=settings,
        engine=engine,
        sessions=sessions,
        http=aiohttp.ClientSession(headers={"User-Agent": "agentry"}),
        queue=queue,
        metrics=Metrics.create(shared_metrics),
        worker_id=f"{socket.gethostname()}:{os.getpid()}",
        secret_box=secret_box,
        deliveries=DeliveryWriter(delivery_tables(engine, settings.database_url), queue,
                                  in_flight=IN_FLIGHT.get(engine.dialect.name, 1)),
        agent_slots=asyncio.Semaphore(settings.max_concurrent_jobs),
        audit=AuditLog(settings.data_dir),
        sandbox=make_sandbox(settings),
        redactor=known_secrets(settings),
    )
    deps.forges["github"] = github_forge(deps)
    deps.forges["gitlab"] = gitlab_forge(deps)
    return deps


def known_secrets(settings: Settings) -> Redactor:
    """agentry's own secrets and the secret-looking provider variables agents are given."""
    redactor = Redactor([settings.webhook_secret, settings.api_token or "", settings.gitlab_token or "",
                         settings.gitlab_webhook_token or "", settings.gitlab_signing_token or "",
                         settings.secret_key or ""])
    redactor.add_private_key(settings.github_private_key)
    redactor.add_secret_variables(settings.environment)
    return redactor


def github_forge(deps: Deps) -> Forge:
    """The GitHub App client, or without credentials a forge that records each call as an event."""
    settings = deps.settings
    if settings.github_app_configured:
        auth = GitHubAppAuth(deps.http, app_id=settings.github_app_id, private_key=settings.github_private_key,
                             api_url=settings.github_api_url)
        return GitHubForge(deps.http, auth, api_url=settings.github_api_url, app_slug=settings.github_app_slug)
    return recording_forge(deps)


def gitlab_forge(deps: Deps) -> Forge:
    settings = deps.settings
    if settings.gitlab_token:
        return GitLabForge(deps.http, url=settings.gitlab_url, token=settings.gitlab_token,
                           bot_username=settings.gitlab_bot_username)
    return recording_forge(deps)


async def _waiting_jobs(sessions: db.Sessions) -> int:
    async with sessions() as session:
        return (await store.job_counts(session)).get(JobStatus.QUEUED, 0)


def recording_forge(deps: Deps) -> Forge:
    """Without credentials nobody's permission can be checked: dev mode lets everyone in, otherwise nobody."""
    return RecordingForge(recorder(deps), default_permission="admin" if deps.settings.dev_mode else "none")


def recorder(deps: Deps):
    async def record(name: str, data: dict) -> None:
        async with deps.sessions() as session:
            await store.record_event(session, f"forge_{name}", f"{data.get('forge')} {name} (recorded, not sent)",
                                     meta=data)
            await session.commit()

    return record
