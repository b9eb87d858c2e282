"""Deciders are pure: each forge's router maps a real payload, read into its shape, to the job
functions it asks for, with no server, database or queue (a table per forge)."""

import json

import pytest

from bot.config import Settings
from bot.forge.payloads import github_shape, gitlab_event_kind, gitlab_shape
from handlers.github import router as github_router
from handlers.gitlab import router as gitlab_router
from tests.conftest import FIXTURES

SETTINGS = Settings.from_env({"AGENTRY_WEBHOOK_SECRET": "s"})
GITLAB = FIXTURES / "gitlab-webhooks"


def github_jobs(event: str, fixture: str, **changes) -> list[str]:
    payload = {**json.loads((FIXTURES / "github-webhooks" / event / fixture).read_text()), **changes}
    shape = github_shape(event, payload)
    return [job.function for job in github_router.decide(SETTINGS, event, shape.action, "d-1", shape)]


def gitlab_jobs(event: str, fixture: str) -> list[str]:
    shape = gitlab_shape(event, json.loads((GITLAB / fixture).read_text()))
    action = shape.object_attributes.action if shape.object_attributes else None
    return [job.function for job in gitlab_router.decide(SETTINGS, gitlab_event_kind(event), action, "d-1", shape)]


@pytest.mark.parametrize("event, fixture, expected", [
    ("issue_comment", "created.payload.json", []),  # no command in it
    ("issue_comment", "deleted.payload.json", []),
    ("installation", "created.payload.json", ["handle_installation_job"]),
    ("installation_repositories", "added.payload.json", ["handle_installation_job"]),
    ("pull_request", "closed.payload.json", ["handle_pull_request_job"]),
    ("pull_request", "synchronize.payload.json", ["handle_pull_request_job"]),
    ("pull_request", "opened.payload.json", []),
    ("check_suite", "completed.payload.json", ["handle_ci_result_job"]),
    ("check_suite", "requested.payload.json", []),
    ("workflow_run", "completed.payload.json", ["handle_ci_result_job"]),
    ("check_run", "created.payload.json", []),
    ("issues", "labeled.payload.json", []),  # not one of agentry's labels
    ("push", "payload.json", []),
    ("ping", "payload.json", []),
])
def test_github_deliveries_ask_for_these_jobs(event, fixture, expected):
    assert github_jobs(event, fixture) == expected


def test_a_github_comment_asks_for_one_job_per_command_and_an_edit_for_the_commands_it_added():
    payload = json.loads((FIXTURES / "github-webhooks/issue_comment/created.payload.json").read_text())
    comment = {**payload["comment"], "body": "/agent status\n/agent plan"}
    assert github_jobs("issue_comment", "created.payload.json", comment=comment) == ["handle_command_job"] * 2
    edited = {"body": {"from": "/agent status"}}
    assert github_jobs("issue_comment", "edited.payload.json", comment=comment, changes=edited) == ["handle_command_job"]


@pytest.mark.parametrize("event, fixture, expected", [
    ("Note Hook", "note_issue.json", []),  # no command in it
    ("Merge Request Hook", "merge_request.json", []),  # opened: nothing for agentry yet
    ("Pipeline Hook", "pipeline.json", ["handle_ci_result_job"]),
    ("Push Hook", "push.json", []),
])
def test_gitlab_deliveries_ask_for_these_jobs(event, fixture, expected):
    assert gitlab_jobs(event, fixture) == expected
