"""A fake GitLab REST API (v4) for tests: the endpoints agentry calls, nothing else.

    async with FakeGitLab(members={"alice": 30}) as gl:   # listens on 127.0.0.1, a free port
        gl.url, gl.token, gl.calls, gl.notes, gl.statuses, gl.merge_requests, ...

It behaves like GitLab where agentry depends on it:

- Every request needs ``PRIVATE-TOKEN: <token>`` or ``Authorization: Bearer <token>``, else 401.
- Projects are addressed by id or by URL-encoded path (``group%2Fproject``); unknown ones are 404.
- ``members`` (username → access level) is the project's membership, inherited included;
  ``blocked`` users are members whose state is ``blocked``. ``GET /users?username=`` knows the
  members and the bot.
- Required fields and enums are checked the way GitLab's API does (400 ``{"error": …}``): note
  ``body``, award emoji ``name``, commit status ``state`` (and its 255-character description),
  merge request ``source_branch`` / ``target_branch`` / ``title``.
- Commit statuses follow GitLab's state machine: a pending or running status with the same name
  on the same commit is updated in place, and moving it to the state it is already in (or back
  from running to pending) is 400 "Cannot transition status"; a finished one gets a new status.
- Awarding the same emoji twice is 404 "has already been taken"; a second open merge request
  from the same source branch is 409.
- Lists are paginated (``per_page``, ``page``) with ``Link: <…>; rel="next"`` headers.
- Every request is recorded in ``calls`` (method, path, url, json body, auth kind, status); the
  credential itself is never recorded.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.loopback import LoopbackServer

API = "/api/v4"
COMMIT_STATES = ("pending", "running", "success", "failed", "canceled", "skipped")
ACTIVE_STATES = ("pending", "running")
STATUS_EVENTS = {"pending": "enqueue", "running": "run", "success": "success", "failed": "drop",
                 "canceled": "cancel", "skipped": "skip"}
EMOJI = ("eyes", "thumbsup", "thumbsdown", "laughing", "tada", "heart", "rocket", "confused")
DRAFT_TITLE = re.compile(r"^\s*(\[draft\]|\(draft\)|draft:|draft\s+-\s+)", re.IGNORECASE)
DESCRIPTION_MAX = 255

Handler = Callable[["Request"], Awaitable[web.Response]]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers)


def _message(message: Any, status: int) -> web.Response:
    return _json({"message": message}, status)


def _invalid(error: str) -> web.Response:
    """Grape's parameter errors: 400 with an ``error`` key."""
    return _json({"error": error}, 400)


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if not key.startswith("_")}


