"""GitHubForge and GitHubAppAuth against the fake GitHub (real gidgethub client, real HTTP)."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta, timezone

import aiohttp
import gidgethub
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.forge import Forge, NewPullRequest, RecordingForge, RepoRef, upsert_status_comment
from bot.forge.github import GitHubAppAuth, GitHubForge, graphql_url
from tests.fakes.github_server import BodySchema, FakeGitHub

REPO = RepoRef("github", "octo/demo", installation_id=7)
COMMENTS = "/repos/octo/demo/issues/5/comments"
TOKENS = "/app/installations/7/access_tokens"
MARKER = "<!-- agentry:status protocol=1 -->"


@pytest.fixture
async def gh():
    async with FakeGitHub(permissions={"alice": "admin"}) as fake:
        yield fake


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as client_session:
        yield client_session


class RecordedSleep:
    """Stands in for asyncio.sleep: remembers the delays, waits for none."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_auth(gh: FakeGitHub, session: aiohttp.ClientSession, **kwargs) -> GitHubAppAuth:
    return GitHubAppAuth(
        session, app_id=gh.app_id, private_key=gh.private_key_pem, api_url=gh.url, **kwargs
    )


def make_forge(gh: FakeGitHub, session: aiohttp.ClientSession, **kwargs) -> GitHubForge:
    auth = kwargs.pop("auth", None) or make_auth(gh, session)
    return GitHubForge(session, auth, api_url=gh.url, app_slug=gh.app_slug, **kwargs)


def check_run_payload(**changes) -> dict:
    payload = {
        "name": "agentry",
        "head_sha": "a" * 40,
        "status": "in_progress",
        "started_at": "2025-01-01T10:00:00Z",
        "output": {"title": "Step 1 running", "summary": "| step | status |\n|---|---|"},
        "actions": [
            {"label": "Retry", "description": "Run the step again", "identifier": "retry"},
            {"label": "Approve", "description": "Approve the step", "identifier": "approve"},
            {"label": "Cancel", "description": "Cancel the protocol", "identifier": "cancel"},
        ],
    }
    payload.update(changes)
    return payload


# -- app authentication -------------------------------------------------------------------------


async def test_app_jwt_is_rs256_backdated_and_accepted(gh, session):
    auth = make_auth(gh, session)
    public_key = serialization.load_pem_private_key(gh.private_key_pem.encode(), None).public_key()
    claims = jwt.decode(auth.app_jwt(), public_key, algorithms=["RS256"])
    assert claims["iss"] == gh.app_id
    assert claims["iat"] <= time.time() - 59
    assert claims["exp"] - claims["iat"] <= 600

    token = await auth.token(7)

    assert token.startswith("ghs_")
    assert [(c.line, c.auth, c.status) for c in gh.calls] == [(f"POST {TOKENS}", "jwt", 201)]


async def test_jwt_signed_with_another_key_is_refused(gh, session):
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    auth = GitHubAppAuth(session, app_id=gh.app_id, private_key=pem, api_url=gh.url)

    with pytest.raises(gidgethub.BadRequest) as caught:
        await auth.token(7)

    assert caught.value.status_code == 401
    assert gh.token_requests[7] == 0


async def test_fifty_concurrent_callers_share_one_token_request(gh, session):
    auth = make_auth(gh, session)

    tokens = await asyncio.gather(*(auth.token(7) for _ in range(50)))

    assert len(set(tokens)) == 1
    assert gh.token_requests[7] == 1
    assert await auth.token(7) == tokens[0]
    assert gh.token_requests[7] == 1


async def test_short_lived_tokens_are_refreshed_on_every_use(gh, session):
    gh.token_ttl = 30
    auth = make_auth(gh, session)

    first = await auth.token(7)
    second = await auth.token(7)

    assert first != second
    assert gh.token_requests[7] == 2


async def test_concurrent_callers_share_one_refresh_of_a_short_lived_token(gh, session):
    gh.token_ttl = 30
    auth = make_auth(gh, session)

    tokens = await asyncio.gather(*(auth.token(7) for _ in range(50)))

    assert len(set(tokens)) == 1
    assert gh.token_requests[7] == 1


