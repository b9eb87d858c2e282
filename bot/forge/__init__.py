"""What jobs need from a forge (GitHub or GitLab), and a stand-in that records instead of sending.

Jobs talk to a :class:`Forge`; they never know which forge, or whether anything is sent at all.
:class:`RecordingForge` is used when no app credentials are configured: every call is handed to
a ``record(name, data)`` sink (never a token) and answered with made-up but consistent ids.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Awaitable, Any, Protocol, runtime_checkable

from cachetools import LRUCache, TTLCache

PERMISSIONS = ("admin", "write", "read", "none")
"""Permission levels, strongest first."""

Record = Callable[[str, dict[str, Any]], Awaitable[None] | None]
"""Sink for :class:`RecordingForge`: ``record(call_name, call_data)``."""


@dataclass(frozen=True)
class RepoRef:
    """A repository on a forge.

    ``forge`` is ``"github"`` or ``"gitlab"``; ``full_name`` is ``"owner/name"`` (on GitLab the
    namespace may have several parts). ``installation_id`` (GitHub) and ``project_id`` (GitLab)
    are filled in when known.
    """

    forge: str
    full_name: str
    installation_id: int | None = None
    project_id: int | None = None

    @property
    def owner(self) -> str:
        return self.full_name.rsplit("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class NewPullRequest:
    """A pull request (a merge request) to open: from `head` into `base`, a draft until the work is done."""

    head: str
    base: str
    title: str
    body: str
    draft: bool


class PermissionCache:
    """A forge's answers to what a user may do in a repository, remembered for `ttl` seconds: every
    command asks, and a burst of commands asks once."""

    def __init__(self, ttl: float) -> None:
        self._answers: TTLCache[tuple[str, str], str] = TTLCache(maxsize=4096, ttl=ttl)

    async def get(self, repo: RepoRef, user: str, fetch: Callable[[RepoRef, str], Awaitable[str]]) -> str:
        key = (repo.full_name.lower(), user.lower())
        answer = self._answers.get(key)
        if answer is None:
            answer = await fetch(repo, user)
            self._answers[key] = answer
        return answer


@runtime_checkable
class Forge(Protocol):
    """The forge operations jobs use, independent of GitHub vs GitLab.

    GitLab reaches a note only through its issue or merge request, so the note methods also take
    ``issue_number`` / ``is_merge_request``; GitHub ignores them."""

    async def permission(self, repo: RepoRef, user: str) -> str:
        """``"admin"``, ``"write"``, ``"read"`` or ``"none"`` for ``user`` on ``repo``."""

    async def react(self, repo: RepoRef, comment_id: int, content: str = "eyes", *,
                    issue_number: int | None = None, is_merge_request: bool = False) -> None:
        """Add a reaction to an issue or pull-request comment."""

    async def create_comment(self, repo: RepoRef, issue_number: int, body: str, *,
                             is_merge_request: bool = False) -> int:
        """Comment on an issue or pull request; return the comment id."""

    async def update_comment(self, repo: RepoRef, comment_id: int, body: str, *,
                             issue_number: int | None = None, is_merge_request: bool = False) -> bool:
        """Replace a comment's body; False when the comment no longer exists."""

    async def find_comment(self, repo: RepoRef, issue_number: int, marker: str, *,
                           is_merge_request: bool = False) -> int | None:
        """Id of the first comment written by this app that contains ``marker``."""

    async def create_check_run(self, repo: RepoRef, payload: dict[str, Any]) -> int:
        """Create a check run from a GitHub-shaped payload; return its id."""

    async def update_check_run(
        self, repo: RepoRef, check_run_id: int, payload: dict[str, Any]
    ) -> None:
        """Update a check run with a GitHub-shaped payload."""

    async def get_pull_request(self, repo: RepoRef, number: int) -> dict[str, Any] | None:
        """``{"number", "url", "draft", "state", "head_branch", "head_sha", "head_repo", "head_ref",
        "base_branch"}`` of pull request ``number``, or None; ``head_repo`` differs from ``repo`` for
        a fork, and ``head_ref`` is the ref that fetches its head from ``repo``."""

    async def find_pull_request(self, repo: RepoRef, head_branch: str) -> dict[str, Any] | None:
        """The open pull request from ``head_branch``: ``{"number", "url", "draft", "state"}``."""

    async def open_pull_request(self, repo: RepoRef, pull: NewPullRequest) -> dict[str, Any]:
        """Open a pull request (or return the one already open from ``head``)."""

    async def update_pull_request(self, repo: RepoRef, number: int, *, title: str | None = None,
                                  body: str | None = None) -> None:
        """Change a pull request's title and/or body."""

    async def mark_ready_for_review(self, repo: RepoRef, number: int) -> None:
        """Turn a draft pull request into one ready for review."""

    async def git_token(self, repo: RepoRef, *, write: bool = False) -> str:
        """A short-lived token for git on ``repo``: fetch only, or also push when ``write``
        (where the forge can scope tokens)."""


RECORDED_ITEMS_KEPT = 1000


