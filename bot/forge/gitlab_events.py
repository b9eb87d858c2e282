"""GitLab webhook payloads read into the forge-neutral events of :mod:`bot.forge.events` (pure).

GitLab numbers issues and merge requests per project with ``iid``: that is ``Issue.number`` and
``PullRequestEvent.number``. A merge request is ``is_pull_request=True``.
"""

from __future__ import annotations

import re

from bot.forge import RepoRef
from bot.forge.events import (
    Actor,
    CiEvent,
    CommentEvent,
    Issue,
    LabelEvent,
    PullRequestEvent,
    Repository,
    UnsupportedEvent,
)

NOTEABLES = {"Issue": "issue", "MergeRequest": "merge_request"}
MERGE_REQUEST_ACTIONS = {"merge": "merged", "close": "closed", "reopen": "reopened"}
PIPELINE_CONCLUSIONS = {
    "success": "success",
    "failed": "failure",
    "canceled": "cancelled",
    "skipped": "neutral",
}
FINISHED_PIPELINE_STATUSES = frozenset(PIPELINE_CONCLUSIONS)
OWN_STATUS_PREFIX = "agentry/"

# Project and group access tokens act as users named project_<id>_bot_<hash> / group_<id>_bot_…;
# service accounts as service_account_…; GitLab's own helpers end in -bot (support-bot, alert-bot).
BOT_USERNAME = re.compile(
    r"^(project|group)_\d+_bot(_\w+)?$|^service_account_|[_-]bot$|\[bot\]$", re.IGNORECASE
)


def gitlab_repository(payload: dict) -> Repository:
    project = payload["project"]
    return Repository(
        ref=RepoRef(forge="gitlab", full_name=project["path_with_namespace"], project_id=project.get("id")),
        clone_url=project.get("git_http_url") or project.get("http_url"),
        default_branch=project.get("default_branch"),
        repo_id=project.get("id"),
        html_url=project.get("web_url"),
    )


def gitlab_actor(user: dict | None) -> Actor:
    """The acting user; anything that looks like a bot (or no user at all) counts as one."""
    user = user or {}
    username = user.get("username") or ""
    is_bot = user.get("bot") is True or not username or bool(BOT_USERNAME.search(username))
    return Actor(login=username, is_bot=is_bot)


def gitlab_issue(item: dict, *, is_merge_request: bool) -> Issue:
    return Issue(
        number=item["iid"],
        title=item.get("title") or "",
        body=item.get("description") or "",
        is_pull_request=is_merge_request,
        url=item.get("url"),
    )


def gitlab_comment(payload: dict) -> CommentEvent:
    """A Note Hook on an issue or a merge request (notes on commits and snippets are unsupported)."""
    note = payload["object_attributes"]
    kind = NOTEABLES.get(note.get("noteable_type"))
    if kind is None:
        raise UnsupportedEvent(f"note on a {note.get('noteable_type')!r}")
    return CommentEvent(
        repo=gitlab_repository(payload),
        issue=gitlab_issue(payload[kind], is_merge_request=kind == "merge_request"),
        comment_id=note["id"],
        body=note.get("note") or "",
        old_body=gitlab_old_note(payload),
        author=gitlab_actor(payload.get("user")),
        url=note.get("url"),
    )


def gitlab_old_note(payload: dict) -> str | None:
    """The body before an edit, when GitLab says what it was (``changes.note.previous``)."""
    if payload["object_attributes"].get("action") != "update":
        return None
    previous = ((payload.get("changes") or {}).get("note") or {}).get("previous")
    return previous if isinstance(previous, str) else None


def is_system_note(payload: dict) -> bool:
    return bool(payload["object_attributes"].get("system"))


def _titles(labels: list | None) -> list[str]:
    return [label["title"] for label in labels or [] if isinstance(label, dict) and "title" in label]


def gitlab_added_labels(payload: dict) -> list[str]:
    """Labels an Issue or Merge Request Hook added: ``changes.labels`` current minus previous.

    An issue or merge request opened with labels may carry no label change; then all its labels
    were just added.
    """
    change = (payload.get("changes") or {}).get("labels")
    if change is None:
        opened = payload["object_attributes"].get("action") == "open"
        return _titles(payload.get("labels")) if opened else []
    previous = set(_titles(change.get("previous")))
    return [title for title in _titles(change.get("current")) if title not in previous]


def gitlab_label_event(payload: dict, label: str) -> LabelEvent:
    is_merge_request = payload.get("object_kind") == "merge_request"
    return LabelEvent(
        repo=gitlab_repository(payload),
        issue=gitlab_issue(payload["object_attributes"], is_merge_request=is_merge_request),
        label=label,
        actor=gitlab_actor(payload.get("user")),
    )


def gitlab_label(payload: dict, names: tuple[str, ...] | list[str] | set[str]) -> LabelEvent | None:
    """The event for the first added label among ``names``, or None."""
    label = next((title for title in gitlab_added_labels(payload) if title in names), None)
    return None if label is None else gitlab_label_event(payload, label)


def merge_request_action(payload: dict) -> str:
    """``merged``, ``closed``, ``reopened`` or ``synchronize`` (an update that pushed commits)."""
    attributes = payload["object_attributes"]
    action = attributes.get("action")
    if action in MERGE_REQUEST_ACTIONS:
        return MERGE_REQUEST_ACTIONS[action]
    if action == "update" and attributes.get("oldrev"):
        return "synchronize"
    raise UnsupportedEvent(f"merge request action {action!r}")


def gitlab_merge_request(payload: dict) -> PullRequestEvent:
    attributes = payload["object_attributes"]
    action = merge_request_action(payload)
    source = attributes.get("source") or {}
    return PullRequestEvent(
        repo=gitlab_repository(payload),
        number=attributes["iid"],
        action=action,
        head_branch=attributes["source_branch"],
        head_sha=(attributes.get("last_commit") or {}).get("id") or "",
        head_repo=source.get("path_with_namespace"),
        base_branch=attributes["target_branch"],
        url=attributes.get("url"),
    )


def pipeline_conclusion(status: str | None) -> str:
    """GitLab's pipeline status in GitHub's terms; every unfinished status is ``pending``."""
    return PIPELINE_CONCLUSIONS.get(status or "", "pending")


def gitlab_pipeline(payload: dict) -> CiEvent:
    pipeline = payload["object_attributes"]
    project = payload.get("project") or {}
    web_url = project.get("web_url")
    return CiEvent(
        repo=gitlab_repository(payload),
        branch=None if pipeline.get("tag") else pipeline.get("ref"),
        sha=pipeline["sha"],
        conclusion=pipeline_conclusion(pipeline.get("status")),
        name=f"pipeline #{pipeline.get('iid') or pipeline['id']}",
        details_url=f"{web_url}/-/pipelines/{pipeline['id']}" if web_url else None,
        summary=pipeline.get("detailed_status") or pipeline.get("status") or "",
    )


def is_own_status_pipeline(payload: dict) -> bool:
    """A pipeline made only of agentry's own commit statuses (posting a status creates one)."""
    builds = payload.get("builds") or []
    return bool(builds) and all(str(build.get("name", "")).startswith(OWN_STATUS_PREFIX) for build in builds)
