"""GitLab: webhook authentication, payload parsers, the webhook endpoint, and GitLabForge
against the fake GitLab (real gidgetlab client, real HTTP)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from pathlib import Path

import aiohttp
import gidgetlab
import pytest
from sqlmodel import func, select

from bot.config import Settings
from bot.deps import open_deps
from bot.forge import Forge, NewPullRequest, RepoRef, upsert_status_comment
from bot.forge.events import UnsupportedEvent
from bot.forge.gitlab import (
    GitLabForge,
    access_permission,
    commit_status_state,
    ready_title,
)
from bot.forge.gitlab_events import (
    gitlab_actor,
    gitlab_added_labels,
    gitlab_comment,
    gitlab_label,
    gitlab_merge_request,
    gitlab_pipeline,
    is_own_status_pipeline,
)
from bot.forge.payloads import GitLabUser, gitlab_shape
from bot.models import QueuedJob, WebhookDelivery
from bot.webhooks_gitlab import (
    gitlab_delivery_id,
    signing_key,
    standard_webhook_signature,
    verify_gitlab_token,
    verify_standard_webhook,
)
from handlers import gitlab as gitlab_handler
from handlers.web import make_app
from tests.conftest import FIXTURES
from tests.fakes.gitlab_server import FakeGitLab

PAYLOADS = FIXTURES / "gitlab-webhooks"
HOOK_TOKEN = "gitlab-hook-token"
EVENTS = {"issue": "Issue Hook", "merge_request": "Merge Request Hook", "note": "Note Hook",
          "pipeline": "Pipeline Hook", "push": "Push Hook"}

# The Standard Webhooks test vector (spec repository's python tests).
VECTOR_KEY = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
OTHER_KEY = "whsec_" + "A" * 43 + "="


def payload(name: str) -> dict:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def shaped(data: dict):
    """A payload read into its shape, as intake reads it: the parsers take nothing else."""
    return gitlab_shape(EVENTS[data["object_kind"]], data)


def vector_headers(**changes: str) -> dict[str, str]:
    headers = {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TIMESTAMP),
               "webhook-signature": VECTOR_SIGNATURE}
    headers.update(changes)
    return {name: value for name, value in headers.items() if value}


# -- Standard Webhooks signatures ----------------------------------------------------------------


def test_the_standard_webhooks_test_vector_is_accepted():
    assert verify_standard_webhook(VECTOR_KEY, vector_headers(), VECTOR_BODY, now=VECTOR_TIMESTAMP)


@pytest.mark.parametrize(
    "key, headers, body, now",
    [
        (OTHER_KEY, vector_headers(), VECTOR_BODY, VECTOR_TIMESTAMP),
        (VECTOR_KEY, vector_headers(), b'{"test": 2432232315}', VECTOR_TIMESTAMP),
        (VECTOR_KEY, vector_headers(), VECTOR_BODY, VECTOR_TIMESTAMP + 301),
        (VECTOR_KEY, vector_headers(), VECTOR_BODY, VECTOR_TIMESTAMP - 301),
        (VECTOR_KEY, vector_headers(**{"webhook-id": "msg_other"}), VECTOR_BODY, VECTOR_TIMESTAMP),
        (VECTOR_KEY, vector_headers(**{"webhook-timestamp": "yesterday"}), VECTOR_BODY, VECTOR_TIMESTAMP),
        (VECTOR_KEY, vector_headers(**{"webhook-id": ""}), VECTOR_BODY, VECTOR_TIMESTAMP),
        (VECTOR_KEY, vector_headers(**{"webhook-timestamp": ""}), VECTOR_BODY, VECTOR_TIMESTAMP),
        (VECTOR_KEY, vector_headers(**{"webhook-signature": ""}), VECTOR_BODY, VECTOR_TIMESTAMP),
        (VECTOR_KEY, vector_headers(**{"webhook-signature": VECTOR_SIGNATURE.replace("v1,", "v2,")}),
         VECTOR_BODY, VECTOR_TIMESTAMP),
        (VECTOR_KEY, vector_headers(**{"webhook-signature": VECTOR_SIGNATURE[3:]}), VECTOR_BODY, VECTOR_TIMESTAMP),
        ("whsec_not base64!", vector_headers(), VECTOR_BODY, VECTOR_TIMESTAMP),
        ("", vector_headers(), VECTOR_BODY, VECTOR_TIMESTAMP),
    ],
    ids=["wrong key", "tampered body", "stale", "future", "other id", "bad timestamp", "no id",
         "no timestamp", "no signature", "v2 only", "no version", "malformed key", "no key"],
)
def test_a_bad_standard_webhook_signature_is_rejected(key, headers, body, now):
    assert not verify_standard_webhook(key, headers, body, now=now)


@pytest.mark.parametrize(
    "signatures",
    [f"v1,bm9wZQ== {VECTOR_SIGNATURE}", f"{VECTOR_SIGNATURE} v1,bm9wZQ==", f"v2,abc  {VECTOR_SIGNATURE}"],
)
def test_one_valid_signature_among_several_is_enough(signatures):
    headers = vector_headers(**{"webhook-signature": signatures})
    assert verify_standard_webhook(VECTOR_KEY, headers, VECTOR_BODY, now=VECTOR_TIMESTAMP)


def test_the_tolerance_holds_both_ways_and_the_key_prefix_is_optional():
    headers = vector_headers()
    for now in (VECTOR_TIMESTAMP - 300, VECTOR_TIMESTAMP + 300):
        assert verify_standard_webhook(VECTOR_KEY, headers, VECTOR_BODY, now=now)
    assert not verify_standard_webhook(VECTOR_KEY, headers, VECTOR_BODY, now=VECTOR_TIMESTAMP + 30,
                                       tolerance_seconds=10)
    assert verify_standard_webhook(VECTOR_KEY.removeprefix("whsec_"), headers, VECTOR_BODY, now=VECTOR_TIMESTAMP)


# -- secret tokens and delivery ids -----------------------------------------------------------------


@pytest.mark.parametrize(
    "expected, headers, accepted",
    [
        ("s3cret", {"X-Gitlab-Token": "s3cret"}, True),
        ("s3cret", {"x-gitlab-token": "s3cret"}, True),
        ("s3cret", {"X-Agentry-Webhook-Token": "s3cret"}, True),
        ("s3cret", {"X-Gitlab-Token": "s3cret!"}, False),
        ("s3cret", {"X-Gitlab-Token": "wrong", "X-Agentry-Webhook-Token": "s3cret"}, False),
        ("s3cret", {"X-Gitlab-Token": "sécret"}, False),
        ("s3cret", {}, False),
        ("", {"X-Gitlab-Token": ""}, False),
        (None, {"X-Gitlab-Token": "anything"}, False),
    ],
)
def test_the_secret_token_is_compared_exactly(expected, headers, accepted):
    assert verify_gitlab_token(expected, headers) is accepted


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"Idempotency-Key": "idem", "webhook-id": "wh", "X-Gitlab-Event-UUID": "uuid"}, "idem"),
        ({"webhook-id": "wh", "X-Gitlab-Event-UUID": "uuid"}, "wh"),
        ({"X-Gitlab-Event-UUID": "uuid"}, "uuid"),
        ({"Idempotency-Key": "  "}, hashlib.sha256(b"{}").hexdigest()),
        ({}, hashlib.sha256(b"{}").hexdigest()),
    ],
)
def test_the_delivery_id_prefers_the_idempotency_key(headers, expected):
    assert gitlab_delivery_id(headers, b"{}") == expected


def test_an_overlong_delivery_id_is_hashed_to_fit():
    assert len(gitlab_delivery_id({"Idempotency-Key": "x" * 500}, b"{}")) == 64


# -- payload parsers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, number, is_merge_request, comment_id, login",
    [("note_issue", 17, False, 1241, "user1"), ("note_merge_request", 1, True, 1244, "root")],
)
def test_gitlab_comment_reads_notes_on_issues_and_merge_requests(name, number, is_merge_request, comment_id, login):
    event = gitlab_comment(shaped(payload(name)))
    assert (event.issue.number, event.issue.is_pull_request) == (number, is_merge_request)
    assert (event.comment_id, event.author.login, event.author.is_bot) == (comment_id, login, False)
    assert event.repo.ref == RepoRef("gitlab", "gitlab-org/gitlab-test", project_id=5)
    assert event.repo.clone_url == "http://example.com/gitlab-org/gitlab-test.git"
    assert event.old_body is None and event.body


def test_gitlab_comment_reads_the_old_body_of_an_edit_and_refuses_commit_notes():
    edited = payload("note_issue")
    edited["object_attributes"].update(action="update", note="/agent run\n/agent status")
    edited["changes"] = {"note": {"previous": "/agent run", "current": "/agent run\n/agent status"}}
    assert gitlab_comment(shaped(edited)).old_body == "/agent run"
    on_commit = payload("note_issue")
    on_commit["object_attributes"]["noteable_type"] = "Commit"
    with pytest.raises(UnsupportedEvent):
        gitlab_comment(shaped(on_commit))


@pytest.mark.parametrize(
    "user, is_bot",
    [
        ({"username": "user1"}, False),
        ({"username": "abbot"}, False),
        ({"username": "robotics"}, False),
        ({"username": "project_5_bot_3f9a1c"}, True),
        ({"username": "group_12_bot"}, True),
        ({"username": "service_account_group_7_abc"}, True),
        ({"username": "support-bot"}, True),
        ({"username": "deploy_bot"}, True),
        ({"username": "renovate[bot]"}, True),
        ({"username": "someone", "bot": True}, True),
        ({}, True),
        (None, True),
    ],
)
def test_gitlab_actor_treats_bot_looking_users_as_bots(user, is_bot):
    assert gitlab_actor(None if user is None else GitLabUser.model_validate(user)).is_bot is is_bot


def with_labels(name: str, previous: list[str], current: list[str], action: str = "update") -> dict:
    data = payload(name)
    data["object_attributes"]["action"] = action
    data["changes"]["labels"] = {"previous": [{"title": t} for t in previous],
                                 "current": [{"title": t} for t in current]}
    return data


@pytest.mark.parametrize(
    "data, added",
    [
        (payload("issue"), ["Platform"]),
        (with_labels("issue", ["API"], ["API", "agent:run", "bug"]), ["agent:run", "bug"]),
        (with_labels("issue", ["agent:run"], []), []),
        (with_labels("merge_request", [], ["agent:plan"]), ["agent:plan"]),
    ],
    ids=["fixture", "two added", "removed", "merge request"],
)
def test_gitlab_added_labels(data, added):
    assert gitlab_added_labels(shaped(data)) == added


def test_labels_of_an_opened_issue_without_a_label_change_count_as_added():
    opened = payload("issue")
    del opened["changes"]["labels"]
    assert gitlab_added_labels(shaped(opened)) == ["API"]
    opened["object_attributes"]["action"] = "update"
    assert gitlab_added_labels(shaped(opened)) == []


def test_gitlab_label_picks_the_first_configured_label_added():
    data = with_labels("merge_request", [], ["bug", "agent:plan", "agent:run"])
    event = gitlab_label(shaped(data), {"agent:run", "agent:plan"})
    assert (event.label, event.issue.number, event.issue.is_pull_request) == ("agent:plan", 1, True)
    assert event.actor.login == "user1"
    assert gitlab_label(shaped(payload("issue")), {"agent:run"}) is None


def merge_request(action: str, **attributes) -> dict:
    data = payload("merge_request")
    data["object_attributes"].update(action=action, **attributes)
    return data


@pytest.mark.parametrize(
    "action, attributes, expected",
    [
        ("merge", {"state": "merged"}, "merged"),
        ("close", {"state": "closed"}, "closed"),
        ("reopen", {}, "reopened"),
        ("update", {"oldrev": "95790bf891e76fee5e1747ab589903a6a1f80f22"}, "synchronize"),
    ],
)
def test_gitlab_merge_request_actions(action, attributes, expected):
    event = gitlab_merge_request(shaped(merge_request(action, **attributes)))
    assert event.action == expected
    assert (event.number, event.head_branch, event.base_branch) == (1, "ms-viewport", "master")
    assert event.head_sha == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
    assert event.head_repo == "awesome_space/awesome_project"
    assert event.repo.ref.full_name == "gitlabhq/gitlab-test"


@pytest.mark.parametrize("action", ["open", "update", "approved", "unapproved"])
def test_other_merge_request_actions_are_unsupported(action):
    with pytest.raises(UnsupportedEvent):
        gitlab_merge_request(shaped(merge_request(action)))


def pipeline(status: str, **attributes) -> dict:
    data = payload("pipeline")
    data["object_attributes"].update(status=status, **attributes)
    return data


@pytest.mark.parametrize(
    "status, conclusion",
    [("success", "success"), ("failed", "failure"), ("canceled", "cancelled"), ("skipped", "neutral"),
     ("running", "pending"), ("pending", "pending"), ("created", "pending"), ("manual", "pending")],
)
def test_gitlab_pipeline_statuses(status, conclusion):
    event = gitlab_pipeline(shaped(pipeline(status)))
    assert event.conclusion == conclusion
    assert (event.branch, event.sha) == ("master", "bcbb5ec396a2c0f828686f14fac9b80b780504f2")
    assert event.details_url == "http://192.168.64.1:3005/gitlab-org/gitlab-test/-/pipelines/31"


def test_a_tag_pipeline_has_no_branch_and_own_status_pipelines_are_recognised():
    assert gitlab_pipeline(shaped(pipeline("success", tag=True, ref="v1.0"))).branch is None
    assert not is_own_status_pipeline(shaped(payload("pipeline")))
    own = payload("pipeline")
    own["builds"] = [{"name": "agentry/12", "stage": "external", "status": "failed"}]
    assert is_own_status_pipeline(shaped(own))


# -- the webhook endpoint -------------------------------------------------------------------------


@pytest.fixture
async def make_client(aiohttp_client, settings_env):
    """Builds the app on settings_env plus GitLab variables; closes what it opened."""
    opened = []

    async def make(**env: str):
        env = {"AGENTRY_GITLAB_WEBHOOK_TOKEN": HOOK_TOKEN, **env}
        settings = Settings.from_env({**settings_env, **{k: v for k, v in env.items() if v is not None}})
        deps = await open_deps(settings)
        opened.append(deps)
        return await aiohttp_client(make_app(deps)), deps

    yield make
    for deps in opened:
        await deps.close()


@pytest.fixture
async def gitlab(make_client):
    return await make_client()


def hook_headers(event: str, delivery_id: str | None = None, token: str = HOOK_TOKEN) -> dict:
    return {"X-Gitlab-Event": event, "X-Gitlab-Token": token, "Content-Type": "application/json",
            "Idempotency-Key": delivery_id or str(uuid.uuid4()), "User-Agent": "GitLab/18.0.0"}


async def post_hook(client, event: str, data: dict, delivery_id: str | None = None, **headers):
    body = json.dumps(data).encode()
    return await client.post("/webhooks/gitlab", data=body, headers={**hook_headers(event, delivery_id), **headers})


async def count(deps, model, *where) -> int:
    async with deps.sessions() as session:
        return (await session.exec(select(func.count()).select_from(model).where(*where))).one()


async def job_ids(deps) -> list[str]:
    async with deps.sessions() as session:
        return sorted((await session.exec(select(QueuedJob.job_id))).all())


@pytest.mark.parametrize("path", sorted(PAYLOADS.glob("*.json")), ids=lambda path: path.stem)
async def test_every_payload_is_answered_2xx_and_recorded_once(gitlab, path: Path):
    client, deps = gitlab
    body = path.read_bytes()
    event = EVENTS[json.loads(body)["object_kind"]]
    response = await client.post("/webhooks/gitlab", data=body, headers=hook_headers(event, f"gl-{path.stem}"))
    assert 200 <= response.status < 300, await response.text()
    rows = await count(deps, WebhookDelivery, WebhookDelivery.delivery_id == f"gl-{path.stem}",
                       WebhookDelivery.forge == "gitlab", WebhookDelivery.event == event)
    assert rows == 1


def note(name: str, text: str, **attributes) -> dict:
    data = payload(name)
    data["object_attributes"].update(note=text, **attributes)
    return data


@pytest.mark.parametrize("name, note_id", [("note_issue", 1241), ("note_merge_request", 1244)])
async def test_a_run_command_in_a_note_enqueues_one_command_job(gitlab, name, note_id):
    client, deps = gitlab
    response = await post_hook(client, "Note Hook", note(name, "/agent run add a greeting"), "note-1")
    assert response.status == 202
    reply = await response.json()
    assert reply["status"] == "accepted"
    assert len(reply["jobs"]) == 1 and reply["jobs"][0].startswith(f"handle_command_job:{note_id}:0:")
    assert await job_ids(deps) == reply["jobs"]


async def test_several_commands_in_one_note_enqueue_one_job_each(gitlab):
    client, _ = gitlab
    text = "Please:\n/agent plan\n```\n/agent run ignored in code\n```\n/agent status"
    response = await post_hook(client, "Note Hook", note("note_issue", text))
    assert len((await response.json())["jobs"]) == 2


@pytest.mark.parametrize(
    "user, attributes",
    [({"username": "project_5_bot_x", "id": 9}, {}), (None, {"system": True})],
    ids=["bot", "system note"],
)
async def test_notes_by_bots_and_system_notes_are_ignored(gitlab, user, attributes):
    client, deps = gitlab
    data = note("note_issue", "/agent run", **attributes)
    if user:
        data["user"] = user
    response = await post_hook(client, "Note Hook", data)
    assert response.status == 202 and (await response.json())["status"] == "ignored"
    assert await count(deps, QueuedJob) == 0


async def test_an_edited_note_runs_only_the_commands_it_added(gitlab):
    client, _ = gitlab
    edited = note("note_issue", "/agent plan\n/agent status", action="update")
    edited["changes"] = {"note": {"previous": "/agent plan", "current": "/agent plan\n/agent status"}}
    reply = await (await post_hook(client, "Note Hook", edited)).json()
    assert [job.split(":")[2] for job in reply["jobs"]] == ["1"]
    without_old_body = note("note_issue", "/agent run", action="update")
    reply = await (await post_hook(client, "Note Hook", without_old_body)).json()
    assert reply["status"] == "ignored"


async def test_the_same_idempotency_key_twice_records_one_delivery(gitlab):
    client, deps = gitlab
    data = note("note_issue", "/agent run add a greeting")
    first = await post_hook(client, "Note Hook", data, "same-key")
    second = await post_hook(client, "Note Hook", data, "same-key")
    assert first.status == 202
    assert second.status == 200 and (await second.json())["status"] == "duplicate"
    assert await count(deps, WebhookDelivery) == 1
    assert await count(deps, QueuedJob) == 1


async def test_without_an_id_header_the_body_identifies_the_delivery(gitlab):
    client, deps = gitlab
    body = json.dumps(payload("push")).encode()
    headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": HOOK_TOKEN}
    assert (await client.post("/webhooks/gitlab", data=body, headers=headers)).status == 202
    assert (await client.post("/webhooks/gitlab", data=body, headers=headers)).status == 200
    assert await count(deps, WebhookDelivery) == 1


@pytest.mark.parametrize(
    "data, expected",
    [
        (merge_request("merge", state="merged"), "handle_pull_request_job"),
        (merge_request("close", state="closed"), "handle_pull_request_job"),
        (merge_request("update", oldrev="95790bf891e76fee5e1747ab589903a6a1f80f22"), "handle_pull_request_job"),
        (merge_request("open"), None),
    ],
    ids=["merge", "close", "new commits", "open"],
)
async def test_merge_request_hooks(gitlab, data, expected):
    client, deps = gitlab
    reply = await (await post_hook(client, "Merge Request Hook", data, "mr-1")).json()
    assert reply["jobs"] == ([f"{expected}:mr-1"] if expected else [])
    row_action = data["object_attributes"]["action"]
    assert await count(deps, WebhookDelivery, WebhookDelivery.action == row_action) == 1


@pytest.mark.parametrize(
    "data, expected",
    [
        (pipeline("success"), ["handle_ci_result_job:p-1"]),
        (pipeline("failed"), ["handle_ci_result_job:p-1"]),
        (pipeline("running"), []),
    ],
    ids=["success", "failed", "running"],
)
async def test_pipeline_hooks(gitlab, data, expected):
    client, _ = gitlab
    reply = await (await post_hook(client, "Pipeline Hook", data, "p-1")).json()
    assert reply["jobs"] == expected


async def test_a_pipeline_of_agentrys_own_statuses_is_ignored(gitlab):
    client, _ = gitlab
    data = pipeline("failed")
    data["builds"] = [{"name": "agentry/3", "stage": "external", "status": "failed"}]
    assert (await (await post_hook(client, "Pipeline Hook", data)).json())["status"] == "ignored"


@pytest.mark.parametrize(
    "event, data, expected",
    [
        ("Issue Hook", with_labels("issue", ["API"], ["API", "agent:run"]), ["handle_label_job:l-1"]),
        ("Confidential Issue Hook", with_labels("issue", [], ["agent:plan"]), ["handle_label_job:l-1"]),
        ("Merge Request Hook", with_labels("merge_request", [], ["agent:ralph"]), ["handle_label_job:l-1"]),
        ("Issue Hook", with_labels("issue", ["agent:run"], ["agent:run", "bug"]), []),
        ("Issue Hook", payload("issue"), []),
    ],
    ids=["issue", "confidential issue", "merge request", "other label", "fixture"],
)
async def test_a_configured_label_added_enqueues_a_label_job(gitlab, event, data, expected):
    client, _ = gitlab
    reply = await (await post_hook(client, event, data, "l-1")).json()
    assert reply["jobs"] == expected


async def test_a_label_added_by_a_bot_is_ignored(gitlab):
    client, _ = gitlab
    data = with_labels("issue", [], ["agent:run"])
    data["user"] = {"id": 77, "username": "project_1_bot_abc"}
    assert (await (await post_hook(client, "Issue Hook", data)).json())["status"] == "ignored"


@pytest.mark.parametrize(
    "body, headers, reason",
    [
        (b"{not json", {}, "not JSON"),
        (b"[1, 2]", {}, "not an object"),
        (b"\xff\xfe", {}, "UTF-8"),
        (b"{}", {"X-Gitlab-Event": ""}, "X-Gitlab-Event"),
        (b'{"object_kind": "note", "object_attributes": {"noteable_type": "Issue"}}', {}, "shape"),
        (b'{"object_kind": "pipeline", "object_attributes": {"status": "success"}}', {}, "shape"),
        (b'{"object_kind": "note", "object_attributes": "text"}', {}, "shape"),
    ],
    ids=["bad json", "array", "not utf-8", "no event", "note shape", "pipeline shape", "attributes shape"],
)
async def test_authentic_but_unreadable_deliveries_are_400_with_a_reason(gitlab, body, headers, reason):
    client, deps = gitlab
    event = "Pipeline Hook" if b"pipeline" in body else "Note Hook"
    all_headers = {k: v for k, v in {**hook_headers(event), **headers}.items() if v}
    response = await client.post("/webhooks/gitlab", data=body, headers=all_headers)
    assert response.status == 400
    assert reason in (await response.json())["error"]
    await assert_refused_and_recorded(deps, expected=0 if "X-Gitlab-Event" in headers else 1)


async def assert_refused_and_recorded(deps, *, expected: int) -> None:
    """A refused delivery whose id and event are known is kept with its reason; nothing is queued."""
    async with deps.sessions() as session:
        rows = (await session.exec(select(WebhookDelivery))).all()
    assert [(row.status, bool(row.error)) for row in rows] == [("invalid", True)] * expected
    assert await count(deps, QueuedJob) == 0


async def test_both_token_headers_are_accepted(gitlab):
    client, deps = gitlab
    body = json.dumps(payload("push")).encode()
    for index, name in enumerate(("X-Gitlab-Token", "X-Agentry-Webhook-Token")):
        headers = {"X-Gitlab-Event": "Push Hook", name: HOOK_TOKEN, "Idempotency-Key": f"t-{index}"}
        assert (await client.post("/webhooks/gitlab", data=body, headers=headers)).status == 202
    assert await count(deps, WebhookDelivery) == 2


@pytest.mark.parametrize("token", ["wrong", "", None], ids=["wrong", "empty", "missing"])
async def test_a_bad_token_is_401_and_leaves_no_delivery(gitlab, token):
    client, deps = gitlab
    headers = hook_headers("Note Hook")
    if token is None:
        del headers["X-Gitlab-Token"]
    else:
        headers["X-Gitlab-Token"] = token
    body = json.dumps(note("note_issue", "/agent run")).encode()
    response = await client.post("/webhooks/gitlab", data=body, headers=headers)
    assert response.status == 401
    assert "X-Gitlab-Token" in (await response.json())["error"]
    assert await count(deps, WebhookDelivery) == 0
    metrics = await (await client.get("/metrics")).text()
    assert 'agentry_webhook_deliveries_total{forge="gitlab",outcome="rejected"} 1.0' in metrics


async def test_without_a_configured_token_gitlab_webhooks_are_refused_unless_in_dev_mode(make_client):
    client, _ = await make_client(AGENTRY_GITLAB_WEBHOOK_TOKEN=None)
    response = await post_hook(client, "Push Hook", payload("push"))
    assert response.status == 401
    assert "not configured" in (await response.json())["error"]
    dev_client, _ = await make_client(AGENTRY_GITLAB_WEBHOOK_TOKEN=None, AGENTRY_DEV_MODE="1")
    assert (await post_hook(dev_client, "Push Hook", payload("push"))).status == 202


def signed(body: bytes, key: str, *, message_id: str, timestamp: int) -> dict[str, str]:
    signature = standard_webhook_signature(signing_key(key), message_id, str(timestamp), body)
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": f"v1,{signature}", "Idempotency-Key": message_id}


@pytest.mark.parametrize(
    "key, age, token, status",
    [
        (VECTOR_KEY, 0, HOOK_TOKEN, 202),
        (VECTOR_KEY, 0, None, 202),
        (OTHER_KEY, 0, HOOK_TOKEN, 401),
        (VECTOR_KEY, 3600, HOOK_TOKEN, 401),
        (VECTOR_KEY, 0, "wrong", 401),
    ],
    ids=["signed", "signed without secret token", "wrong key", "stale", "bad secret token"],
)
async def test_the_signing_token_is_checked_when_configured(make_client, key, age, token, status):
    env = {"AGENTRY_GITLAB_SIGNING_TOKEN": VECTOR_KEY}
    if token is None:
        env["AGENTRY_GITLAB_WEBHOOK_TOKEN"] = None
    client, deps = await make_client(**env)
    body = json.dumps(payload("push")).encode()
    headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": token or "",
               **signed(body, key, message_id="msg_1", timestamp=int(time.time()) - age)}
    response = await client.post("/webhooks/gitlab", data=body, headers={k: v for k, v in headers.items() if v})
    assert response.status == status, await response.text()
    assert await count(deps, WebhookDelivery) == (1 if status == 202 else 0)


async def test_a_signed_delivery_without_its_signature_is_401(make_client):
    client, _ = await make_client(AGENTRY_GITLAB_SIGNING_TOKEN=VECTOR_KEY)
    response = await post_hook(client, "Push Hook", payload("push"))
    assert response.status == 401
    assert "webhook-signature" in (await response.json())["error"]


async def test_a_body_over_the_cap_is_413(gitlab, monkeypatch):
    client, deps = gitlab
    monkeypatch.setattr(gitlab_handler, "GITLAB_MAX_PAYLOAD_BYTES", 1024)
    response = await post_hook(client, "Push Hook", {"pad": "x" * 2048})
    assert response.status == 413
    assert await count(deps, WebhookDelivery) == 0


# -- GitLabForge against the fake GitLab ------------------------------------------------------------

PROJECT = "gitlab-org/gitlab-test"
REPO = RepoRef("gitlab", PROJECT, project_id=5)
MARKER = "<!-- agentry:status protocol=1 -->"
SHA = "a" * 40


@pytest.fixture
async def gl():
    members = {"owner": 50, "maint": 40, "dev": 30, "reporter": 20, "planner": 15, "guest": 10,
               "minimal": 5, "blocked-dev": 30}
    async with FakeGitLab(members=members, blocked={"blocked-dev"}) as fake:
        yield fake


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def make_forge(gl: FakeGitLab, session, **kwargs) -> GitLabForge:
    return GitLabForge(session, url=gl.url, token=gl.token, **kwargs)


def status_payload(**changes) -> dict:
    data = {"name": "agentry: 1-add-greeting", "head_sha": SHA, "status": "in_progress",
            "external_id": "1", "details_url": "https://agentry.example/protocols/1",
            "output": {"title": "Running · 0/2 steps", "summary": "| step |"}}
    data.update(changes)
    return data


def test_gitlab_forge_is_a_forge(gl, session):
    assert isinstance(make_forge(gl, session), Forge)


@pytest.mark.parametrize(
    "user, expected",
    [("owner", "admin"), ("maint", "admin"), ("dev", "write"), ("reporter", "read"), ("planner", "read"),
     ("guest", "read"), ("minimal", "none"), ("blocked-dev", "none"), ("stranger", "none")],
)
async def test_permission_follows_the_access_level(gl, session, user, expected):
    assert await make_forge(gl, session).permission(REPO, user) == expected


def test_access_levels_map_to_permissions():
    levels = {50: "admin", 40: "admin", 30: "write", 20: "read", 15: "read", 10: "read", 5: "none", 0: "none"}
    for level, expected in levels.items():
        assert access_permission({"access_level": level, "state": "active"}) == expected


async def test_permission_is_cached(gl, session):
    forge = make_forge(gl, session)
    assert await forge.permission(REPO, "dev") == "write"
    assert await forge.permission(REPO, "DEV") == "write"
    assert gl.lines().count("GET /api/v4/users") == 1


async def test_a_project_without_an_id_is_addressed_by_its_encoded_path(gl, session):
    assert await make_forge(gl, session).permission(RepoRef("gitlab", PROJECT), "dev") == "write"
    assert gl.calls[-1].url.startswith("/api/v4/projects/gitlab-org%2Fgitlab-test/members/all/")


async def test_react_awards_eyes_on_the_note_once(gl, session):
    forge = make_forge(gl, session)
    on_issue = gl.add_note(PROJECT, 17, "/agent run", user="dev")
    on_mr = gl.add_note(PROJECT, 1, "/agent run", user="dev", merge_request=True)
    await forge.react(REPO, on_issue, issue_number=17)
    await forge.react(REPO, on_issue, issue_number=17)
    await forge.react(REPO, on_mr, "+1", issue_number=1, is_merge_request=True)
    assert [(a["_note"], a["name"]) for a in gl.awards] == [(on_issue, "eyes"), (on_mr, "thumbsup")]
    assert f"POST /api/v4/projects/5/merge_requests/1/notes/{on_mr}/award_emoji" in gl.lines()
    with pytest.raises(ValueError, match="issue_number"):
        await forge.react(REPO, 999)


async def test_the_status_note_is_created_once_then_edited_in_place(gl, session):
    forge = make_forge(gl, session)
    gl.add_note(PROJECT, 17, f"quoting {MARKER}", user="dev")
    first = await upsert_status_comment(forge, REPO, 17, MARKER, "Planning…", None)
    second = await upsert_status_comment(forge, REPO, 17, MARKER, "Running step 1", None)
    assert first == second
    ours = [n for n in gl.notes.values() if n["author"]["username"] == gl.bot_username]
    assert len(ours) == 1 and ours[0]["body"] == f"{MARKER}\nRunning step 1"
    await upsert_status_comment(forge, REPO, 17, MARKER, "Done", first)
    assert gl.notes[first]["body"] == f"{MARKER}\nDone"


async def test_the_status_note_is_found_by_marker_across_pages(session):
    async with FakeGitLab(max_per_page=5) as gl:
        for index in range(12):
            gl.add_note(PROJECT, 4, f"chatter {index}", user="dev", merge_request=True)
        gl.add_note(PROJECT, 4, MARKER, user="dev", merge_request=True)
        gl.add_note(PROJECT, 4, f"{MARKER}\nsystem copy", user=gl.bot_username, merge_request=True, system=True)
        ours = gl.add_note(PROJECT, 4, f"{MARKER}\nold", user=gl.bot_username, merge_request=True)
        forge = make_forge(gl, session)
        found = await upsert_status_comment(forge, REPO, 4, MARKER, "new", None, is_merge_request=True)
        assert found == ours and gl.notes[ours]["body"] == f"{MARKER}\nnew"
        pages = [c.url for c in gl.calls if c.line == "GET /api/v4/projects/5/merge_requests/4/notes"]
        assert len(pages) == 3 and "page=3" in pages[-1]
        assert gl.lines().count("GET /api/v4/user") == 1


async def test_a_deleted_status_note_is_written_again(gl, session):
    forge = make_forge(gl, session)
    first = await upsert_status_comment(forge, REPO, 17, MARKER, "one", None)
    del gl.notes[first]
    second = await upsert_status_comment(forge, REPO, 17, MARKER, "two", first)
    assert second != first and gl.notes[second]["body"] == f"{MARKER}\ntwo"


async def test_a_note_this_forge_wrote_can_be_updated_by_id_alone(gl, session):
    forge = make_forge(gl, session, bot_username=gl.bot_username)
    note_id = await forge.create_comment(REPO, 1, "hello", is_merge_request=True)
    await forge.update_comment(REPO, note_id, "hello again")
    assert gl.notes[note_id]["body"] == "hello again"
    assert "GET /api/v4/user" not in gl.lines()


@pytest.mark.parametrize(
    "changes, state",
    [
        ({"status": "queued"}, "pending"),
        ({"status": "in_progress"}, "running"),
        ({"status": "completed", "conclusion": "success"}, "success"),
        ({"status": "completed", "conclusion": "neutral"}, "success"),
        ({"status": "completed", "conclusion": "skipped"}, "success"),
        ({"status": "completed", "conclusion": "failure"}, "failed"),
        ({"status": "completed", "conclusion": "timed_out"}, "failed"),
        ({"status": "completed", "conclusion": "action_required"}, "failed"),
        ({"status": "completed", "conclusion": "cancelled"}, "canceled"),
        ({"conclusion": "success"}, "success"),
    ],
)
def test_check_run_states_map_to_commit_status_states(changes, state):
    assert commit_status_state(changes) == state


async def test_check_runs_become_commit_statuses_on_the_head_commit(gl, session):
    forge = make_forge(gl, session)
    long_title = "x" * 400
    check_run_id = await forge.create_check_run(REPO, status_payload(output={"title": long_title}))
    status = gl.status_of(SHA, "agentry/1")
    assert status["id"] == check_run_id and status["status"] == "running"
    assert status["target_url"] == "https://agentry.example/protocols/1"
    assert len(status["description"]) == 255
    await forge.update_check_run(REPO, check_run_id, {"status": "in_progress", "external_id": "1"})
    assert gl.lines().count(f"POST /api/v4/projects/5/statuses/{SHA}") == 1
    await forge.update_check_run(REPO, check_run_id, {"status": "completed", "conclusion": "success",
                                                      "external_id": "1", "output": {"title": "Done"}})
    assert gl.status_of(SHA, "agentry/1")["status"] == "success"
    assert gl.status_of(SHA, "agentry/1")["description"] == "Done"


async def test_a_status_can_be_updated_from_another_process_given_the_head_sha(gl, session):
    check_run_id = await make_forge(gl, session).create_check_run(REPO, status_payload())
    other = make_forge(gl, session)
    await other.update_check_run(REPO, check_run_id, status_payload())
    await other.update_check_run(REPO, check_run_id, status_payload(status="completed", conclusion="failure"))
    assert gl.status_of(SHA, "agentry/1")["status"] == "failed"
    with pytest.raises(LookupError, match="head_sha"):
        await make_forge(gl, session).update_check_run(REPO, check_run_id, {"status": "in_progress"})
    again = await make_forge(gl, session).create_check_run(REPO, status_payload())
    assert again != check_run_id and gl.status_of(SHA, "agentry/1")["status"] == "running"
    assert await make_forge(gl, session).create_check_run(REPO, status_payload()) == again


@pytest.mark.parametrize(
    "path, body, error",
    [
        (f"statuses/{SHA}", {"state": "completed"}, "state does not have a valid value"),
        (f"statuses/{SHA}", {"name": "agentry/1"}, "state is missing"),
        (f"statuses/{SHA}", {"state": "running", "description": "x" * 256}, "description is too long"),
        ("issues/1/notes", {}, "body is missing"),
        ("merge_requests", {"source_branch": "b", "title": "T"}, "target_branch is missing"),
    ],
)
async def test_the_fake_validates_required_fields_and_enums(gl, session, path, body, error):
    url = f"{gl.url}/api/v4/projects/5/{path}"
    async with session.post(url, json=body, headers={"PRIVATE-TOKEN": gl.token}) as response:
        assert response.status == 400
        assert error in (await response.json())["error"]


async def test_merge_requests_open_as_drafts_are_found_and_marked_ready(gl, session):
    forge = make_forge(gl, session)
    opened = await forge.open_pull_request(REPO, NewPullRequest(head="agent/17-greeting", base="master",
                                           title="Add a greeting", body="Closes #17", draft=True))
    assert {key: opened[key] for key in ("number", "url", "draft", "state", "head_branch", "head_ref")} == {
        "number": 1, "url": f"https://gitlab.example/{PROJECT}/-/merge_requests/1", "draft": True, "state": "open",
        "head_branch": "agent/17-greeting", "head_ref": "refs/merge-requests/1/head"}
    assert gl.merge_requests[(5, 1)]["title"] == "Draft: Add a greeting"
    assert gl.merge_requests[(5, 1)]["description"] == "Closes #17"
    again = await forge.open_pull_request(REPO, NewPullRequest(head="agent/17-greeting", base="master",
                                          title="Add a greeting", body="Closes #17", draft=True))
    assert again == opened and len(gl.merge_requests) == 1
    assert await forge.find_pull_request(REPO, "agent/17-greeting") == opened
    assert await forge.find_pull_request(REPO, "agent/other") is None
    await forge.update_pull_request(REPO, 1, title="Add a friendly greeting", body="Closes #17\n\nSteps")
    assert gl.merge_requests[(5, 1)]["title"] == "Draft: Add a friendly greeting"
    await forge.mark_ready_for_review(REPO, 1)
    assert gl.merge_requests[(5, 1)]["title"] == "Add a friendly greeting"
    assert (await forge.find_pull_request(REPO, "agent/17-greeting"))["draft"] is False


async def test_a_ready_merge_request_is_left_alone(gl, session):
    forge = make_forge(gl, session)
    await forge.open_pull_request(REPO, NewPullRequest(head="b", base="master", title="T", body="", draft=False))
    await forge.mark_ready_for_review(REPO, 1)
    assert [line for line in gl.lines() if line.startswith("PUT")] == []


@pytest.mark.parametrize(
    "title, ready",
    [("Draft: x", "x"), ("[Draft] x", "x"), ("(draft) x", "x"), ("Draft: Draft: x", "x"), ("x", "x")],
)
def test_ready_title_removes_every_draft_prefix(title, ready):
    assert ready_title(title) == ready


async def test_the_token_is_never_in_a_url_a_body_or_a_log(gl, session, caplog):
    caplog.set_level(logging.DEBUG)
    forge = make_forge(gl, session)
    note_id = await upsert_status_comment(forge, REPO, 17, MARKER, "hi", None)
    await forge.react(REPO, note_id, issue_number=17)
    await forge.permission(REPO, "dev")
    check_run_id = await forge.create_check_run(REPO, status_payload())
    await forge.update_check_run(REPO, check_run_id, status_payload(status="completed", conclusion="success"))
    await forge.open_pull_request(REPO, NewPullRequest(head="b", base="master", title="T", body="B", draft=True))
    assert await forge.git_token(REPO) == gl.token
    assert {call.auth for call in gl.calls} == {"bearer"}
    recorded = " ".join(f"{c.url} {json.dumps(c.json)}" for c in gl.calls)
    assert gl.token not in recorded
    assert gl.token not in caplog.text and gl.token not in repr(forge)


async def test_a_wrong_token_is_refused_by_the_fake(gl, session):
    forge = GitLabForge(session, url=gl.url, token="glpat-wrong")
    with pytest.raises(gidgetlab.BadRequest) as raised:
        await forge.create_comment(REPO, 1, "hi")
    assert int(raised.value.status_code) == 401
    assert "glpat-wrong" not in str(raised.value)
    headers = {"PRIVATE-TOKEN": gl.token}
    async with session.get(f"{gl.url}/api/v4/user", headers=headers) as response:
        assert response.status == 200
    assert gl.calls[-1].auth == "private-token"


def test_fixture_payloads_keep_their_notice():
    assert (PAYLOADS / "NOTICE").read_text().startswith("These files are from xanzy/go-gitlab")


async def test_the_fake_requires_an_award_emoji_name(gl, session):
    note_id = gl.add_note(PROJECT, 17, "/agent run", user="dev")
    url = f"{gl.url}/api/v4/projects/5/issues/17/notes/{note_id}/award_emoji"
    async with session.post(url, json={}, headers={"Authorization": f"Bearer {gl.token}"}) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "name is missing"
    assert gl.awards == []


async def test_notes_by_agentrys_own_account_are_ignored_when_named(make_client):
    client, _deps = await make_client(AGENTRY_GITLAB_BOT_USERNAME="Root")
    data = note("note_issue", "/agent run add a greeting")
    data["user"]["username"] = "root"
    reply = await (await post_hook(client, "Note Hook", data)).json()
    assert reply["status"] == "ignored"
    data["user"]["username"] = "user1"
    data["object_attributes"]["note"] = "@root run add a greeting"
    reply = await (await post_hook(client, "Note Hook", data)).json()
    assert reply["status"] == "accepted" and len(reply["jobs"]) == 1


async def test_a_delivery_without_the_token_is_refused_before_its_body_is_read(gitlab):
    from tests.test_intake import raw_post

    client, _ = gitlab
    answer = await raw_post(client, "/webhooks/gitlab", {"X-Gitlab-Event": "Note Hook", "X-Gitlab-Token": "wrong"})
    assert answer.startswith(b"HTTP/1.1 401")