async def test_token_is_refreshed_five_minutes_before_expiry(gh, session):
    now = [datetime.now(timezone.utc)]
    auth = make_auth(gh, session, clock=lambda: now[0])

    first = await auth.token(7)
    now[0] += timedelta(minutes=54)
    assert await auth.token(7) == first
    now[0] += timedelta(minutes=2)
    assert await auth.token(7) != first
    assert gh.token_requests[7] == 2


async def test_401_after_external_expiry_renews_token_and_retries_once(gh, session):
    forge = make_forge(gh, session)
    await forge.create_comment(REPO, 5, "first")
    gh.expire_tokens()

    await forge.create_comment(REPO, 5, "second")

    assert [(c.line, c.status) for c in gh.calls] == [
        (f"POST {TOKENS}", 201),
        (f"POST {COMMENTS}", 201),
        (f"POST {COMMENTS}", 401),
        (f"POST {TOKENS}", 201),
        (f"POST {COMMENTS}", 201),
    ]
    assert [c.json for c in gh.calls if c.status == 201 and c.path == COMMENTS] == [
        {"body": "first"},
        {"body": "second"},
    ]


async def test_persistent_401_is_raised_after_one_retry(gh, session):
    forge = make_forge(gh, session)
    gh.fail(COMMENTS, 401, message="Bad credentials", times=5)

    with pytest.raises(gidgethub.BadRequest) as caught:
        await forge.create_comment(REPO, 5, "hello")

    assert caught.value.status_code == 401
    assert gh.lines().count(f"POST {COMMENTS}") == 2
    assert gh.token_requests[7] == 2


async def test_installation_is_looked_up_once_when_repo_ref_has_no_id(gh, session):
    forge = make_forge(gh, session)
    repo = RepoRef("github", "octo/demo")

    await forge.create_comment(repo, 5, "one")
    await forge.create_comment(repo, 5, "two")

    assert [(c.line, c.auth) for c in gh.calls] == [
        ("GET /repos/octo/demo/installation", "jwt"),
        (f"POST {TOKENS}", "jwt"),
        (f"POST {COMMENTS}", "token"),
        (f"POST {COMMENTS}", "token"),
    ]


async def test_git_token_is_scoped_to_the_repository(gh, session):
    auth = make_auth(gh, session)
    forge = make_forge(gh, session, auth=auth)

    assert await forge.git_token(REPO) != await auth.token(7)
    assert gh.token_request_bodies == [
        {"repositories": ["demo"], "permissions": {"contents": "read"}}, None]


# -- permissions --------------------------------------------------------------------------------


async def test_permission_levels_and_unknown_user(gh, session):
    gh.permissions.update(bob="write", carol="read", dave="none", erin="maintain", fay="triage")
    forge = make_forge(gh, session)

    answers = {user: await forge.permission(REPO, user)
               for user in ("alice", "bob", "carol", "dave", "erin", "fay", "mallory")}

    assert answers == {"alice": "admin", "bob": "write", "carol": "read", "dave": "none",
                       "erin": "write", "fay": "read", "mallory": "none"}
    assert ("GET /repos/octo/demo/collaborators/mallory/permission", 404) in [
        (c.line, c.status) for c in gh.calls
    ]


async def test_permission_is_cached_then_revalidated_conditionally(gh, session):
    forge = make_forge(gh, session, permission_ttl=0.05)
    path = "GET /repos/octo/demo/collaborators/alice/permission"

    assert await forge.permission(REPO, "alice") == "admin"
    assert await forge.permission(REPO, "Alice") == "admin"
    assert gh.lines() == [path]

    await asyncio.sleep(0.1)
    assert await forge.permission(REPO, "alice") == "admin"
    assert [(c.line, c.status) for c in gh.calls if c.line == path] == [(path, 200), (path, 304)]


# -- reactions, comments, check runs --------------------------------------------------------------


