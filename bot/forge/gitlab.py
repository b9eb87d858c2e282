"""GitLab implementation of :class:`bot.forge.Forge`, on gidgetlab's aiohttp client.

One token (personal, project or group access token, ``api`` scope) for everything; gidgetlab sends
it only in the ``Authorization`` header, never in a URL, a log line or an exception message.
Projects are addressed by ``RepoRef.project_id`` when known, else by the URL-encoded full path.

What differs from GitHub, and how the Forge calls map:

- **Notes** live under their issue or merge request, so ``react``, ``update_comment`` and friends
  take keyword-only ``issue_number`` (the iid) and ``is_merge_request``. ``update_comment`` and
  ``react`` can do without them only for notes this instance created or found itself.
- **Reactions** are award emoji on the note (``eyes`` → 👀); awarding one twice is not an error.
- **Permission** is the member's access level on the project, inherited ones included:
  Owner (50) and Maintainer (40) → ``admin``, Developer (30) → ``write``, Reporter (20), Planner
  (15) and Guest (10) → ``read``, Minimal access (5), blocked users and non-members → ``none``.
- **Check runs** become commit statuses named ``agentry/<protocol id>`` on the head commit. The
  check-run id handed back is the GitLab status id; ``update_check_run`` needs to know the commit,
  which this instance remembers, or which the payload gives as ``head_sha`` (pass it when another
  process may update the status). GitLab refuses to move a status to the state it is already in,
  so such an update is skipped.
- **Pull requests** are merge requests; a draft is a title starting with ``Draft:``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import cachetools
import gidgetlab
import gidgetlab.aiohttp

from bot.forge import NewPullRequest, PermissionCache, RepoRef

log = logging.getLogger(__name__)

USER_AGENT = "agentry"
PER_PAGE = "100"
STATUS_PREFIX = "agentry/"
STATUS_DESCRIPTION_MAX = 255
DRAFT_PREFIX = "Draft: "
DRAFT_TITLE = re.compile(r"^\s*(\[draft\]|\(draft\)|draft:|draft\s+-\s+)\s*", re.IGNORECASE)

ADMIN_LEVEL, WRITE_LEVEL, READ_LEVEL = 40, 30, 10
AWARD_NAMES = {"+1": "thumbsup", "-1": "thumbsdown", "laugh": "laughing", "hooray": "tada"}
CONCLUSION_STATES = {
    "success": "success",
    "neutral": "success",
    "skipped": "success",
    "cancelled": "canceled",
}
FAILED_STATE = "failed"


def project_path(repo: RepoRef) -> str:
    project = str(repo.project_id) if repo.project_id is not None else quote(repo.full_name, safe="")
    return f"/projects/{project}"


def noteable_path(repo: RepoRef, iid: int, is_merge_request: bool) -> str:
    kind = "merge_requests" if is_merge_request else "issues"
    return f"{project_path(repo)}/{kind}/{int(iid)}"


def access_permission(member: dict[str, Any]) -> str:
    """``admin`` / ``write`` / ``read`` / ``none`` for a project member (see the module docstring)."""
    if member.get("state", "active") != "active":
        return "none"
    level = int(member.get("access_level") or 0)
    if level >= ADMIN_LEVEL:
        return "admin"
    if level >= WRITE_LEVEL:
        return "write"
    return "read" if level >= READ_LEVEL else "none"


def commit_status_state(payload: dict[str, Any]) -> str:
    """A GitHub check-run status/conclusion as a GitLab commit status state."""
    conclusion = payload.get("conclusion")
    if conclusion or payload.get("status") == "completed":
        return CONCLUSION_STATES.get(conclusion or "", FAILED_STATE)
    return "pending" if payload.get("status") == "queued" else "running"


def status_name(payload: dict[str, Any]) -> str:
    """``agentry/<protocol id>`` from ``external_id``, else from the check run's name."""
    external_id = payload.get("external_id")
    if external_id:
        return f"{STATUS_PREFIX}{external_id}"
    name = str(payload.get("name") or "").removeprefix("agentry:").strip()
    return STATUS_PREFIX + ("-".join(name.split()) or "protocol")


