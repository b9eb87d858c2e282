"""Lists answered one page at a time: the page, and the opaque cursor (X-Next-Cursor) of the next."""

from __future__ import annotations

import base64
import json
from typing import Any, Callable

from aiohttp import web
from sqlmodel import col

from handlers.api.context import QUERY
from handlers.api.errors import invalid_fields
from handlers.api.requests import Paged
from handlers.api.routing import json_response

NEXT_CURSOR = "X-Next-Cursor"


def page_response(items: list, limit: int, render: Callable[[Any], dict], cursor_of: Callable[[Any], Any]) -> web.Response:
    """A JSON list of at most `limit` items (the reference's shape) and X-Next-Cursor when more follow."""
    response = json_response([render(item) for item in items[:limit]])
    if len(items) > limit:
        response.headers[NEXT_CURSOR] = encode_cursor(cursor_of(items[limit - 1]))
    return response


async def id_page(session, statement: Any, model: Any, limit: int, render: Callable[[Any], dict]) -> web.Response:
    """One page of `statement`'s rows in id order, the cursor of the next in X-Next-Cursor."""
    rows = list((await session.exec(statement.order_by(col(model.id)).limit(limit + 1))).all())
    return page_response(rows, limit, render, lambda row: row.id)


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, default=str).encode()).decode().rstrip("=")


def decode_cursor(request: web.Request, shape: Callable[[Any], bool]) -> Any:
    """The cursor a previous page gave, or None; 400 for anything this API did not hand out."""
    query = request[QUERY]
    raw = query.cursor if isinstance(query, Paged) else None
    if raw is None:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, TypeError):
        value = None
    if value is None or not shape(value):
        raise invalid_fields({"cursor": "is not a cursor this API handed out"}, "query")
    return value


def is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2**63
