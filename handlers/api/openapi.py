"""The OpenAPI 3 document, built from the route table the application registers, so it cannot drift."""

from __future__ import annotations

from aiohttp import web

from handlers.api import answers
from handlers.api.routing import JSON, Answer, Route, json_response, route_name
from handlers.api.views import ref, schemas

TITLE = "agentry REST API"
VERSION = "1.0.0"
DOCUMENT = web.AppKey("api_openapi_document", dict)


def _external(method: str, path: str, summary: str, tag: str, answer_map: dict[int, Answer]) -> Route:
    async def served_elsewhere(request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    return Route(method, path, served_elsewhere, summary, tag, answer_map)


WEBHOOK_ANSWERS = {202: Answer("Accepted: recorded and queued", {"type": "object"}),
                   200: Answer("Duplicate delivery or ping", {"type": "object"}),
                   **answers.error(400, "Not a webhook this endpoint understands"),
                   **answers.error(401, "Missing or invalid signature or token"),
                   **answers.error(413, "Body too large")}
# routes the web module serves itself, described here when the application has them
EXTERNAL = [
    _external("GET", "/health", "Health of the database and the queue", "service",
              {200: Answer("Healthy", {"type": "object"}), 503: Answer("Degraded", {"type": "object"})}),
    _external("GET", "/metrics", "Prometheus metrics", "service", answers.text("Prometheus text format")),
    _external("POST", "/webhooks/github", "GitHub webhook deliveries (signed)", "webhooks", WEBHOOK_ANSWERS),
    _external("POST", "/webhooks/gitlab", "GitLab webhook deliveries (token or signature)", "webhooks",
              WEBHOOK_ANSWERS),
]
UNAUTHENTICATED = {"/health", "/metrics", "/webhooks/github", "/webhooks/gitlab"}


def described_routes(app: web.Application, routes: list[Route]) -> list[Route]:
    served = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}
    return [*routes, *(route for route in EXTERNAL if (route.method, route.path) in served)]


def document(app: web.Application, routes: list[Route]) -> dict:
    paths: dict[str, dict] = {}
    for route in described_routes(app, routes):
        paths.setdefault(route.path, {})[route.method.lower()] = operation(route)
    return {
        "openapi": "3.0.3",
        "info": {"title": TITLE, "version": VERSION,
                 "description": "Projects, protocol runs, steps, runs, events, messages and live feeds. "
                                "Lists return one page; the X-Next-Cursor header names the next (?cursor=)."},
        "paths": paths,
        "components": {"schemas": schemas(), "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    }


def operation(route: Route) -> dict:
    op = {"operationId": route_name(route), "summary": route.summary, "tags": [route.tag],
          "parameters": parameters(route), "responses": responses(route)}
    if route.path in UNAUTHENTICATED:
        op["security"] = []
    if route.body is not None:
        op["requestBody"] = {"required": not route.body_optional,
                             "content": {JSON: {"schema": route.body.json_schema()}}}
    return op


def parameters(route: Route) -> list[dict]:
    found = [{"name": name, "in": "path", "required": True, "schema": _path_schema(kind)}
             for name, kind in route.path_params.items()]
    found += route.query.parameters()
    if route.path not in UNAUTHENTICATED:
        found.append({"name": "X-Project-Token", "in": "header", "required": False, "schema": {"type": "string"},
                      "description": "The project's secrets.api_token, for projects that have one."})
    return found


def _path_schema(kind: str) -> dict:
    if kind == "integer":
        return {"type": "integer", "minimum": 0}
    return {"type": "string", "minLength": 1, **({"pattern": "^[^/]+$"} if kind == "string" else {})}


def responses(route: Route) -> dict:
    found = {str(status): _response(answer, route) for status, answer in route.answers.items()}
    for status, description, applies in _common(route):
        if applies and str(status) not in found:
            found[str(status)] = {"description": description, "content": {JSON: {"schema": ref("Error")}}}
    # a request the HTTP parser rejects (a line too long, a bad header) is answered in plain text
    found["400"]["content"]["text/plain"] = {"schema": {"type": "string"}}
    return found


def _common(route: Route) -> list[tuple[int, str, bool]]:
    ids_in_query = any(name.endswith("_id") for name in route.query.model_fields)
    return [
        (400, "Malformed request, malformed JSON or invalid fields (which and why)", True),
        (401, "Missing or invalid bearer token, or project token", route.path not in UNAUTHENTICATED),
        (404, "Not found", bool(route.path_params) or ids_in_query),
        (413, "Body too large", route.body is not None),
    ]


def _response(answer: Answer, route: Route) -> dict:
    response = {"description": answer.description}
    if answer.schema is not None:
        response["content"] = {answer.content_type: {"schema": answer.schema}}
    if route.paginated and answer.content_type == JSON:
        response["headers"] = {"X-Next-Cursor": {"description": "The cursor of the next page, when there is one",
                                                 "schema": {"type": "string"}}}
    return response


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[DOCUMENT])


ROUTE = Route("GET", "/openapi.json", openapi_json, "This document", "service",
              {200: Answer("The OpenAPI 3 description of the whole API", {"type": "object"})})