async def test_reaction_and_comments_send_schema_valid_bodies_in_order(gh, session):
    forge = make_forge(gh, session)
    human = gh.add_comment("octo/demo", 5, "/agent run", user="alice")

    await forge.react(REPO, human)
    comment_id = await forge.create_comment(REPO, 5, "Working on it")
    await forge.update_comment(REPO, comment_id, "Done")

    assert [(c.line, c.json, c.status) for c in gh.calls[1:]] == [
        (f"POST /repos/octo/demo/issues/comments/{human}/reactions", {"content": "eyes"}, 201),
        (f"POST {COMMENTS}", {"body": "Working on it"}, 201),
        (f"PATCH /repos/octo/demo/issues/comments/{comment_id}", {"body": "Done"}, 200),
    ]
    assert gh.comments[comment_id]["body"] == "Done"
    assert gh.comments[comment_id]["user"]["login"] == gh.bot_login


async def test_fake_rejects_a_reaction_outside_the_enum(gh, session):
    forge = make_forge(gh, session)
    human = gh.add_comment("octo/demo", 5, "/agent run", user="alice")

    with pytest.raises(gidgethub.BadRequest) as caught:
        await forge.react(REPO, human, "thumbsup")

    assert caught.value.status_code == 422
    assert gh.reactions == []


async def test_check_run_create_and_update(gh, session):
    forge = make_forge(gh, session)
    done = {"status": "completed", "conclusion": "success",
            "completed_at": "2025-01-01T10:05:00Z",
            "output": {"title": "All steps done", "summary": "3/3 steps completed"}}

    check_run_id = await forge.create_check_run(REPO, check_run_payload())
    await forge.update_check_run(REPO, check_run_id, done)

    assert [(c.line, c.status) for c in gh.calls[1:]] == [
        ("POST /repos/octo/demo/check-runs", 201),
        (f"PATCH /repos/octo/demo/check-runs/{check_run_id}", 200),
    ]
    assert gh.calls[1].json == check_run_payload()
    run = gh.check_runs[check_run_id]
    assert (run["status"], run["conclusion"]) == ("completed", "success")
    assert run["output"]["summary"] == "3/3 steps completed"


async def test_a_check_run_made_by_a_job_that_died_is_taken_over_not_doubled(gh, session):
    forge = make_forge(gh, session)
    payload = check_run_payload(external_id="42")

    first = await forge.create_check_run(REPO, payload)  # its id never got stored
    again = await forge.create_check_run(REPO, payload)
    assert again == first and len(gh.check_runs) == 1

    await forge.update_check_run(REPO, first, {"status": "completed", "conclusion": "success"})
    resumed = await forge.create_check_run(REPO, payload)  # a conclusion stays; new work, a new run
    other = await forge.create_check_run(REPO, check_run_payload(external_id="43"))
    assert len({first, resumed, other}) == 3 and len(gh.check_runs) == 3


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"actions": check_run_payload()["actions"]
          + [{"label": "Re-run", "description": "Run again", "identifier": "rerun"}]},
         "actions"),
        ({"actions": [{"label": "L" * 21, "description": "d", "identifier": "x"}]},
         "actions.0.label"),
        ({"status": "completed"}, "conclusion"),
        ({"output": {"title": "t", "summary": "s" * 65536}}, "output.summary"),
        ({"output": {"title": "t", "summary": "s", "annotations": [
            {"path": "a.py", "start_line": 1, "end_line": 1, "annotation_level": "notice",
             "message": "m"}] * 51}}, "output.annotations"),
        ({"started_at": "yesterday"}, "started_at"),
    ],
)
async def test_fake_rejects_check_runs_that_break_the_schema(gh, session, changes, field):
    forge = make_forge(gh, session)

    with pytest.raises(gidgethub.BadRequest) as caught:
        await forge.create_check_run(REPO, check_run_payload(**changes))

    assert caught.value.status_code == 422
    assert gh.check_runs == {}
    errors = caught.value.errors
    assert any(field in (e["field"] + " " + e["message"]) for e in errors), errors


# -- status comment ---------------------------------------------------------------------------


async def test_upsert_status_comment_creates_then_updates_in_place(gh, session):
    forge = make_forge(gh, session)
    gh.add_comment("octo/demo", 5, f"quoting {MARKER}", user="alice")

    created = await upsert_status_comment(forge, REPO, 5, MARKER, "planning", None)
    found = await upsert_status_comment(forge, REPO, 5, MARKER, "running", None)
    direct = await upsert_status_comment(forge, REPO, 5, MARKER, "done", created)

    assert created == found == direct
    assert gh.lines() == [
        f"GET {COMMENTS}",
        f"POST {COMMENTS}",
        f"GET {COMMENTS}",
        f"PATCH /repos/octo/demo/issues/comments/{created}",
        f"PATCH /repos/octo/demo/issues/comments/{created}",
    ]
    assert gh.comments[created]["body"] == f"{MARKER}\ndone"
    assert sum(c["_issue"] == 5 for c in gh.comments.values()) == 2


