"""Clarification questions of a project or a protocol run, and their answers."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field
from sqlmodel import col, select

from bot.models import Clarification, ProtocolRun
from bot.protocols import answer_clarification
from bot.statuses import ClarificationStatus
from handlers.api import answers, resources
from handlers.api.context import ACTOR, AUDIT_IDS
from handlers.api.errors import not_found
from handlers.api.lookups import project_or_404, protocol_or_404, scoped_page
from handlers.api.pages import decode_cursor, is_id
from handlers.api.raw import path_int, path_text
from handlers.api.requests import Body, Paged, page_limit
from handlers.api.routing import Route, deps_of, json_response


class ClarificationAnswer(Body):
    answer: Any = Field(None, description="Any JSON; a non-object is stored as {\"value\": answer}.")
    answered_by: str | None = Field(None, max_length=200)


class ClarificationPage(Paged):
    status: ClarificationStatus | None = Field(None, strict=False, description="open or answered")
    limit: int = page_limit(200, 500)


async def list_clarifications(request: web.Request) -> web.Response:
    query = ClarificationPage.given(request)
    status = [Clarification.status == query.status] if query.status else []
    return await scoped_page(request, Clarification, decode_cursor(request, is_id) or 0, query.limit,
                             resources.Clarification.of, *status)


async def answer_project_clarification(request: web.Request) -> web.Response:
    key = path_text(request, "key")
    async with deps_of(request).sessions() as session:
        project = await project_or_404(request, session, path_int(request, "project_id"))
        statement = select(Clarification).where(Clarification.project_id == project.id, Clarification.key == key)
        clarification = _project_level_first((await session.exec(statement)).all())
        return await _answer(request, session, None, clarification, key)


def _project_level_first(items) -> Clarification | None:
    """The project's own question under that key, else the newest protocol question with it."""
    items = sorted(items, key=lambda item: (item.protocol_run_id is None, item.id))
    return items[-1] if items else None


async def answer_protocol_clarification(request: web.Request) -> web.Response:
    key = path_text(request, "key")
    async with deps_of(request).sessions() as session:
        protocol, _ = await protocol_or_404(request, session, path_int(request, "protocol_id"))
        statement = (select(Clarification).where(Clarification.protocol_run_id == protocol.id, Clarification.key == key)
                     .order_by(col(Clarification.id).desc()))
        clarification = (await session.exec(statement)).first()
        return await _answer(request, session, protocol, clarification, key)


async def _answer(request: web.Request, session, protocol: ProtocolRun | None, clarification: Clarification | None,
                  key: str) -> web.Response:
    if clarification is None:
        raise not_found(f"no clarification with key {key!r}")
    if protocol is None and clarification.protocol_run_id is not None:
        protocol = await session.get(ProtocolRun, clarification.protocol_run_id)
    body = ClarificationAnswer.given(request)
    actor = body.answered_by or request.get(ACTOR)
    answer = body.answer if isinstance(body.answer, dict) or body.answer is None else {"value": body.answer}
    jobs = await answer_clarification(session, protocol, clarification, answer, actor=actor)
    await session.commit()
    await deps_of(request).submit(jobs)
    request[AUDIT_IDS] = {"clarification_id": clarification.id}
    return json_response(resources.Clarification.of(clarification))


PROJECT = {"project_id": "integer"}
PROTOCOL = {"protocol_id": "integer"}
ROUTES = [
    Route("GET", "/projects/{project_id}/clarifications", list_clarifications,
          "A project's clarification questions (?status=open|answered)", "clarifications",
          answers.ok_list("Clarification"), PROJECT, query=ClarificationPage),
    Route("POST", "/projects/{project_id}/clarifications/{key}", answer_project_clarification,
          "Answer a project clarification by key", "clarifications", answers.ok("Clarification"),
          {**PROJECT, "key": "string"}, body=ClarificationAnswer, write=True),
    Route("GET", "/protocols/{protocol_id}/clarifications", list_clarifications,
          "A protocol run's clarification questions", "clarifications", answers.ok_list("Clarification"), PROTOCOL,
          query=ClarificationPage),
    Route("POST", "/protocols/{protocol_id}/clarifications/{key}", answer_protocol_clarification,
          "Answer a protocol clarification by key (answering the last blocking one resumes the protocol)",
          "clarifications", answers.ok("Clarification"), {**PROTOCOL, "key": "string"}, body=ClarificationAnswer, write=True),
]