class RecordingForge:
    """A :class:`Forge` without network: records every call and invents consistent ids.

    ``default_permission`` is what :meth:`permission` answers for everyone: without credentials
    nothing can be checked, so whoever builds this decides. :meth:`git_token` returns ``""``
    (no credentials to give).
    """

    def __init__(self, record: Record, *, default_permission: str) -> None:
        if default_permission not in PERMISSIONS:
            raise ValueError(f"default_permission must be one of {PERMISSIONS}")
        self._record = record
        self._default_permission = default_permission
        self._comment_ids = itertools.count(1)
        self._check_run_ids = itertools.count(1)
        self._pull_numbers = itertools.count(1)
        # Only recent ones are remembered: a long-running service must not grow with every call.
        self._comments: LRUCache = LRUCache(maxsize=RECORDED_ITEMS_KEPT)
        self._pulls: LRUCache = LRUCache(maxsize=RECORDED_ITEMS_KEPT)

    async def _emit(self, name: str, repo: RepoRef, **data: Any) -> None:
        recorded = self._record(name, {"forge": repo.forge, "repo": repo.full_name, **data})
        if inspect.isawaitable(recorded):
            await recorded

    async def permission(self, repo: RepoRef, user: str) -> str:
        await self._emit("permission", repo, user=user, permission=self._default_permission)
        return self._default_permission

    async def react(self, repo: RepoRef, comment_id: int, content: str = "eyes", *,
                    issue_number: int | None = None, is_merge_request: bool = False) -> None:
        await self._emit("react", repo, comment_id=comment_id, content=content)

    async def create_comment(self, repo: RepoRef, issue_number: int, body: str, *,
                             is_merge_request: bool = False) -> int:
        comment_id = next(self._comment_ids)
        self._comments[comment_id] = (repo.full_name, issue_number, body)
        await self._emit(
            "create_comment", repo, issue_number=issue_number, body=body, comment_id=comment_id
        )
        return comment_id

    async def update_comment(self, repo: RepoRef, comment_id: int, body: str, *,
                             issue_number: int | None = None, is_merge_request: bool = False) -> bool:
        exists = comment_id in self._comments
        if exists:
            full_name, issue_number, _ = self._comments[comment_id]
            self._comments[comment_id] = (full_name, issue_number, body)
        await self._emit("update_comment", repo, comment_id=comment_id, body=body)
        return exists

    async def find_comment(self, repo: RepoRef, issue_number: int, marker: str, *,
                           is_merge_request: bool = False) -> int | None:
        found = self._find_comment(repo, issue_number, marker)
        await self._emit(
            "find_comment", repo, issue_number=issue_number, marker=marker, comment_id=found
        )
        return found

    def _find_comment(self, repo: RepoRef, issue_number: int, marker: str) -> int | None:
        for comment_id, (full_name, number, body) in self._comments.items():
            if (full_name, number) == (repo.full_name, issue_number) and marker in body:
                return comment_id
        return None

    async def create_check_run(self, repo: RepoRef, payload: dict[str, Any]) -> int:
        check_run_id = next(self._check_run_ids)
        await self._emit("create_check_run", repo, payload=payload, check_run_id=check_run_id)
        return check_run_id

    async def update_check_run(
        self, repo: RepoRef, check_run_id: int, payload: dict[str, Any]
    ) -> None:
        await self._emit("update_check_run", repo, check_run_id=check_run_id, payload=payload)

    async def get_pull_request(self, repo: RepoRef, number: int) -> dict[str, Any] | None:
        pull = next((dict(pull) for (full_name, _), pull in self._pulls.items()
                     if full_name == repo.full_name and pull["number"] == number), None)
        await self._emit("get_pull_request", repo, number=number, pull_request=pull)
        return pull

    async def find_pull_request(self, repo: RepoRef, head_branch: str) -> dict[str, Any] | None:
        pull = self._pulls.get((repo.full_name, head_branch))
        await self._emit("find_pull_request", repo, head_branch=head_branch, pull_request=pull)
        return dict(pull) if pull else None

    async def open_pull_request(self, repo: RepoRef, pull: NewPullRequest) -> dict[str, Any]:
        existing = self._pulls.get((repo.full_name, pull.head))
        opened = existing or self._new_pull(repo, pull.head, pull.draft)
        await self._emit("open_pull_request", repo, **asdict(pull), pull_request=opened)
        return dict(opened)

    def _new_pull(self, repo: RepoRef, head: str, draft: bool) -> dict[str, Any]:
        number = next(self._pull_numbers)
        pull = {"number": number, "url": f"recorded://{repo.full_name}/pull/{number}",
                "draft": draft, "state": "open"}
        self._pulls[(repo.full_name, head)] = pull
        return pull

    async def update_pull_request(self, repo: RepoRef, number: int, *, title: str | None = None,
                                  body: str | None = None) -> None:
        await self._emit("update_pull_request", repo, number=number, title=title, body=body)

    async def mark_ready_for_review(self, repo: RepoRef, number: int) -> None:
        for (full_name, _), pull in self._pulls.items():
            if full_name == repo.full_name and pull["number"] == number:
                pull["draft"] = False
        await self._emit("mark_ready_for_review", repo, number=number)

    async def git_token(self, repo: RepoRef, *, write: bool = False) -> str:
        await self._emit("git_token", repo)
        return ""


async def upsert_status_comment(forge: Forge, repo: RepoRef, issue_number: int, marker: str, body: str,
                                comment_id: int | None, *, is_merge_request: bool = False) -> int:
    """Updates the status comment in place: by its stored id, else the one found by its marker
    (someone deleted it, or the id was lost), else a new one. Returns its id."""
    body = with_marker(body, marker)
    where = {"issue_number": issue_number, "is_merge_request": is_merge_request}
    if comment_id is not None and await forge.update_comment(repo, comment_id, body, **where):
        return comment_id
    found = await forge.find_comment(repo, issue_number, marker, is_merge_request=is_merge_request)
    if found is None:
        return await forge.create_comment(repo, issue_number, body, is_merge_request=is_merge_request)
    await forge.update_comment(repo, found, body, **where)
    return found


def with_marker(body: str, marker: str) -> str:
    """``body`` guaranteed to contain ``marker`` (prepended on its own line when missing)."""
    return body if marker in body else f"{marker}\n{body}"
