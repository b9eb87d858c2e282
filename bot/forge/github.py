"""GitHub App implementation of :class:`bot.forge.Forge`, on gidgethub's aiohttp client.

Authentication: an app JWT (``gidgethub.apps.get_jwt``) buys installation access tokens, which are
cached per installation and :class:`TokenScope` until five minutes before they expire; one refresh
at a time per installation and scope. API calls use the installation-wide token; git gets a token
scoped to one repository and ``contents: read`` or ``write``. Every request asks for the (cached)
token again, so long jobs keep working after the first token has expired. A 401 invalidates the
token and retries once.

Rate limits: a 403 with ``retry-after`` or ``x-ratelimit-remaining: 0``, or a 429, sleeps the time
GitHub asks (capped) and retries, up to ``max_retries`` times. GETs use gidgethub's conditional
request cache (ETag / Last-Modified), so unchanged answers cost no rate limit.

Tokens are only ever sent in the ``Authorization`` header: never in URLs, logs or exception
messages.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import cachetools
import gidgethub
import gidgethub.abc
import gidgethub.aiohttp
import gidgethub.apps

from bot.forge import NewPullRequest, PermissionCache, RepoRef
from bot.forge.events import app_login

log = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], datetime]

DEFAULT_API_URL = "https://api.github.com"
TOKEN_REFRESH_MARGIN = timedelta(minutes=5)
LEGACY_PERMISSIONS = {"admin": "admin", "maintain": "write", "write": "write",
                      "triage": "read", "read": "read", "none": "none"}

COMMENTS_URL = "/repos/{owner}/{repo}/issues/{issue_number}/comments{?per_page}"
COMMENT_URL = "/repos/{owner}/{repo}/issues/comments/{comment_id}"
REACTIONS_URL = "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions"
PERMISSION_URL = "/repos/{owner}/{repo}/collaborators/{username}/permission"
CHECK_RUNS_URL = "/repos/{owner}/{repo}/check-runs"
CHECK_RUN_URL = "/repos/{owner}/{repo}/check-runs/{check_run_id}"
COMMIT_CHECK_RUNS_URL = "/repos/{owner}/{repo}/commits/{ref}/check-runs{?check_name,filter,per_page}"
PULLS_URL = "/repos/{owner}/{repo}/pulls"
PULLS_SEARCH_URL = "/repos/{owner}/{repo}/pulls{?head,state,per_page}"
PULL_URL = "/repos/{owner}/{repo}/pulls/{pull_number}"
INSTALLATION_URL = "/repos/{owner}/{repo}/installation"
ACCESS_TOKENS_URL = "/app/installations/{installation_id}/access_tokens"
HOOK_DELIVERIES_URL = "/app/hook/deliveries?per_page=100"
REDELIVER_URL = "/app/hook/deliveries/{delivery_id}/attempts"
READY_FOR_REVIEW_MUTATION = (
    "mutation($pullRequestId: ID!) {"
    " markPullRequestReadyForReview(input: {pullRequestId: $pullRequestId})"
    " { pullRequest { number isDraft } } }"
)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def graphql_url(api_url: str) -> str:
    """GraphQL endpoint for a REST base: ``…/graphql``, or ``…/api/graphql`` on GHES."""
    base = api_url.rstrip("/")
    if base.endswith("/api/v3"):
        return base.removesuffix("/v3") + "/graphql"
    return base + "/graphql"


def _retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a ``retry-after`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - _utcnow()).total_seconds())


def _seconds_until_reset(value: str | None) -> float | None:
    try:
        return max(0.0, float(value) - time.time()) if value else None
    except ValueError:
        return None


def rate_limit_delay(exc: gidgethub.HTTPException) -> float | None:
    """How long to wait before retrying ``exc``, or None when it is not a rate limit."""
    status = int(exc.status_code)
    if status not in (403, 429):
        return None
    headers = exc.headers
    delay = _retry_after_seconds(headers.get("retry-after"))
    if delay is None and headers.get("x-ratelimit-remaining") == "0":
        delay = _seconds_until_reset(headers.get("x-ratelimit-reset"))
    if delay is None and status == 429:
        delay = 60.0
    return delay


class RetryingGitHubAPI(gidgethub.aiohttp.GitHubAPI):
    """gidgethub's aiohttp client, sleeping and retrying when GitHub says to slow down."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        requester: str,
        *,
        base_url: str,
        cache: gidgethub.abc.CACHE_TYPE | None = None,
        max_retries: int = 3,
        max_retry_sleep: float = 60.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(session, requester, base_url=base_url, cache=cache)
        self._max_retries = max_retries
        self._max_retry_sleep = max_retry_sleep
        self._sleep = sleep

    async def sleep(self, seconds: float) -> None:
        await self._sleep(seconds)

    async def handle_rate_limit_error(
        self, *, method: str, url: str, exception: gidgethub.HTTPException, attempt: int
    ) -> bool:
        delay = rate_limit_delay(exception)
        if delay is None or attempt > self._max_retries:
            return False
        delay = min(delay, self._max_retry_sleep)
        log.warning(
            "GitHub rate limit (%d) on %s %s; retry %d/%d in %.1fs",
            int(exception.status_code), method, urlsplit(url).path,
            attempt, self._max_retries, delay,
        )
        await self.sleep(delay)
        return True


