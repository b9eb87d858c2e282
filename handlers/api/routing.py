"""The route table of the REST API and the one wrapper every route goes through.

A `Route` says what the OpenAPI document shows (parameters, body, answers) and what the wrapper
checks before the handler runs (bearer token, query, JSON body); the wrapper also turns errors into
JSON, audits writes, and tags every answer with its request id.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web

from bot.audit import AuditLog
from bot.deps import Deps
from bot.protocols import Conflict, NotFound
from handlers.api import auth
from handlers.api.context import ACTOR, AUDIT_IDS, BODY, QUERY, RAW_BODY, REQUEST_ID
from handlers.api.errors import ApiError, error_response
from handlers.api.raw import read_json
from handlers.api.requests import Body, Paged, Query
from handlers.keys import DEPS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AUDIT = web.AppKey("api_audit", AuditLog)
REQUEST_ID_FORMAT = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
JSON = "application/json"


@dataclass(frozen=True)
class Answer:
    description: str
    schema: dict | None = None
    content_type: str = JSON


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # OpenAPI form: /projects/{project_id}
    handler: Handler
    summary: str
    tag: str
    answers: dict[int, Answer]
    path_params: dict[str, str] = field(default_factory=dict)  # name -> integer | string | path
    query: type[Query] = Query
    body: type[Body] | None = None
    body_optional: bool = False
    write: bool = False

    @property
    def paginated(self) -> bool:
        """Whether the route answers one page of a list and takes the cursor of the next."""
        return issubclass(self.query, Paged)

    @property
    def aiohttp_path(self) -> str:
        path = self.path
        for name, kind in self.path_params.items():
            pattern = {"integer": r"\d+", "path": r".+", "string": r"[^/]+"}[kind]
            path = path.replace("{" + name + "}", "{" + name + ":" + pattern + "}")
        return path


def register(app: web.Application, routes: list[Route]) -> None:
    for route in routes:
        app.router.add_route(route.method, route.aiohttp_path, wrap(route), name=route_name(route))


def route_name(route: Route) -> str:
    return "api:" + route.method.lower() + ":" + re.sub(r"[^a-z0-9]+", "_", route.path.lower()).strip("_")


def wrap(route: Route) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        request[REQUEST_ID] = request_id_of(request)
        try:
            response = await _checked_call(route, request)
        except ApiError as exc:
            response = exc.response()
        except Conflict as exc:
            response = error_response(409, str(exc))
        except NotFound as exc:
            response = error_response(404, str(exc))
        _audit(request, route, response.status)
        if not response.prepared:
            response.headers["X-Request-ID"] = request[REQUEST_ID]
        return response

    handle.__name__ = route.handler.__name__
    return handle


async def _checked_call(route: Route, request: web.Request) -> web.StreamResponse:
    request[ACTOR] = auth.authenticate(request)
    request[QUERY] = route.query.parse(request.query)
    if route.body is not None:
        request[RAW_BODY] = await read_json(request, optional=route.body_optional)
        request[BODY] = route.body.validated(request[RAW_BODY])
    return await route.handler(request)


def request_id_of(request: web.Request) -> str:
    given = request.headers.get("X-Request-ID", "")
    return given if REQUEST_ID_FORMAT.match(given) else uuid.uuid4().hex


def _audit(request: web.Request, route: Route, status: int) -> None:
    if not route.write or (status >= 400 and status not in (401, 403)):
        return
    request.app[AUDIT].write(
        action=f"{route.method} {route.path}",
        outcome="accepted" if status < 400 else "denied",
        actor=request.get(ACTOR),
        request_id=request[REQUEST_ID],
        path=request.path,
        ids={**dict(request.match_info), **request.get(AUDIT_IDS, {})},
        body=request.get(RAW_BODY),
        reason=None if status < 400 else f"HTTP {status}",
    )




def deps_of(request: web.Request) -> Deps:
    return request.app[DEPS]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda value: json.dumps(value, default=str))
