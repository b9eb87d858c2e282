"""A fake GitHub REST API (plus the one GraphQL mutation agentry uses) for tests.

    async with FakeGitHub() as gh:           # listens on 127.0.0.1, a free port
        gh.url, gh.app_id, gh.private_key_pem, gh.calls, ...

It behaves like GitHub where agentry depends on it:

- ``POST /app/installations/{id}/access_tokens`` needs a valid app JWT (RS256, ``iss`` = app id,
  sane ``iat``/``exp``) and issues ``ghs_…`` tokens that expire after ``token_ttl`` seconds;
  ``token_requests`` counts them per installation and ``token_request_bodies`` keeps each
  request's body. A body may narrow the token to ``repositories`` of that installation (else 422)
  and to ``permissions`` the installation has (else 422); ``tokens[token]`` remembers both, and a
  token narrowed to some repositories gets 404 on the others. ``GET /repos/{o}/{r}/installation``
  needs the JWT too. Everything else needs ``Authorization: token <valid installation token>``
  (or ``Bearer``), else 401.
- Request bodies are validated against the schemas extracted from GitHub's OpenAPI description
  (``tests/fixtures/github-rest``): jsonschema on the resolved request body schema plus the
  flattened constraints (required, enum, maxLength, maxItems). A body that breaks them gets 422
  with the errors, as GitHub does.
- GETs answer with an ``ETag`` and honour ``If-None-Match`` (304), like GitHub's conditional
  requests.
- Every request is recorded in ``calls`` (method, path, url, json body, auth kind, status);
  the Authorization header is never recorded.
- Faults: ``rate_limit(path, status=403|429, retry_after=1)``, ``primary_rate_limit(path)``,
  ``fail(path, status)`` answer the next matching request(s) with an error, ``fail_call(n)`` the
  n-th request from now whatever it is;
  ``expire_tokens()`` makes every issued token invalid.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.loopback import LoopbackServer

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "github-rest"
JWT_MAX_LIFETIME = 600
CLOCK_DRIFT_ALLOWANCE = 60
REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
INSTALLATION_PERMISSIONS = {"checks": "write", "contents": "write", "issues": "write",
                            "pull_requests": "write", "metadata": "read"}
PERMISSION_LEVELS = ("read", "write", "admin")

PULL_UPDATE_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "body": {"type": "string"},
        "state": {"type": "string", "enum": ["open", "closed"]},
        "base": {"type": "string"},
        "maintainer_can_modify": {"type": "boolean"},
    },
}
GRAPHQL_SCHEMA = {
    "type": "object",
    "required": ["query"],
    "properties": {"query": {"type": "string"}, "variables": {"type": "object"}},
}

Handler = Callable[["Request"], Awaitable[web.Response]]


# -- keys and time ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _app_key() -> rsa.RSAPrivateKey:
    """One RSA key per test process (generating one per test is slow for nothing)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- request body validation --------------------------------------------------------------------

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _error(resource: str, field_path: str, code: str, message: str) -> dict[str, str]:
    return {"resource": resource, "field": field_path, "code": code, "message": message}


def _nodes(value: Any, parts: list[str], here: str) -> Iterator[tuple[str, Any]]:
    """The values at a flattened path like ``output.annotations[].message`` (present ones only)."""
    if not parts:
        yield here or "(root)", value
        return
    head, rest = parts[0], parts[1:]
    name, is_list = head.removesuffix("[]"), head.endswith("[]")
    if not isinstance(value, dict) or name not in value:
        return
    child, path = value[name], f"{here}.{name}" if here else name
    if not is_list:
        yield from _nodes(child, rest, path)
    elif isinstance(child, list):
        for index, item in enumerate(child):
            yield from _nodes(item, rest, f"{path}[{index}]")