def status_body(payload: dict[str, Any], name: str) -> dict[str, Any]:
    description = (payload.get("output") or {}).get("title") or ""
    body = {"state": commit_status_state(payload), "name": name,
            "description": _truncate(description, STATUS_DESCRIPTION_MAX)}
    if payload.get("details_url"):
        body["target_url"] = payload["details_url"]
    return body


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_draft(merge_request: dict[str, Any]) -> bool:
    flagged = merge_request.get("draft") or merge_request.get("work_in_progress")
    return bool(flagged or DRAFT_TITLE.match(merge_request.get("title") or ""))


def draft_title(title: str) -> str:
    return title if DRAFT_TITLE.match(title) else DRAFT_PREFIX + title


def ready_title(title: str) -> str:
    while DRAFT_TITLE.match(title):
        title = DRAFT_TITLE.sub("", title, count=1)
    return title


def merge_request_summary(merge_request: dict[str, Any], repo: RepoRef | None = None) -> dict[str, Any]:
    state = merge_request.get("state")
    same_project = merge_request.get("source_project_id") == merge_request.get("target_project_id")
    return {
        "number": merge_request["iid"],
        "url": merge_request.get("web_url"),
        "draft": is_draft(merge_request),
        "state": "open" if state == "opened" else state,
        "head_branch": merge_request.get("source_branch"),
        "head_sha": merge_request.get("sha"),
        "head_repo": (repo.full_name if repo and same_project else f"project:{merge_request.get('source_project_id')}"),
        "head_ref": f"refs/merge-requests/{merge_request['iid']}/head",
        "base_branch": merge_request.get("target_branch"),
    }


def _status(exc: gidgetlab.HTTPException) -> int:
    return int(exc.status_code)


def _already_awarded(exc: gidgetlab.BadRequest) -> bool:
    return _status(exc) in (400, 404, 409) and "already been taken" in str(exc)


def _cannot_transition(exc: gidgetlab.BadRequest) -> bool:
    return _status(exc) == 400 and "cannot transition" in str(exc).lower()


@dataclass
class StatusTarget:
    """Where a commit status lives, and the state last sent to it."""

    project: str
    sha: str
    name: str
    state: str | None = None