async def test_upsert_recreates_a_deleted_status_comment(gh, session):
    forge = make_forge(gh, session)
    old = await upsert_status_comment(forge, REPO, 5, MARKER, f"{MARKER} one", None)
    gh.delete_comment(old)

    new = await upsert_status_comment(forge, REPO, 5, MARKER, f"{MARKER} two", old)

    assert new != old
    assert gh.comments[new]["body"] == f"{MARKER} two"


async def test_find_comment_follows_pagination_and_ignores_other_authors(gh, session):
    gh.max_per_page = 2
    forge = make_forge(gh, session)
    for number in range(4):
        gh.add_comment("octo/demo", 5, f"{MARKER} copy {number}", user="alice")
    ours = gh.add_comment("octo/demo", 5, f"{MARKER} status", user=gh.bot_login)

    assert await forge.find_comment(REPO, 5, MARKER) == ours
    assert await forge.find_comment(REPO, 5, "<!-- other -->") is None
    assert [c.url.split("?")[1] for c in gh.calls if c.path == COMMENTS][:3] == [
        "per_page=100", "per_page=2&page=2", "per_page=2&page=3"
    ]


# -- pull requests ------------------------------------------------------------------------------


async def test_pull_request_lifecycle(gh, session):
    forge = make_forge(gh, session)
    branch = "agent/5-add-login"
    opened_args = dict(head=branch, base="main", title="Add login", body="Closes #5", draft=True)

    assert await forge.find_pull_request(REPO, branch) is None
    opened = await forge.open_pull_request(REPO, NewPullRequest(**opened_args))
    again = await forge.open_pull_request(REPO, NewPullRequest(**opened_args))
    await forge.update_pull_request(REPO, opened["number"], title="Add login page")
    await forge.mark_ready_for_review(REPO, opened["number"])
    await forge.mark_ready_for_review(REPO, opened["number"])
    found = await forge.find_pull_request(REPO, branch)

    assert opened == again == {**found, "draft": True}
    assert found == {"number": 1, "url": "https://github.example/octo/demo/pull/1",
                     "draft": False, "state": "open", "head_branch": branch, "head_sha": "0" * 40,
                     "head_repo": "octo/demo", "head_ref": "refs/pull/1/head", "base_branch": "main"}
    assert [(c.line, c.status) for c in gh.calls[1:]] == [
        ("GET /repos/octo/demo/pulls", 200),
        ("POST /repos/octo/demo/pulls", 201),
        ("POST /repos/octo/demo/pulls", 422),
        ("GET /repos/octo/demo/pulls", 200),
        ("PATCH /repos/octo/demo/pulls/1", 200),
        ("GET /repos/octo/demo/pulls/1", 200),
        ("POST /graphql", 200),
        ("GET /repos/octo/demo/pulls/1", 200),
        ("GET /repos/octo/demo/pulls", 200),
    ]
    assert gh.calls[1].url == (
        "/repos/octo/demo/pulls?head=octo:agent/5-add-login&state=open&per_page=1"
    )
    assert gh.calls[2].json == opened_args
    assert gh.calls[5].json == {"title": "Add login page"}
    assert gh.calls[7].json["variables"] == {"pullRequestId": gh.pulls[("octo/demo", 1)]["node_id"]}


async def test_unchanged_get_is_answered_304_from_the_cache(gh, session):
    forge = make_forge(gh, session)
    await forge.open_pull_request(REPO, NewPullRequest(head="b", base="main", title="t", body="", draft=False))

    first = await forge.find_pull_request(REPO, "b")
    second = await forge.find_pull_request(REPO, "b")

    assert first == second
    assert [c.status for c in gh.calls if c.line == "GET /repos/octo/demo/pulls"] == [200, 304]


# -- rate limits --------------------------------------------------------------------------------


