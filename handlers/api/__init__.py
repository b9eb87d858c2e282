"""The REST API for dashboards: the TasksGodzilla reference's endpoints, live feeds, the message bus,
the agents, and the OpenAPI document, all registered from one route table."""

from __future__ import annotations

from aiohttp import web

from handlers.api import (
    agents,
    auth,
    clarifications,
    events,
    feeds,
    messages,
    openapi,
    projects,
    protocols,
    queues,
    runs,
    steps,
)
from handlers.api.routing import AUDIT, Route, register
from handlers.keys import DEPS

ROUTES: list[Route] = [
    *projects.ROUTES,
    *clarifications.ROUTES,
    *protocols.ROUTES,
    *steps.ROUTES,
    *events.ROUTES,
    *queues.ROUTES,
    *runs.ROUTES,
    *messages.ROUTES,
    *agents.ROUTES,
    *feeds.ROUTES,
    openapi.ROUTE,
]


def add_api_routes(app: web.Application) -> None:
    """Registers every API route, the audit log, and the shared feed tailer's start and stop."""
    deps = app[DEPS]
    app[AUDIT] = deps.audit
    agents.setup_probes(app)
    register(app, ROUTES)
    app.on_startup.append(_start)
    app.on_shutdown.append(feeds.stop_hub)


async def _start(app: web.Application) -> None:
    auth.warn_when_open(app)
    app[openapi.DOCUMENT] = openapi.document(app, ROUTES)
    await feeds.start_hub(app)