class GitLabForge:
    """:class:`bot.forge.Forge` for GitLab (gitlab.com, self-managed, or a test server)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        url: str,
        token: str,
        bot_username: str | None = None,
        user_agent: str = USER_AGENT,
        permission_ttl: float = 60.0,
    ) -> None:
        self._gl = gidgetlab.aiohttp.GitLabAPI(session, user_agent, access_token=token, url=url)
        self._token = token
        self._url = url
        self._bot_username = bot_username
        self._permissions = PermissionCache(permission_ttl)
        # Recent notes and statuses only: a long-running worker must not grow with every call.
        self._notes: cachetools.LRUCache[int, str] = cachetools.LRUCache(maxsize=10_000)
        self._statuses: cachetools.LRUCache[int, StatusTarget] = cachetools.LRUCache(maxsize=10_000)

    def __repr__(self) -> str:
        return f"GitLabForge(url={self._url!r}, bot={self._bot_username!r})"

    # -- permissions and reactions ---------------------------------------------------------

    async def permission(self, repo: RepoRef, user: str) -> str:
        return await self._permissions.get(repo, user, self._fetch_permission)

    async def _fetch_permission(self, repo: RepoRef, user: str) -> str:
        user_id = await self._user_id(user)
        if user_id is None:
            return "none"
        try:
            member = await self._gl.getitem(f"{project_path(repo)}/members/all/{user_id}")
        except gidgetlab.BadRequest as exc:
            if _status(exc) == 404:
                return "none"
            raise
        return access_permission(member)

    async def _user_id(self, username: str) -> int | None:
        users = await self._gl.getitem("/users", {"username": username})
        matching = (u for u in users or [] if str(u.get("username", "")).lower() == username.lower())
        found = next(matching, None)
        return int(found["id"]) if found else None

    async def react(
        self,
        repo: RepoRef,
        comment_id: int,
        content: str = "eyes",
        *,
        issue_number: int | None = None,
        is_merge_request: bool = False,
    ) -> None:
        note = self._note_path(repo, comment_id, issue_number, is_merge_request)
        name = AWARD_NAMES.get(content, content)
        try:
            await self._gl.post(f"{note}/award_emoji", data={"name": name})
        except gidgetlab.BadRequest as exc:
            if not _already_awarded(exc):
                raise

    # -- notes -----------------------------------------------------------------------------------

    def _note_path(
        self, repo: RepoRef, note_id: int, issue_number: int | None, is_merge_request: bool
    ) -> str:
        if issue_number is not None:
            return f"{noteable_path(repo, issue_number, is_merge_request)}/notes/{int(note_id)}"
        if note_id in self._notes:
            return self._notes[note_id]
        raise ValueError(
            "a GitLab note is reached through its issue or merge request: pass issue_number= "
            "(and is_merge_request=True for a merge request)"
        )

    def _remember_note(self, repo: RepoRef, note_id: int, iid: int, is_merge_request: bool) -> None:
        self._notes[note_id] = f"{noteable_path(repo, iid, is_merge_request)}/notes/{note_id}"

    async def create_comment(
        self, repo: RepoRef, issue_number: int, body: str, *, is_merge_request: bool = False
    ) -> int:
        notes = f"{noteable_path(repo, issue_number, is_merge_request)}/notes"
        note = await self._gl.post(notes, data={"body": body})
        note_id = int(note["id"])
        self._remember_note(repo, note_id, issue_number, is_merge_request)
        return note_id

    async def update_comment(
        self,
        repo: RepoRef,
        comment_id: int,
        body: str,
        *,
        issue_number: int | None = None,
        is_merge_request: bool = False,
    ) -> bool:
        note = self._note_path(repo, comment_id, issue_number, is_merge_request)
        try:
            await self._gl.put(note, data={"body": body})
        except gidgetlab.BadRequest as exc:
            if _status(exc) == 404:
                return False
            raise
        return True

    async def find_comment(
        self, repo: RepoRef, issue_number: int, marker: str, *, is_merge_request: bool = False
    ) -> int | None:
        """The first note by the bot containing ``marker`` (every page is searched)."""
        notes = f"{noteable_path(repo, issue_number, is_merge_request)}/notes"
        params = {"sort": "asc", "order_by": "created_at", "per_page": PER_PAGE}
        bot = await self._bot_name()
        async for note in self._gl.getiter(notes, params):
            if self._is_ours(note, bot) and marker in (note.get("body") or ""):
                note_id = int(note["id"])
                self._remember_note(repo, note_id, issue_number, is_merge_request)
                return note_id
        return None

    async def _bot_name(self) -> str:
        if self._bot_username is None:
            me = await self._gl.getitem("/user")
            self._bot_username = str(me["username"])
        return self._bot_username

    @staticmethod
    def _is_ours(note: dict[str, Any], bot: str) -> bool:
        author = (note.get("author") or {}).get("username") or ""
        return not note.get("system") and author.lower() == bot.lower()

    # -- check runs as commit statuses -----------------------------------------------------------

    async def create_check_run(self, repo: RepoRef, payload: dict[str, Any]) -> int:
        target = StatusTarget(project_path(repo), payload["head_sha"], status_name(payload))
        status_id = await self._send_status(target, payload)
        if status_id is None:
            status_id = await self._current_status_id(target)
        self._statuses[status_id] = target
        return status_id

    async def update_check_run(
        self, repo: RepoRef, check_run_id: int, payload: dict[str, Any]
    ) -> None:
        target = self._statuses.get(check_run_id) or self._target_from(repo, check_run_id, payload)
        self._statuses[check_run_id] = target
        if target.state == commit_status_state(payload):
            return
        await self._send_status(target, payload)

    def _target_from(self, repo: RepoRef, check_run_id: int, payload: dict[str, Any]) -> StatusTarget:
        if not payload.get("head_sha"):
            raise LookupError(
                f"commit status {check_run_id} was not created here; on GitLab the update "
                "payload needs head_sha"
            )
        return StatusTarget(project_path(repo), payload["head_sha"], status_name(payload))

    async def _send_status(self, target: StatusTarget, payload: dict[str, Any]) -> int | None:
        """Post the status; its id, or None when GitLab already has it in that state."""
        body = status_body(payload, target.name)
        try:
            status = await self._gl.post(f"{target.project}/statuses/{target.sha}", data=body)
        except gidgetlab.BadRequest as exc:
            if not _cannot_transition(exc):
                raise
            log.info("commit status %s already %s", target.name, body["state"])
            status = None
        target.state = body["state"]
        return int(status["id"]) if status else None

    async def _current_status_id(self, target: StatusTarget) -> int:
        url = f"{target.project}/repository/commits/{target.sha}/statuses"
        statuses = await self._gl.getitem(url, {"name": target.name})
        return max(int(status["id"]) for status in statuses)

    # -- merge requests ----------------------------------------------------------------------

    async def get_pull_request(self, repo: RepoRef, number: int) -> dict[str, Any] | None:
        try:
            return merge_request_summary(await self._merge_request(repo, number), repo)
        except gidgetlab.BadRequest as exc:
            if _status(exc) == 404:
                return None
            raise

    async def find_pull_request(self, repo: RepoRef, head_branch: str) -> dict[str, Any] | None:
        params = {"source_branch": head_branch, "state": "opened", "per_page": "1"}
        found = await self._gl.getitem(f"{project_path(repo)}/merge_requests", params)
        return merge_request_summary(found[0]) if found else None

    async def open_pull_request(self, repo: RepoRef, pull: NewPullRequest) -> dict[str, Any]:
        data = {"source_branch": pull.head, "target_branch": pull.base,
                "title": draft_title(pull.title) if pull.draft else pull.title, "description": pull.body}
        try:
            created = await self._gl.post(f"{project_path(repo)}/merge_requests", data=data)
        except gidgetlab.BadRequest as exc:
            existing = await self.find_pull_request(repo, pull.head) if _status(exc) == 409 else None
            if existing is None:
                raise
            return existing
        return merge_request_summary(created)

    async def _merge_request(self, repo: RepoRef, number: int) -> dict[str, Any]:
        return await self._gl.getitem(f"{project_path(repo)}/merge_requests/{int(number)}")

    async def update_pull_request(self, repo: RepoRef, number: int, *, title: str | None = None,
                                  body: str | None = None) -> None:
        changes: dict[str, str] = {}
        if body is not None:
            changes["description"] = body
        if title is not None:
            still_draft = is_draft(await self._merge_request(repo, number))
            changes["title"] = draft_title(title) if still_draft else title
        if changes:
            await self._gl.put(f"{project_path(repo)}/merge_requests/{int(number)}", data=changes)

    async def mark_ready_for_review(self, repo: RepoRef, number: int) -> None:
        merge_request = await self._merge_request(repo, number)
        if is_draft(merge_request):
            ready = {"title": ready_title(merge_request.get("title") or "")}
            await self._gl.put(f"{project_path(repo)}/merge_requests/{int(number)}", data=ready)

    # -- git -----------------------------------------------------------------------------------

    async def git_token(self, repo: RepoRef, *, write: bool = False) -> str:
        return self._token  # static, so ``write`` cannot narrow it
