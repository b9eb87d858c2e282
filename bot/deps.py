"""What a process needs, made once at start-up and passed explicitly."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import db, store
from bot.config import Settings
from bot.metrics import Metrics
from bot.queue import Job, JobQueue, connect_redis, embedded_redis


@dataclass
class Deps:
    settings: Settings
    engine: AsyncEngine
    sessions: db.Sessions
    http: aiohttp.ClientSession
    queue: JobQueue
    metrics: Metrics
    worker_id: str

    async def submit(self, jobs: list[Job]) -> list[Job]:
        """Records jobs (a job id seen before is a duplicate) and wakes the queue for the new ones."""
        async with self.sessions() as session:
            fresh = await store.record_jobs(session, jobs)
            await session.commit()
        await self.queue.wake(fresh)
        return fresh

    async def close(self) -> None:
        await self.http.close()
        await self.queue.close()
        await self.engine.dispose()


async def open_deps(settings: Settings, *, queue: JobQueue | None = None) -> Deps:
    engine = db.make_engine(settings.database_url)
    if queue is None:
        redis = await connect_redis(settings.redis_url) if settings.redis_url else embedded_redis()
        queue = JobQueue(redis)
    return Deps(
        settings=settings,
        engine=engine,
        sessions=db.make_sessions(engine),
        http=aiohttp.ClientSession(headers={"User-Agent": "agentry"}),
        queue=queue,
        metrics=Metrics.create(),
        worker_id=f"{socket.gethostname()}:{os.getpid()}",
    )