@dataclass
class Call:
    """One request as the fake saw it (never its credential)."""

    method: str
    path: str
    url: str
    json: Any
    auth: str
    status: int = 0

    @property
    def line(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class Request:
    raw: web.Request
    body: Any
    project_id: int | None

    def var(self, name: str) -> str:
        return self.raw.match_info[name]

    def number(self, name: str) -> int:
        return int(self.raw.match_info[name])


@dataclass
class FakeGitLab(LoopbackServer):
    """A GitLab API on 127.0.0.1 for one test. See the module docstring."""

    token: str = "glpat-fake-token-0123456789"
    bot_username: str = "agentry-bot"
    projects: dict[str, int] = field(default_factory=lambda: {"gitlab-org/gitlab-test": 5})
    members: dict[str, int] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)
    max_per_page: int = 100

    def __post_init__(self) -> None:
        self.calls: list[Call] = []
        self.notes: dict[int, dict[str, Any]] = {}
        self.awards: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.merge_requests: dict[tuple[int, int], dict[str, Any]] = {}
        self._ids = itertools.count(2**33 + 2001)  # real-size ids, past 2^31
        self._user_ids: dict[str, int] = {}
        self._failing_call: tuple[int, int] | None = None  # (the call's number in `calls`, status)

    # -- test controls ------------------------------------------------------------------------

    def add_note(
        self, project: str, iid: int, body: str, *, user: str, merge_request: bool = False,
        system: bool = False,
    ) -> int:
        """Seed a note by ``user`` on an issue (or merge request); returns its id."""
        kind = "merge_requests" if merge_request else "issues"
        return self._new_note(self.projects[project], kind, iid, body, user, system)["id"]

    def lines(self) -> list[str]:
        return [call.line for call in self.calls]

    def fail_call(self, number: int, status: int = 500) -> None:
        """Answer the ``number``-th request from now (1 is the next), whatever it is, with ``status``."""
        self._failing_call = (len(self.calls) + number, status)

    def user_id(self, username: str) -> int:
        return self._user_ids.setdefault(username, 100 + len(self._user_ids))

    def status_of(self, sha: str, name: str) -> dict[str, Any] | None:
        """The newest commit status ``name`` on ``sha``."""
        matching = [s for s in self.statuses if (s["sha"], s["name"]) == (sha, name)]
        return _public(matching[-1]) if matching else None

    # -- routing ------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        project = API + "/projects/{project}"
        noteable = project + "/{kind:issues|merge_requests}/{iid:\\d+}"
        routes: list[tuple[str, str, Handler]] = [
            ("GET", API + "/user", self._current_user),
            ("GET", API + "/users", self._users),
            ("GET", project + "/members/all/{user_id:\\d+}", self._member),
            ("GET", noteable + "/notes", self._list_notes),
            ("POST", noteable + "/notes", self._create_note),
            ("PUT", noteable + "/notes/{note_id:\\d+}", self._update_note),
            ("POST", noteable + "/notes/{note_id:\\d+}/award_emoji", self._award),
            ("POST", project + "/statuses/{sha}", self._create_status),
            ("GET", project + "/repository/commits/{sha}/statuses", self._list_statuses),
            ("GET", project + "/merge_requests", self._list_merge_requests),
            ("POST", project + "/merge_requests", self._create_merge_request),
            ("GET", project + "/merge_requests/{iid:\\d+}", self._get_merge_request),
            ("PUT", project + "/merge_requests/{iid:\\d+}", self._update_merge_request),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, self._endpoint(handler))
        app.router.add_route("*", "/{tail:.*}", self._endpoint(self._not_found))
        return app

    def _endpoint(self, handler: Handler) -> Any:
        async def endpoint(raw: web.Request) -> web.StreamResponse:
            call = Call(raw.method, raw.path, str(raw.rel_url), None, self._auth_kind(raw))
            self.calls.append(call)
            response = await self._serve(raw, call, handler)
            call.status = response.status
            return response

        return endpoint

    async def _serve(self, raw: web.Request, call: Call, handler: Handler) -> web.Response:
        if self._failing_call is not None and self._failing_call[0] == len(self.calls):
            return _message("500 Injected failure of this call", self._failing_call[1])
        text = await raw.text()
        try:
            call.json = json.loads(text) if text else None
        except ValueError:
            return _message("400 Bad request - JSON body is invalid", 400)
        if call.auth not in ("private-token", "bearer"):
            return _message("401 Unauthorized", 401)
        project_id = None
        if "project" in raw.match_info:
            project_id = self._project_id(raw.match_info["project"])
            if project_id is None:
                return _message("404 Project Not Found", 404)
        return await handler(Request(raw, call.json if isinstance(call.json, dict) else {}, project_id))

    def _auth_kind(self, raw: web.Request) -> str:
        private = raw.headers.get("PRIVATE-TOKEN")
        scheme, _, bearer = raw.headers.get("Authorization", "").partition(" ")
        if private is not None:
            return "private-token" if private == self.token else "invalid"
        if scheme:
            return "bearer" if scheme.lower() == "bearer" and bearer == self.token else "invalid"
        return "none"

    def _project_id(self, key: str) -> int | None:
        if key.isdigit():
            return int(key) if int(key) in self.projects.values() else None
        return self.projects.get(key)

    def _page(self, raw: web.Request, items: list[Any]) -> web.Response:
        per_page = min(int(raw.query.get("per_page", 20)), self.max_per_page)
        page = max(int(raw.query.get("page", 1)), 1)
        chunk = items[(page - 1) * per_page: page * per_page]
        headers = {"X-Total": str(len(items)), "X-Page": str(page), "X-Per-Page": str(per_page)}
        if page * per_page < len(items):
            next_url = raw.url.with_query({**raw.query, "per_page": per_page, "page": page + 1})
            headers.update({"Link": f'<{next_url}>; rel="next"', "X-Next-Page": str(page + 1)})
        return _json(chunk, headers=headers)

    async def _not_found(self, request: Request) -> web.Response:
        return _message("404 Not Found", 404)

    # -- users and members --------------------------------------------------------------------

    def _user(self, username: str) -> dict[str, Any]:
        return {"id": self.user_id(username), "username": username, "name": username,
                "state": "blocked" if username in self.blocked else "active"}

    async def _current_user(self, request: Request) -> web.Response:
        return _json({**self._user(self.bot_username), "bot": True})

    async def _users(self, request: Request) -> web.Response:
        wanted = request.raw.query.get("username", "").lower()
        known = [*self.members, self.bot_username]
        return _json([self._user(name) for name in known if name.lower() == wanted])

    async def _member(self, request: Request) -> web.Response:
        user_id = request.number("user_id")
        for username, level in self.members.items():
            if self.user_id(username) == user_id:
                return _json({**self._user(username), "access_level": level})
        return _message("404 Not found", 404)

    # -- notes and award emoji ----------------------------------------------------------------

    def _new_note(
        self, project_id: int, kind: str, iid: int, body: str, user: str, system: bool = False
    ) -> dict[str, Any]:
        note_id = next(self._ids)
        note = {"id": note_id, "body": body, "author": self._user(user), "system": system,
                "created_at": _now(), "updated_at": _now(),
                "noteable_type": "MergeRequest" if kind == "merge_requests" else "Issue",
                "noteable_iid": iid, "_where": (project_id, kind, iid)}
        self.notes[note_id] = note
        return note

    def _note_in(self, request: Request) -> dict[str, Any] | None:
        note = self.notes.get(request.number("note_id"))
        where = (request.project_id, request.var("kind"), request.number("iid"))
        return note if note is not None and note["_where"] == where else None

    async def _list_notes(self, request: Request) -> web.Response:
        where = (request.project_id, request.var("kind"), request.number("iid"))
        notes = [_public(n) for n in self.notes.values() if n["_where"] == where]
        if request.raw.query.get("sort", "desc") == "desc":
            notes.reverse()
        return self._page(request.raw, notes)

    async def _create_note(self, request: Request) -> web.Response:
        body = request.body.get("body")
        if not isinstance(body, str) or not body:
            return _invalid("body is missing")
        note = self._new_note(request.project_id, request.var("kind"), request.number("iid"),
                              body, self.bot_username)
        return _json(_public(note), 201)

    async def _update_note(self, request: Request) -> web.Response:
        note = self._note_in(request)
        if note is None:
            return _message("404 Note Not Found", 404)
        if note["author"]["username"] != self.bot_username:
            return _message("403 Forbidden", 403)
        body = request.body.get("body")
        if not isinstance(body, str) or not body:
            return _invalid("body is missing")
        note.update(body=body, updated_at=_now())
        return _json(_public(note))

    async def _award(self, request: Request) -> web.Response:
        note = self._note_in(request)
        if note is None:
            return _message("404 Note Not Found", 404)
        name = request.body.get("name")
        if not isinstance(name, str) or not name:
            return _invalid("name is missing")
        if name not in EMOJI:
            return _message('404 Award Emoji {:name=>["is not a valid emoji name"]} Not Found', 404)
        if any((a["_note"], a["name"]) == (note["id"], name) for a in self.awards):
            return _message('404 Award Emoji {:name=>["has already been taken"]} Not Found', 404)
        award = {"id": next(self._ids), "name": name, "user": self._user(self.bot_username),
                 "awardable_id": note["id"], "awardable_type": "Note", "_note": note["id"]}
        self.awards.append(award)
        return _json(_public(award), 201)

    # -- commit statuses ----------------------------------------------------------------------

    def _status_problem(self, body: dict[str, Any]) -> str | None:
        state = body.get("state")
        if state is None:
            return "state is missing"
        if state not in COMMIT_STATES:
            return "state does not have a valid value"
        if len(str(body.get("description") or "")) > DESCRIPTION_MAX:
            return f"description is too long (maximum is {DESCRIPTION_MAX} characters)"
        return None

    def _active_status(self, project_id: int, sha: str, name: str) -> dict[str, Any] | None:
        for status in reversed(self.statuses):
            if (status["_project"], status["sha"], status["name"]) == (project_id, sha, name):
                return status if status["status"] in ACTIVE_STATES else None
        return None

    async def _create_status(self, request: Request) -> web.Response:
        problem = self._status_problem(request.body)
        if problem:
            return _invalid(problem)
        sha, body = request.var("sha"), request.body
        name, state = body.get("name") or body.get("context") or "default", body["state"]
        status = self._active_status(request.project_id, sha, name)
        if status is not None and not self._may_move(status["status"], state):
            event, current = STATUS_EVENTS[state], status["status"]
            return _message(f"Cannot transition status via :{event} from :{current} "
                            f'(Reason(s): Status cannot transition via "{event}")', 400)
        if status is None:
            status = {"id": next(self._ids), "sha": sha, "name": name, "created_at": _now(),
                      "_project": request.project_id}
            self.statuses.append(status)
        status.update(status=state, description=body.get("description"),
                      target_url=body.get("target_url"), ref=body.get("ref"))
        return _json(_public(status), 201)

    @staticmethod
    def _may_move(current: str, wanted: str) -> bool:
        if current == wanted:
            return False
        return not (current == "running" and wanted == "pending")

    async def _list_statuses(self, request: Request) -> web.Response:
        name = request.raw.query.get("name")
        found = [_public(s) for s in self.statuses
                 if (s["_project"], s["sha"]) == (request.project_id, request.var("sha"))
                 and name in (None, s["name"])]
        return self._page(request.raw, found)

    # -- merge requests -----------------------------------------------------------------------

    def _merge_request(self, request: Request) -> dict[str, Any] | None:
        return self.merge_requests.get((request.project_id, request.number("iid")))

    def _project_merge_requests(self, project_id: int) -> list[dict[str, Any]]:
        return [mr for (pid, _), mr in self.merge_requests.items() if pid == project_id]

    async def _create_merge_request(self, request: Request) -> web.Response:
        body = request.body
        for required in ("source_branch", "target_branch", "title"):
            if not body.get(required):
                return _invalid(f"{required} is missing")
        for mr in self._project_merge_requests(request.project_id):
            if mr["source_branch"] == body["source_branch"] and mr["state"] == "opened":
                message = f"Another open merge request already exists for this source branch: !{mr['iid']}"
                return _message([message], 409)
        return _json(_public(self._new_merge_request(request.project_id, body)), 201)

    def _new_merge_request(self, project_id: int, body: dict[str, Any]) -> dict[str, Any]:
        iid = len(self._project_merge_requests(project_id)) + 1
        path = next(name for name, pid in self.projects.items() if pid == project_id)
        mr = {"id": next(self._ids), "iid": iid, "project_id": project_id,
              "title": body["title"], "description": body.get("description") or "",
              "state": "opened", "source_branch": body["source_branch"],
              "target_branch": body["target_branch"], "sha": "0" * 40,
              "web_url": f"https://gitlab.example/{path}/-/merge_requests/{iid}",
              "author": self._user(self.bot_username)}
        self._set_draft(mr)
        self.merge_requests[(project_id, iid)] = mr
        return mr

    @staticmethod
    def _set_draft(mr: dict[str, Any]) -> None:
        draft = bool(DRAFT_TITLE.match(mr["title"]))
        mr.update(draft=draft, work_in_progress=draft)

    async def _list_merge_requests(self, request: Request) -> web.Response:
        query = request.raw.query
        state, source = query.get("state", "all"), query.get("source_branch")
        found = [_public(mr) for mr in self._project_merge_requests(request.project_id)
                 if state in ("all", mr["state"]) and source in (None, mr["source_branch"])]
        return self._page(request.raw, found)

    async def _get_merge_request(self, request: Request) -> web.Response:
        mr = self._merge_request(request)
        return _json(_public(mr)) if mr else _message("404 Not found", 404)

    async def _update_merge_request(self, request: Request) -> web.Response:
        mr = self._merge_request(request)
        if mr is None:
            return _message("404 Not found", 404)
        changes = {k: v for k, v in request.body.items() if k in ("title", "description")}
        if not changes:
            return _invalid("title, description are missing, at least one parameter must be provided")
        mr.update(changes)
        self._set_draft(mr)
        return _json(_public(mr))
