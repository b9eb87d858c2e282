"""What a webhook handler is given: the settings it decides with, and where its jobs go."""

from __future__ import annotations

from dataclasses import dataclass, field

import logging

from bot import store
from bot.config import Settings
from bot.deps import Deps
from bot.models import WebhookDelivery
from bot.queue import Job

log = logging.getLogger("agentry.intake")


@dataclass
class Intake:
    settings: Settings
    delivery_id: str
    jobs: list[Job] = field(default_factory=list)

    def enqueue(self, job: Job) -> None:
        self.jobs.append(job)


def is_bot(user: dict | None, app_slug: str | None = None) -> bool:
    if not user:
        return True
    login = user.get("login", "")
    if user.get("type") == "Bot" or login.endswith("[bot]"):
        return True
    return bool(app_slug) and login.lower() == f"{app_slug.lower()}[bot]"


async def accept(deps: Deps, delivery: WebhookDelivery, jobs: list[Job]) -> list[Job] | None:
    """Records the delivery with its jobs in one transaction, then wakes the queue.

    Returns the jobs that were new, or None when the delivery id was seen before."""
    async with deps.sessions() as session:
        fresh = await store.record_delivery(session, delivery, jobs)
    if fresh is None:
        deps.metrics.deliveries.labels(delivery.forge, "duplicate").inc()
        return None
    await deps.queue.wake(fresh)
    deps.metrics.deliveries.labels(delivery.forge, delivery.status).inc()
    log.info("delivery %s", delivery.status, extra={"jobs": [job.job_id for job in fresh]})
    return fresh