def _constraint_errors(at: str, value: Any, rule: dict[str, Any]) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for name in rule.get("required", ()):
            if name not in value:
                yield "missing_field", f"{name!r} is required at {at}"
    if "enum" in rule and isinstance(value, str | int) and value not in rule["enum"]:
        yield "invalid", f"{value!r} is not one of {rule['enum']}"
    if "maxLength" in rule and isinstance(value, str) and len(value) > rule["maxLength"]:
        yield "invalid", f"longer than {rule['maxLength']} characters"
    if "maxItems" in rule and isinstance(value, list) and len(value) > rule["maxItems"]:
        yield "invalid", f"more than {rule['maxItems']} items"


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(error: jsonschema.ValidationError) -> str:
    """The error's message, or for oneOf/anyOf the reasons each alternative failed."""
    if not error.context:
        return _short(error.message)
    reasons = sorted({_short(sub.message) for sub in error.context})
    return f"matches none of the allowed alternatives ({error.validator}): " + "; ".join(reasons)


class BodySchema:
    """Validates request bodies of one operation: jsonschema plus flattened constraints."""

    def __init__(
        self,
        resource: str,
        schema: dict[str, Any] | None,
        constraints: list[dict[str, Any]] = (),
        body_required: bool = True,
    ) -> None:
        self.resource = resource
        self.body_required = body_required
        self.constraints = [c for c in constraints if not c["at"].startswith("<")]
        self.validator = (
            jsonschema.Draft4Validator(schema, format_checker=_FORMATS) if schema else None
        )

    @classmethod
    def from_file(cls, filename: str, resource: str) -> BodySchema:
        spec = json.loads((SCHEMA_DIR / filename).read_text())
        request_body = spec.get("requestBody") or {}
        content = request_body.get("content", {}).get("application/json", {})
        return cls(
            resource,
            content.get("schema"),
            spec.get("requestBody_constraints") or [],
            bool(request_body.get("required")),
        )

    def errors(self, body: Any) -> list[dict[str, str]]:
        if body is None and not self.body_required:
            return []
        found = self._schema_errors(body) + self._flat_errors(body)
        unique = {(e["field"], e["message"]): e for e in found}
        return list(unique.values())

    def _schema_errors(self, body: Any) -> list[dict[str, str]]:
        if self.validator is None:
            return []
        return [
            _error(
                self.resource,
                ".".join(str(p) for p in error.absolute_path) or "(root)",
                "missing_field" if error.validator == "required" else "invalid",
                _describe(error),
            )
            for error in self.validator.iter_errors(body)
        ]

    def _flat_errors(self, body: Any) -> list[dict[str, str]]:
        errors = []
        for rule in self.constraints:
            parts = [] if rule["at"] == "(root)" else rule["at"].split(".")
            for at, value in _nodes(body, parts, ""):
                for code, message in _constraint_errors(at, value, rule):
                    errors.append(_error(self.resource, at, code, message))
        return errors


@functools.lru_cache(maxsize=None)
def _schema(filename: str, resource: str) -> BodySchema:
    return BodySchema.from_file(filename, resource)


# -- recorded requests and faults ---------------------------------------------------------------


@dataclass
class Call:
    """One request as the fake saw it (never its Authorization header)."""

    method: str
    path: str
    url: str
    json: Any
    auth: str
    status: int = 0
    at: float = field(default_factory=time.monotonic)

    @property
    def line(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class Fault:
    path: str
    method: str | None
    status: int
    headers: dict[str, str]
    message: str
    times: int

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and path == self.path and self.method in (None, method)


@dataclass
class IssuedToken:
    """A token as issued; ``repositories`` is None when it reaches all of the installation's."""

    installation_id: int
    expires_at: float
    repositories: tuple[str, ...] | None = None
    permissions: dict[str, str] = field(default_factory=lambda: dict(INSTALLATION_PERMISSIONS))

    def reaches(self, repo: str) -> bool:
        name = repo.rsplit("/", 1)[-1].lower()
        return self.repositories is None or name in {r.lower() for r in self.repositories}


@dataclass
class Request:
    """What an endpoint handler gets: the aiohttp request, parsed body, authenticated party."""

    raw: web.Request
    body: Any
    installation_id: int | None = None

    @property
    def vars(self) -> dict[str, str]:
        return dict(self.raw.match_info)

    @property
    def repo(self) -> str:
        return f"{self.raw.match_info['owner']}/{self.raw.match_info['repo']}"


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers)


def _message(message: str, status: int, **extra: Any) -> web.Response:
    body = {"message": message, "documentation_url": "https://docs.github.com/rest", **extra}
    return _json(body, status)


# -- the fake -----------------------------------------------------------------------------------


