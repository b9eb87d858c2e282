"""The message bus: notes people and agents post on a project or a protocol run.

Messages on a protocol run are part of the next agent prompt for it. Reading starts after
`?after=<id>` and pages on with `?cursor=` (the X-Next-Cursor of the previous page);
`…/messages/stream` (see feeds) delivers new ones live.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from bot.models import Message
from handlers.api import answers, resources
from handlers.api.context import ACTOR, AUDIT_IDS
from handlers.api.lookups import scope_or_404, scoped_page
from handlers.api.pages import decode_cursor, is_id
from handlers.api.requests import Body, JsonObject, Paged, id_filter, page_limit
from handlers.api.routing import Route, deps_of, json_response


class MessageCreate(Body):
    type: resources.MessageType = "USER"
    body: str = Field(min_length=1, max_length=65_536)
    author: str | None = Field(None, max_length=200)
    metadata: JsonObject | None = None


class MessagePage(Paged):
    after: int | None = id_filter("Only messages with a larger id than this one")
    type: resources.MessageType | None = Field(None, description="Only messages of this type")
    limit: int = page_limit(100, 500)


async def post_message(request: web.Request) -> web.Response:
    body = MessageCreate.given(request)
    async with deps_of(request).sessions() as session:
        scope = await scope_or_404(request, session)
        message = Message(project_id=scope.project.id, protocol_run_id=scope.protocol.id if scope.protocol else None,
                          type=body.type, body=body.body, author=body.author or request.get(ACTOR),
                          meta=body.metadata or {})
        session.add(message)
        await session.commit()
    request[AUDIT_IDS] = {"message_id": message.id}
    return json_response(resources.Message.of(message), status=201)


async def list_messages(request: web.Request) -> web.Response:
    query = MessagePage.given(request)
    after = decode_cursor(request, is_id) or query.after or 0
    kind = [Message.type == query.type] if query.type else []
    return await scoped_page(request, Message, after, query.limit, resources.Message.of, *kind)


PROJECT = {"project_id": "integer"}
PROTOCOL = {"protocol_id": "integer"}
ROUTES = [
    Route("GET", "/projects/{project_id}/messages", list_messages, "Messages on the project (?after=<id>)",
          "messages", answers.ok_list("Message"), PROJECT, query=MessagePage),
    Route("POST", "/projects/{project_id}/messages", post_message, "Post a message on the project",
          "messages", answers.created("Message"), PROJECT, body=MessageCreate, write=True),
    Route("GET", "/protocols/{protocol_id}/messages", list_messages,
          "Messages on the protocol run (?after=<id>)", "messages", answers.ok_list("Message"), PROTOCOL,
          query=MessagePage),
    Route("POST", "/protocols/{protocol_id}/messages", post_message,
          "Post a message on the protocol run; its next agent prompt includes it", "messages",
          answers.created("Message"), PROTOCOL, body=MessageCreate, write=True),
]
