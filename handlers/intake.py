"""What both webhooks share: routing a delivery to its deciders, recording it, answering it.

A decider is pure: the settings, the delivery id and the payload read into its event's shape go in,
the jobs to queue come out. Each concern has its router; each forge composes its routers in one
place (`handlers/github/__init__.py`, `handlers/gitlab.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bot.config import Settings
from bot.deps import Deps
from bot.forge.events import Actor
from bot.models import IncomingDelivery
from bot.queue import Job
from bot.statuses import DeliveryStatus

log = logging.getLogger("agentry.intake")

Decide = Callable[[Settings, str, Any], list[Job]]


class Router:
    """The deciders of a forge's deliveries, each registered for an event or for one of its actions."""

    def __init__(self, *routers: Router) -> None:
        self._deciders: dict[tuple[str, str | None], list[Decide]] = {}
        for router in routers:
            for key, deciders in router._deciders.items():
                self._deciders.setdefault(key, []).extend(deciders)

    def register(self, event: str, action: str | None = None) -> Callable[[Decide], Decide]:
        def add(decide: Decide) -> Decide:
            self._deciders.setdefault((event, action), []).append(decide)
            return decide

        return add

    def decide(self, settings: Settings, event: str, action: str | None, delivery_id: str, shape: Any) -> list[Job]:
        """The jobs the delivery asks for; an event nobody registered for asks for none."""
        deciders = [*self._deciders.get((event, None), ()), *(self._deciders.get((event, action), ()) if action else ())]
        return [job for decide in deciders for job in decide(settings, delivery_id, shape)]


def is_ours_or_a_bot(actor: Actor, own_login: str | None = None) -> bool:
    """No one, a bot, or agentry's own account (the GitHub App's ``<slug>[bot]``, the GitLab bot user)."""
    if actor.is_bot or not actor.login:
        return True
    return bool(own_login) and actor.login.lower() == (own_login or "").lower()


async def refuse(deps: Deps, *, forge: str, delivery_id: str, event: str, payload_json: str, reason: str) -> None:
    """Records a delivery refused as invalid, with its reason, and queues nothing."""
    await accept(deps, IncomingDelivery(delivery_id=delivery_id, forge=forge, event=event, status=DeliveryStatus.INVALID,
                                        payload_json=payload_json, error=reason), [])


async def accept(deps: Deps, delivery: IncomingDelivery, jobs: list[Job]) -> list[Job] | None:
    """Records the delivery with its jobs (committed with the deliveries of concurrent requests), and
    the queue is woken for them.

    Returns the jobs that were new, or None when the delivery id was seen before."""
    fresh = await deps.deliveries.record(delivery, jobs)
    if fresh is None:
        deps.metrics.delivered(delivery.forge, "duplicate")
        return None
    deps.metrics.delivered(delivery.forge, delivery.status)
    log.info("delivery %s", delivery.status, extra={"jobs": [job.job_id for job in fresh]})
    return fresh


async def answer(deps: Deps, delivery: IncomingDelivery, jobs: list[Job], **extra: Any) -> web.Response:
    """Records the delivery and says what became of it: 202 with the new jobs, or 200 for a duplicate."""
    fresh = await accept(deps, delivery, jobs)
    if fresh is None:
        return web.json_response({"status": "duplicate", "delivery": delivery.delivery_id})
    if extra:
        return web.json_response(extra)
    return web.json_response(
        {"status": delivery.status, "delivery": delivery.delivery_id, "jobs": [job.job_id for job in fresh]}, status=202
    )