@dataclass(frozen=True)
class InstallationToken:
    value: str = field(repr=False)
    expires_at: datetime


@dataclass(frozen=True)
class TokenScope:
    """What a scoped installation token may reach: one repository (name without owner), with
    ``permissions`` as ``(name, level)`` pairs, kept sorted so equal scopes are one cache key."""

    repository: str
    permissions: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "permissions", tuple(sorted(self.permissions)))

    @classmethod
    def contents(cls, repository: str, *, write: bool) -> TokenScope:
        return cls(repository, (("contents", "write" if write else "read"),))

    def request_body(self) -> dict[str, Any]:
        return {"repositories": [self.repository], "permissions": dict(self.permissions)}


TokenKey = tuple[int, TokenScope | None]


class GitHubAppAuth:
    """App JWTs and cached installation access tokens for one GitHub App."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        app_id: str,
        private_key: str,
        api_url: str,
        user_agent: str = "agentry",
        refresh_margin: timedelta = TOKEN_REFRESH_MARGIN,
        clock: Clock = _utcnow,
    ) -> None:
        self.user_agent = user_agent
        self._gh = RetryingGitHubAPI(session, user_agent, base_url=api_url)
        self._app_id = str(app_id)
        self._private_key = private_key
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._tokens: dict[TokenKey, InstallationToken] = {}
        self._locks: defaultdict[TokenKey, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._installations: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"GitHubAppAuth(app_id={self._app_id!r})"

    def app_jwt(self) -> str:
        """A fresh app JWT (RS256, ``iat`` backdated 60 s, valid 10 minutes)."""
        return gidgethub.apps.get_jwt(app_id=self._app_id, private_key=self._private_key)

    async def token(self, installation_id: int, scope: TokenScope | None = None) -> str:
        """A valid installation access token, installation-wide or limited to ``scope``;
        concurrent callers of one installation and scope share one refresh."""
        key = (installation_id, scope)
        seen = self._tokens.get(key)
        if seen is not None and self._fresh(seen):
            return seen.value
        async with self._locks[key]:
            current = self._tokens.get(key)
            if current is not None and self._reusable(current, seen):
                return current.value
            current = await self._issue(installation_id, scope)
            self._tokens[key] = current
            return current.value

    def invalidate(
        self, installation_id: int, token: str | None = None, *, scope: TokenScope | None = None
    ) -> None:
        """Forget the cached token of ``scope`` (only if it is still ``token``, when given)."""
        key = (installation_id, scope)
        current = self._tokens.get(key)
        if current is not None and token in (None, current.value):
            del self._tokens[key]

    async def hook_deliveries(self, since: datetime) -> list[dict]:
        """The app's webhook delivery attempts since ``since``, newest first (GitHub keeps three days)."""
        found = []
        async for attempt in self._gh.getiter(HOOK_DELIVERIES_URL, jwt=self.app_jwt()):
            when = datetime.fromisoformat(str(attempt.get("delivered_at", "")).replace("Z", "+00:00"))
            if when < since:
                break
            found.append(attempt)
        return found

    async def redeliver(self, attempt_id: int) -> None:
        """Asks GitHub to send a delivery attempt again."""
        await self._gh.post(REDELIVER_URL, {"delivery_id": str(attempt_id)}, data=b"", jwt=self.app_jwt())

    async def installation_id(self, full_name: str) -> int:
        """The installation id of the app on ``owner/name`` (looked up once, with the JWT)."""
        key = full_name.lower()
        if key not in self._installations:
            owner, repo = full_name.split("/", 1)
            url_vars = {"owner": owner, "repo": repo}
            data = await self._gh.getitem(INSTALLATION_URL, url_vars, jwt=self.app_jwt())
            self._installations[key] = int(data["id"])
        return self._installations[key]

    def _fresh(self, token: InstallationToken) -> bool:
        return self._clock() < token.expires_at - self._refresh_margin

    def _reusable(self, current: InstallationToken, seen: InstallationToken | None) -> bool:
        """Fresh, or refreshed by another caller while this one waited and not yet expired."""
        refreshed_meanwhile = current is not seen and self._clock() < current.expires_at
        return self._fresh(current) or refreshed_meanwhile

    async def _issue(self, installation_id: int, scope: TokenScope | None) -> InstallationToken:
        # gidgethub's get_installation_access_token cannot send a body, so post directly.
        body = scope.request_body() if scope else b""
        url_vars = {"installation_id": str(installation_id)}
        data = await self._gh.post(ACCESS_TOKENS_URL, url_vars, data=body, jwt=self.app_jwt())
        expires_at = datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00"))
        log.info("New access token for installation %s (%s), expires %s",
                 installation_id, scope or "installation-wide", expires_at)
        return InstallationToken(value=data["token"], expires_at=expires_at)


