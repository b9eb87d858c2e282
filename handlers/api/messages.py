"""The message bus: notes people and agents post on a project or a protocol run.

Messages on a protocol run are part of the next agent prompt for it. Reading starts after
`?after=<id>` and pages on with `?cursor=` (the X-Next-Cursor of the previous page);
`…/messages/stream` (see feeds) delivers new ones live.
"""

from __future__ import annotations

from typing import get_args

from aiohttp import web
from sqlmodel import col, select

from bot.models import Message
from handlers.api.context import ACTOR, AUDIT_IDS, BODY, QUERY
from handlers.api import answers, resources
from handlers.api.routing import Route, decode_cursor, deps_of, id_page, is_id, json_response, scope_or_404
from handlers.api.schemas import OBJECT, Field, id_param, limit_param, text_param

TYPES = get_args(resources.MessageType)
MESSAGE_CREATE = (
    Field("type", default="USER", choices=TYPES, nullable=False),
    Field("body", required=True, min_length=1, max_length=65_536),
    Field("author", max_length=200),
    Field("metadata", OBJECT),
)
READ_QUERY = (id_param("after", "Only messages with a larger id than this one"),
              text_param("type", "Only messages of this type", TYPES), limit_param(100, 500))


async def post_message(request: web.Request) -> web.Response:
    body = request[BODY]
    async with deps_of(request).sessions() as session:
        scope = await scope_or_404(request, session)
        message = Message(project_id=scope.project.id, protocol_run_id=scope.protocol.id if scope.protocol else None,
                          type=body["type"], body=body["body"], author=body["author"] or request.get(ACTOR),
                          meta=body["metadata"] or {})
        session.add(message)
        await session.commit()
    request[AUDIT_IDS] = {"message_id": message.id}
    return json_response(resources.Message.of(message), status=201)


async def list_messages(request: web.Request) -> web.Response:
    query = request[QUERY]
    after = decode_cursor(request, is_id) or query["after"] or 0
    async with deps_of(request).sessions() as session:
        scope = await scope_or_404(request, session)
        statement = select(Message).where(scope.rows_of(Message), col(Message.id) > after)
        if query["type"]:
            statement = statement.where(Message.type == query["type"])
        return await id_page(session, statement, Message, query["limit"], resources.Message.of)


PROJECT = {"project_id": "integer"}
PROTOCOL = {"protocol_id": "integer"}
ROUTES = [
    Route("GET", "/projects/{project_id}/messages", list_messages, "Messages on the project (?after=<id>)",
          "messages", answers.ok_list("Message"), PROJECT, query=READ_QUERY, paginated=True),
    Route("POST", "/projects/{project_id}/messages", post_message, "Post a message on the project",
          "messages", answers.created("Message"), PROJECT, body=MESSAGE_CREATE, write=True),
    Route("GET", "/protocols/{protocol_id}/messages", list_messages,
          "Messages on the protocol run (?after=<id>)", "messages", answers.ok_list("Message"), PROTOCOL,
          query=READ_QUERY, paginated=True),
    Route("POST", "/protocols/{protocol_id}/messages", post_message,
          "Post a message on the protocol run; its next agent prompt includes it", "messages",
          answers.created("Message"), PROTOCOL, body=MESSAGE_CREATE, write=True),
]
