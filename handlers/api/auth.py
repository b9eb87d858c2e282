"""Who may call the API: the operator's bearer token, and per project the project's own token."""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from sqlalchemy import String, cast, or_
from sqlmodel import select

from bot.models import Project
from bot.secretbox import SecretBoxError
from handlers.api.context import ACTOR
from handlers.api.errors import ApiError, unauthorized
from handlers.keys import DEPS

log = logging.getLogger("agentry.api")

PROJECT_TOKEN_HEADER = "X-Project-Token"


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison, whatever the strings hold."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate(request: web.Request) -> str:
    """The actor behind the request; 401 without the operator's bearer token when one is set."""
    expected = request.app[DEPS].settings.api_token
    if not expected:
        return "anonymous"
    if not same_secret(bearer_token(request), expected):
        raise unauthorized("missing or invalid bearer token (Authorization: Bearer <AGENTRY_API_TOKEN>)",
                           'Bearer realm="agentry"')
    return "api"


def check_project_access(request: web.Request, project: Project) -> None:
    """401 unless X-Project-Token matches the project's secrets.api_token, when it has one."""
    expected = _project_token(request, project)
    if not expected:
        return
    if not same_secret(request.headers.get(PROJECT_TOKEN_HEADER), expected):
        raise unauthorized(f"project access denied: send the project's token in {PROJECT_TOKEN_HEADER}",
                           f'{PROJECT_TOKEN_HEADER} realm="agentry project {project.id}"')
    request[ACTOR] = f"project:{project.id}"


async def hidden_projects(request: web.Request, session) -> frozenset[int]:
    """The projects with a token that this request does not carry: lists and feeds leave them out."""
    given = request.headers.get(PROJECT_TOKEN_HEADER)
    with_token = cast(Project.secrets, String).like('%"api_token"%')
    protected = (await session.exec(select(Project).where(with_token))).all()
    hidden = set()
    for project in protected:
        expected = _project_token(request, project)
        if expected and not same_secret(given, expected):
            hidden.add(project.id)
    return frozenset(hidden)


def visible(column, hidden: frozenset[int]) -> list:
    """A condition keeping rows of visible projects (and rows of no project), for a where clause."""
    return [or_(column.is_(None), column.not_in(hidden))] if hidden else []


def _project_token(request: web.Request, project: Project) -> str | None:
    sealed = (project.secrets or {}).get("api_token")
    if not sealed:
        return None
    try:
        return request.app[DEPS].secret_box.open(str(sealed))
    except SecretBoxError as exc:
        log.error("cannot check a project token: %s", exc, extra={"project_id": project.id})
        raise ApiError(500, "the project's token cannot be checked: the server's secret key does not open it") from None


def warn_when_open(app: web.Application) -> None:
    if not app[DEPS].settings.api_token:
        log.warning("AGENTRY_API_TOKEN is not set: the REST API answers anyone who can reach it")