REAL_SIZE_IDS = 2**33 + 1001  # github.com's comment and check-run ids are past 2^31 already


@dataclass
class FakeGitHub(LoopbackServer):
    """A GitHub REST API on 127.0.0.1 for one test. See the module docstring."""

    app_id: str = "4242"
    app_slug: str = "agentry-test"
    repos: dict[str, int] = field(default_factory=lambda: {"octo/demo": 7})
    token_ttl: float = 3600.0
    max_per_page: int = 100
    permissions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.private_key_pem = _pem(_app_key())
        self._public_key = _app_key().public_key()
        self.calls: list[Call] = []
        self._failing_call: tuple[int, int] | None = None  # (the call's number in `calls`, status)
        self.token_requests: Counter[int] = Counter()
        self.token_request_bodies: list[Any] = []
        self.tokens: dict[str, IssuedToken] = {}
        self.comments: dict[int, dict[str, Any]] = {}
        self.reactions: list[dict[str, Any]] = []
        self.check_runs: dict[int, dict[str, Any]] = {}
        self.pulls: dict[tuple[str, int], dict[str, Any]] = {}
        self.hook_deliveries: list[dict[str, Any]] = []  # the app's delivery attempts, seeded by tests
        self.redelivery_requests: list[int] = []
        self.webhook_target: tuple[str, str] | None = None  # (url, secret) a redelivery is sent to
        self._faults: list[Fault] = []
        self._ids = itertools.count(REAL_SIZE_IDS)
        self._pull_numbers: Counter[str] = Counter()

    @property
    def bot_login(self) -> str:
        return f"{self.app_slug}[bot]"

    # -- test controls ------------------------------------------------------------------------

    def fail(
        self,
        path: str,
        status: int,
        *,
        method: str | None = None,
        headers: dict[str, str] | None = None,
        message: str = "Injected failure",
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests to ``path`` (and ``method``) with ``status``."""
        self._faults.append(Fault(path, method, status, headers or {}, message, times))

    def fail_call(self, number: int, status: int = 500) -> None:
        """Answer the ``number``-th request from now (1 is the next), whatever it is, with ``status``."""
        self._failing_call = (len(self.calls) + number, status)

    def rate_limit(
        self, path: str, *, status: int = 403, retry_after: int = 1, times: int = 1
    ) -> None:
        """A secondary rate limit: ``status`` (403 or 429) with ``retry-after``."""
        headers = {"retry-after": str(retry_after)}
        message = "You have exceeded a secondary rate limit."
        self.fail(path, status, headers=headers, message=message, times=times)

    def primary_rate_limit(self, path: str, *, reset_in: int = 1, times: int = 1) -> None:
        """A primary rate limit: 403 with ``x-ratelimit-remaining: 0``."""
        headers = {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": str(int(time.time()) + reset_in),
        }
        self.fail(path, 403, headers=headers, message="API rate limit exceeded", times=times)

    def expire_tokens(self) -> None:
        """Make every installation token issued so far expired."""
        for token in self.tokens.values():
            token.expires_at = 0.0

    def add_comment(self, repo: str, issue_number: int, body: str, *, user: str) -> int:
        """Seed a comment written by ``user``; returns its id."""
        return self._new_comment(repo, issue_number, body, user)["id"]

    def add_pull(self, repo: str, *, head: str, head_sha: str, base: str = "main",
                 head_repo: str | None = None) -> int:
        """Seed an open pull request (from ``head_repo``, a fork, when given); returns its number."""
        owner = (head_repo or repo).split("/")[0]
        pull = self._new_pull(repo, {"base": base, "title": f"Change {head}", "body": ""}, head, f"{owner}:{head}")
        pull["head"].update(sha=head_sha, repo={"full_name": head_repo or repo})
        return pull["number"]

    def delete_comment(self, comment_id: int) -> None:
        self.comments.pop(comment_id, None)

    def lines(self, *, include_auth: bool = False) -> list[str]:
        """``"METHOD /path"`` of every call, without the token plumbing unless asked."""
        return [c.line for c in self.calls if include_auth or not self._is_auth_call(c)]

    @staticmethod
    def _is_auth_call(call: Call) -> bool:
        return call.path.startswith("/app/") or call.path.endswith("/installation")

    # -- routing ------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        repo = "/repos/{owner}/{repo}"
        routes: list[tuple[str, str, Handler, str, BodySchema | None]] = [
            ("POST", "/app/installations/{installation_id:\\d+}/access_tokens",
             self._access_token, "jwt",
             _schema("apps-create-installation-access-token.json", "InstallationToken")),
            ("GET", repo + "/installation", self._repo_installation, "jwt", None),
            ("GET", "/app/hook/deliveries", self._list_hook_deliveries, "jwt", None),
            ("POST", "/app/hook/deliveries/{delivery_id:\\d+}/attempts", self._redeliver, "jwt", None),
            ("GET", repo + "/collaborators/{username}/permission", self._permission, "token",
             None),
            ("POST", repo + "/issues/comments/{comment_id:\\d+}/reactions", self._react, "token",
             _schema("reactions-create-for-issue-comment.json", "Reaction")),
            ("PATCH", repo + "/issues/comments/{comment_id:\\d+}", self._update_comment,
             "token", _schema("issues-update-comment.json", "IssueComment")),
            ("GET", repo + "/issues/{issue_number:\\d+}/comments", self._list_comments, "token",
             None),
            ("POST", repo + "/issues/{issue_number:\\d+}/comments", self._create_comment,
             "token", _schema("issues-create-comment.json", "IssueComment")),
            ("POST", repo + "/check-runs", self._create_check_run, "token",
             _schema("checks-create.json", "CheckRun")),
            ("PATCH", repo + "/check-runs/{check_run_id:\\d+}", self._update_check_run, "token",
             _schema("checks-update.json", "CheckRun")),
            ("GET", repo + "/commits/{ref}/check-runs", self._list_check_runs, "token", None),
            ("GET", repo + "/pulls", self._list_pulls, "token", None),
            ("POST", repo + "/pulls", self._create_pull, "token",
             _schema("pulls-create.json", "PullRequest")),
            ("GET", repo + "/pulls/{pull_number:\\d+}", self._get_pull, "token", None),
            ("PATCH", repo + "/pulls/{pull_number:\\d+}", self._update_pull, "token",
             BodySchema("PullRequest", PULL_UPDATE_SCHEMA)),
            ("POST", "/graphql", self._graphql, "token", BodySchema("GraphQL", GRAPHQL_SCHEMA)),
        ]
        for method, path, handler, auth, schema in routes:
            app.router.add_route(method, path, self._endpoint(handler, auth, schema))
        app.router.add_route("*", "/{tail:.*}", self._endpoint(self._not_found, "any", None))
        return app

    def _endpoint(self, handler: Handler, auth: str, schema: BodySchema | None) -> Any:
        async def endpoint(raw: web.Request) -> web.StreamResponse:
            call = Call(raw.method, raw.path, str(raw.rel_url), None, self._auth_kind(raw))
            self.calls.append(call)
            response = await self._serve(raw, call, handler, auth, schema)
            call.status = response.status
            return response

        return endpoint

    async def _serve(
        self,
        raw: web.Request,
        call: Call,
        handler: Handler,
        auth: str,
        schema: BodySchema | None,
    ) -> web.StreamResponse:
        body_text = await raw.text()
        try:
            call.json = json.loads(body_text) if body_text else None
        except ValueError:
            return _message("Problems parsing JSON", 400)
        if self._failing_call is not None and self._failing_call[0] == len(self.calls):
            return _message("Injected failure of this call", self._failing_call[1])
        fault = self._take_fault(raw.method, raw.path)
        if fault is not None:
            return fault
        denied, installation_id = self._authenticate(raw, auth)
        if denied is not None:
            return denied
        errors = schema.errors(call.json) if schema else []
        if errors:
            return _message("Invalid request.", 422, errors=errors)
        request = Request(raw, call.json, installation_id)
        return self._conditional(raw, await handler(request))

    def _take_fault(self, method: str, path: str) -> web.Response | None:
        for fault in self._faults:
            if fault.matches(method, path):
                fault.times -= 1
                response = _message(fault.message, fault.status)
                response.headers.update(fault.headers)
                return response
        return None

    @staticmethod
    def _conditional(raw: web.Request, response: web.Response) -> web.Response:
        if raw.method != "GET" or response.status != 200 or response.body is None:
            return response
        etag = '"' + hashlib.sha256(bytes(response.body)).hexdigest()[:32] + '"'
        if raw.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        response.headers["ETag"] = etag
        return response

    # -- authentication -----------------------------------------------------------------------

    @staticmethod
    def _credential(raw: web.Request) -> str | None:
        scheme, _, value = raw.headers.get("Authorization", "").partition(" ")
        if scheme.lower() in ("token", "bearer") and value:
            return value.strip()
        return None

    def _auth_kind(self, raw: web.Request) -> str:
        credential = self._credential(raw)
        if credential is None:
            return "none"
        if credential in self.tokens:
            valid = self.tokens[credential].expires_at > time.time()
            return "token" if valid else "expired-token"
        return "jwt" if credential.count(".") == 2 else "invalid"

    def _authenticate(
        self, raw: web.Request, auth: str
    ) -> tuple[web.Response | None, int | None]:
        credential = self._credential(raw) or ""
        if auth == "jwt":
            problem = self._jwt_problem(credential)
            return (_message(problem, 401) if problem else None), None
        if auth == "token":
            return self._token_check(raw, credential)
        return None, None

    def _jwt_problem(self, credential: str) -> str | None:
        try:
            claims = jwt.decode(
                credential,
                self._public_key,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
            )
        except jwt.PyJWTError as exc:
            return f"A JSON web token could not be decoded ({type(exc).__name__})"
        if str(claims["iss"]) != self.app_id:
            return "'Issuer' claim ('iss') must be the app id"
        if claims["exp"] - claims["iat"] > JWT_MAX_LIFETIME:
            return "'Expiration time' claim ('exp') is too far in the future"
        if claims["iat"] > time.time() + CLOCK_DRIFT_ALLOWANCE:
            return "'Issued at' claim ('iat') must be in the past"
        return None

    def _token_check(
        self, raw: web.Request, credential: str
    ) -> tuple[web.Response | None, int | None]:
        issued = self.tokens.get(credential)
        if issued is None or issued.expires_at <= time.time():
            return _message("Bad credentials", 401), None
        repo = self._repo_of(raw)
        if repo is not None and (self.repos.get(repo) != issued.installation_id
                                 or not issued.reaches(repo)):
            return _message("Not Found", 404), None
        return None, issued.installation_id

    @staticmethod
    def _repo_of(raw: web.Request) -> str | None:
        owner, repo = raw.match_info.get("owner"), raw.match_info.get("repo")
        return f"{owner}/{repo}" if owner and repo else None

    # -- apps ---------------------------------------------------------------------------------

    async def _access_token(self, request: Request) -> web.Response:
        installation_id = int(request.vars["installation_id"])
        wanted = request.body or {}
        self.token_request_bodies.append(request.body)
        if installation_id not in self.repos.values():
            return _message("Not Found", 404)
        problem = self._token_scope_problem(installation_id, wanted)
        if problem:
            return _message(problem, 422)
        self.token_requests[installation_id] += 1
        token = self._issue_token(installation_id, wanted)
        return _json(self._token_answer(token), 201)

    def _installation_repos(self, installation_id: int) -> dict[str, str]:
        """Repository name (lowercased) -> full name, for the repositories of the installation."""
        return {full.rsplit("/", 1)[-1].lower(): full
                for full, owner_id in self.repos.items() if owner_id == installation_id}

    def _token_scope_problem(self, installation_id: int, wanted: dict[str, Any]) -> str | None:
        names = self._installation_repos(installation_id)
        if any(name.lower() not in names for name in wanted.get("repositories", ())):
            return ("There is at least one repository that does not exist or is not accessible"
                    " to the parent installation.")
        for name, level in (wanted.get("permissions") or {}).items():
            granted = INSTALLATION_PERMISSIONS.get(name)
            if granted is None or PERMISSION_LEVELS.index(level) > PERMISSION_LEVELS.index(granted):
                return "The permissions requested are not granted to this installation."
        return None

    def _issue_token(self, installation_id: int, wanted: dict[str, Any]) -> str:
        token = "ghs_" + secrets.token_hex(18)
        repositories, permissions = wanted.get("repositories"), wanted.get("permissions")
        self.tokens[token] = IssuedToken(
            installation_id,
            float(int(time.time() + self.token_ttl)),
            tuple(repositories) if repositories else None,
            {**permissions, "metadata": "read"} if permissions else dict(INSTALLATION_PERMISSIONS),
        )
        return token

    def _token_answer(self, token: str) -> dict[str, Any]:
        issued = self.tokens[token]
        answer = {"token": token, "expires_at": _iso(issued.expires_at),
                  "permissions": dict(issued.permissions), "repository_selection": "all"}
        if issued.repositories is not None:
            names = self._installation_repos(issued.installation_id)
            full_names = [names[name.lower()] for name in issued.repositories]
            answer["repository_selection"] = "selected"
            answer["repositories"] = [{"name": full.rsplit("/", 1)[-1], "full_name": full}
                                      for full in full_names]
        return answer

    async def _repo_installation(self, request: Request) -> web.Response:
        installation_id = self.repos.get(request.repo)
        if installation_id is None:
            return _message("Not Found", 404)
        owner = request.vars["owner"]
        body = {"id": installation_id, "app_id": int(self.app_id), "app_slug": self.app_slug,
                "account": {"login": owner}, "target_type": "Organization",
                "repository_selection": "all", "permissions": {}, "events": []}
        return _json(body)

    async def _permission(self, request: Request) -> web.Response:
        user = request.vars["username"]
        permission = self.permissions.get(user)
        if permission is None:
            return _message(f"{user} is not a user", 404)
        body = {"permission": permission, "role_name": permission,
                "user": {"login": user, "type": "User"}}
        return _json(body)

    async def _not_found(self, request: Request) -> web.Response:
        return _message("Not Found", 404)

    # -- comments and reactions ---------------------------------------------------------------

    def _new_comment(self, repo: str, issue_number: int, body: str, user: str) -> dict[str, Any]:
        comment_id = next(self._ids)
        now = _iso(time.time())
        comment = {
            "id": comment_id, "node_id": f"IC_fake{comment_id}", "body": body,
            "url": f"{self.url}/repos/{repo}/issues/comments/{comment_id}",
            "html_url": f"https://github.example/{repo}/issues/{issue_number}#issuecomment-"
                        f"{comment_id}",
            "issue_url": f"{self.url}/repos/{repo}/issues/{issue_number}",
            "user": {"login": user, "type": "Bot" if user.endswith("[bot]") else "User"},
            "created_at": now, "updated_at": now, "author_association": "NONE",
            "_repo": repo, "_issue": issue_number,
        }
        self.comments[comment_id] = comment
        return comment

    @staticmethod
    def _public(record: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if not k.startswith("_")}

    def _comment_in(self, request: Request) -> dict[str, Any] | None:
        comment = self.comments.get(int(request.vars["comment_id"]))
        return comment if comment and comment["_repo"] == request.repo else None

    async def _create_comment(self, request: Request) -> web.Response:
        number = int(request.vars["issue_number"])
        comment = self._new_comment(request.repo, number, request.body["body"], self.bot_login)
        return _json(self._public(comment), 201)

    async def _update_comment(self, request: Request) -> web.Response:
        comment = self._comment_in(request)
        if comment is None:
            return _message("Not Found", 404)
        comment.update(body=request.body["body"], updated_at=_iso(time.time()))
        return _json(self._public(comment))

    def add_hook_delivery(self, guid: str, *, event: str, status_code: int, delivered_at: float,
                          payload: dict[str, Any] | None = None) -> int:
        """Seed one attempt to deliver a webhook (what GitHub shows under the app's advanced settings)."""
        attempt = {"id": next(self._ids), "guid": guid, "delivered_at": _iso(delivered_at), "redelivery": False,
                   "duration": 0.1, "status": "OK" if 200 <= status_code < 300 else "failed",
                   "status_code": status_code, "event": event, "action": (payload or {}).get("action"),
                   "installation_id": None, "repository_id": None, "_payload": payload}
        self.hook_deliveries.append(attempt)
        return attempt["id"]

    async def _list_hook_deliveries(self, request: Request) -> web.Response:
        newest_first = sorted(self.hook_deliveries, key=lambda attempt: attempt["delivered_at"], reverse=True)
        per_page = min(int(request.raw.query.get("per_page", 30)), self.max_per_page)
        start = int(request.raw.query.get("cursor", 0))
        chunk = [{k: v for k, v in attempt.items() if not k.startswith("_")} for attempt in
                 newest_first[start:start + per_page]]
        more = start + per_page < len(newest_first)
        url = request.raw.url.with_query({"per_page": per_page, "cursor": start + per_page})
        return _json(chunk, headers={"Link": f'<{url}>; rel="next"'} if more else None)

    async def _redeliver(self, request: Request) -> web.Response:
        attempt_id = int(request.vars["delivery_id"])
        original = next((attempt for attempt in self.hook_deliveries if attempt["id"] == attempt_id), None)
        if original is None:
            return _message("Not Found", 404)
        self.redelivery_requests.append(attempt_id)
        status = await self._deliver(original) if self.webhook_target and original["_payload"] is not None else 0
        self.hook_deliveries.append({**original, "id": next(self._ids), "delivered_at": _iso(time.time()),
                                     "redelivery": True, "status_code": status})
        return _json({}, 202)

    async def _deliver(self, attempt: dict[str, Any]) -> int:
        assert self.webhook_target is not None
        url, secret = self.webhook_target
        body = json.dumps(attempt["_payload"]).encode()
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-GitHub-Event": attempt["event"], "X-GitHub-Delivery": attempt["guid"],
                   "X-Hub-Signature-256": signature, "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as response:
            return response.status

    async def _list_comments(self, request: Request) -> web.Response:
        number = int(request.vars["issue_number"])
        matching = [self._public(c) for c in self.comments.values()
                    if (c["_repo"], c["_issue"]) == (request.repo, number)]
        return self._page(request.raw, matching)

    def _page(self, raw: web.Request, items: list[Any]) -> web.Response:
        per_page = min(int(raw.query.get("per_page", 30)), self.max_per_page)
        page = max(int(raw.query.get("page", 1)), 1)
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        links = self._links(raw, per_page, page, last)
        return _json(chunk, headers={"Link": links} if links else None)

    def _links(self, raw: web.Request, per_page: int, page: int, last: int) -> str:
        def link(number: int, rel: str) -> str:
            url = raw.url.with_query({**raw.query, "per_page": per_page, "page": number})
            return f'<{url}>; rel="{rel}"'

        rels = []
        if page < last:
            rels += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            rels += [link(1, "first"), link(page - 1, "prev")]
        return ", ".join(rels)

    async def _react(self, request: Request) -> web.Response:
        comment = self._comment_in(request)
        if comment is None:
            return _message("Not Found", 404)
        content = request.body["content"]
        for reaction in self.reactions:
            if (reaction["_comment"], reaction["content"]) == (comment["id"], content):
                return _json(self._public(reaction), 200)
        reaction = {"id": next(self._ids), "node_id": "REA_fake", "content": content,
                    "user": {"login": self.bot_login, "type": "Bot"},
                    "created_at": _iso(time.time()), "_comment": comment["id"]}
        self.reactions.append(reaction)
        return _json(self._public(reaction), 201)

    # -- check runs ---------------------------------------------------------------------------

    async def _create_check_run(self, request: Request) -> web.Response:
        check_run_id = next(self._ids)
        run = {"id": check_run_id, "node_id": f"CR_fake{check_run_id}",
               "url": f"{self.url}/repos/{request.repo}/check-runs/{check_run_id}",
               "html_url": f"https://github.example/{request.repo}/runs/{check_run_id}",
               "status": "queued", "conclusion": None, "started_at": None,
               "completed_at": None, "details_url": None, "external_id": None,
               "output": {"title": None, "summary": None, "text": None,
                          "annotations_count": 0},
               "check_suite": {"id": 1}, "app": {"slug": self.app_slug},
               "pull_requests": [], "_repo": request.repo}
        self._apply_check_run(run, request.body)
        self.check_runs[check_run_id] = run
        return _json(self._public(run), 201)

    async def _list_check_runs(self, request: Request) -> web.Response:
        name = request.raw.query.get("check_name")
        runs = [self._public(run) for run in self.check_runs.values()
                if run["_repo"] == request.repo and run.get("head_sha") == request.vars["ref"]
                and (name is None or run.get("name") == name)]
        return _json({"total_count": len(runs), "check_runs": runs})

    async def _update_check_run(self, request: Request) -> web.Response:
        run = self.check_runs.get(int(request.vars["check_run_id"]))
        if run is None or run["_repo"] != request.repo:
            return _message("Not Found", 404)
        self._apply_check_run(run, request.body)
        return _json(self._public(run))

    @staticmethod
    def _apply_check_run(run: dict[str, Any], body: dict[str, Any]) -> None:
        output = body.get("output") or {}
        run.update({k: v for k, v in body.items() if k != "output"})
        run["output"].update({k: v for k, v in output.items() if k != "annotations"})
        run["output"]["annotations_count"] += len(output.get("annotations", []))
        if body.get("conclusion"):
            run["status"] = "completed"

    # -- pull requests ------------------------------------------------------------------------

    def _pull(self, request: Request) -> dict[str, Any] | None:
        return self.pulls.get((request.repo, int(request.vars["pull_number"])))

    def _repo_pulls(self, repo: str) -> list[dict[str, Any]]:
        return [pull for (name, _), pull in self.pulls.items() if name == repo]

    async def _create_pull(self, request: Request) -> web.Response:
        body = request.body
        owner = request.vars["owner"]
        branch = body["head"].split(":", 1)[-1]
        label = f"{owner}:{branch}"
        if any(p["head"]["label"] == label and p["state"] == "open"
               for p in self._repo_pulls(request.repo)):
            error = {"resource": "PullRequest", "code": "custom",
                     "message": f"A pull request already exists for {label}."}
            return _message("Validation Failed", 422, errors=[error])
        pull = self._new_pull(request.repo, body, branch, label)
        return _json(pull, 201)

    def _new_pull(
        self, repo: str, body: dict[str, Any], branch: str, label: str
    ) -> dict[str, Any]:
        self._pull_numbers[repo] += 1
        number, pull_id = self._pull_numbers[repo], next(self._ids)
        pull = {"id": pull_id, "node_id": f"PR_fake{pull_id}", "number": number,
                "url": f"{self.url}/repos/{repo}/pulls/{number}",
                "html_url": f"https://github.example/{repo}/pull/{number}",
                "state": "open", "draft": bool(body.get("draft", False)),
                "title": body.get("title"), "body": body.get("body"),
                "head": {"ref": branch, "label": label, "sha": "0" * 40, "repo": {"full_name": repo}},
                "base": {"ref": body["base"]}, "merged": False,
                "user": {"login": self.bot_login, "type": "Bot"}}
        self.pulls[(repo, number)] = pull
        return pull

    async def _list_pulls(self, request: Request) -> web.Response:
        query = request.raw.query
        state, head = query.get("state", "open"), query.get("head")
        pulls = [p for p in self._repo_pulls(request.repo)
                 if state in ("all", p["state"]) and head in (None, p["head"]["label"])]
        return self._page(request.raw, pulls)

    async def _get_pull(self, request: Request) -> web.Response:
        pull = self._pull(request)
        return _json(pull) if pull else _message("Not Found", 404)

    async def _update_pull(self, request: Request) -> web.Response:
        pull = self._pull(request)
        if pull is None:
            return _message("Not Found", 404)
        pull.update({k: v for k, v in request.body.items() if k in ("title", "body", "state")})
        return _json(pull)

    # -- GraphQL ------------------------------------------------------------------------------

    async def _graphql(self, request: Request) -> web.Response:
        query, variables = request.body["query"], request.body.get("variables") or {}
        if "markPullRequestReadyForReview" not in query:
            return _json({"data": None, "errors": [{"message": "Unsupported by the fake"}]})
        pull = self._pull_by_node_ids(variables.values())
        if pull is None:
            error = {"type": "NOT_FOUND", "message": "Could not resolve to a node"}
            return _json({"data": None, "errors": [error]})
        pull["draft"] = False
        result = {"pullRequest": {"number": pull["number"], "isDraft": False}}
        return _json({"data": {"markPullRequestReadyForReview": result}})

    def _pull_by_node_ids(self, candidates: Any) -> dict[str, Any] | None:
        for pull in self.pulls.values():
            if pull["node_id"] in candidates:
                return pull
        return None