async def test_secondary_rate_limit_403_waits_retry_after_and_retries(gh, session):
    auth = make_auth(gh, session)
    forge = make_forge(gh, session, auth=auth)
    gh.rate_limit(COMMENTS, status=403, retry_after=1)
    await auth.token(7)

    started = time.monotonic()
    await forge.create_comment(REPO, 5, "hello")

    assert time.monotonic() - started >= 0.9
    assert [(c.line, c.status) for c in gh.calls[1:]] == [
        (f"POST {COMMENTS}", 403),
        (f"POST {COMMENTS}", 201),
    ]


async def test_429_waits_retry_after_and_retries(gh, session):
    sleep = RecordedSleep()
    forge = make_forge(gh, session, sleep=sleep)
    gh.rate_limit(COMMENTS, status=429, retry_after=1)

    await forge.create_comment(REPO, 5, "hello")

    assert sleep.delays == [1.0]
    assert [c.status for c in gh.calls if c.path == COMMENTS] == [429, 201]


async def test_primary_rate_limit_waits_until_reset_capped(gh, session):
    sleep = RecordedSleep()
    forge = make_forge(gh, session, sleep=sleep, max_retry_sleep=0.5)
    gh.primary_rate_limit(COMMENTS, reset_in=30)

    await forge.create_comment(REPO, 5, "hello")

    assert sleep.delays == [0.5]
    assert [c.status for c in gh.calls if c.path == COMMENTS] == [403, 201]


async def test_rate_limit_gives_up_after_three_retries(gh, session):
    sleep = RecordedSleep()
    forge = make_forge(gh, session, sleep=sleep)
    gh.rate_limit(COMMENTS, status=429, retry_after=1, times=10)

    with pytest.raises(gidgethub.BadRequest) as caught:
        await forge.create_comment(REPO, 5, "hello")

    assert caught.value.status_code == 429
    assert sleep.delays == [1.0, 1.0, 1.0]
    assert [c.status for c in gh.calls if c.path == COMMENTS] == [429] * 4


async def test_plain_403_is_not_retried(gh, session):
    sleep = RecordedSleep()
    forge = make_forge(gh, session, sleep=sleep)
    gh.fail(COMMENTS, 403, message="Resource not accessible by integration")

    with pytest.raises(gidgethub.BadRequest):
        await forge.create_comment(REPO, 5, "hello")

    assert sleep.delays == []
    assert [c.status for c in gh.calls if c.path == COMMENTS] == [403]


# -- the fake itself ----------------------------------------------------------------------------


async def test_fake_requires_an_installation_token(gh, session):
    auth = make_auth(gh, session)
    url = f"{gh.url}{COMMENTS}"
    attempts = {
        "none": {},
        "jwt": {"Authorization": f"Bearer {auth.app_jwt()}"},
        "invalid": {"Authorization": "token ghs_made_up"},
    }

    for headers in attempts.values():
        async with session.post(url, json={"body": "x"}, headers=headers) as response:
            assert response.status == 401

    assert [c.auth for c in gh.calls] == list(attempts)
    assert gh.comments == {}


async def test_fake_refuses_a_token_of_another_installation(session):
    async with FakeGitHub(repos={"octo/demo": 7, "other/repo": 8}) as gh:
        forge = make_forge(gh, session)
        with pytest.raises(gidgethub.BadRequest) as caught:
            await forge.create_comment(RepoRef("github", "other/repo", installation_id=7), 1, "x")
        assert caught.value.status_code == 404


def test_fake_checks_the_flattened_constraints_on_their_own():
    schema = BodySchema.from_file("checks-create.json", "CheckRun")
    flat_only = BodySchema("CheckRun", None, schema.constraints)
    four_actions = check_run_payload(
        actions=check_run_payload()["actions"] * 2, output={"summary": "s" * 65536}
    )

    fields = {(e["field"], e["code"]) for e in flat_only.errors(four_actions)}

    assert fields == {("actions", "invalid"), ("output", "missing_field"),
                      ("output.summary", "invalid")}
    assert flat_only.errors(check_run_payload()) == []


# -- secrets ------------------------------------------------------------------------------------


