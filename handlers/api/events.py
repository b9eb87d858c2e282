"""Events: a protocol run's timeline, and the most recent events everywhere or in one project."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import Field
from sqlmodel import col, select

from bot.models import Event, Project, ProtocolRun
from handlers.api import answers, resources
from handlers.api.auth import hidden_projects, visible
from handlers.api.lookups import project_or_404, protocol_or_404
from handlers.api.pages import decode_cursor, id_page, is_id, page_response
from handlers.api.raw import path_int
from handlers.api.requests import Paged, id_filter, page_limit
from handlers.api.routing import Route, deps_of


class EventFilter(Paged):
    project_id: int | None = id_filter("Only this project's events")
    protocol_run_id: int | None = id_filter("Only this protocol run's events")
    kind: Literal["onboarding"] | None = Field(None, description="onboarding: only the setup events")
    limit: int = page_limit(50, 500)


class TimelinePage(Paged):
    limit: int = page_limit(500, 1000)


def events_with_names():
    """Events with their protocol's and project's names (outer joins: an event needs neither)."""
    return (select(Event, ProtocolRun.protocol_name, Project.name).select_from(Event)
            .outerjoin(ProtocolRun, col(ProtocolRun.id) == col(Event.protocol_run_id))
            .outerjoin(Project, col(Project.id) == col(Event.project_id)))


def render_row(row) -> dict:
    event, protocol_name, project_name = row
    return resources.event(event, protocol_name, project_name)


async def recent_events(request: web.Request) -> web.Response:
    """Newest first; `kind=onboarding` keeps the setup events."""
    query = EventFilter.given(request)
    before = decode_cursor(request, is_id)
    statement = events_with_names()
    async with deps_of(request).sessions() as session:
        if query.project_id is not None:
            await project_or_404(request, session, query.project_id)
            statement = statement.where(Event.project_id == query.project_id)
        if query.protocol_run_id is not None:
            await protocol_or_404(request, session, query.protocol_run_id)
            statement = statement.where(Event.protocol_run_id == query.protocol_run_id)
        if query.kind == "onboarding":
            statement = statement.where(col(Event.event_type).startswith("setup_"))
        if before is not None:
            statement = statement.where(col(Event.id) < before)
        statement = statement.where(*visible(col(Event.project_id), await hidden_projects(request, session)))
        rows = list((await session.exec(statement.order_by(col(Event.id).desc()).limit(query.limit + 1))).all())
    return page_response(rows, query.limit, render_row, lambda row: row[0].id)


async def protocol_events(request: web.Request) -> web.Response:
    """Oldest first: the protocol's timeline."""
    limit = TimelinePage.given(request).limit
    after = decode_cursor(request, is_id) or 0
    async with deps_of(request).sessions() as session:
        protocol, project = await protocol_or_404(request, session, path_int(request, "protocol_id"))
        statement = select(Event).where(Event.protocol_run_id == protocol.id, col(Event.id) > after)
        return await id_page(session, statement, Event, limit,
                             lambda event: resources.event(event, protocol.protocol_name, project.name))


ROUTES = [
    Route("GET", "/events", recent_events, "Recent events, newest first (default limit 50)", "events",
          answers.ok_list("Event"), query=EventFilter),
    Route("GET", "/protocols/{protocol_id}/events", protocol_events, "A protocol run's events, oldest first",
          "events", answers.ok_list("Event"), {"protocol_id": "integer"}, query=TimelinePage),
]
