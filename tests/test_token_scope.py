"""Installation tokens for git are scoped to one repository and to ``contents: read|write``;
API calls keep the installation-wide token."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import gidgethub
import pytest

from bot.forge import RepoRef
from bot.forge.github import TokenScope
from tests.fakes.github_server import FakeGitHub
from tests.flow_support import INSTALLATION, REPO as FULL_NAME
from tests.test_forge_github import make_auth, make_forge, session  # noqa: F401 (fixture)

REPO = RepoRef("github", FULL_NAME, installation_id=INSTALLATION)
READ = {"repositories": ["Hello-World"], "permissions": {"contents": "read"}}
WRITE = {"repositories": ["Hello-World"], "permissions": {"contents": "write"}}
COMMENTS = f"/repos/{FULL_NAME}/issues/1/comments"


@pytest.fixture
async def shared():
    async with FakeGitHub(repos={"octo/demo": 7, "octo/other": 7, "elsewhere/x": 8}) as fake:
        yield fake


async def test_git_token_asks_for_the_repository_with_read_access(github, session):
    token = await make_forge(github, session).git_token(REPO)

    assert github.token_request_bodies == [READ]
    assert github.tokens[token].repositories == ("Hello-World",)
    assert github.tokens[token].permissions == {"contents": "read", "metadata": "read"}


async def test_git_token_for_pushing_asks_for_write_access(github, session):
    token = await make_forge(github, session).git_token(REPO, write=True)

    assert github.token_request_bodies == [WRITE]
    assert github.tokens[token].permissions == {"contents": "write", "metadata": "read"}


async def test_read_and_write_tokens_are_cached_separately(github, session):
    forge = make_forge(github, session)

    read, write = await forge.git_token(REPO), await forge.git_token(REPO, write=True)

    assert read != write
    assert await forge.git_token(REPO) == read
    assert await forge.git_token(REPO, write=True) == write
    assert github.token_request_bodies == [READ, WRITE]


async def test_scoped_token_is_refreshed_five_minutes_before_expiry(github, session):
    now = [datetime.now(timezone.utc)]
    forge = make_forge(github, session, auth=make_auth(github, session, clock=lambda: now[0]))

    first = await forge.git_token(REPO, write=True)
    now[0] += timedelta(minutes=54)
    assert await forge.git_token(REPO, write=True) == first
    now[0] += timedelta(minutes=2)
    assert await forge.git_token(REPO, write=True) != first
    assert github.token_request_bodies == [WRITE, WRITE]


async def test_api_calls_keep_the_installation_wide_token(github, session):
    auth = make_auth(github, session)
    forge = make_forge(github, session, auth=auth)

    git = await forge.git_token(REPO, write=True)
    await forge.create_comment(REPO, 1, "hello")

    api = await auth.token(INSTALLATION)
    assert api != git
    assert github.tokens[api].repositories is None
    assert github.token_request_bodies == [WRITE, None]


async def test_a_401_on_the_api_renews_only_the_installation_wide_token(github, session):
    forge = make_forge(github, session)
    git = await forge.git_token(REPO, write=True)
    await forge.create_comment(REPO, 1, "first")
    github.fail(COMMENTS, 401, message="Bad credentials")

    await forge.create_comment(REPO, 1, "second")

    assert await forge.git_token(REPO, write=True) == git
    assert github.token_request_bodies == [WRITE, None, None]


async def test_invalidate_forgets_only_the_token_of_its_scope(github, session):
    auth = make_auth(github, session)
    read = TokenScope.contents("Hello-World", write=False)
    write = TokenScope.contents("Hello-World", write=True)
    first_read = await auth.token(INSTALLATION, read)
    first_write = await auth.token(INSTALLATION, write)

    auth.invalidate(INSTALLATION, first_write, scope=write)

    assert await auth.token(INSTALLATION, read) == first_read
    assert await auth.token(INSTALLATION, write) != first_write


def test_scopes_with_the_same_permissions_in_any_order_are_equal():
    one = TokenScope("demo", (("contents", "read"), ("checks", "write")))
    other = TokenScope("demo", (("checks", "write"), ("contents", "read")))

    assert one == other and hash(one) == hash(other)


# -- the fake GitHub enforces the scope ----------------------------------------------------------


async def test_fake_refuses_a_repository_outside_the_installation(shared, session):
    auth = make_auth(shared, session)

    with pytest.raises(gidgethub.BadRequest) as caught:
        await auth.token(7, TokenScope.contents("x", write=False))

    assert caught.value.status_code == 422
    assert shared.token_requests[7] == 0
    assert shared.token_request_bodies == [{"repositories": ["x"],
                                            "permissions": {"contents": "read"}}]


async def test_fake_refuses_permissions_the_installation_lacks(shared, session):
    auth = make_auth(shared, session)

    with pytest.raises(gidgethub.BadRequest) as caught:
        await auth.token(7, TokenScope("demo", (("administration", "write"),)))

    assert caught.value.status_code == 422


async def test_fake_answers_404_to_a_scoped_token_on_another_repository(shared, session):
    forge = make_forge(shared, session)
    token = await forge.git_token(RepoRef("github", "octo/demo", installation_id=7))
    other = RepoRef("github", "octo/other", installation_id=7)

    headers = {"Authorization": f"token {token}"}
    async with session.get(f"{shared.url}/repos/octo/other/pulls", headers=headers) as answer:
        assert answer.status == 404
    async with session.get(f"{shared.url}/repos/octo/demo/pulls", headers=headers) as answer:
        assert answer.status == 200
    assert await forge.create_comment(other, 1, "the installation-wide token reaches it")