async def test_token_never_in_urls_logs_exceptions_or_reprs(gh, session, caplog):
    caplog.set_level(logging.DEBUG)
    sleep = RecordedSleep()
    auth = make_auth(gh, session)
    forge = make_forge(gh, session, auth=auth, sleep=sleep)
    gh.rate_limit(COMMENTS, status=429, retry_after=1)

    comment_id = await upsert_status_comment(forge, REPO, 5, MARKER, "hi", None)
    gh.expire_tokens()
    await forge.react(REPO, comment_id)
    await forge.permission(REPO, "alice")
    failures = []
    for bad_call in (forge.create_check_run(REPO, {"name": "x"}),
                     forge.react(REPO, 999999),
                     forge.create_comment(RepoRef("github", "nobody/here"), 1, "x")):
        with pytest.raises(gidgethub.GitHubException) as caught:
            await bad_call
        failures.append(caught.value)

    tokens = list(gh.tokens)
    assert len(tokens) == 2
    texts = [caplog.text, repr(auth), repr(forge)]
    texts += [c.url for c in gh.calls] + [str(c.json) for c in gh.calls]
    texts += [f"{exc!s} {exc!r} {getattr(exc, 'errors', '')}" for exc in failures]
    assert not [text for text in texts for token in tokens if token in text]
    assert "rate limit" in caplog.text


# -- interface ----------------------------------------------------------------------------------


async def test_implementations_satisfy_the_forge_protocol(gh, session):
    assert isinstance(make_forge(gh, session), Forge)
    assert isinstance(RecordingForge(lambda name, data: None, default_permission="none"), Forge)


def test_graphql_url_for_github_and_enterprise_server():
    assert graphql_url("https://api.github.com") == "https://api.github.com/graphql"
    assert graphql_url("https://ghe.example/api/v3/") == "https://ghe.example/api/graphql"


async def test_recording_forge_records_calls_with_consistent_ids():
    recorded: list[tuple[str, dict]] = []
    forge = RecordingForge(lambda name, data: recorded.append((name, data)),
                           default_permission="write")

    assert await forge.permission(REPO, "anyone") == "write"
    await forge.react(REPO, 11)
    first = await upsert_status_comment(forge, REPO, 5, MARKER, "planning", None)
    second = await upsert_status_comment(forge, REPO, 5, MARKER, "running", None)
    other = await forge.create_comment(REPO, 6, "hi")
    run = await forge.create_check_run(REPO, check_run_payload())
    await forge.update_check_run(REPO, run, {"status": "completed", "conclusion": "success"})
    pull = await forge.open_pull_request(REPO, NewPullRequest(head="agent/5-x", base="main", title="t",
                                         body="b", draft=True))
    await forge.mark_ready_for_review(REPO, pull["number"])
    found = await forge.find_pull_request(REPO, "agent/5-x")
    token = await forge.git_token(REPO)

    assert (first, second, other, run) == (1, 1, 2, 1)
    assert pull == {"number": 1, "url": "recorded://octo/demo/pull/1", "draft": True,
                    "state": "open"}
    assert found == {**pull, "draft": False}
    assert token == ""
    assert [name for name, _ in recorded] == [
        "permission", "react", "find_comment", "create_comment", "find_comment", "update_comment",
        "create_comment", "create_check_run", "update_check_run",
        "open_pull_request", "mark_ready_for_review", "find_pull_request", "git_token",
    ]
    assert recorded[5][1] == {"forge": "github", "repo": "octo/demo", "comment_id": 1,
                              "body": f"{MARKER}\nrunning"}
    assert not any("token" in key for _, data in recorded for key in data)


def test_recording_forge_needs_a_known_default_permission():
    with pytest.raises(ValueError):
        RecordingForge(lambda name, data: None, default_permission="maybe")


async def test_the_recording_forge_remembers_only_recent_items():
    from bot.forge import RECORDED_ITEMS_KEPT

    forge = RecordingForge(lambda name, data: None, default_permission="write")
    for number in range(RECORDED_ITEMS_KEPT + 500):
        await forge.create_comment(REPO, number, f"reply {number}")
    assert len(forge._comments) == RECORDED_ITEMS_KEPT
    assert await forge.find_comment(REPO, RECORDED_ITEMS_KEPT + 499, "reply") is not None
