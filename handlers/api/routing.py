"""The route table of the REST API and the one wrapper every route goes through.

A `Route` says what the OpenAPI document shows (parameters, body, answers) and what the wrapper
checks before the handler runs (bearer token, query, JSON body); the wrapper also turns errors into
JSON, audits writes, and tags every answer with its request id.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web
from sqlmodel import col

from bot.audit import AuditLog
from bot.deps import Deps
from bot.models import CodexRun, Project, ProtocolRun, StepRun
from bot.protocols import Conflict, NotFound
from handlers.api.context import ACTOR, AUDIT_IDS, BODY, QUERY, RAW_BODY, REQUEST_ID
from handlers.api import auth
from handlers.api.errors import ApiError, error_response, invalid_fields, not_found
from handlers.api.schemas import CURSOR, Field, parse_query, path_int, read_json, validate
from handlers.keys import DEPS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AUDIT = web.AppKey("api_audit", AuditLog)
REQUEST_ID_FORMAT = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
NEXT_CURSOR = "X-Next-Cursor"
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
    query: tuple[Field, ...] = ()
    body: tuple[Field, ...] | None = None
    body_optional: bool = False
    write: bool = False
    paginated: bool = False  # answers one page of a list and takes the CURSOR of the next

    def __post_init__(self) -> None:
        if self.paginated and CURSOR not in self.query:
            object.__setattr__(self, "query", (*self.query, CURSOR))

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
    request[QUERY] = parse_query(request, route.query)
    if route.body is not None:
        request[RAW_BODY] = await read_json(request, optional=route.body_optional)
        request[BODY] = validate(route.body, request[RAW_BODY])
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


# --- what handlers share -------------------------------------------------------------------------


def deps_of(request: web.Request) -> Deps:
    return request.app[DEPS]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda value: json.dumps(value, default=str))


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
    raw = request[QUERY].get(CURSOR.name)
    if raw is None:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, TypeError):
        value = None
    if value is None or not shape(value):
        raise invalid_fields({CURSOR.name: "is not a cursor this API handed out"}, "query")
    return value


def is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2**63


# --- loading what a path names, with the project token check ------------------------------------


async def project_or_404(request: web.Request, session, project_id: int | None) -> Project:
    project = await session.get(Project, project_id) if project_id is not None else None
    if project is None:
        raise not_found(f"project {request.match_info.get('project_id', project_id)} not found")
    auth.check_project_access(request, project)
    return project


async def protocol_or_404(request: web.Request, session, protocol_id: int | None) -> tuple[ProtocolRun, Project]:
    protocol = await session.get(ProtocolRun, protocol_id) if protocol_id is not None else None
    if protocol is None:
        raise not_found(f"protocol run {request.match_info.get('protocol_id', protocol_id)} not found")
    project = await project_or_404(request, session, protocol.project_id)
    return protocol, project


@dataclass(frozen=True)
class Scope:
    """What a path under /projects/{project_id} or /protocols/{protocol_id} names."""

    project: Project
    protocol: ProtocolRun | None

    def rows_of(self, model: Any) -> Any:
        """The condition selecting `model`'s rows (messages, clarifications) that belong to this scope."""
        if self.protocol is not None:
            return model.protocol_run_id == self.protocol.id
        return model.project_id == self.project.id


async def scope_or_404(request: web.Request, session) -> Scope:
    if "protocol_id" in request.match_info:
        protocol, project = await protocol_or_404(request, session, path_int(request, "protocol_id"))
        return Scope(project, protocol)
    return Scope(await project_or_404(request, session, path_int(request, "project_id")), None)


async def step_or_404(request: web.Request, session, step_id: int | None) -> tuple[StepRun, ProtocolRun, Project]:
    step = await session.get(StepRun, step_id) if step_id is not None else None
    if step is None:
        raise not_found(f"step run {request.match_info.get('step_id', step_id)} not found")
    protocol, project = await protocol_or_404(request, session, step.protocol_run_id)
    return step, protocol, project


async def run_or_404(request: web.Request, session, run_id: str) -> CodexRun:
    run = await session.get(CodexRun, run_id)
    if run is None:
        raise not_found(f"run {run_id} not found")
    if run.project_id is not None:
        project = await session.get(Project, run.project_id)
        if project is not None:
            auth.check_project_access(request, project)
    return run
