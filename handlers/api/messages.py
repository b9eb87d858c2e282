"""The message bus: notes people and agents post on a project or a protocol run.

Messages on a protocol run are part of the next agent prompt for it. Reading starts after
`?after=<id>` and pages on with `?cursor=` (the X-Next-Cursor of the previous page);
`…/messages/stream` (see feeds) delivers new ones live.
"""

from __future__ import annotations

from aiohttp import web
from sqlmodel import col, select

from bot.models import Message
from handlers.api.context import ACTOR, AUDIT_IDS, BODY, QUERY
from handlers.api import answers
from handlers.api.routing import Route, decode_cursor, deps_of, is_id, json_response, page_response, project_or_404, protocol_or_404
from handlers.api.schemas import OBJECT, Field, id_param, limit_param, path_int, text_param
from handlers.api.views import message_out

TYPES = ("USER", "FACT", "PROGRESS", "DECISION", "ERROR", "QUESTION")
MESSAGE_CREATE = (
    Field("type", default="USER", choices=TYPES, nullable=False),
    Field("body", required=True, min_length=1, max_length=65_536),
    Field("author", max_length=200),
    Field("metadata", OBJECT),
)
READ_QUERY = (id_param("after", "Only messages with a larger id than this one"),
              text_param("type", "Only messages of this type", TYPES), limit_param(100, 500))


async def post_project_message(request: web.Request) -> web.Response:
    async with deps_of(request).sessions() as session:
        project = await project_or_404(request, session, path_int(request, "project_id"))
        return await _post(request, session, project.id, None)


async def post_protocol_message(request: web.Request) -> web.Response:
    async with deps_of(request).sessions() as session:
        protocol, _ = await protocol_or_404(request, session, path_int(request, "protocol_id"))
        return await _post(request, session, protocol.project_id, protocol.id)


async def _post(request: web.Request, session, project_id: int, protocol_id: int | None) -> web.Response:
    body = request[BODY]
    message = Message(project_id=project_id, protocol_run_id=protocol_id, type=body["type"], body=body["body"],
                      author=body["author"] or request.get(ACTOR), meta=body["metadata"] or {})
    session.add(message)
    await session.commit()
    request[AUDIT_IDS] = {"message_id": message.id}
    return json_response(message_out(message), status=201)


async def project_messages(request: web.Request) -> web.Response:
    async with deps_of(request).sessions() as session:
        project = await project_or_404(request, session, path_int(request, "project_id"))
        return await _page(request, session, Message.project_id == project.id)


async def protocol_messages(request: web.Request) -> web.Response:
    async with deps_of(request).sessions() as session:
        protocol, _ = await protocol_or_404(request, session, path_int(request, "protocol_id"))
        return await _page(request, session, Message.protocol_run_id == protocol.id)


async def _page(request: web.Request, session, scope) -> web.Response:
    query = request[QUERY]
    after = decode_cursor(request, is_id) or query["after"] or 0
    statement = select(Message).where(scope, col(Message.id) > after)
    if query["type"]:
        statement = statement.where(Message.type == query["type"])
    messages = list((await session.exec(statement.order_by(col(Message.id)).limit(query["limit"] + 1))).all())
    return page_response(messages, query["limit"], message_out, lambda message: message.id)


PROJECT = {"project_id": "integer"}
PROTOCOL = {"protocol_id": "integer"}
ROUTES = [
    Route("GET", "/projects/{project_id}/messages", project_messages, "Messages on the project (?after=<id>)",
          "messages", answers.ok_list("Message"), PROJECT, query=READ_QUERY, paginated=True),
    Route("POST", "/projects/{project_id}/messages", post_project_message, "Post a message on the project",
          "messages", answers.created("Message"), PROJECT, body=MESSAGE_CREATE, write=True),
    Route("GET", "/protocols/{protocol_id}/messages", protocol_messages,
          "Messages on the protocol run (?after=<id>)", "messages", answers.ok_list("Message"), PROTOCOL,
          query=READ_QUERY, paginated=True),
    Route("POST", "/protocols/{protocol_id}/messages", post_protocol_message,
          "Post a message on the protocol run; its next agent prompt includes it", "messages",
          answers.created("Message"), PROTOCOL, body=MESSAGE_CREATE, write=True),
]