def _repo_vars(repo: RepoRef, **extra: Any) -> dict[str, Any]:
    return {"owner": repo.owner, "repo": repo.name, **extra}


def _pull_summary(pull: dict[str, Any]) -> dict[str, Any]:
    head, base = pull.get("head") or {}, pull.get("base") or {}
    return {
        "number": pull["number"],
        "url": pull["html_url"],
        "draft": bool(pull.get("draft")),
        "state": pull["state"],
        "head_branch": head.get("ref"),
        "head_sha": head.get("sha"),
        "head_repo": (head.get("repo") or {}).get("full_name"),
        "head_ref": f"refs/pull/{pull['number']}/head",
        "base_branch": base.get("ref"),
    }


def _status(exc: gidgethub.HTTPException) -> int:
    return int(exc.status_code)


class GitHubForge:
    """:class:`bot.forge.Forge` for GitHub, acting as a GitHub App installation."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        auth: GitHubAppAuth,
        *,
        api_url: str = DEFAULT_API_URL,
        app_slug: str | None = None,
        user_agent: str = "agentry",
        permission_ttl: float = 60.0,
        max_retries: int = 3,
        max_retry_sleep: float = 60.0,
        cache_size: int = 1024,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._auth = auth
        self._gh = RetryingGitHubAPI(
            session,
            user_agent,
            base_url=api_url,
            cache=cachetools.LRUCache(maxsize=cache_size),
            max_retries=max_retries,
            max_retry_sleep=max_retry_sleep,
            sleep=sleep,
        )
        self._graphql_url = graphql_url(api_url)
        self._bot_login = app_login(app_slug)
        self._app_slug = app_slug
        self._permissions = PermissionCache(permission_ttl)

    def __repr__(self) -> str:
        return f"GitHubForge(base_url={self._gh.base_url!r}, bot={self._bot_login!r})"

    @property
    def app(self) -> GitHubAppAuth:
        """The app itself (its JWT calls: installations, webhook deliveries)."""
        return self._auth

    # -- plumbing ---------------------------------------------------------------------------

    async def _installation_id(self, repo: RepoRef) -> int:
        if repo.installation_id is not None:
            return repo.installation_id
        return await self._auth.installation_id(repo.full_name)

    async def _call(self, repo: RepoRef, send: Callable[[str], Awaitable[T]]) -> T:
        """Run ``send(token)``; on 401 drop the token and run it once more with a new one."""
        installation_id = await self._installation_id(repo)
        token = await self._auth.token(installation_id)
        try:
            return await send(token)
        except gidgethub.BadRequest as exc:
            if _status(exc) != 401:
                raise
        log.info("GitHub answered 401 for installation %s; renewing its token", installation_id)
        self._auth.invalidate(installation_id, token)
        return await send(await self._auth.token(installation_id))

    async def _get(self, repo: RepoRef, url: str, url_vars: dict[str, Any]) -> Any:
        return await self._call(
            repo, lambda token: self._gh.getitem(url, url_vars, oauth_token=token)
        )

    async def _post(self, repo: RepoRef, url: str, url_vars: dict[str, Any], data: Any) -> Any:
        return await self._call(
            repo, lambda token: self._gh.post(url, url_vars, data=data, oauth_token=token)
        )

    async def _patch(self, repo: RepoRef, url: str, url_vars: dict[str, Any], data: Any) -> Any:
        return await self._call(
            repo, lambda token: self._gh.patch(url, url_vars, data=data, oauth_token=token)
        )

    async def _graphql(self, repo: RepoRef, query: str, **variables: Any) -> Any:
        payload = {"query": query, "variables": variables}
        response = await self._post(repo, self._graphql_url, {}, payload)
        if response.get("errors"):
            raise gidgethub.QueryError(response)
        return response.get("data")

    # -- permissions and reactions ---------------------------------------------------------

    async def permission(self, repo: RepoRef, user: str) -> str:
        return await self._permissions.get(repo, user, self._fetch_permission)

    async def _fetch_permission(self, repo: RepoRef, user: str) -> str:
        try:
            data = await self._get(repo, PERMISSION_URL, _repo_vars(repo, username=user))
        except gidgethub.BadRequest as exc:
            if _status(exc) == 404:
                return "none"
            raise
        return LEGACY_PERMISSIONS.get(data.get("permission", "none"), "none")

    async def react(self, repo: RepoRef, comment_id: int, content: str = "eyes", *,
                    issue_number: int | None = None, is_merge_request: bool = False) -> None:
        url_vars = _repo_vars(repo, comment_id=comment_id)
        await self._post(repo, REACTIONS_URL, url_vars, {"content": content})

    # -- comments ----------------------------------------------------------------------------

    async def create_comment(self, repo: RepoRef, issue_number: int, body: str, *,
                             is_merge_request: bool = False) -> int:
        url_vars = _repo_vars(repo, issue_number=issue_number)
        data = await self._post(repo, COMMENTS_URL, url_vars, {"body": body})
        return int(data["id"])

    async def update_comment(self, repo: RepoRef, comment_id: int, body: str, *,
                             issue_number: int | None = None, is_merge_request: bool = False) -> bool:
        url_vars = _repo_vars(repo, comment_id=comment_id)
        try:
            await self._patch(repo, COMMENT_URL, url_vars, {"body": body})
        except gidgethub.BadRequest as exc:
            if _status(exc) == 404:
                return False
            raise
        return True

    async def find_comment(self, repo: RepoRef, issue_number: int, marker: str, *,
                           is_merge_request: bool = False) -> int | None:
        url_vars = _repo_vars(repo, issue_number=issue_number, per_page=100)

        async def search(token: str) -> int | None:
            comments = self._gh.getiter(COMMENTS_URL, url_vars, oauth_token=token)
            async for comment in comments:
                if self._is_ours(comment) and marker in (comment.get("body") or ""):
                    return int(comment["id"])
            return None

        return await self._call(repo, search)

    def _is_ours(self, comment: dict[str, Any]) -> bool:
        if self._bot_login is None:
            return True
        return (comment.get("user") or {}).get("login") == self._bot_login

    # -- check runs --------------------------------------------------------------------------

    async def create_check_run(self, repo: RepoRef, payload: dict[str, Any]) -> int:
        """Creates the check run, or takes over the unfinished one this app already made for the
        same protocol (`external_id`) on the same commit: a job that died before it could store the
        id, then taken over, must not leave a second run spinning."""
        existing = await self._unfinished_check_run(repo, payload)
        if existing is not None:
            await self.update_check_run(repo, existing, payload)
            return existing
        data = await self._post(repo, CHECK_RUNS_URL, _repo_vars(repo), payload)
        return int(data["id"])

    async def _unfinished_check_run(self, repo: RepoRef, payload: dict[str, Any]) -> int | None:
        if not payload.get("external_id") or not payload.get("head_sha"):
            return None
        url_vars = _repo_vars(repo, ref=payload["head_sha"], check_name=payload["name"], filter="latest",
                              per_page=100)
        listing = await self._get(repo, COMMIT_CHECK_RUNS_URL, url_vars)
        for run in listing.get("check_runs") or []:
            ours = self._app_slug is None or (run.get("app") or {}).get("slug") == self._app_slug
            if ours and run.get("external_id") == payload["external_id"] and run.get("status") != "completed":
                return int(run["id"])
        return None

    async def update_check_run(
        self, repo: RepoRef, check_run_id: int, payload: dict[str, Any]
    ) -> None:
        url_vars = _repo_vars(repo, check_run_id=check_run_id)
        await self._patch(repo, CHECK_RUN_URL, url_vars, payload)

    # -- pull requests -----------------------------------------------------------------------

    async def get_pull_request(self, repo: RepoRef, number: int) -> dict[str, Any] | None:
        try:
            return _pull_summary(await self._get(repo, PULL_URL, _repo_vars(repo, pull_number=number)))
        except gidgethub.BadRequest as exc:
            if _status(exc) == 404:
                return None
            raise

    async def find_pull_request(self, repo: RepoRef, head_branch: str) -> dict[str, Any] | None:
        head = f"{repo.owner}:{head_branch}"
        url_vars = _repo_vars(repo, head=head, state="open", per_page=1)
        pulls = await self._get(repo, PULLS_SEARCH_URL, url_vars)
        return _pull_summary(pulls[0]) if pulls else None

    async def open_pull_request(self, repo: RepoRef, pull: NewPullRequest) -> dict[str, Any]:
        try:
            opened = await self._post(repo, PULLS_URL, _repo_vars(repo), asdict(pull))
        except gidgethub.BadRequest as exc:
            existing = await self._existing_pull(repo, pull.head, exc)
            if existing is None:
                raise
            return existing
        return _pull_summary(opened)

    async def _existing_pull(
        self, repo: RepoRef, head: str, exc: gidgethub.BadRequest
    ) -> dict[str, Any] | None:
        """After a 422 ("a pull request already exists"), the open PR from ``head`` if any."""
        if _status(exc) != 422:
            return None
        return await self.find_pull_request(repo, head)

    async def update_pull_request(self, repo: RepoRef, number: int, *, title: str | None = None,
                                  body: str | None = None) -> None:
        changes = {key: value for key, value in (("title", title), ("body", body))
                   if value is not None}
        if changes:
            await self._patch(repo, PULL_URL, _repo_vars(repo, pull_number=number), changes)

    async def mark_ready_for_review(self, repo: RepoRef, number: int) -> None:
        pull = await self._get(repo, PULL_URL, _repo_vars(repo, pull_number=number))
        if pull.get("draft"):
            await self._graphql(repo, READY_FOR_REVIEW_MUTATION, pullRequestId=pull["node_id"])

    # -- git -----------------------------------------------------------------------------------

    async def git_token(self, repo: RepoRef, *, write: bool = False) -> str:
        """A token for git on ``repo`` only: ``contents: write`` to push, else ``read``."""
        scope = TokenScope.contents(repo.name, write=write)
        return await self._auth.token(await self._installation_id(repo), scope)
