"""What a webhook handler is given: the settings it decides with, and where its jobs go."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TypeVar

from bot import store
from bot.config import Settings
from bot.deps import Deps
from bot.forge.events import Actor
from bot.forge.payloads import Shape
from bot.models import WebhookDelivery
from bot.queue import Job
from bot.statuses import DeliveryStatus

log = logging.getLogger("agentry.intake")

S = TypeVar("S", bound=Shape)


@dataclass
class Intake:
    settings: Settings
    delivery_id: str
    shape: Shape
    jobs: list[Job] = field(default_factory=list)

    @property
    def app_login(self) -> str | None:
        """The GitHub App's own login, whose comments are never commands."""
        slug = self.settings.github_app_slug
        return f"{slug}[bot]" if slug else None

    def read(self, kind: type[S]) -> S:
        """The delivery in the shape a handler registered for; the router sends it no other."""
        if not isinstance(self.shape, kind):
            raise TypeError(f"a {type(self.shape).__name__} routed to a handler of {kind.__name__}")
        return self.shape

    def enqueue(self, job: Job) -> None:
        self.jobs.append(job)


def is_ours_or_a_bot(actor: Actor, own_login: str | None = None) -> bool:
    """No one, a bot, or agentry's own account (the GitHub App's ``<slug>[bot]``, the GitLab bot user)."""
    if actor.is_bot or not actor.login:
        return True
    return bool(own_login) and actor.login.lower() == (own_login or "").lower()


async def refuse(deps: Deps, *, forge: str, delivery_id: str, event: str, payload: dict, reason: str) -> None:
    """Records a delivery refused as invalid, with its reason, and queues nothing."""
    await accept(deps, WebhookDelivery(delivery_id=delivery_id, forge=forge, event=event, status=DeliveryStatus.INVALID,
                                       payload=payload, error=reason), [])


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
